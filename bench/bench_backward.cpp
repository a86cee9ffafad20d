// bench/bench_backward.cpp — reference backward vs forward time, double, one head.
//
// Charter: times attention_forward<double> and attention_backward<double> for Parallax
// (accumulator form) and LLA (FlashLLA query-centred form, direct Cholesky, lambda = 0.1) at
// B = 1, H = 1, L = 1024, D = Dv = 64, causal. The counter "ratio" on each backward benchmark is
// backward time / forward time measured in the same process (target <= 3). Run by hand:
//   ./build-grad/bench/bench_backward --benchmark_min_time=1x
// Not part of ctest. Numbers are recorded in docs/gradients.md ("Speed").
#include <benchmark/benchmark.h>

#include <chrono>
#include <map>

#include "reference/all.hpp"

using namespace plx;

namespace {
Problem bench_problem(const std::string& member) {
  Problem p;
  set_member(p, member);
  p.B = 1, p.Hq = 1, p.Hkv = 1, p.Lq = 1024, p.Lkv = 1024, p.D = 64, p.Dv = 64, p.causal = true, p.seed = 1;
  p.gen = InputGen::RmsNorm;
  p.solver.lambda = 0.1;
  return p;
}
std::map<std::string, double>& forward_seconds() {
  static std::map<std::string, double> m;
  return m;
}

void BM_forward(benchmark::State& st, std::string member) {
  Problem p = bench_problem(member);
  Inputs in = make_inputs(p);
  double total = 0;
  long n = 0;
  for (auto _ : st) {
    auto t0 = std::chrono::steady_clock::now();
    auto F = attention_forward<double>(p, in);
    benchmark::DoNotOptimize(F.out.data.data());
    total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), ++n;
  }
  forward_seconds()[member] = total / n;
}
void BM_backward(benchmark::State& st, std::string member) {
  Problem p = bench_problem(member);
  Inputs in = make_inputs(p);
  double total = 0;
  long n = 0;
  for (auto _ : st) {
    auto t0 = std::chrono::steady_clock::now();
    auto G = attention_backward<double>(p, in);
    benchmark::DoNotOptimize(G.dq.data.data());
    total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), ++n;
  }
  if (forward_seconds().count(member)) st.counters["ratio"] = (total / n) / forward_seconds()[member];
}
}  // namespace

BENCHMARK_CAPTURE(BM_forward, parallax, std::string("parallax"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_backward, parallax, std::string("parallax"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_forward, lla, std::string("lla"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_backward, lla, std::string("lla"))->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
