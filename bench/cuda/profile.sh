#!/usr/bin/env bash
# bench/cuda/profile.sh — Nsight Compute profiles of single launches of the prefill kernels
# (one device call; docs/gpu.md "Profiling"). For each kernel: the full section set with the
# clocks left alone (--clock-control none, per the device notes), a text report of the details
# page and the SASS source page with its stall samples (CSV). Results in $OUT/prof.
# Usage on the device: PLX_PROF_BIN=<folder with bench_parallax_forward/backward> \
#   bash bench/cuda/profile.sh [fwd] [fwd3] [fwd_softmax] [bwd] [cudnn] [L]
set -u
OUT=${OUT:-/tmp/plx_out}
P=$OUT/prof; mkdir -p "$P"
BIN=${PLX_PROF_BIN:-build-cuda/prof}
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export PLX_BENCH_L=${PLX_BENCH_L:-8192}
what=" ${*:-fwd fwd_softmax bwd cudnn} "
prof() {  # name, kernel regex (demangled), command...
  local name=$1 re=$2; shift 2
  echo "== ncu $name ($re)"
  timeout 240 ncu --clock-control none --set full --import-source no --kernel-name-base demangled \
    -k "regex:$re" --launch-count 1 -f -o "$P/$name" "$@" > "$P/$name.run.log" 2>&1
  echo "rc=$?"; tail -3 "$P/$name.run.log"
  ncu --import "$P/$name.ncu-rep" --page details --print-details all > "$P/$name.details.txt" 2>&1
  ncu --import "$P/$name.ncu-rep" --page source --print-source sass --csv > "$P/$name.sass.csv" 2>&1
  grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|Registers Per|Achieved Occupancy|Issue Slots Busy|No Eligible|Stall" "$P/$name.details.txt" | head -30
}
[[ $what == *" fwd "* ]] && prof fwd_plx 'parallax_forward_wgmma_kernel<__nv_bfloat16, \(bool\)1>' $BIN/bench_parallax_forward
[[ $what == *" fwd3 "* ]] && prof fwd3_plx 'parallax_forward_tma_kernel<__nv_bfloat16, \(bool\)1, \(int\)2, \(int\)2>' $BIN/bench_parallax_forward
[[ $what == *" fwd_softmax "* ]] && prof fwd_softmax 'parallax_forward_wgmma_kernel<__nv_bfloat16, \(bool\)0>' $BIN/bench_parallax_forward
[[ $what == *" bwd "* ]] && {
  prof bwd_kv_plx 'bwd_dkdv_wgmma_kernel<__nv_bfloat16, \(bool\)1>' $BIN/bench_parallax_backward
  prof bwd_q_plx 'bwd_dqdr_wgmma_kernel<__nv_bfloat16, \(bool\)1>' $BIN/bench_parallax_backward
}
[[ $what == *" cudnn "* ]] && prof cudnn_fwd 'sdpa|fprop|fmha' python3 -c "
import torch, torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
L = $PLX_BENCH_L
q, k, v = (torch.randn(2, 8, L, 128, device='cuda', dtype=torch.bfloat16) for _ in range(3))
with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
    for _ in range(3): F.scaled_dot_product_attention(q, k, v, is_causal=True)
torch.cuda.synchronize()"
ls -la "$P"
