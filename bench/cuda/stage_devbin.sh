#!/usr/bin/env bash
# bench/cuda/stage_devbin.sh — copy the test and benchmark binaries, and the shared libraries
# they need that the device image may lack, into build-cuda/devbin (carried to the device).
set -eu
cd "$(dirname "$0")/../.."
D=build-cuda/devbin
rm -rf $D && mkdir -p $D/lib
for b in tests/kernels/kernels_test_cuda_api tests/kernels/kernels_test_parallax_gpu \
         bench/cuda/bench_parallax_decode bench/cuda/bench_parallax_forward; do
  [ -f build-cuda/$b ] && cp build-cuda/$b $D/ && strip $D/$(basename $b) || echo "missing $b"
done
# Non-libc, non-CUDA-driver libraries (gtest, qd, mpfr, gmp, hdf5, gomp, quadmath, ...).
for f in $D/*; do [ -f "$f" ] && ldd "$f"; done | awk '/=> \//{print $3}' | sort -u |
  grep -vE 'libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|ld-linux|libcuda\.so|libstdc\+\+|libgcc_s' |
  while read -r l; do cp -L "$l" $D/lib/; done
du -sh $D
