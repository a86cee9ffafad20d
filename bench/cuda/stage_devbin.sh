#!/usr/bin/env bash
# bench/cuda/stage_devbin.sh — copy the test and benchmark binaries, and the shared libraries
# they need that the device image may lack, into <build>/devbin (carried to the device).
# usage: bench/cuda/stage_devbin.sh [build-dir]   (default build-cuda; every kernels_test_*
# and bench_* executable of that build's tests/kernels and bench/cuda is staged, and the plx tool
# for `plx check --run cuda` on the golden suite)
set -eu
cd "$(dirname "$0")/../.."
BUILD=${1:-build-cuda}
D=$BUILD/devbin
rm -rf $D && mkdir -p $D/lib
for b in $BUILD/tests/kernels/kernels_test_* $BUILD/bench/cuda/bench_* $BUILD/bench/cuda/probe_* $BUILD/plx; do
  [ -f "$b" ] && [ -x "$b" ] || continue
  cp "$b" $D/ && strip $D/$(basename "$b")
done
# Non-libc, non-CUDA-driver libraries (gtest, qd, mpfr, gmp, hdf5, gomp, quadmath, ...).
for f in $D/*; do [ -f "$f" ] && ldd "$f"; done | awk '/=> \//{print $3}' | sort -u |
  grep -vE 'libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|ld-linux|libcuda\.so|libstdc\+\+|libgcc_s' |
  while read -r l; do cp -L "$l" $D/lib/; done
du -sh $D
# Every test/bench binary embeds all kernels (~15 MB each): past the 64 MiB carry limit, carry
# the xz archive instead and unpack it on the device (docs/gpu.md, "One device call").
tar -C $BUILD -cf - devbin | xz -6 -T2 > $BUILD/devbin.tar.xz
ls -la $BUILD/devbin.tar.xz
