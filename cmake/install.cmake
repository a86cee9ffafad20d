# cmake --install: the `plx` CLI, the header-only reference and the libraries, with a CMake
# package (find_package(plx) -> plx::reference, plx::reference_inst, plx::validation,
# plx::fast, plx::cuda where built) and a pkg-config file (plx.pc).
# Layout under the prefix: bin/plx; include/plx/{reference,validation,fast,kernels}/*.hpp
# (consumers include "reference/all.hpp" as inside the repository); lib/libplx_*.a;
# lib/cmake/plx/; lib/pkgconfig/plx.pc; share/plx/suites/*.json.
include(CMakePackageConfigHelpers)
set(PLX_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/plx)

# Exported names: plx::<EXPORT_NAME>.
set_target_properties(plx_reference PROPERTIES EXPORT_NAME reference)
set_target_properties(plx_reference_inst PROPERTIES EXPORT_NAME reference_inst)
set_target_properties(plx_validation PROPERTIES EXPORT_NAME validation)
set_target_properties(plx_certify PROPERTIES EXPORT_NAME certify)
set(_plx_libs plx_reference plx_reference_inst plx_certify plx_validation)
set(_plx_have_fast OFF)
set(_plx_have_cuda OFF)
get_property(_plx_have_mpi GLOBAL PROPERTY PLX_HAVE_MPI)  # set by validation/CMakeLists.txt
if(NOT _plx_have_mpi)
  set(_plx_have_mpi OFF)
endif()
if(TARGET plx_fast)
  set_target_properties(plx_fast PROPERTIES EXPORT_NAME fast)
  list(APPEND _plx_libs plx_fast)
  set(_plx_have_fast ON)
endif()
if(TARGET plx_kernels)
  set_target_properties(plx_kernels PROPERTIES EXPORT_NAME cuda)
  # The kernels' include path is the source tree in the build; the install uses include/plx.
  get_target_property(_inc plx_kernels INTERFACE_INCLUDE_DIRECTORIES)
  set(_wrapped)
  foreach(d ${_inc})
    if(d MATCHES "^\\$<")
      list(APPEND _wrapped "${d}")
    else()
      list(APPEND _wrapped "$<BUILD_INTERFACE:${d}>")
    endif()
  endforeach()
  set_target_properties(plx_kernels PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_wrapped}")
  target_include_directories(plx_kernels INTERFACE $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/plx>)
  list(APPEND _plx_libs plx_kernels)
  set(_plx_have_cuda ON)
endif()

install(TARGETS ${_plx_libs} EXPORT plxTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/plx)
install(TARGETS plx RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
foreach(d reference validation fast kernels)
  if(IS_DIRECTORY ${PROJECT_SOURCE_DIR}/${d})
    install(DIRECTORY ${PROJECT_SOURCE_DIR}/${d}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/plx/${d}
            FILES_MATCHING PATTERN "*.hpp" PATTERN "*.cuh")
  endif()
endforeach()
install(DIRECTORY ${PROJECT_SOURCE_DIR}/fixtures/suites/ DESTINATION ${CMAKE_INSTALL_DATADIR}/plx/suites
        FILES_MATCHING PATTERN "*.json")
install(EXPORT plxTargets NAMESPACE plx:: DESTINATION ${PLX_INSTALL_CMAKEDIR})

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/plxConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/plxConfig.cmake INSTALL_DESTINATION ${PLX_INSTALL_CMAKEDIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/plxConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/plxConfig.cmake ${PROJECT_BINARY_DIR}/plxConfigVersion.cmake
        DESTINATION ${PLX_INSTALL_CMAKEDIR})

# pkg-config: the header-only reference (cflags) and the validation library with its
# dependencies in link order (libs). OpenMP and the multiprecision libraries are listed
# explicitly because pkg-config has no imported targets.
set(PLX_PC_HDF5_INC "")
foreach(d ${HDF5_C_INCLUDE_DIRS})
  string(APPEND PLX_PC_HDF5_INC " -I${d}")
endforeach()
set(PLX_PC_HDF5_LIBS "")
foreach(l ${HDF5_C_LIBRARIES})
  string(APPEND PLX_PC_HDF5_LIBS " ${l}")
endforeach()
set(PLX_PC_EXTRA_LIBS "")
if(_plx_have_fast)
  string(APPEND PLX_PC_EXTRA_LIBS " -lplx_fast")
endif()
if(_plx_have_cuda)
  string(APPEND PLX_PC_EXTRA_LIBS " -lplx_kernels -L${CUDAToolkit_LIBRARY_DIR} -lcudart")
endif()
file(RELATIVE_PATH PLX_PC_UP "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")  # e.g. ../..
configure_file(${PROJECT_SOURCE_DIR}/cmake/plx.pc.in ${PROJECT_BINARY_DIR}/plx.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/plx.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
