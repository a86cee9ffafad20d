#!/usr/bin/env python3
"""bench/cuda/stability_peers.py — production softmax attention kernels on the study's axes.

For torch SDPA's cuDNN, FlashAttention-2 and memory-efficient backends (bf16, causal), forward
and backward, on the key-offset and sequence-length axes of docs/stability.md: the normwise
relative error of out, dq, dk, dv against float64 attention of the same bf16 inputs on the same
GPU (torch's MATH backend in float64: its own error, ~1e-15, is far below bf16's), and against a
float32 MATH evaluation of the same inputs (the same-precision baseline a kernel is held to).
Inputs follow `plx sweep`'s key_offset axis: q, k, v, dO ~ N(0, 1), every key + c u for a fixed
unit vector u, then rounded to bf16.

Usage (device): python3 bench/cuda/stability_peers.py [--out peers.csv] [--seeds 3]
Prints one CSV row per (backend, L, offset, seed) and the library versions first (as # lines).
"""
import argparse
import math
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash2": SDPBackend.FLASH_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION, "math_fp32": SDPBackend.MATH}


def rel(a, t):
    a, t = a.double(), t.double()
    return (torch.linalg.vector_norm(a - t) / torch.linalg.vector_norm(t)).item()


def run(q, k, v, dO, backend, dtype):
    q, k, v = (x.detach().to(dtype).requires_grad_(True) for x in (q, k, v))
    with sdpa_kernel([backend]):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    out.backward(dO.to(dtype))
    return out.detach(), q.grad, k.grad, v.grad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--L", default="256,1024,4096")
    ap.add_argument("--offsets", default="0,4,16,64,256,1024")
    a = ap.parse_args()
    dev = torch.device("cuda")
    lines = [f"# torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
             f"device {torch.cuda.get_device_name(0)}"]
    lines.append("backend,L,key_offset,seed,out_norm,dq_norm,dk_norm,dv_norm,out_vs_fp32,dq_vs_fp32")
    B, H, D = 1, 4, 128
    for L in [int(x) for x in a.L.split(",")]:
        for c in [float(x) for x in a.offsets.split(",")]:
            for seed in range(1, a.seeds + 1):
                g = torch.Generator(device=dev).manual_seed(seed)
                q, k, v, dO = (torch.randn(B, H, L, D, generator=g, device=dev, dtype=torch.float64) for _ in range(4))
                u = torch.randn(D, generator=g, device=dev, dtype=torch.float64)
                k = k + c * u / u.norm()
                q, k, v, dO = (x.to(torch.bfloat16).double() for x in (q, k, v, dO))  # the bf16 inputs, exactly
                truth = run(q, k, v, dO, SDPBackend.MATH, torch.float64)
                base = run(q, k, v, dO, SDPBackend.MATH, torch.float32)
                for name, be in BACKENDS.items():
                    dt = torch.float32 if name == "math_fp32" else torch.bfloat16
                    try:
                        r = run(q, k, v, dO, be, dt)
                    except RuntimeError as e:  # a backend that does not take this shape
                        print(f"# {name} L={L}: {str(e).splitlines()[0]}", file=sys.stderr)
                        continue
                    e = [rel(x, t) for x, t in zip(r, truth)]
                    lines.append(f"{name},{L},{c:g},{seed}," + ",".join(f"{x:.5g}" for x in e) +
                                 f",{e[0] / max(rel(base[0], truth[0]), 1e-300):.4g},{e[1] / max(rel(base[1], truth[1]), 1e-300):.4g}")
                print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
