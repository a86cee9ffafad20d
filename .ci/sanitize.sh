#!/usr/bin/env bash
# bash .ci/plx sanitize
# 1. AddressSanitizer + UndefinedBehaviorSanitizer (PLX_SANITIZE=ON) over the validation,
#    reference and fast-path tests on small sizes, in build-asan/. To fit CI's budget the
#    multiprecision instantiations of the reference (dd, qd4, f128, bf50, bf100, mpfr, long
#    double) are linked from the normal build (build/, PLX_REFERENCE_PREBUILT); the reference
#    in double, the fast path, the validation library and every test are instrumented.
# 2. ThreadSanitizer over the fast path's OpenMP loops (tests/sanitize/tsan_fast.cpp) with
#    clang-14 + LLVM's libomp and its Archer tool (see that file for why not GCC's libgomp).
# Any sanitizer report fails (halt_on_error / -fno-sanitize-recover). Timings: build-asan/sanitize.json.
set -uo pipefail
cd "$(dirname "$0")/.."
JOBS=${PLX_JOBS:-2}
A=${PLX_ASAN_DIR:-build-asan}
T=${PLX_TSAN_DIR:-build-tsan}
t0=$(date +%s)
if [ ! -f build/reference/libplx_reference_inst.a ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j "$JOBS" --target plx_reference_inst >/dev/null || { echo "sanitize: reference build failed" >&2; exit 2; }
fi
TESTS=(validation_fixture validation_strict validation_problem_json validation_sha256 validation_faults
       reference_test_forward_bad_input reference_test_forward_props reference_test_split_kv fast_test_forward fast_test_lla)
cmake -S . -B "$A" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPLX_SANITIZE=ON -DPLX_CUDA=OFF -DPLX_WITH_KERNELS=OFF \
  -DCMAKE_CXX_FLAGS_RELEASE="-O1 -g" -DPLX_REFERENCE_PREBUILT="$PWD/build/reference/libplx_reference_inst.a" >/dev/null \
  || { echo "sanitize: configure failed" >&2; exit 2; }
cmake --build "$A" -j "$JOBS" --target "${TESTS[@]}" plx >/dev/null || { echo "sanitize: ASan build failed" >&2; exit 2; }
t1=$(date +%s)
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=suppressions=$PWD/tests/sanitize/lsan.supp
export PLX_REPEAT=${PLX_SANITIZE_REPEAT:-5}
export PLX_SEED=${PLX_SEED:-20261129}
export RC_PARAMS="seed=$PLX_SEED max_success=$PLX_REPEAT"
regex="^($(IFS='|'; echo "${TESTS[*]}"))\$"
(cd "$A" && ctest -R "$regex" -j "$JOBS" --output-on-failure --timeout 900) ; asan_rc=$?
t2=$(date +%s)

# ---- ThreadSanitizer (clang + libomp + Archer) --------------------------------------------
mkdir -p "$T/inc"
# Boost's float128 (via reference headers) needs GCC's quadmath.h, which clang does not search.
for h in quadmath.h quadmath_weak.h; do ln -sf "/usr/lib/gcc/x86_64-linux-gnu/12/include/$h" "$T/inc/$h"; done
TF=(-std=gnu++20 -O1 -g -fsanitize=thread -fopenmp=libomp -I. -isystem "$T/inc" -isystem /usr/include/eigen3 -march=x86-64-v3 -ffp-contract=off)
objs=()
for s in fast lla_probe tiles_generic tiles_avx512 tiles_amx; do
  extra=()
  case $s in
    tiles_avx512) extra=(-mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512bf16 -mfma) ;;
    tiles_amx) extra=(-mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512bf16 -mfma -mamx-tile -mamx-bf16) ;;
  esac
  if [ ! -f "$T/$s.o" ] || [ "fast/$s.cpp" -nt "$T/$s.o" ] || [ -n "$(find fast reference -name '*.hpp' -newer "$T/$s.o" | head -1)" ]; then
    clang++-14 "${TF[@]}" "${extra[@]}" -c "fast/$s.cpp" -o "$T/$s.o" || { echo "sanitize: TSan compile of $s failed" >&2; exit 2; }
  fi
  objs+=("$T/$s.o")
done
clang++-14 "${TF[@]}" tests/sanitize/tsan_fast.cpp "${objs[@]}" -o "$T/tsan_fast" || { echo "sanitize: TSan link failed" >&2; exit 2; }
t3=$(date +%s)
OMP_TOOL_LIBRARIES=/usr/lib/llvm-14/lib/libarcher.so TSAN_OPTIONS="halt_on_error=1 ignore_noninstrumented_modules=1" \
  "$T/tsan_fast"; tsan_rc=$?
t4=$(date +%s)
printf '{"date": "%s", "asan_build_s": %d, "asan_tests_s": %d, "asan_rc": %d, "asan_tests": %d, "tsan_build_s": %d, "tsan_run_s": %d, "tsan_rc": %d}\n' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" $((t1 - t0)) $((t2 - t1)) $asan_rc ${#TESTS[@]} $((t3 - t2)) $((t4 - t3)) $tsan_rc > "$A/sanitize.json"
cat "$A/sanitize.json"
[ $asan_rc -eq 0 ] && [ $tsan_rc -eq 0 ]
