// bench/bench_reference.cpp — speed of the reference forward (issue 2 targets).
//
// Charter: Google Benchmark cases for the reference at the sizes the targets name:
// Parallax forward (one head, causal, L = 4096, D = 128) in double and double-double,
// Parallax at 50 digits (MPFR, cpp_bin_float_50, and the quad-double tier qd4 with ~62 digits)
// on L = 256, D = 64 (the mpmath comparison: see
// bench/mpmath_baseline.py, which runs this binary and mpmath in the same run), and LLA
// direct forward (L = 1024, D = 64, causal) in double-double. Counters: GFLOP/s with the
// issue's count 4 Lq Lkv D, halved for causal. `--dump-mpfr50 FILE` writes the 50-digit
// output of the mpmath case as text and exits (for the cross-check); `--dump-qd FILE` does
// the same for the quad-double tier (62 significant digits).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iomanip>

#include "reference/all.hpp"

using namespace plx;

namespace {
Problem head(int L, int D, const char* member) {
  Problem p;
  p.name = "bench";
  p.B = 1, p.Hq = 1, p.Hkv = 1, p.Lq = L, p.Lkv = L, p.D = D, p.Dv = D, p.seed = 1;
  p.causal = true;
  set_member(p, member);
  return p;
}
double flops(const Problem& p) { return 4.0 * p.Lq * p.Lkv * p.D / (p.causal ? 2.0 : 1.0); }

template <class T> void run(benchmark::State& st, Problem p) {
  if constexpr (std::is_same_v<T, mpfr>) set_mpfr_digits10(50);
  Inputs in = make_inputs(p);
  for (auto _ : st) {
    auto F = attention_forward<T>(p, in);
    benchmark::DoNotOptimize(F.out.data.data());
  }
  st.counters["GFLOP/s"] = benchmark::Counter(flops(p) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.SetLabel(ScalarTraits<T>::name() + " " + member_name(p) + " L=" + std::to_string(p.Lq) + " D=" + std::to_string(p.D));
}
void run_double(benchmark::State& st, Problem p) { run<double>(st, p); }
void run_dd(benchmark::State& st, Problem p) { run<dd>(st, p); }
void run_mpfr(benchmark::State& st, Problem p) { run<mpfr>(st, p); }
void run_bf50(benchmark::State& st, Problem p) { run<bf50>(st, p); }
void run_qd(benchmark::State& st, Problem p) { run<qd4>(st, p); }
}  // namespace

BENCHMARK_CAPTURE(run_double, ParallaxDouble_L4096_D128, head(4096, 128, "parallax_centred"))->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK_CAPTURE(run_dd, ParallaxDD_L4096_D128, head(4096, 128, "parallax_centred"))->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
BENCHMARK_CAPTURE(run_double, ParallaxAccDouble_L4096_D128, head(4096, 128, "parallax"))->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK_CAPTURE(run_mpfr, ParallaxMpfr50_L256_D64, head(256, 64, "parallax"))->Unit(benchmark::kMillisecond)->UseRealTime()->Repetitions(3)->Iterations(1);
BENCHMARK_CAPTURE(run_bf50, ParallaxBinFloat50_L256_D64, head(256, 64, "parallax"))->Unit(benchmark::kMillisecond)->UseRealTime()->Repetitions(3)->Iterations(1);
BENCHMARK_CAPTURE(run_qd, ParallaxQuadDouble50_L256_D64, head(256, 64, "parallax"))->Unit(benchmark::kMillisecond)->UseRealTime()->Repetitions(3)->Iterations(1);
BENCHMARK_CAPTURE(run_dd, LlaDirectDD_L1024_D64, head(1024, 64, "lla"))->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
BENCHMARK_CAPTURE(run_double, LlaDirectDouble_L1024_D64, head(1024, 64, "lla"))->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--dump-mpfr50") == 0) {
    set_mpfr_digits10(50);
    Problem p = head(256, 64, "parallax");
    auto F = attention_forward<mpfr>(p, make_inputs(p));
    std::ofstream o(argv[2]);
    for (const auto& x : F.out.data) o << x.str(50, std::ios_base::scientific) << "\n";
    return o ? 0 : 1;
  }
  if (argc == 3 && std::strcmp(argv[1], "--dump-qd") == 0) {
    Problem p = head(256, 64, "parallax");
    auto F = attention_forward<qd4>(p, make_inputs(p));
    std::ofstream o(argv[2]);
    for (const auto& x : F.out.data) o << x.to_string(62, 0, std::ios_base::scientific) << "\n";
    return o ? 0 : 1;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
