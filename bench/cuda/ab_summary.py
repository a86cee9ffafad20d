#!/usr/bin/env python3
# bench/cuda/ab_summary.py — same-run A/B table from run_device.sh's `ab` section.
# Input lines: "<tree> <round> <json>" (the benchmarks' JSON lines, tagged). For every shape the
# shipped default's time of tree A and tree B (median over rounds) and B / A.
import json, statistics, sys
from collections import defaultdict

t = defaultdict(lambda: defaultdict(list))
trees = []
for line in open(sys.argv[1]):
    parts = line.split(" ", 2)
    if len(parts) < 3 or not parts[2].startswith("{"):
        continue
    tree, _, js = parts
    try:
        r = json.loads(js)
    except ValueError:
        continue
    if tree not in trees:
        trees.append(tree)
    b = r.get("bench")
    if b == "decode":
        key, val = ("decode", r["mech"], r["B"], r["Hq"], r["Hkv"], r["L"]), r["default_us"]
    elif b in ("forward", "forward_default"):
        key, val = ("forward", r["mech"], r["L"]), r["default_ms"] * 1e3
    elif b == "backward":
        key, val = ("backward", r["mech"], r["L"]), r["bwd_ms"] * 1e3
    else:
        continue
    t[key][tree].append(val)
if len(trees) != 2:
    sys.exit("need exactly two trees, got %s" % trees)
A, B = trees
print("%-52s %12s %12s %7s  (us, median of rounds; %s then %s)" % ("shape", A, B, "B/A", A, B))
ratios = []
for key in sorted(t, key=str):
    a, b = t[key].get(A), t[key].get(B)
    if not a or not b:
        continue
    ma, mb = statistics.median(a), statistics.median(b)
    ratios.append(mb / ma)
    print("%-52s %12.2f %12.2f %7.3f" % (" ".join(map(str, key)), ma, mb, mb / ma))
if ratios:
    print("geometric mean B/A over %d shapes: %.3f" % (len(ratios), statistics.geometric_mean(ratios)))
