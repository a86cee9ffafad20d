#!/usr/bin/env python3
"""bench/torch_cpu_baseline.py — PyTorch CPU baselines timed in the same run as plx's fast path.

Charter: for causal B=1, H=8, D=128 (fp32) it times (1) a naive PyTorch Parallax forward that
materialises the L x L scores (centred form, SPEC 4.2), (2) PyTorch's own causal
scaled_dot_product_attention (softmax), and (3) plx's bench_fast (Google Benchmark, run as a
subprocess right after) on the same shape, then prints the ratios. Both use the same number of
threads (--threads, default 2). It checks nothing numerically (tests/fast does that).

usage: /opt/plx-venv/bin/python bench/torch_cpu_baseline.py --bench build-fast/bench/bench_fast [--L 4096]
"""
import argparse
import json
import math
import subprocess
import time

import torch


def best_time(fn, reps):
    fn()  # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def naive_parallax(q, k, v, r, tau):
    # q, k, v, r: [B, H, L, D]; causal L x L scores materialised.
    L = q.shape[-2]
    s = (q @ k.transpose(-1, -2)) * tau
    mask = torch.ones(L, L, dtype=torch.bool).tril()
    s = s.masked_fill(~mask, float("-inf"))
    p = torch.softmax(s, dim=-1)
    z = r @ k.transpose(-1, -2)
    zbar = (p * z).sum(-1, keepdim=True)
    return p @ v - (p * (z - zbar)) @ v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default="build-fast/bench/bench_fast")
    ap.add_argument("--L", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    B, H, L, D = 1, 8, a.L, 128
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, L, D, generator=g) for _ in range(3))
    r = 0.5 * torch.randn(B, H, L, D, generator=g)
    tau = 1 / math.sqrt(D)
    flops = 4 * H * L * L * D / 2
    with torch.no_grad():
        t_naive = best_time(lambda: naive_parallax(q, k, v, r, tau), a.reps)
        t_sdpa = best_time(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True), a.reps)
    print(f"torch {torch.__version__}, threads={a.threads}, causal B=1 H=8 L={L} D=128 fp32")
    print(f"torch naive Parallax (materialised): {t_naive*1e3:9.1f} ms  {flops/t_naive*1e-9:7.1f} GFLOP/s(4HL^2D/2)")
    print(f"torch SDPA causal (softmax)        : {t_sdpa*1e3:9.1f} ms  {flops/t_sdpa*1e-9:7.1f} GFLOP/s")
    filt = f"BM_(Parallax|Softmax)FwdF32/{L}/{a.threads}/real_time$"
    out = subprocess.run([a.bench, f"--benchmark_filter={filt}", "--benchmark_format=json",
                          f"--benchmark_repetitions={a.reps}", "--benchmark_report_aggregates_only=false"],
                         check=True, capture_output=True, text=True).stdout
    res = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        name = "parallax" if "Parallax" in b["name"] else "softmax"
        t = b["real_time"] * {"ms": 1e-3, "us": 1e-6, "ns": 1e-9, "s": 1.0}[b["time_unit"]]
        res[name] = min(res.get(name, 1e9), t)
    for name, t in res.items():
        print(f"plx fast {name:8s} fwd             : {t*1e3:9.1f} ms  {flops/t*1e-9:7.1f} GFLOP/s(4HL^2D/2)")
    if "parallax" in res:
        print(f"ratio torch-naive-Parallax / plx-Parallax : {t_naive/res['parallax']:.2f}x (target >= 2)")
        print(f"ratio torch-SDPA / plx-Parallax           : {t_sdpa/res['parallax']:.2f}x (target > 1)")
    if "softmax" in res:
        print(f"ratio torch-SDPA / plx-softmax            : {t_sdpa/res['softmax']:.2f}x")


if __name__ == "__main__":
    main()
