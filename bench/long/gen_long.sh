#!/usr/bin/env bash
# bench/long/gen_long.sh PLX WORKDIR L [L ...] — wall time and peak memory of `plx gen` for one case
# B = 1, Hq = Hkv = 8, D = Dv = 128, bfloat16 Parallax with gradients, double-double truth, at each L
# (docs/performance.md, "Golden data at training lengths"). Extra arguments to plx gen come from
# PLX_GEN_ARGS (e.g. "--split whole"); PLX_MPI=N runs it under `mpirun -n N` (one thread per rank
# unless OMP_NUM_THREADS is set). Peak memory is the largest resident set of any process of the
# run (getrusage of the children), so under MPI it is the largest rank's. Prints one line per L.
set -euo pipefail
PLX=$1 WORK=$2
shift 2
mkdir -p "$WORK"
for L in "$@"; do
  cat > "$WORK/s$L.json" <<JSON
{"name": "long$L", "cases": [{"problem": {"name": "pl$L", "member": "parallax", "B": 1, "Hq": 8, "Hkv": 8,
  "Lq": $L, "Lkv": $L, "D": 128, "Dv": 128, "dtype": "bfloat16"}, "purpose": "memory and time at L = $L"}]}
JSON
  rm -rf "$WORK/o$L"
  cmd=("$PLX" gen --suite "$WORK/s$L.json" --out "$WORK/o$L" --quiet ${PLX_GEN_ARGS:-})
  if [ -n "${PLX_MPI:-}" ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
    cmd=(mpirun -n "$PLX_MPI" --oversubscribe --bind-to none -x OMP_NUM_THREADS -x LD_LIBRARY_PATH "${cmd[@]}")
  fi
  python3 - "$L" "${cmd[@]}" <<'PY'
import resource, subprocess, sys, time
L, cmd = sys.argv[1], sys.argv[2:]
t = time.time()
subprocess.run(cmd, check=True)
wall = time.time() - t
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6  # KB -> GB
print(f"L={L} wall {wall:.1f} s peak {rss:.3f} GB", flush=True)
PY
  du -b "$WORK/o$L"/*.h5 | awk '{printf "  file %.0f MB\n", $1 / 1e6}'
done
