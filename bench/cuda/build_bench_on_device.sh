#!/usr/bin/env bash
# bench/cuda/build_bench_on_device.sh — build the CUDA benchmarks from a source tree on the device
# machine (16 cores, nvcc there), with the flags of the CMake Release build (kernels/CMakeLists.txt,
# bench/cuda/CMakeLists.txt). Used for same-run A/B timings: two trees (say the main branch and a
# change) built by the same compiler and flags, then timed alternately in one call.
# usage: build_bench_on_device.sh SRC_ROOT DEST_DIR   (SRC_ROOT holds kernels/, reference/, bench/cuda/)
set -eu
SRC=$(cd "$1" && pwd) DST=$2
mkdir -p "$DST/obj"
NV="nvcc -O3 -DNDEBUG --generate-code=arch=compute_90a,code=[compute_90a,sm_90a] -lineinfo --expt-relaxed-constexpr -std=c++17 -I$SRC -Xcompiler=-fPIC"
CXX="g++ -O2 -fPIC -march=x86-64-v3 -std=gnu++20 -I$SRC -I/usr/local/cuda/include"
export NV CXX DST
{
  for f in "$SRC"/kernels/*.cu; do echo "$NV -c $f -o $DST/obj/$(basename "$f").o"; done
  for f in "$SRC"/kernels/*.cpp; do
    case $f in *backend.cpp) continue ;; esac  # the registry face needs the whole plx build, not the benchmarks
    echo "$CXX -c $f -o $DST/obj/$(basename "$f").o"
  done
  for b in bench_parallax_decode bench_parallax_forward bench_parallax_backward; do
    echo "$NV -c $SRC/bench/cuda/$b.cu -o $DST/obj/$b.bench.o"
  done
} | xargs -P 16 -I{} sh -c '{}'
ar rcs "$DST/libplx_kernels.a" $(ls "$DST"/obj/*.o | grep -v '\.bench\.o$')
for b in bench_parallax_decode bench_parallax_forward bench_parallax_backward; do
  nvcc -o "$DST/$b" "$DST/obj/$b.bench.o" "$DST/libplx_kernels.a" -lcudart &
done
wait
ls -la "$DST"
