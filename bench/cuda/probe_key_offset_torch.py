#!/usr/bin/env python3
# bench/cuda/probe_key_offset_torch.py — torch SDPA's backwards on probe_key_offset's probe.
#
# The same construction as bench/cuda/probe_key_offset.cpp: bf16, causal, B = 1, H = 8,
# L = 1024, D = 128, q, k, v, dO normal, keys + c u (u a fixed unit vector), c in
# {0, 16, 64, 256, 1024}; each backend's out, dq, dk, dv against a float64 reference computed
# from the same bf16 inputs (torch autograd of the plain formula), normwise relative error and
# err(c) / err(0). Backends: cuDNN, FlashAttention-2, memory-efficient. One JSON line per case.
import json, math, torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend

dev = "cuda"
B, H, L, D = 1, 8, 1024, 128
BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "fa2": SDPBackend.FLASH_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION}

def rel(a, t):
    a, t = a.double(), t.double()
    return ((a - t).norm() / t.norm()).item()

def reference(q, k, v, do):
    q, k, v = (x.double().detach().requires_grad_(True) for x in (q, k, v))
    s = (q @ k.transpose(-1, -2)) / math.sqrt(D)
    s = s.masked_fill(torch.ones(L, L, dtype=torch.bool, device=dev).triu(1), float("-inf"))
    o = torch.softmax(s, -1) @ v
    o.backward(do.double())
    return o.detach(), q.grad, k.grad, v.grad

g = torch.Generator(device=dev).manual_seed(11)
q0, k0, v0, do = (torch.randn(B, H, L, D, device=dev, generator=g).bfloat16() for _ in range(4))
u = torch.tensor([math.sin(1.0 + 0.37 * d) for d in range(D)], device=dev, dtype=torch.float64)
u /= u.norm()
print(json.dumps({"torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
                  "device": torch.cuda.get_device_properties(0).name}))
base = {}
for c in (0.0, 16.0, 64.0, 256.0, 1024.0):
    k = (k0.double() + c * u).bfloat16()
    ref = reference(q0, k, v0, do)
    for name, be in BACKENDS.items():
        q, kk, v = (x.clone().requires_grad_(True) for x in (q0, k, v0))
        try:
            with sdpa_kernel(be):
                o = F.scaled_dot_product_attention(q, kk, v, is_causal=True)
                o.backward(do)
        except Exception as e:  # a backend that refuses this shape or card
            print(json.dumps({"probe": "key_offset", "backend": name, "offset": c, "error": str(e)[:200]}))
            continue
        errs = {"out": rel(o, ref[0]), "dq": rel(q.grad, ref[1]), "dk": rel(kk.grad, ref[2]), "dv": rel(v.grad, ref[3])}
        if c == 0:
            base[name] = errs
        line = {"probe": "key_offset", "backend": name, "offset": c}
        for t, e in errs.items():
            b0 = base.get(name, {}).get(t, 0)
            line[t] = {"err": float("%.3e" % e), "ratio": round(e / b0, 2) if b0 else None}
        print(json.dumps(line), flush=True)
