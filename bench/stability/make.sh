#!/usr/bin/env bash
# bench/stability/make.sh — the numerical stability study, end to end: every sweep of
# bench/stability/*.json with `plx sweep` (CSV under docs/figures/data/), then plot.py turns the
# CSVs into docs/figures/stability_*.png and docs/stability.md (from bench/stability/stability.md.in).
# Usage (from the repository root, after building `plx` into build/):
#   bash bench/stability/make.sh            one process, OpenMP over sweep items (all cores)
#   PLX_RANKS=2 bash bench/stability/make.sh   the same under mpirun -n 2 (one thread per rank)
# Existing CSVs of the same descriptions are resumed (an interrupted run continues where it
# stopped); delete docs/figures/data/ to recompute from scratch. Output bytes do not depend on
# threads or ranks.
set -euo pipefail
cd "$(dirname "$0")/../.."
PLX=${PLX:-./build/plx}
DATA=docs/figures/data
mkdir -p "$DATA"
t0=$(date +%s)
for s in L zcancel key_offset cond lambda cg hazards delta_eps masked rowbound; do
  spec=bench/stability/$s.json
  if [ -n "${PLX_RANKS:-}" ]; then
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 \
      mpirun -n "$PLX_RANKS" --oversubscribe --bind-to none -x OMP_NUM_THREADS "$PLX" sweep --spec "$spec" --out "$DATA/$s.csv"
  else
    "$PLX" sweep --spec "$spec" --out "$DATA/$s.csv"
  fi
done
t1=$(date +%s)
cat > "$DATA/meta.json" <<JSON
{"seconds": $((t1 - t0)), "date": "$(date -u +%F)", "cores": $(nproc), "ranks": "${PLX_RANKS:-1 (OpenMP over items)}",
 "commit": "$(git rev-parse --short HEAD)", "cpu": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"}
JSON
/usr/bin/python3 bench/stability/plot.py "$DATA" --figures docs/figures --doc docs/stability.md --meta "$DATA/meta.json"
echo "stability study: sweeps $((t1 - t0)) s, total $(( $(date +%s) - t0 )) s"
