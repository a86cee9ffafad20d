#!/usr/bin/env bash
# bench/cuda/run_device.sh — ONE device call: GPU tests, compute-sanitizer, benchmarks
# (ours and the torch cuDNN / FlashAttention-2 baselines in the same run). Results in $OUT.
# Expects the binaries and their non-system shared libraries in build-cuda/devbin (or $PLX_DEVBIN)
# (bench/cuda/stage_devbin.sh makes it here). Usage on the device (docs/gpu.md):
#   bash bench/cuda/run_device.sh [tests|sanitize|bench|all]...
set -u
OUT=${OUT:-/tmp/plx_out}
mkdir -p "$OUT"
BIN=${PLX_DEVBIN:-build-cuda/devbin}   # another build's staged folder: PLX_DEVBIN=build-x/devbin
export LD_LIBRARY_PATH=$PWD/$BIN/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export PLX_SOURCE_DIR=$PWD
what=${*:-all}
has() { [[ " $what " == *" $1 "* || " $what " == *" all "* ]]; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
date -u +%FT%TZ | tee -a "$OUT/gpu.txt"
if has tests; then
  echo "== host API tests"; $BIN/kernels_test_cuda_api 2>&1 | tail -5 | tee "$OUT/tests.log"
  echo "== GPU tests"; timeout 300 $BIN/kernels_test_parallax_gpu 2>&1 | tee -a "$OUT/tests.log" | grep -E "^\[  |FAIL|tensor|out |vbar|lse|zbar|decode|forward|Expected|no CUDA" | tail -60
  for seed in 7 99; do  # the same suite on other seeds: the 2x rule must not hold by luck of one seed
    echo "== GPU tests PLX_SEED=$seed"; PLX_SEED=$seed timeout 300 $BIN/kernels_test_parallax_gpu 2>&1 | tee -a "$OUT/tests.log" | grep -E "^\[  (PASSED|FAILED)|FAIL$" | tail -20
  done
fi
if has sanitize; then
  for tool in memcheck racecheck synccheck; do
    echo "== compute-sanitizer $tool"
    timeout 200 compute-sanitizer --tool $tool --error-exitcode 9 $BIN/kernels_test_parallax_gpu \
      --gtest_filter='CudaDeterminism.*' > "$OUT/sanitize_$tool.log" 2>&1
    echo "rc=$?"; tail -4 "$OUT/sanitize_$tool.log"
  done
fi
if has bench; then
  echo "== benchmarks"
  timeout 240 $BIN/bench_parallax_decode 2>&1 | tee "$OUT/bench_decode.jsonl" | tail -40
  timeout 90 $BIN/bench_parallax_forward 2>&1 | tee "$OUT/bench_forward.jsonl"
  PYTHONUNBUFFERED=1 timeout 240 python3 bench/cuda/torch_baselines.py 2>&1 | tee "$OUT/bench_torch.jsonl" | tail -40
fi
