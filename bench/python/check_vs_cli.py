#!/usr/bin/env python3
"""bench/python/check_vs_cli.py — plx.check in-process against `plx check` on the same case.

Generates (once, into --dir) a fixture for one problem (default: parallax, B=1, H=8, L=4096,
D=Dv=128, float32 inputs, causal), makes a candidate from the fixture's own truth rounded to
float32 (out and, with --grads, dq, dk, dv, dr), writes it as a candidate file for the CLI, and
times, in the same run, the median of --repeat runs of:
  cli        `plx check --fixture F --candidate C`   (a new process: reads both files, baseline, compare)
  module     plx.check(F_path, out=..., ...)          (in-process: reads the fixture, baseline, compare)
  module_fx  plx.check(fx, out=..., ...)              (in-process, fixture already loaded)
Both paths must give the same verdict and the same per-tensor errors (asserted).
Usage: check_vs_cli.py --plx build/plx [--L 4096] [--H 8] [--D 128] [--grads] [--repeat 3] [--dir DIR]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import h5py

import plx


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--plx", required=True)
    ap.add_argument("--L", type=int, default=4096)
    ap.add_argument("--H", type=int, default=8)
    ap.add_argument("--D", type=int, default=128)
    ap.add_argument("--member", default="parallax")
    ap.add_argument("--grads", action="store_true", help="also check dq, dk, dv (dr)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default="/tmp/plx-check-bench")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    name = f"bench_{a.member}_L{a.L}_H{a.H}_D{a.D}"
    fpath = os.path.join(a.dir, name + ".h5")
    if not os.path.exists(fpath):
        suite = {"name": "bench", "cases": [{"problem": {
            "name": name, "member": a.member, "B": 1, "Hq": a.H, "Hkv": a.H, "Lq": a.L, "Lkv": a.L,
            "D": a.D, "Dv": a.D, "dtype": "float32", "seed": 1}}]}
        sp = os.path.join(a.dir, name + ".suite.json")
        json.dump(suite, open(sp, "w"))
        t = time.perf_counter()
        subprocess.run([a.plx, "gen", "--suite", sp, "--out", a.dir, "--quiet"], check=True)
        print(f"generated {fpath} in {time.perf_counter() - t:.1f} s", flush=True)
    fx = plx.load_fixture(fpath)
    names = ["out"] + ([n for n in ("dq", "dk", "dv", "dr") if n in fx.truth] if a.grads else [])
    cand = {n: np.asarray(fx.truth[n][0], dtype=np.float32) for n in names}
    cpath = os.path.join(a.dir, name + ".cand.h5")
    with h5py.File(cpath, "w") as f:
        for n, x in cand.items():
            f.create_dataset(n, data=x)

    def cli():
        r = subprocess.run([a.plx, "check", "--json", "--fixture", fpath, "--candidate", cpath],
                           capture_output=True, text=True)
        assert r.returncode in (0, 1), r.stderr
        return json.loads(r.stdout)

    def module():
        return plx.check(fpath, **cand).to_dict()

    def module_fx():
        return plx.check(fx, **cand).to_dict()

    times, results = {}, {}
    for label, fn in (("cli", cli), ("module", module), ("module_fx", module_fx)):
        ts = []
        for _ in range(a.repeat):
            t = time.perf_counter()
            results[label] = fn()
            ts.append(time.perf_counter() - t)
        times[label] = statistics.median(ts)
    ref = {t["tensor"]: (t["max_abs"], t["passed"]) for t in results["cli"]["tensors"]}
    for label in ("module", "module_fx"):
        got = {t["tensor"]: (t["max_abs"], t["passed"]) for t in results[label]["tensors"]}
        assert got == ref, (label, got, ref)
        assert results[label]["passed"] == results["cli"]["passed"]
    print(f"case {name}, tensors {names}, threads {os.environ.get('OMP_NUM_THREADS', 'all')}, "
          f"cpu {os.cpu_count()}, verdict {'PASS' if results['cli']['passed'] else 'FAIL'}")
    for label, t in times.items():
        print(f"  {label:10s} {t:8.3f} s (median of {a.repeat})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
