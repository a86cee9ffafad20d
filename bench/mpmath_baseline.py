#!/usr/bin/env python3
"""bench/mpmath_baseline.py — the reference at 50 digits vs mpmath at 50 digits, same run.

Regenerates plx's inputs bit for bit (our counter RNG reimplemented here: integer
arithmetic only), computes Parallax (accumulator form, docs/math.md §4.1), causal, one head,
L = 256, D = 64 with mpmath at 50 digits, times it, runs build/bench/bench_reference for
the same case (MPFR-50, cpp_bin_float_50 and the quad-double tier qd4), prints the times and
the ratios, and checks that plx's MPFR-50 and quad-double results agree with mpmath's to ~50
digits (an independent cross-check of the reference).
Usage: /usr/bin/python3 bench/mpmath_baseline.py [path/to/bench_reference]
"""
import json, subprocess, sys, tempfile, time
import mpmath as mp

M64 = (1 << 64) - 1

def mix64(z):
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)

def normal(seed, stream, i):
    key = mix64(seed ^ mix64((stream * 0xD1B54A32D192ED03 + 1) & M64))
    acc = 0
    for t in range(6):
        b = mix64((key + 6 * i + t) & M64)
        acc += (b & 0xFFFFFFFF) + (b >> 32)
    return (acc - 6 * 4294967296) / 4294967296.0  # exact: |acc| < 2^36

def tensor(seed, stream_id, n, scale=1.0):
    return [scale * normal(seed, stream_id << 32, i) for i in range(n)]

def main():
    exe = sys.argv[1] if len(sys.argv) > 1 else "build/bench/bench_reference"
    L, D, seed = 256, 64, 1
    q = tensor(seed, 1, L * D); k = tensor(seed, 2, L * D); v = tensor(seed, 3, L * D); r = tensor(seed, 4, L * D, 0.5)
    mp.mp.dps = 50
    t0 = time.perf_counter()
    tau = 1 / mp.sqrt(D)
    Q = [[mp.mpf(q[i * D + d]) for d in range(D)] for i in range(L)]
    K = [[mp.mpf(k[i * D + d]) for d in range(D)] for i in range(L)]
    V = [[mp.mpf(v[i * D + d]) for d in range(D)] for i in range(L)]
    R = [[mp.mpf(r[i * D + d]) for d in range(D)] for i in range(L)]
    out = []
    for i in range(L):
        s = [tau * mp.fdot(Q[i], K[j]) for j in range(i + 1)]
        m = max(s)
        w = [mp.exp(x - m) for x in s]
        z = [mp.fdot(R[i], K[j]) for j in range(i + 1)]
        d1 = mp.fsum(w); d2 = mp.fsum(wj * zj for wj, zj in zip(w, z))
        for c in range(D):
            O1 = mp.fsum(w[j] * V[j][c] for j in range(i + 1))
            O2 = mp.fsum(w[j] * z[j] * V[j][c] for j in range(i + 1))
            out.append((O1 / d1) * (1 + d2 / d1) - O2 / d1)
    t_mp = time.perf_counter() - t0
    errs = {}
    for flag, name in (("--dump-mpfr50", "MPFR-50"), ("--dump-qd", "quad-double")):
        with tempfile.NamedTemporaryFile("r", suffix=".txt") as f:
            subprocess.run([exe, flag, f.name], check=True)
            ours = [mp.mpf(line) for line in f.read().split()]
        assert len(ours) == len(out), (name, len(ours), len(out))
        errs[name] = max(abs(a - b) for a, b in zip(out, ours)) / max(abs(a) for a in out)
    js = subprocess.run([exe, "--benchmark_filter=Parallax(Mpfr|BinFloat|QuadDouble)50", "--benchmark_format=json"],
                        check=True, capture_output=True, text=True).stdout
    times = {}  # best of the repetitions of each case
    for b in json.loads(js)["benchmarks"]:
        if b.get("run_type", "iteration") != "iteration":
            continue
        name = b["name"].split("/")[0]
        times[name] = min(times.get(name, float("inf")), b["real_time"] / 1e3)
    print(f"Parallax forward, causal, L={L}, D={D}, one head, 50 digits")
    print(f"  mpmath (python3-mpmath {mp.__version__}): {t_mp:8.2f} s")
    for name, t in times.items():
        print(f"  plx {name:40s}: {t:8.3f} s   speed-up vs mpmath: {t_mp / t:6.1f}x (target >= 30x)")
    for name, err in errs.items():
        print(f"  max |plx({name}) - mpmath| / max|out| = {mp.nstr(err, 3)} (independent cross-check; mpmath works at 50 digits)")

if __name__ == "__main__":
    main()
