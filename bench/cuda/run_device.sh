#!/usr/bin/env bash
# bench/cuda/run_device.sh — ONE device call: GPU tests, compute-sanitizer, benchmarks
# (ours and the torch cuDNN / FlashAttention-2 baselines in the same run). Results in $OUT.
# Expects the binaries and their non-system shared libraries in build-cuda/devbin (or $PLX_DEVBIN)
# (bench/cuda/stage_devbin.sh makes it here). Usage on the device (docs/gpu.md):
#   bash bench/cuda/run_device.sh [tests|sanitize|bench|bwd|all|lla|fwd]...   (lla, fwd only when named)
# verify: every GPU suite (forward/decode, backward, LLA) on three seeds and compute-sanitizer
#   memcheck / racecheck / synccheck on each suite's small determinism cases (~4 min);
# sanitize_suites: compute-sanitizer memcheck, initcheck, racecheck and synccheck (PLX_SAN_TOOLS)
#   over each GPU suite whole (3 cases per property; a suite that runs past PLX_SAN_TIMEOUT seconds, default 150, is reported rc=124);
# golden: the committed golden suite and the kernel-shaped fixtures/suites/cuda.json (generated
#   there) through `plx check --run cuda` (forward and gradients, each fixture's own rule; an
#   unsupported fixture exits 2 naming why), one line per fixture;
# probe: bench/cuda/probe_key_offset and torch SDPA's backwards on the same probe
#   (probe_key_offset_torch.py);
# peers: bench/cuda/stability_peers.py (torch SDPA's backends on the study's key-offset and L axes);
# ab DIR_A DIR_B: (set PLX_AB="dirA dirB") the benchmarks of two device-built trees
#   (build_bench_on_device.sh), alternating A B A B process by process.
# fwd: the prefill forward alone (mma_sync, wgmma, tma): its tests, compute-sanitizer on the
# determinism cases, the forward benchmark and cuDNN/FA2.
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
  echo "== forward kernels mma_sync, wgmma, tma"
  timeout 150 $BIN/kernels_test_parallax_gpu --gtest_filter='CudaForward.BothKernelsLongRows' 2>&1 | tee "$OUT/fwd_tests.log" |
    grep -E "^\[  (PASSED|FAILED)|FAIL|Expected|tma" | tail -30
  for tool in memcheck racecheck synccheck; do
    echo "== compute-sanitizer $tool (Auto forward: tma)"
    timeout 120 compute-sanitizer --tool $tool --error-exitcode 9 \
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
if [[ " $what " == *" verify "* ]]; then
  : > "$OUT/verify.log"
  for seed in 20261207 7 99; do
    for t in kernels_test_parallax_gpu kernels_test_backward_gpu kernels_test_lla_gpu; do
      echo "== $t PLX_SEED=$seed"
      PLX_SEED=$seed RC_PARAMS="max_success=30" timeout 200 $BIN/$t >> "$OUT/verify.log" 2>&1
      echo "rc=$?"; grep -E "^\[  (PASSED|FAILED)|^\[  FAILED|FAIL$" "$OUT/verify.log" | tail -3
    done
  done
  grep -E "^offset " "$OUT/verify.log" | head -80 > "$OUT/offset_tests.txt"
  $BIN/kernels_test_cuda_api > "$OUT/cuda_api.log" 2>&1; echo "cuda_api rc=$?"
  for tool in memcheck racecheck synccheck initcheck; do
    for pair in "kernels_test_parallax_gpu CudaDeterminism.*" "kernels_test_backward_gpu CudaBackwardSmall.*" \
                "kernels_test_lla_gpu LlaGpuDeterminism.*"; do
      set -- $pair
      timeout 150 compute-sanitizer --tool $tool --error-exitcode 9 $BIN/$1 --gtest_filter="$2" > "$OUT/san.log" 2>&1
      echo "== compute-sanitizer $tool $1 rc=$? $(grep -E 'ERROR SUMMARY' "$OUT/san.log" | tail -1)"
      cat "$OUT/san.log" >> "$OUT/sanitize_all.log"
    done
  done
  rm -f "$OUT/san.log"
fi
if [[ " $what " == *" sanitize_suites "* ]]; then  # every compute-sanitizer tool over every GPU suite, whole
  : > "$OUT/sanitize_suites.log"
  for tool in ${PLX_SAN_TOOLS:-memcheck initcheck racecheck synccheck}; do
    for t in kernels_test_cuda_api kernels_test_parallax_gpu kernels_test_backward_gpu kernels_test_lla_gpu; do
      PLX_REPEAT=3 RC_PARAMS="max_success=3" timeout ${PLX_SAN_TIMEOUT:-150} compute-sanitizer --tool $tool --error-exitcode 9 \
        $BIN/$t > "$OUT/san.log" 2>&1
      rc=$?
      echo "== compute-sanitizer $tool $t (whole suite) rc=$rc $(grep -E 'ERROR SUMMARY' "$OUT/san.log" | tail -1)" |
        tee -a "$OUT/sanitize_suites.log"
      grep -E "^\[  (PASSED|FAILED)" "$OUT/san.log" | tail -2 >> "$OUT/sanitize_suites.log"
    done
  done
  rm -f "$OUT/san.log"
fi
if [[ " $what " == *" golden "* ]]; then
  mkdir -p "$OUT/golden" /tmp/plx_fx_cuda
  # the kernel-shaped suite (the committed golden fixtures have D <= 16: no CUDA kernel takes them)
  timeout 300 $BIN/plx gen --suite fixtures/suites/cuda.json --out /tmp/plx_fx_cuda --quiet; echo "gen cuda suite rc=$?"
  for f in fixtures/golden/*.h5 /tmp/plx_fx_cuda/*.h5; do
    n=$(basename "$(dirname "$f")")_$(basename "$f" .h5)
    timeout 120 $BIN/plx check --fixture "$f" --run cuda > "$OUT/golden/$n.txt" 2>&1
    echo "golden $n rc=$? $(grep -E 'error:|NOT checked' "$OUT/golden/$n.txt" | head -1 | cut -c1-160)"
  done | tee "$OUT/golden_summary.txt"
  tar -C "$OUT" -czf "$OUT/golden.tgz" golden && rm -rf "$OUT/golden"
fi
if [[ " $what " == *" probe "* ]]; then
  echo "== probe_key_offset (plx)"; timeout 300 $BIN/probe_key_offset 2>&1 | tee "$OUT/probe.jsonl"
  echo "== probe_key_offset (torch SDPA)"
  PYTHONUNBUFFERED=1 timeout 150 python3 bench/cuda/probe_key_offset_torch.py 2>&1 | tee "$OUT/probe_torch.jsonl"
fi
if [[ " $what " == *" peers "* ]]; then  # docs/stability.md, "Peers": torch SDPA's kernels on the key-offset and L axes
  echo "== stability peers (torch SDPA cuDNN / FA2 / efficient, bf16)"
  PYTHONUNBUFFERED=1 timeout ${PLX_PEERS_TIMEOUT:-240} python3 bench/cuda/stability_peers.py --out "$OUT/peers.csv" \
    --seeds ${PLX_PEERS_SEEDS:-2} ${PLX_PEERS_ARGS:-} > "$OUT/peers.log" 2>&1
  echo "peers rc=$?"; tail -3 "$OUT/peers.log"
fi
if [[ " $what " == *" ab "* ]]; then  # PLX_AB="A B": device-built bench folders, timed alternately
  set -- ${PLX_AB}
  A=$1 B=$2
  for round in 1 2; do
    for d in $A $B; do
      for b in bench_parallax_decode bench_parallax_forward bench_parallax_backward; do
        PLX_BENCH_FWD_DEFAULT_ONLY=1 timeout 150 $d/$b 2>&1 | sed "s|^|$(basename $d) $round |" >> "$OUT/ab.jsonl"
      done
    done
  done
  python3 bench/cuda/ab_summary.py "$OUT/ab.jsonl" | tee "$OUT/ab_summary.txt"
fi
if has bench || has bwd; then  # the speed targets from this call's numbers (bench/cuda/summarize.py)
  echo "== targets"; python3 bench/cuda/summarize.py "$OUT" | tee "$OUT/summary.txt"
fi
