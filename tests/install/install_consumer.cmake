# ctest install_consumer: cmake --install the current build into a private prefix, then build
# and run (1) tests/install/consumer with find_package(plx) and (2) pc_consumer.cpp with the flags
# of `pkg-config --cflags --libs plx` only. Arguments (-D): BUILD_DIR, SRC_DIR, WORK_DIR,
# FIXTURE, CXX.
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
foreach(f bin/plx lib/cmake/plx/plxConfig.cmake lib/pkgconfig/plx.pc include/plx/reference/all.hpp)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "install is missing ${f}")
  endif()
endforeach()
run(${CMAKE_COMMAND} -S ${SRC_DIR}/tests/install/consumer -B ${WORK_DIR}/consumer -G Ninja
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${CXX})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer)
run(${WORK_DIR}/consumer/consumer ${FIXTURE})
# pkg-config
set(ENV{PKG_CONFIG_PATH} ${prefix}/lib/pkgconfig)
execute_process(COMMAND pkg-config --cflags --libs plx OUTPUT_VARIABLE pc RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config --cflags --libs plx failed")
endif()
separate_arguments(pc UNIX_COMMAND "${pc}")
run(${CXX} -O1 ${SRC_DIR}/tests/install/pc_consumer.cpp -o ${WORK_DIR}/pc_consumer ${pc})
run(${WORK_DIR}/pc_consumer)
# The installed CLI runs from the prefix (no source tree): inspect the fixture.
run(${prefix}/bin/plx inspect ${FIXTURE})
