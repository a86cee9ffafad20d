#!/usr/bin/env bash
# bash .ci/plx fuzz [SECONDS]   (default 20 per target)
# libFuzzer (clang-14, -fsanitize=fuzzer,address,undefined) over plx's input readers:
#   fuzz_fixture  bytes as a fixture file (read_fixture) and as a candidate file (read_candidate + check)
#   fuzz_suite    bytes as a suite JSON (parse_suite_text)
#   fuzz_problem  bytes as a problem JSON (problem_from_json_text; round trip; memory estimate)
# The validation sources are compiled with clang and coverage instrumentation into
# build-fuzz/; the heavy reference instantiations are linked from the gcc build
# (build/reference/libplx_reference_inst.a, built here if missing). Seed corpus: the
# smallest committed fixtures plus mutations (truncated, zeroed runs of up to 512 bytes,
# flipped bytes), committed suites, problem attributes and hand-made absurd JSON
# (fuzz/seeds/). Every input that crashed or hung is kept under fuzz/regressions/<target>/
# and replayed by the ctest `validation_fuzz_regressions`. A read that libhdf5 never
# finishes is ended by plx's watchdog (exit 2, "did not finish"): such inputs are recorded as
# watchdog stops (plx's contract held) and fuzzing goes on for the remaining time.
# Results: build-fuzz/summary.json (executions, coverage, findings) for .ci/reliability.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
B=${PLX_FUZZ_DIR:-build-fuzz}
CXX=${PLX_FUZZ_CXX:-clang++-14}
mkdir -p "$B/obj" "$B/corpus" "$B/artifacts" "$B/inc"
# Boost's float128 needs GCC's quadmath.h, which clang does not search: expose just that header.
for h in quadmath.h quadmath_weak.h; do ln -sf "/usr/lib/gcc/x86_64-linux-gnu/12/include/$h" "$B/inc/$h"; done
if [ ! -f build/validation/libplx_validation.a ] || [ ! -f build/reference/libplx_reference_inst.a ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j "${PLX_JOBS:-2}" --target plx_validation >/dev/null || { echo "fuzz: plx_validation build failed" >&2; exit 2; }
fi
FLAGS=(-std=gnu++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined
       -fno-sanitize-recover=undefined -I. -isystem "$B/inc" -I/usr/include/hdf5/serial -isystem /usr/include/eigen3
       -DEIGEN_DONT_PARALLELIZE -ffp-contract=off -march=x86-64-v3 -Wno-unknown-pragmas -Wno-unused-command-line-argument)
# Instrumented (coverage + sanitizers): the readers and the check. The rest of plx_validation
# (compare, conditioning, symmetry, ...) is linked uninstrumented from the normal build.
SRCS=(sha256 problem_json h5io fixture check suite limits)
objs=()
t0=$(date +%s)
stale=()
for s in "${SRCS[@]}"; do
  o="$B/obj/$s.o"
  if [ ! -f "$o" ] || [ "validation/$s.cpp" -nt "$o" ] || [ -n "$(find validation reference -name '*.hpp' -newer "$o" | head -1)" ]; then
    stale+=("$s")
  fi
  objs+=("$o")
done
if [ ${#stale[@]} -gt 0 ]; then  # compile in parallel (PLX_JOBS, default 2)
  export B CXX; export FLAGS_STR="${FLAGS[*]}"
  printf '%s\n' "${stale[@]}" | xargs -P "${PLX_JOBS:-2}" -I{} sh -c 'nice -n 10 $CXX $FLAGS_STR -c validation/{}.cpp -o $B/obj/{}.o' \
    || { echo "fuzz: compiling the validation sources failed" >&2; exit 2; }
fi
LIBS=(build/validation/libplx_validation.a build/reference/libplx_reference_inst.a)
[ -f build/fast/libplx_fast.a ] && LIBS+=(build/fast/libplx_fast.a)
LIBS+=(-L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5 -lqd -lmpfr -lgmp -lquadmath -lgomp -lpthread)
for t in fuzz_fixture fuzz_suite fuzz_problem; do
  if [ ! -x "$B/$t" ] || [ "fuzz/$t.cpp" -nt "$B/$t" ] || [ -n "$(find "$B/obj" -newer "$B/$t" | head -1)" ]; then
    nice -n 10 $CXX "${FLAGS[@]}" -fsanitize=fuzzer "fuzz/$t.cpp" "${objs[@]}" "${LIBS[@]}" -o "$B/$t" || { echo "fuzz: linking $t failed" >&2; exit 2; }
  fi
done
build_s=$(( $(date +%s) - t0 ))

# ---- seed corpus ------------------------------------------------------------------------
python3 fuzz/make_seeds.py "$B/corpus" >/dev/null || { echo "fuzz: seeding failed" >&2; exit 2; }

# ---- runs -------------------------------------------------------------------------------
export PLX_FUZZ_FIXTURE=$PWD/fixtures/golden/softmax_decode_mqa_bf16.h5
export PLX_FUZZ_SCRATCH=${TMPDIR:-/tmp}
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1
summary="$B/summary.json"
echo "{\"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\", \"seconds_per_target\": $SECS, \"build_seconds\": $build_s, \"targets\": {" > "$summary"
sep=""
status=0
for t in fuzz_fixture fuzz_suite fuzz_problem; do
  mkdir -p "$B/corpus/$t.work" "fuzz/regressions/$t"
  left=$SECS; execs=0; stops=0; findings=0; cov=0; ft=0
  while [ "$left" -gt 0 ]; do
    start=$(date +%s)
    log="$B/$t.log"
    nice -n 10 "$B/$t" -max_total_time="$left" -timeout=20 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$B/artifacts/$t-" "$B/corpus/$t.work" "$B/corpus/$t" >"$log" 2>&1
    rc=$?
    e=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    [ -z "$e" ] && e=$(grep -o '#[0-9]*' "$log" | tail -1 | tr -d '#')
    execs=$(( execs + ${e:-0} ))
    c=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*'); [ -n "$c" ] && [ "$c" -gt "$cov" ] && cov=$c
    f=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*'); [ -n "$f" ] && [ "$f" -gt "$ft" ] && ft=$f
    if [ $rc -ne 0 ]; then
      art=$(ls -t "$B/artifacts/$t-"* 2>/dev/null | head -1)
      if grep -q "did not finish" "$log"; then
        stops=$((stops + 1))   # libhdf5 stuck; the watchdog ended it as plx promises (exit 2)
        stuck=$(grep -o "reading '[^']*plx-fuzz-[0-9]*\.h5'" "$log" | head -1 | sed "s/reading '//; s/'$//")
        if [ -n "$stuck" ] && [ -f "$stuck" ]; then  # the input libhdf5 got stuck on: a watchdog regression case
          cp "$stuck" "fuzz/regressions/$t/hang-$(sha256sum "$stuck" | cut -c1-16).h5"
        fi
        cp "$log" "$B/$t.watchdog-$stops.log"
      else
        findings=$((findings + 1)); status=1
        [ -n "$art" ] && cp "$art" "fuzz/regressions/$t/"
        cp "$log" "$B/$t.finding-$findings.log"
        echo "fuzz: $t FINDING (log $B/$t.finding-$findings.log, input ${art:-?})" >&2
        break
      fi
    fi
    left=$(( left - ($(date +%s) - start) ))
    [ $rc -eq 0 ] && break
  done
  echo "fuzz: $t: $execs executions, coverage $cov edges ($ft features), $findings findings, $stops watchdog stops" >&2
  printf '%s"%s": {"executions": %d, "cov": %d, "ft": %d, "findings": %d, "watchdog_stops": %d, "corpus": %d}' "$sep" "$t" \
    "$execs" "$cov" "$ft" "$findings" "$stops" "$(ls "$B/corpus/$t.work" | wc -l)" >> "$summary"
  sep=", "
done
echo "}}" >> "$summary"
exit $status
