// bench/bench_fast.cpp — Google Benchmark of the fast CPU path (fast/): forward, backward, decode.
//
// Charter: times plx::fast's pointer API on pre-converted buffers (the conversion from the
// double-valued plx::Inputs is not kernel work). Shapes: B=1, H=8 (MHA), D=Dv=128, causal,
// fp32 or bf16 storage (bf16: the AMX tile products where present, and the FMA kernels
// (`...Fma`) in the same run; the label names the kernel set). Counters: GFLOP/s counts 4 H L^2 D / 2 (QK^T and PV of causal
// softmax, the convention of the targets; Parallax does twice that work); decode reports the
// GB/s of reading K and V next to a plain streaming read of the same bytes (BM_ReadBandwidth).
// Threads: the argument `t` sets OpenMP threads. Numbers go to docs/performance-fast.md.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <immintrin.h>

#include <cstdint>
#include <vector>

#include "fast/fast.hpp"
#include "reference/rng.hpp"

using namespace plx;

namespace {

template <class S> S cast_in(float x);
template <> float cast_in<float>(float x) { return x; }
template <> std::uint16_t cast_in<std::uint16_t>(float x) { return bf16_bits(x); }

template <class S> std::vector<S> random_buf(std::size_t n, std::uint64_t seed, Stream s, float scale = 1.0f) {
  CounterRng g = rng_for(seed, s);
  std::vector<S> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = cast_in<S>(scale * float(g.normal(i)));
  return v;
}

struct Case {
  Problem p;
  std::vector<float> r, out, vbar, m2, d1, zbar, dq, dk, dv, dr;
};

Case make_case(int L, int Lq, bool probe) {
  Case c;
  Problem& p = c.p;
  set_member(p, probe ? "parallax" : "softmax");
  p.B = 1, p.Hq = p.Hkv = 8, p.Lq = Lq, p.Lkv = L, p.D = p.Dv = 128, p.causal = true;
  const std::size_t nq = std::size_t(Lq) * 8 * 128, nrow = std::size_t(8) * Lq;
  if (probe) c.r = random_buf<float>(nq, 1, Stream::R, 0.5f);
  c.out.resize(nq), c.vbar.resize(nq), c.m2.resize(nrow), c.d1.resize(nrow), c.zbar.resize(nrow);
  return c;
}

template <class S> struct Data {
  std::vector<S> q, k, v, dO;
  Data(int L, int Lq)
      : q(random_buf<S>(std::size_t(Lq) * 1024, 1, Stream::Q)),
        k(random_buf<S>(std::size_t(L) * 1024, 1, Stream::K)),
        v(random_buf<S>(std::size_t(L) * 1024, 1, Stream::V)),
        dO(random_buf<S>(std::size_t(Lq) * 1024, 1, Stream::dO)) {}
};

template <class S> fast::FwdArgs<S, float> fwd_args(Case& c, const Data<S>& d) {
  fast::FwdArgs<S, float> a;
  a.p = &c.p, a.q = d.q.data(), a.k = d.k.data(), a.v = d.v.data(), a.r = c.r.empty() ? nullptr : c.r.data();
  a.out = c.out.data(), a.vbar = c.vbar.data(), a.m2 = c.m2.data(), a.d1 = c.d1.data(), a.zbar = c.zbar.data();
  return a;
}

double causal_flops(int L) { return 4.0 * 8 * double(L) * L * 128 / 2; }

template <class S> void BM_Forward(benchmark::State& st, bool probe, bool fma = false) {
  const int L = int(st.range(0)), threads = int(st.range(1));
  omp_set_num_threads(threads);
  fast::force_fma(fma);  // bf16: AMX tile products where present, unless fma
  st.SetLabel(fast::forward_kernel(sizeof(S) == 2 ? DType::BF16 : DType::F32));
  Case c = make_case(L, L, probe);
  // A bf16 model's r is a bf16 tensor (fast::forward gets bf16-representable inputs): round it.
  if (sizeof(S) == 2)
    for (float& x : c.r) x = bf16_to_float(bf16_bits(x));
  Data<S> d(L, L);
  const auto a = fwd_args(c, d);
  for (auto _ : st) {
    fast::attention_forward_tiles(a);
    benchmark::DoNotOptimize(c.out.data());
  }
  fast::force_fma(false);
  st.counters["GFLOP/s"] = benchmark::Counter(causal_flops(L) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

template <class S> void BM_Backward(benchmark::State& st, bool probe) {
  const int L = int(st.range(0)), threads = int(st.range(1));
  omp_set_num_threads(threads);
  Case c = make_case(L, L, probe);
  Data<S> d(L, L);
  fast::attention_forward_tiles(fwd_args(c, d));
  const std::size_t nq = std::size_t(L) * 1024;
  c.dq.resize(nq), c.dk.resize(nq), c.dv.resize(nq), c.dr.resize(probe ? nq : 0);
  fast::BwdArgs<S, float> b;
  b.p = &c.p, b.q = d.q.data(), b.k = d.k.data(), b.v = d.v.data(), b.dO = d.dO.data();
  b.r = probe ? c.r.data() : nullptr, b.out = c.out.data(), b.vbar = c.vbar.data(), b.m2 = c.m2.data();
  b.d1 = c.d1.data(), b.zbar = c.zbar.data(), b.dq = c.dq.data(), b.dk = c.dk.data(), b.dv = c.dv.data();
  b.dr = probe ? c.dr.data() : nullptr;
  for (auto _ : st) {
    fast::attention_backward_tiles(b);
    benchmark::DoNotOptimize(c.dk.data());
  }
  st.counters["GFLOP/s(fwd-count)"] =
      benchmark::Counter(causal_flops(L) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Decode: one query row per head against L cached keys (split-KV over chunks of 512).
template <class S> void BM_Decode(benchmark::State& st) {
  const int L = int(st.range(0)), threads = int(st.range(1));
  omp_set_num_threads(threads);
  Case c = make_case(L, 1, true);
  c.p.decode = true;
  Data<S> d(L, 1);
  const auto a = fwd_args(c, d);
  for (auto _ : st) {
    fast::attention_forward_tiles(a);
    benchmark::DoNotOptimize(c.out.data());
  }
  const double bytes = 2.0 * L * 1024 * sizeof(S);  // K and V
  st.counters["GB/s(K,V)"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Streaming read of the same bytes as BM_Decode (K and V, fp32 / bf16), summed with OpenMP:
// the machine's attainable read bandwidth for this working set, measured in the same run.
void BM_ReadBandwidth(benchmark::State& st) {
  const int L = int(st.range(0)), threads = int(st.range(1)), elem = int(st.range(2));
  omp_set_num_threads(threads);
  const std::size_t n = 2ull * L * 1024 * elem / sizeof(float);
  std::vector<float> buf = random_buf<float>(n, 3, Stream::K);
  for (auto _ : st) {
    float total = 0;
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (long i = 0; i < long(n); i += 16) {
      float s = 0;
      for (int e = 0; e < 16; ++e) s += buf[i + e];
      total += s;
    }
    benchmark::DoNotOptimize(total);
  }
  st.counters["GB/s"] =
      benchmark::Counter(double(n) * sizeof(float) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// The machine's fp32 FMA ceiling, measured in the same run: every thread runs chains of
// independent 16-lane FMAs (12 accumulators: more than latency 4 x 2 FMA ports, so the ports,
// not the dependency chains, bound it). Counts 2 flops per lane per FMA. With it the speed
// tables can say how far a kernel is from what fp32 FMA arithmetic allows on this host at
// this moment (the shared host's rate drifts by ~40 % between windows), and it bounds any fp32
// FMA Parallax from below: 8 H L^2 D / 2 flops (q.k, r.k, P1 V, P2 V) / this rate.
__attribute__((target("avx512f,fma"))) float fma_chains_avx512(long iters) {
  __m512 acc[12];  // fully unrolled below, so the array lives in registers
#pragma GCC unroll 12
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(1.0f + 1e-3f * float(i));
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  __m512 s = acc[0];
#pragma GCC unroll 12
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

void BM_FmaPeak(benchmark::State& st) {
  const int threads = int(st.range(0));
  omp_set_num_threads(threads);
  if (!__builtin_cpu_supports("avx512f")) {
    st.SkipWithError("no AVX-512F on this CPU: the FMA peak loop is AVX-512 only");
    return;
  }
  const long iters = 2000000;  // 12 x 2e6 FMAs x 32 flops = 0.77 GFLOP per thread per call
  for (auto _ : st) {
    float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    total += fma_chains_avx512(iters);
    benchmark::DoNotOptimize(total);
  }
  st.counters["GFLOP/s"] = benchmark::Counter(double(threads) * iters * 12 * 32 * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

void fwd_args_list(benchmark::internal::Benchmark* b) {
  for (int L : {1024, 2048, 4096, 8192}) b->Args({L, 2});
  b->Args({4096, 1});
}

}  // namespace

void BM_ParallaxFwdF32(benchmark::State& s) { BM_Forward<float>(s, true); }
void BM_ParallaxFwdBF16(benchmark::State& s) { BM_Forward<std::uint16_t>(s, true); }
void BM_ParallaxFwdBF16Fma(benchmark::State& s) { BM_Forward<std::uint16_t>(s, true, true); }

void BM_SoftmaxFwdF32(benchmark::State& s) { BM_Forward<float>(s, false); }
void BM_SoftmaxFwdBF16(benchmark::State& s) { BM_Forward<std::uint16_t>(s, false); }
void BM_SoftmaxFwdBF16Fma(benchmark::State& s) { BM_Forward<std::uint16_t>(s, false, true); }
void BM_ParallaxBwdF32(benchmark::State& s) { BM_Backward<float>(s, true); }
void BM_SoftmaxBwdF32(benchmark::State& s) { BM_Backward<float>(s, false); }
void BM_DecodeF32(benchmark::State& s) { BM_Decode<float>(s); }
void BM_DecodeBF16(benchmark::State& s) { BM_Decode<std::uint16_t>(s); }

BENCHMARK(BM_ParallaxFwdF32)->Apply(fwd_args_list)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ParallaxFwdBF16)->Args({4096, 2})->Args({4096, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ParallaxFwdBF16Fma)->Args({4096, 2})->Args({4096, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SoftmaxFwdF32)->Args({4096, 2})->Args({4096, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SoftmaxFwdBF16)->Args({4096, 2})->Args({4096, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SoftmaxFwdBF16Fma)->Args({4096, 2})->Args({4096, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ParallaxBwdF32)->Args({4096, 2})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SoftmaxBwdF32)->Args({4096, 2})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_DecodeF32)->Args({16384, 2})->Args({16384, 1})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_DecodeBF16)->Args({16384, 2})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_FmaPeak)->Arg(2)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ReadBandwidth)->Args({16384, 2, 4})->Args({16384, 1, 4})->Args({16384, 2, 2})->Unit(benchmark::kMicrosecond)->UseRealTime();

BENCHMARK_MAIN();
