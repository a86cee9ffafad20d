#!/usr/bin/env python3
# bench/cuda/summarize.py — the issue-6 speed targets from one device call's JSON lines.
#
# Charter: reads the files run_device.sh writes (bench_decode.jsonl, bench_forward.jsonl,
# bench_bwd.jsonl from our benchmarks; bench_torch.jsonl, bench_torch_bwd.jsonl from
# torch_baselines.py, all timed in the same call) and prints, per target, our time, the cuDNN and
# FlashAttention-2 times and the ratio against the target: decode <= 1.05x cuDNN and <= FA2 at
# every shape, prefill forward <= 1.9x cuDNN at L = 8192, forward + backward <= 2.4x cuDNN at
# L = 8192. Missing files or records are reported, never guessed. Standard library only.
# Usage: python3 bench/cuda/summarize.py <dir with the .jsonl files>
import json
import os
import sys


def records(path):
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass  # a truncated last line (the call hit its time limit)
    return out


def main(d):
    dec = [r for r in records(os.path.join(d, "bench_decode.jsonl")) if r.get("bench") == "decode"]
    fwd = [r for r in records(os.path.join(d, "bench_forward.jsonl")) if r.get("bench") == "forward"]
    bwd = [r for r in records(os.path.join(d, "bench_bwd.jsonl")) if r.get("bench") == "backward"]
    torch = records(os.path.join(d, "bench_torch.jsonl")) + records(os.path.join(d, "bench_torch_bwd.jsonl"))
    base = {}
    for t in torch:
        if t.get("bench") == "decode" and "us" in t:
            base[("decode", t["B"], t["Hq"], t["Hkv"], t["L"], t["backend"])] = t["us"]
        elif t.get("bench") == "forward" and "us" in t:
            base[("forward", t["L"], t["backend"])] = t["us"]
        elif t.get("bench") == "fwdbwd" and "fwdbwd_us" in t:
            base[("fwdbwd", t["L"], t["backend"])] = t["fwdbwd_us"]
    ok = True

    print("decode, Parallax (default kernel) vs cuDNN / FA2 softmax decode, us:")
    n_cu = n_fa = n = 0
    for r in dec:
        if r.get("mech") != "parallax":
            continue
        key = (r["B"], r["Hq"], r["Hkv"], r["L"])
        cu, fa = base.get(("decode",) + key + ("cudnn",)), base.get(("decode",) + key + ("fa2",))
        if cu is None or fa is None:
            print(f"  B={key[0]} {key[1]}/{key[2]} L={key[3]}: baseline missing")
            ok = False
            continue
        ours = r["default_us"]
        n += 1
        n_cu += ours <= 1.05 * cu
        n_fa += ours <= fa
        print(f"  B={key[0]:2d} {key[1]:2d}/{key[2]} L={key[3]:5d}: {ours:8.2f}  cuDNN {cu:8.2f} ({ours / cu:.3f}x)"
              f"  FA2 {fa:8.2f} ({ours / fa:.3f}x)")
    print(f"  <= 1.05x cuDNN at {n_cu}/{n} shapes; <= FA2 at {n_fa}/{n} (targets: every shape)")

    def target(name, ours_ms, key, limit):
        cu = base.get(key + ("cudnn",))
        fa = base.get(key + ("fa2",))
        if ours_ms is None or cu is None:
            print(f"{name}: missing ({'ours' if ours_ms is None else 'cuDNN baseline'})")
            return False
        r = ours_ms * 1e3 / cu
        fa_s = f", FA2 {fa / 1e3:.3f} ms ({ours_ms * 1e3 / fa:.2f}x)" if fa else ""
        print(f"{name}: {ours_ms:.3f} ms vs cuDNN {cu / 1e3:.3f} ms = {r:.2f}x (target <= {limit}x: "
              f"{'met' if r <= limit else 'gap'}){fa_s}")
        return True

    f8 = next((r for r in fwd if r.get("mech") == "parallax" and r.get("L") == 8192), None)
    b8 = next((r for r in bwd if r.get("mech") == "parallax" and r.get("L") == 8192), None)
    f8_ms = f8 and f8.get("default_ms")
    if f8 and "tma_ms" in f8:
        print("  forward L=8192 by kernel (ms): mma_sync %.3f, wgmma %.3f, tma %.3f, auto %.3f (again %.3f)"
              % (f8["mma_sync_ms"], f8["wgmma_ms"], f8["tma_ms"], f8["default_ms"], f8.get("default_again_ms", 0)))
    ok &= target("prefill forward (default dispatch), causal B=2 H=8 L=8192", f8_ms, ("forward", 8192), 1.9)
    ok &= target("forward + backward, same shape", b8 and b8.get("fwdbwd_ms"), ("fwdbwd", 8192), 2.4)
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__ or "usage: summarize.py DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
