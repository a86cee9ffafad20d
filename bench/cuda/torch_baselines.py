#!/usr/bin/env python3
# bench/cuda/torch_baselines.py — cuDNN and FlashAttention-2 (torch SDPA backends) at the
# issue-6 shapes, timed the way bench_parallax_*.cu times ours: CUDA graph of `iters` calls
# over rotating input sets (together > 3x L2), median over replays. Same layout as plx
# ([B, L, H, D] memory, viewed as [B, H, L, D]), bf16, D = 128.
# GQA: SDPA's enable_gqa=True (K/V read once per kv head) when the backend accepts it;
# otherwise K/V are expanded to Hq heads and the line says "expanded": that baseline
# then reads G x the bytes, so it is reported but not used for the <= target claims.
# Also softmax forward + backward (--bwd: only those), for the backward target; --fwd: only the
# prefill forward baselines.
# Prints one JSON line per measurement.
import json
import os, sys, torch
from torch.nn.attention import sdpa_kernel, SDPBackend
import torch.nn.functional as F

dev = "cuda"
props = torch.cuda.get_device_properties(0)
L2 = getattr(props, "L2_cache_size", 60 << 20)
BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "fa2": SDPBackend.FLASH_ATTENTION}

def time_graph(fn, iters=50, reps=9):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for i in range(3):
            fn(i)
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(iters):
            fn(i)
    g.replay(); torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); g.replay(); b.record(); b.synchronize()
        ts.append(a.elapsed_time(b) / iters)
    ts.sort()
    return ts[len(ts) // 2]

def make_sets(B, Hq, Hkv, Lq, Lkv, D, nbytes_set):
    n = max(2, min(64, (3 * L2) // nbytes_set + 2))
    sets = []
    g = torch.Generator(device=dev); g.manual_seed(1234)
    for _ in range(n):
        q = torch.randn(B, Lq, Hq, D, device=dev, dtype=torch.bfloat16, generator=g).transpose(1, 2)
        k = torch.randn(B, Lkv, Hkv, D, device=dev, dtype=torch.bfloat16, generator=g).transpose(1, 2)
        v = torch.randn(B, Lkv, Hkv, D, device=dev, dtype=torch.bfloat16, generator=g).transpose(1, 2)
        sets.append((q, k, v))
    return sets

def run(name, B, Hq, Hkv, Lq, Lkv, D, causal, iters):
    nbytes = 2 * (2 * B * Lkv * Hkv * D + 2 * B * Lq * Hq * D)
    sets = make_sets(B, Hq, Hkv, Lq, Lkv, D, nbytes)
    out = []
    for bname, be in BACKENDS.items():
        rec = {"bench": name, "backend": bname, "B": B, "Hq": Hq, "Hkv": Hkv, "Lq": Lq, "L": Lkv, "D": D, "causal": causal}
        for mode in (["gqa", "expanded"] if Hq != Hkv else ["mha"]):
            try:
                if mode == "expanded":
                    ss = [(q, k.repeat_interleave(Hq // Hkv, 1), v.repeat_interleave(Hq // Hkv, 1)) for q, k, v in sets]
                else:
                    ss = sets
                kw = {"enable_gqa": True} if mode == "gqa" else {}
                def fn(i, ss=ss, kw=kw):
                    q, k, v = ss[i % len(ss)]
                    with sdpa_kernel([be]):
                        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, **kw)
                ms = time_graph(fn, iters=iters)
                rec.update({"mode": mode, "us": ms * 1e3})
                break
            except Exception as e:  # backend refused this configuration
                rec.update({"mode": mode, "error": str(e).splitlines()[0][:160]})
        print(json.dumps(rec)); sys.stdout.flush()

def run_fwdbwd(B, H, L, D, causal, iters):
    """Softmax forward and forward + backward (dq, dk, dv for dL = <dO, out>) per backend, timed the
    same way (graph over rotating sets > 3x L2). Backward = fwdbwd - fwd. Falls back to plain event
    timing ("timing": "events") if the backend's backward cannot be captured in a graph."""
    nbytes = 2 * B * L * H * D * 8  # q k v dO out dq dk dv
    n = max(2, min(64, (3 * L2) // nbytes + 2))
    g = torch.Generator(device=dev); g.manual_seed(4321)
    sets = []
    for _ in range(n):
        q, k, v = (torch.randn(B, L, H, D, device=dev, dtype=torch.bfloat16, generator=g).requires_grad_() for _ in range(3))
        dO = torch.randn(B, L, H, D, device=dev, dtype=torch.bfloat16, generator=g).transpose(1, 2)
        sets.append((q, k, v, dO))
    for bname, be in BACKENDS.items():
        rec = {"bench": "fwdbwd", "backend": bname, "B": B, "H": H, "L": L, "D": D, "causal": causal}
        def fwd(i):
            q, k, v, _ = sets[i % len(sets)]
            with sdpa_kernel([be]):
                return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal)
        def fwdbwd(i):
            q, k, v, dO = sets[i % len(sets)]
            out = fwd(i)
            return torch.autograd.grad(out, (q, k, v), dO)
        try:
            with torch.no_grad():
                rec["fwd_us"] = time_graph(fwd, iters=iters) * 1e3
            try:
                rec["fwdbwd_us"] = time_graph(fwdbwd, iters=iters) * 1e3
                rec["timing"] = "graph"
            except Exception as e:  # capture refused: time eagerly with events (launch gaps included)
                torch.cuda.synchronize()
                rec["graph_error"] = str(e).splitlines()[0][:120]
                for i in range(3):
                    fwdbwd(i)
                torch.cuda.synchronize()
                ts = []
                for _ in range(7):
                    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    a.record()
                    for i in range(iters):
                        fwdbwd(i)
                    b.record(); b.synchronize()
                    ts.append(a.elapsed_time(b) / iters)
                ts.sort()
                rec["fwdbwd_us"] = ts[len(ts) // 2] * 1e3
                rec["timing"] = "events"
            rec["bwd_us"] = rec["fwdbwd_us"] - rec["fwd_us"]
        except Exception as e:  # backend refused this configuration
            rec["error"] = str(e).splitlines()[0][:160]
        print(json.dumps(rec)); sys.stdout.flush()

if __name__ == "__main__":
    quick = "--quick" in sys.argv
    if "--bwd" in sys.argv:  # only the backward baselines (run_device.sh bwd)
        print(json.dumps({"torch": torch.__version__, "cudnn": torch.backends.cudnn.version(), "device": props.name}))
        for L in ((2048,) if quick else (2048, 8192)):
            run_fwdbwd(2, 8, L, 128, True, 20 if L == 2048 else 10)
        sys.exit(0)
    if "--fwd" in sys.argv:  # only the prefill forward baselines (env PLX_BENCH_L: one length)
        print(json.dumps({"torch": torch.__version__, "cudnn": torch.backends.cudnn.version(), "device": props.name}))
        for L in ((int(os.environ["PLX_BENCH_L"]),) if os.environ.get("PLX_BENCH_L") else (2048, 8192)):
            run("forward", 2, 8, 8, L, L, 128, True, 20 if L == 2048 else 10)
        sys.exit(0)
    print(json.dumps({"torch": torch.__version__, "cudnn": torch.backends.cudnn.version(), "device": props.name}))
    dec = [(B, hq, hkv, L) for B in (1, 32) for hq, hkv in ((8, 8), (32, 8)) for L in (512, 1024, 4096, 16384)]
    if quick:
        dec = [(1, 8, 8, 512), (32, 32, 8, 16384)]
    for B, hq, hkv, L in dec:
        run("decode", B, hq, hkv, 1, L, 128, False, 50)
    if not quick:
        for L in (2048, 8192):
            run("forward", 2, 8, 8, L, L, 128, True, 20 if L == 2048 else 10)
        for L in (2048, 8192):  # softmax forward + backward (issue 6 item 3)
            run_fwdbwd(2, 8, L, 128, True, 20 if L == 2048 else 10)
