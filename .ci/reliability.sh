#!/usr/bin/env bash
# bash .ci/plx reliability [--run]
# Regenerates the table of docs/reliability.md (between its BEGIN/END markers) from the
# latest results: build/soak/summary.json (.ci/plx soak), build-fuzz/summary.json
# (.ci/plx fuzz), build-asan/sanitize.json (.ci/plx sanitize), and the outputs of the
# fault, limit, strictness, symmetry and fuzz-regression tests, which it runs (ctest, build/).
# With --run it first runs the fuzz (20 s per target) and sanitizer jobs and a 5-seed soak.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--run" ]; then
  bash .ci/fuzz.sh 20; bash .ci/sanitize.sh; bash .ci/soak.sh 5
fi
cmake --build build -j "${PLX_JOBS:-2}" --target plx validation_faults validation_strict validation_symmetry >/dev/null
log=build/reliability-ctest.log
(cd build && ctest -R '^validation_(faults|strict|symmetry|fuzz_regressions|fixture|cli)$' -V --timeout 1800) > "$log" 2>&1
python3 - "$log" <<'PY'
import json, os, re, sys, datetime
log = open(sys.argv[1]).read()
def load(p):
    try:
        return json.load(open(p))
    except Exception:
        return None
def passed(name):
    m = re.search(r"Test\s+#\d+: %s \.+\s*(\S+)" % re.escape(name), log)
    return m.group(1) if m else "not run"
today = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")
rows = []
# Bad inputs
strict_cases = len(re.findall(r"^\[       OK \] Strict\.", log, re.M))
cli_cases = len(re.findall(r"^\[       OK \] (Cli|FixtureBadInput|CheckBadInput)\.", log, re.M))
rep = re.search(r"replayed (\d+) runs of fuzz regression inputs: (\d+) failed", log)
rows.append(("Bad inputs (hand-made)", "validation_cli, validation_fixture (not HDF5, truncated, flipped byte, missing/misshapen dataset, schema, bad candidate dtypes/shapes), validation_strict (extra/misspelled/missing tensors, wider storage, no sound rule, JSON errors, a stuck read)",
             f"{cli_cases + strict_cases} test cases passed; validation_strict {passed('validation_strict')}, validation_cli {passed('validation_cli')}, validation_fixture {passed('validation_fixture')}", today))
rows.append(("Fuzz regressions", "fuzz/regressions/* replayed through plx inspect/check/gen (exit 0-2 within 60 s)",
             (f"{rep.group(1)} runs, {rep.group(2)} failed" if rep else "not run") + f" ({passed('validation_fuzz_regressions')})", today))
fz = load("build-fuzz/summary.json")
if fz:
    for t, v in fz["targets"].items():
        rows.append((f"Fuzz: {t}", f"libFuzzer + ASan/UBSan, {fz['seconds_per_target']} s",
                     f"{v['executions']} executions, coverage {v['cov']} edges / {v['ft']} features, corpus {v['corpus']}, "
                     f"{v['findings']} findings, {v['watchdog_stops']} libhdf5 hangs ended by the watchdog", fz["date"]))
else:
    rows.append(("Fuzz", "bash .ci/plx fuzz", "no results in build-fuzz/summary.json", "-"))
sk = load("build/soak/summary.json")
rows.append(("Soak", "bash .ci/plx soak N: property suites, fresh random seeds",
             f"{sk['seeds']} seeds x {len(sk['binaries'])} binaries ({', '.join(sk['binaries'])}), max_success {sk['repeat']}, "
             f"{sk['seconds']} s: {len(sk['failures'])} failures {sk['failures'] if sk['failures'] else ''}" if sk else "no results", sk["started"] if sk else "-"))
m = re.search(r"SIGKILL rounds: (\d+), killed mid-run: (\d+)", log)
fd = re.search(r"full disk: ([^\n]*)", log)
rows.append(("Faults", "SIGKILL of plx gen at random times; full disk; read-only directory",
             (f"{m.group(1)} kill rounds ({m.group(2)} mid-run), no partial file under a final name, every rerun complete; " if m else "") +
             (f"full disk ({fd.group(1)}): exit 2; " if fd else "") + f"read-only: exit 2 ({passed('validation_faults')})", today))
rows.append(("Resource limits", "L = 2^40 in a suite; a problem estimated beyond memory; PLX_MEMORY_LIMIT; a dataset declaring 2^53 bytes",
             f"refused before allocation, exit 2 / plx::Error ({passed('validation_faults')})", today))
sy = re.search(r"symmetry: (\d+) fixtures, (\d+) checked runs, (\d+) judged tensors, (\d+) not judged, (\d+) runs not possible; worst error/limit ([0-9.e+-]+) \(([^)]*)\)", log)
rows.append(("No false verdicts", "correct fp32 implementations (fp32 reference, fast path) under feature-axis and key-order permutations, every golden fixture",
             (f"{sy.group(1)} fixtures, {sy.group(2)} runs, {sy.group(3)} judged tensors (limit 0.7): worst error/limit {sy.group(6)} ({sy.group(7)}); {sy.group(4)} not judged" if sy else "not run") + f" ({passed('validation_symmetry')})", today))
sa = load("build-asan/sanitize.json")
rows.append(("Sanitizers", "ASan + UBSan (validation, reference, fast-path tests); TSan + Archer over the fast path's OpenMP loops",
             f"ASan/UBSan: {sa['asan_tests']} test binaries, exit {sa['asan_rc']} (build {sa['asan_build_s']} s, run {sa['asan_tests_s']} s); "
             f"TSan: exit {sa['tsan_rc']} (build {sa['tsan_build_s']} s, run {sa['tsan_run_s']} s)" if sa else "no results", sa["date"] if sa else "-"))
table = "| what | how | result | date |\n|---|---|---|---|\n" + "\n".join(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows) + "\n"
p = "docs/reliability.md"
s = open(p).read()
a, b = s.index("<!-- BEGIN reliability table -->"), s.index("<!-- END reliability table -->")
s = s[:a] + "<!-- BEGIN reliability table -->\n" + table + s[b:]
open(p, "w").write(s)
print(table)
PY
