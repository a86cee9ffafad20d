#!/usr/bin/env bash
# Replays every input kept under fuzz/regressions/ (inputs that once crashed, hung or escaped
# as a non-plx::Error) through the real `plx` binary: fixture inputs through `plx inspect` and
# `plx check` (as the fixture and as the candidate), suite inputs through `plx gen`, problem
# inputs inside a one-case suite. Each must end with exit 0, 1 or 2 (never a signal, never
# exit 3+ from a crash) within 60 s; the HDF5 watchdog is set to 5 s so a libhdf5 hang shows
# as exit 2 naming the file. Usage: replay_fuzz_regressions.sh PLX SOURCE_DIR
set -uo pipefail
PLX=$1; SRC=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export PLX_HDF5_WATCHDOG_S=5
fx=$SRC/fixtures/golden/softmax_decode_mqa_bf16.h5
n=0; bad=0
run() {  # run CMD...; accept exit 0/1/2 within 60 s
  timeout 60 "$@" >"$tmp/log" 2>&1; rc=$?
  n=$((n + 1))
  if [ $rc -gt 2 ]; then bad=$((bad + 1)); echo "FAIL (exit $rc): $*"; tail -5 "$tmp/log"; fi
}
shopt -s nullglob
for f in "$SRC"/fuzz/regressions/fuzz_fixture/*; do
  run "$PLX" inspect "$f"
  run "$PLX" check --fixture "$f" --run ref-double
  run "$PLX" check --fixture "$fx" --candidate "$f"
done
for f in "$SRC"/fuzz/regressions/fuzz_suite/*; do
  run "$PLX" gen --quiet --suite "$f" --out "$tmp/o"
done
for f in "$SRC"/fuzz/regressions/fuzz_problem/*; do
  { printf '{"name": "r", "cases": [{"problem": '; cat "$f"; printf '}]}'; } > "$tmp/s.json"
  run "$PLX" gen --quiet --suite "$tmp/s.json" --out "$tmp/o"
done
echo "replayed $n runs of fuzz regression inputs: $bad failed"
[ $bad -eq 0 ]
