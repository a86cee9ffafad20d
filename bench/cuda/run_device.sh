#!/usr/bin/env bash
# bench/cuda/run_device.sh — ONE device call: GPU tests, compute-sanitizer, benchmarks
# (ours and the torch cuDNN / FlashAttention-2 baselines in the same run). Results in $OUT.
# Expects the binaries and their non-system shared libraries in build-cuda/devbin (or $PLX_DEVBIN)
# (bench/cuda/stage_devbin.sh makes it here). Usage on the device (docs/gpu.md):
#   bash bench/cuda/run_device.sh [tests|sanitize|bench|bwd|all|lla|fwd]...   (lla, fwd only when named)
# fwd: the prefill forward alone (v1, v2, every v3 variant): its tests, the whole GPU suite with
# v3 as the forward, compute-sanitizer on a v3 case, the forward benchmark and cuDNN/FA2 (~150 s).
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
if has bwd; then  # backward (issue 6 item 3): tests, sanitizer on a small case, bench + torch fwd+bwd baselines
  echo "== backward tests"; timeout 90 $BIN/kernels_test_backward_gpu 2>&1 | tee "$OUT/bwd_tests.log" | grep -E "^\[  (PASSED|FAILED|SKIPPED)|FAIL|Expected|seed=|no CUDA|^ *(dq|dk|dv|dr|t|b) " | tail -40
  for tool in racecheck memcheck; do
    echo "== compute-sanitizer $tool (backward)"
    timeout 35 compute-sanitizer --tool $tool --error-exitcode 9 $BIN/kernels_test_backward_gpu \
      --gtest_filter='CudaBackwardSmall.*' > "$OUT/bwd_sanitize_$tool.log" 2>&1
    echo "rc=$?"; tail -3 "$OUT/bwd_sanitize_$tool.log"
  done
  echo "== backward benchmarks"
  timeout 45 $BIN/bench_parallax_backward 2>&1 | tee "$OUT/bench_bwd.jsonl"
  PYTHONUNBUFFERED=1 timeout 60 python3 bench/cuda/torch_baselines.py --bwd 2>&1 | tee "$OUT/bench_torch_bwd.jsonl" | tail -10
  for seed in 7 99; do  # other seeds last (the timed numbers above matter more if time runs out)
    echo "== backward tests PLX_SEED=$seed"; PLX_SEED=$seed timeout 60 $BIN/kernels_test_backward_gpu 2>&1 | tee -a "$OUT/bwd_tests.log" | grep -E "^\[  (PASSED|FAILED)|FAIL$|seed=" | tail -12
  done
fi
if [[ " $what " == *" fwd "* ]]; then
  echo "== forward kernels v1, v2, v3 variants"
  timeout 150 $BIN/kernels_test_parallax_gpu --gtest_filter='CudaForward.BothKernelsLongRows' 2>&1 | tee "$OUT/fwd_tests.log" |
    grep -E "^\[  (PASSED|FAILED)|FAIL|Expected|v3" | tail -30
  echo "== GPU suite with v3 as the forward"; PLX_CUDA_FORWARD_VERSION=3 timeout 200 $BIN/kernels_test_parallax_gpu 2>&1 |
    tee -a "$OUT/fwd_tests.log" | grep -E "^\[  (PASSED|FAILED)|FAIL$" | tail -12
  for tool in memcheck racecheck synccheck; do
    echo "== compute-sanitizer $tool (v3 forward)"
    PLX_CUDA_FORWARD_VERSION=3 PLX_CUDA_FORWARD_FLAGS=${PLX_SAN_FLAGS:-1} timeout 120 compute-sanitizer --tool $tool --error-exitcode 9 \
      $BIN/kernels_test_parallax_gpu --gtest_filter='CudaDeterminism.*' > "$OUT/fwd_sanitize_$tool.log" 2>&1
    echo "rc=$?"; tail -3 "$OUT/fwd_sanitize_$tool.log"
  done
  if ! has bench; then  # (the bench section already timed every variant and all the baselines)
    echo "== forward benchmark"; timeout 150 $BIN/bench_parallax_forward 2>&1 | tee "$OUT/bench_forward.jsonl"
    PYTHONUNBUFFERED=1 timeout 90 python3 bench/cuda/torch_baselines.py --fwd 2>&1 | tee "$OUT/bench_torch.jsonl" | tail -6
  fi
fi
if [[ " $what " == *" lla "* ]]; then  # LLA (issue 6 items 1, 4): tests, sanitizer on the small case, decode bench
  echo "== LLA tests (host checks + GPU vs reference)"
  RC_PARAMS="max_success=${PLX_RC_CASES:-60}" timeout 60 $BIN/kernels_test_lla_gpu 2>&1 | tee "$OUT/lla_tests.log" |
    grep -E "^\[  (PASSED|FAILED|SKIPPED)|FAIL|Expected|seed=|split invariance|CG iterations|no CUDA|OK, passed|Falsifiable|worst per-row" | tail -60
  for seed in 7 99; do  # other seeds: the 2x rule must not hold by the luck of one seed
    echo "== LLA tests PLX_SEED=$seed"; PLX_SEED=$seed RC_PARAMS="max_success=30" timeout 30 $BIN/kernels_test_lla_gpu 2>&1 |
      tee -a "$OUT/lla_tests.log" | grep -E "^\[  (PASSED|FAILED)|FAIL$|worst per-row" | tail -12
  done
  for tool in memcheck racecheck; do
    echo "== compute-sanitizer $tool (LLA)"
    timeout 25 compute-sanitizer --tool $tool --error-exitcode 9 $BIN/kernels_test_lla_gpu \
      --gtest_filter='LlaGpuDeterminism.*' > "$OUT/lla_sanitize_$tool.log" 2>&1
    echo "rc=$?"; tail -3 "$OUT/lla_sanitize_$tool.log"
  done
  echo "== LLA decode bench"
  timeout 40 $BIN/bench_lla 2>&1 | tee "$OUT/bench_lla.jsonl"
fi
if has bench || has bwd; then  # the speed targets from this call's numbers (bench/cuda/summarize.py)
  echo "== targets"; python3 bench/cuda/summarize.py "$OUT" | tee "$OUT/summary.txt"
fi
