#!/usr/bin/env bash
# tests/validation/test_mpi.sh PLX MPIEXEC SRC — `mpirun -n 2 plx sweep` and `mpirun -n 2 plx gen`
# write the same bytes as one process (sweep: the CSV; gen: manifest.json, which holds the SHA-256
# of every dataset), whether gen shards cases over ranks or shares one case's units among them,
# and an interrupted MPI sweep resumes to the same bytes. Runs as root in CI:
# Open MPI refuses root unless told (the two variables below are its documented switches).
set -euo pipefail
PLX=$1 MPIEXEC=$2 SRC=$3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
MPI=("$MPIEXEC" -n 2 --oversubscribe --bind-to none -x OMP_NUM_THREADS)
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
cat > "$d/sweep.json" <<'JSON'
{"name": "mpi", "base": {"B": 1, "Hq": 2, "Hkv": 1, "Lq": 12, "Lkv": 12, "D": 4, "Dv": 4, "dtype": "float32"},
 "axes": [{"name": "member", "values": ["softmax", "parallax", "lla"]},
          {"name": "key_offset", "values": [0, 16]},
          {"name": "candidate", "values": ["fp32", "fp64"]}],
 "seeds": [1, 2, 3]}
JSON
"$PLX" sweep --spec "$d/sweep.json" --out "$d/serial.csv" --jobs 1 --quiet
"${MPI[@]}" "$PLX" sweep --spec "$d/sweep.json" --out "$d/mpi.csv" 2> "$d/mpi.log"
grep -q "2 ranks" "$d/mpi.log" || { echo "FAIL: the MPI sweep did not run on 2 ranks:"; cat "$d/mpi.log"; exit 1; }
cmp "$d/serial.csv" "$d/mpi.csv" || { echo "FAIL: mpirun -n 2 plx sweep differs from the serial CSV"; exit 1; }
# Interrupted: keep the first 7 rows (format + header + 5 items) and a fragment, resume under MPI.
head -n 7 "$d/serial.csv" > "$d/resume.csv"
printf '5,1,softm' >> "$d/resume.csv"
"${MPI[@]}" "$PLX" sweep --spec "$d/sweep.json" --out "$d/resume.csv" --quiet
cmp "$d/serial.csv" "$d/resume.csv" || { echo "FAIL: the resumed MPI sweep differs from the serial CSV"; exit 1; }
# A bad point is refused by every rank before any work, with exit code 2.
set +e
"${MPI[@]}" "$PLX" sweep --axis L=4,0 --out "$d/bad.csv" > "$d/bad.log" 2>&1
rc=$?
set -e
[ "$rc" -ne 0 ] && grep -q "sweep point 1 (L=0)" "$d/bad.log" || { echo "FAIL: bad point under MPI: rc=$rc"; cat "$d/bad.log"; exit 1; }
[ ! -e "$d/bad.csv" ] || { echo "FAIL: a CSV was written for an invalid sweep"; exit 1; }
# plx gen: the demo suite's cases, smaller.
python3 - "$SRC/../../fixtures/suites/default.json" "$d/suite.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
s["defaults"].update({"B": 1, "Hq": 2, "Hkv": 1, "Lq": 9, "Lkv": 9, "D": 4, "Dv": 4})
json.dump(s, open(sys.argv[2], "w"))
PY
"$PLX" gen --suite "$d/suite.json" --out "$d/gen1" --jobs 1 --quiet
"${MPI[@]}" "$PLX" gen --suite "$d/suite.json" --out "$d/gen2" --quiet
cmp "$d/gen1/manifest.json" "$d/gen2/manifest.json" || { echo "FAIL: mpirun -n 2 plx gen manifest differs"; exit 1; }
n1=$(ls "$d/gen1"/*.h5 | wc -l); n2=$(ls "$d/gen2"/*.h5 | wc -l)
[ "$n1" = "$n2" ] && [ "$n1" -gt 3 ] || { echo "FAIL: $n1 vs $n2 fixtures"; exit 1; }
# One case shared over the ranks: `--split units` gives each rank (batch, kv head) units of the same
# case and rank 0 assembles; the datasets equal one process computing the whole case. Three units
# (B = 1, Hkv = 3) so the ranks hold unequal shares, and GQA, a window and gradients; and a
# row-sampled case, whose runs of rows are shared head by head.
cat > "$d/one.json" <<'JSON'
{"name": "one", "cases": [{"problem": {"name": "shared", "member": "parallax", "B": 1, "Hq": 6, "Hkv": 3,
  "Lq": 40, "Lkv": 40, "D": 8, "Dv": 8, "window": 17, "dtype": "bfloat16", "seed": 5}},
  {"problem": {"name": "shared_softmax", "member": "softmax", "B": 2, "Hq": 2, "Hkv": 2,
  "Lq": 33, "Lkv": 33, "D": 8, "Dv": 8, "start": [0, 3], "dtype": "float32", "seed": 6}},
  {"problem": {"name": "shared_rows", "member": "lla", "B": 1, "Hq": 4, "Hkv": 2,
  "Lq": 50, "Lkv": 50, "D": 4, "Dv": 4, "dtype": "float32", "seed": 7},
   "rows": {"sample": 12, "block": 5, "seed": 2, "ranges": [[20, 23]]}}]}
JSON
"$PLX" gen --suite "$d/one.json" --out "$d/one1" --jobs 1 --split whole --quiet
"${MPI[@]}" "$PLX" gen --suite "$d/one.json" --out "$d/one2" --split units 2> "$d/one.log"
grep -q "plx gen: shared.h5: \[3/3\] batch 0, kv head 2" "$d/one.log" || { echo "FAIL: no per-unit progress:"; cat "$d/one.log"; exit 1; }
cmp "$d/one1/manifest.json" "$d/one2/manifest.json" || { echo "FAIL: one case over 2 ranks differs from one process"; exit 1; }
echo "PASS: mpirun -n 2 plx sweep / gen byte-identical to one process ($(($(wc -l < "$d/serial.csv") - 2)) sweep rows, $n1 fixtures; 3 cases each shared over both ranks, one row-sampled)"
