#!/usr/bin/env python3
# tests/python/test_gpu_summary.py — bench/cuda/summarize.py on synthetic device-call records.
#
# Checks the arithmetic and the bookkeeping of the issue-6 target summary without a GPU: two
# decode shapes (one within 1.05x cuDNN, one not; both faster than FA2), a forward and a
# forward + backward record with known ratios, a truncated last line (ignored), and a folder
# without files (reported as missing, exit status 1). Standard library only.
import contextlib
import io
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "cuda"))
import summarize  # noqa: E402


def write(d, name, recs, tail=""):
    with open(os.path.join(d, name), "w") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")
        f.write(tail)


def run(d):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = summarize.main(d)
    return rc, buf.getvalue()


def main():
    failures = []

    def check(cond, what):
        if not cond:
            failures.append(what)

    with tempfile.TemporaryDirectory() as d:
        write(d, "bench_decode.jsonl", [
            {"bench": "decode", "mech": "parallax", "B": 1, "Hq": 8, "Hkv": 8, "L": 512, "default_us": 10.0},
            {"bench": "decode", "mech": "softmax", "B": 1, "Hq": 8, "Hkv": 8, "L": 512, "default_us": 1.0},
            {"bench": "decode", "mech": "parallax", "B": 32, "Hq": 32, "Hkv": 8, "L": 4096, "default_us": 110.0},
        ], tail='{"bench": "decode", "mech": "paral')  # a call cut off mid-line
        write(d, "bench_torch.jsonl", [
            {"bench": "decode", "backend": "cudnn", "B": 1, "Hq": 8, "Hkv": 8, "L": 512, "us": 10.0},
            {"bench": "decode", "backend": "fa2", "B": 1, "Hq": 8, "Hkv": 8, "L": 512, "us": 12.0},
            {"bench": "decode", "backend": "cudnn", "B": 32, "Hq": 32, "Hkv": 8, "L": 4096, "us": 100.0},
            {"bench": "decode", "backend": "fa2", "B": 32, "Hq": 32, "Hkv": 8, "L": 4096, "us": 200.0},
            {"bench": "forward", "backend": "cudnn", "L": 8192, "us": 500.0},
            {"bench": "forward", "backend": "fa2", "L": 8192, "us": 1000.0},
        ])
        write(d, "bench_forward.jsonl", [{"bench": "forward", "mech": "parallax", "L": 8192, "default_ms": 0.9}])
        write(d, "bench_bwd.jsonl", [{"bench": "backward", "mech": "parallax", "L": 8192, "fwdbwd_ms": 5.0}])
        write(d, "bench_torch_bwd.jsonl", [{"bench": "fwdbwd", "backend": "cudnn", "L": 8192, "fwdbwd_us": 2000.0},
                                           {"bench": "fwdbwd", "backend": "fa2", "L": 8192, "fwdbwd_us": 4000.0}])
        rc, out = run(d)
        check(rc == 0, f"complete records: exit status {rc}, expected 0")
        check("1.000x" in out and "1.100x" in out, "decode ratios 1.000x and 1.100x printed")
        check("<= 1.05x cuDNN at 1/2 shapes; <= FA2 at 2/2" in out, "decode counts (softmax record ignored)")
        check("0.900 ms vs cuDNN 0.500 ms = 1.80x (target <= 1.9x: met)" in out, "forward uses the default kernel and meets 1.9x")
        check("5.000 ms vs cuDNN 2.000 ms = 2.50x (target <= 2.4x: gap)" in out, "fwd+bwd ratio and gap")
        check("(1.25x)" in out, "fwd+bwd against FA2")
    with tempfile.TemporaryDirectory() as d:
        rc, out = run(d)
        check(rc == 1, f"empty folder: exit status {rc}, expected 1")
        check("missing (ours)" in out, "missing records are reported")
    for f in failures:
        print("FAIL:", f)
    print("summarize.py:", "all checks passed" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
