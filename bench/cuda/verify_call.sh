#!/bin/bash
# One device call: build both trees' benchmarks in the background; GPU suites on three seeds +
# compute-sanitizer; same-run A/B of the benchmarks (main's tree vs this branch); the key-offset
# probes (plx and torch SDPA). Internal time limits keep the whole call under 600 s.
cd "$(dirname "$0")/new"  # run as .devstage/arch/verify_call.sh (see docs/gpu.md)
mkdir -p build && tar -C build -xJf ../devbin.tar.xz
export PLX_DEVBIN=build/devbin OUT PATH=/usr/local/cuda/bin:$PATH
( bash bench/cuda/build_bench_on_device.sh ../base /tmp/ab/base > $OUT/build_base.log 2>&1;
  bash bench/cuda/build_bench_on_device.sh . /tmp/ab/new > $OUT/build_new.log 2>&1 ) &
BUILD=$!
t0=$(date +%s)
timeout 270 bash bench/cuda/run_device.sh verify > $OUT/verify_run.log 2>&1
echo "verify rc=$? $(( $(date +%s) - t0 )) s"; grep -E "^== |rc=|compute-sanitizer" $OUT/verify_run.log | head -40
wait $BUILD; echo "build rc=$? $(( $(date +%s) - t0 )) s"; tail -2 $OUT/build_base.log $OUT/build_new.log
PLX_AB="/tmp/ab/base /tmp/ab/new" timeout 170 bash bench/cuda/run_device.sh ab > $OUT/ab_run.log 2>&1
python3 bench/cuda/ab_summary.py $OUT/ab.jsonl > $OUT/ab_summary.txt 2>&1; cat $OUT/ab_summary.txt; echo "ab $(( $(date +%s) - t0 )) s"
echo "== torch probe"; PYTHONUNBUFFERED=1 timeout 60 python3 bench/cuda/probe_key_offset_torch.py > $OUT/probe_torch.jsonl 2>&1; cut -c1-300 $OUT/probe_torch.jsonl
echo "== plx probe"; LD_LIBRARY_PATH=$PWD/build/devbin/lib:/usr/local/cuda/lib64 timeout 75 ../probe_key_offset > $OUT/probe.jsonl 2>&1; cut -c1-400 $OUT/probe.jsonl
echo "all done $(( $(date +%s) - t0 )) s"
cd $OUT && tar czf all.tgz --exclude=all.tgz . && find . -maxdepth 1 -type f ! -name all.tgz ! -name ab_summary.txt ! -name offset_tests.txt ! -name probe.jsonl ! -name probe_torch.jsonl -delete
