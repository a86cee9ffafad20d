#!/usr/bin/env python3
"""Seed corpora for .ci/fuzz.sh (standard library only): OUT/fuzz_fixture, OUT/fuzz_suite,
OUT/fuzz_problem. Fixture seeds: the four smallest committed fixtures, and deterministic
mutations of them (truncated; zeroed runs of 8..512 bytes, the pattern that once made libhdf5
loop in a variable-length string attribute; flipped bytes; a fixture-sized run of 0xff).
JSON seeds: committed suites, every problem of the golden manifest, and absurd or mistyped
variants (dimensions of 2^31, 2^40 and -1, strings where numbers go, arrays where objects go,
deep nesting)."""
import json, os, random, sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
out = sys.argv[1]
rng = random.Random(20261207)


def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


golden = os.path.join(root, "fixtures", "golden")
small = sorted((os.path.getsize(os.path.join(golden, f)), f) for f in os.listdir(golden) if f.endswith(".h5"))[:4]
for _, f in small:
    b = open(os.path.join(golden, f), "rb").read()
    put("fuzz_fixture", f, b)
    put("fuzz_fixture", f + ".half", b[: len(b) // 2])
    put("fuzz_fixture", f + ".head", b[:2048])
    for i in range(6):
        n = rng.choice([8, 64, 512])
        o = rng.randrange(0, len(b) - n)
        put("fuzz_fixture", f"{f}.zero{i}", b[:o] + bytes(n) + b[o + n:])
    for i in range(4):
        m = bytearray(b)
        for _ in range(8):
            m[rng.randrange(len(m))] ^= 1 << rng.randrange(8)
        put("fuzz_fixture", f"{f}.flip{i}", bytes(m))
put("fuzz_fixture", "empty", b"")
put("fuzz_fixture", "signature_only", b"\x89HDF\r\n\x1a\n" + bytes(64))

suites = os.path.join(root, "fixtures", "suites")
for f in sorted(os.listdir(suites)):
    put("fuzz_suite", f, open(os.path.join(suites, f), "rb").read())
man = json.load(open(os.path.join(golden, "manifest.json")))
probs = [v["problem"] for v in man["files"].values()]
for i, p in enumerate(probs):
    put("fuzz_problem", f"golden{i}.json", json.dumps(p))
absurd = []
for key in ("Lq", "Lkv", "D", "Dv", "B", "Hq"):
    for v in (2**31, 2**40, -1, 0, "8", 1.5, None, [1], {"x": 1}):
        p = dict(probs[0])
        p[key] = v
        absurd.append(p)
big = dict(probs[0]); big.update({"Lq": 524288, "Lkv": 524288, "D": 1024, "Dv": 1024}); absurd.append(big)
edge = dict(probs[0]); edge.update({"B": 46341, "Hq": 46341, "Hkv": 1}); absurd.append(edge)
for i, p in enumerate(absurd):
    put("fuzz_problem", f"absurd{i}.json", json.dumps(p))
    put("fuzz_suite", f"absurd{i}.json", json.dumps({"name": "a", "cases": [{"problem": p}]}))
put("fuzz_suite", "defaults_array.json", '{"name": "a", "defaults": [1, 2], "cases": [{"problem": {"name": "x"}}]}')
put("fuzz_suite", "name_number.json", '{"name": 3, "cases": []}')
put("fuzz_suite", "problem_string.json", '{"cases": [{"problem": "softmax"}]}')
put("fuzz_suite", "deep.json", "[" * 5000 + "]" * 5000)
put("fuzz_problem", "deep.json", "{\"a\":" * 3000 + "1" + "}" * 3000)
put("fuzz_problem", "solver_types.json", '{"member": "lla", "solver": {"lambda": "x", "block": -3, "cg_max_iters": 1e300}}')
