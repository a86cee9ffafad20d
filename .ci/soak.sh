#!/usr/bin/env bash
# bash .ci/plx soak N [BINARY_REGEX]
# Runs every property-test binary (rapidcheck suites of reference/, fast/, validation/) with N
# fresh random seeds (PLX_SEED and rapidcheck's seed both set from /dev/urandom), at the
# lowest CPU priority (the machine may be shared), and reports each failing seed with the
# command that reproduces it. Logs of failures: build/soak/fail-<binary>-<seed>.log; summary:
# build/soak/summary.json (read by .ci/reliability.sh). Exit 1 when any seed failed.
# PLX_REPEAT (default 40) is rapidcheck's max_success per property, as in `plx test`.
# PLX_SOAK_TIMEOUT (default 1800 s) bounds one binary's run; a timeout counts as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
N=${1:?usage: bash .ci/plx soak N [binary-regex]}
FILTER=${2:-.}
BUILD=${PLX_BUILD_DIR:-build}
REPEAT=${PLX_REPEAT:-40}
TMO=${PLX_SOAK_TIMEOUT:-1800}
BINS=(reference_test_forward_props reference_test_forward_precision reference_test_extended_kernels
      reference_test_gradcheck reference_test_split_kv validation_problem_json
      fast_test_forward fast_test_backward fast_test_lla)
sel=()
for b in "${BINS[@]}"; do [[ $b =~ $FILTER ]] && sel+=("$b"); done
[ ${#sel[@]} -gt 0 ] || { echo "soak: no binary matches '$FILTER'" >&2; exit 2; }
if [ -z "${PLX_SOAK_NO_BUILD:-}" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  nice -n 19 cmake --build "$BUILD" -j "${PLX_JOBS:-1}" --target "${sel[@]}" >/dev/null || { echo "soak: build failed" >&2; exit 2; }
fi
mkdir -p "$BUILD/soak"
declare -A path
for b in "${sel[@]}"; do
  path[$b]=$(find "$BUILD/tests" -type f -name "$b" -perm -u+x | head -1)
  [ -n "${path[$b]}" ] || { echo "soak: $b not built" >&2; exit 2; }
done
export PLX_SOURCE_DIR=$PWD
fails=()
t0=$(date +%s)
start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for ((i = 1; i <= N; i++)); do
  seed=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')
  for b in "${sel[@]}"; do
    log="$BUILD/soak/run.log"
    if PLX_SEED=$seed RC_PARAMS="seed=$seed max_success=$REPEAT" timeout "$TMO" nice -n 19 "${path[$b]}" >"$log" 2>&1; then
      :
    else
      rc=$?
      cp "$log" "$BUILD/soak/fail-$b-$seed.log"
      fails+=("$b $seed rc=$rc")
      echo "soak: FAIL $b seed $seed (exit $rc): reproduce with PLX_SEED=$seed RC_PARAMS=\"seed=$seed max_success=$REPEAT\" ${path[$b]}" >&2
    fi
  done
  echo "soak: seed $i/$N done ($seed), ${#fails[@]} failures so far, $(( $(date +%s) - t0 )) s" >&2
done
secs=$(( $(date +%s) - t0 ))
{
  printf '{"started": "%s", "seeds": %d, "repeat": %d, "seconds": %d, "binaries": [' "$start" "$N" "$REPEAT" "$secs"
  sep=""; for b in "${sel[@]}"; do printf '%s"%s"' "$sep" "$b"; sep=", "; done
  printf '], "failures": ['
  sep=""; for f in "${fails[@]}"; do printf '%s"%s"' "$sep" "$f"; sep=", "; done
  printf ']}\n'
} > "$BUILD/soak/summary.json"
echo "soak: $N seeds x ${#sel[@]} binaries in $secs s: ${#fails[@]} failures" >&2
for f in "${fails[@]}"; do echo "  $f" >&2; done
[ ${#fails[@]} -eq 0 ]
