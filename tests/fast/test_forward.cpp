// tests/fast/test_forward.cpp — fast::forward against the double-double reference.
//
// Charter: random problems (gen_problem: edge shapes, GQA, windows, padding, empty rows) for
// every supported member and dtype; the candidate error must be <= 2x the error of the same
// algorithm run by the reference in the candidate's precision, or below a derived floor
// (tests/fast/fast_support.hpp). Also: fixed larger cases (several tiles, split-KV decode,
// D = 59, L = 97 / 1025), exact zeros for empty rows, bit-identical results for 1 vs 2
// threads, the portable kernels, both bf16 kernel sets (AMX tile products and the widening
// fallback), and plx::Error for bad input / unsupported problems.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <utility>

#include "tests/fast/fast_support.hpp"
#include "validation/problem_json.hpp"
#include "tests/support.hpp"

using namespace plx;
using namespace plx::test;

namespace {

void property(const std::string& member, bool hazard = false) {
  Problem p = *gen_problem(member);
  p.dtype = *rc::gen::element(DType::F32, DType::BF16, DType::F64);
  if (hazard) p.gen = *gen_hazard();
  RC_TAG(to_string(p.dtype));
  RC_TAG(to_string(p.gen));
  RC_LOG() << problem_json_text(p) << "\n";
  const Inputs in = make_inputs(p);
  CandidateResult c;
  try {
    c = fast::forward(p, in);
  } catch (const NumericalError&) {  // LLA with a singular system in fp32: the reference must agree it is bad
    RC_DISCARD("numerically singular");
  }
  TensorReport r;
  try {
    r = check_forward(p, in, c);
  } catch (const NumericalError&) {  // LLA: the same-precision baseline's solve failed (hazard inputs)
    RC_DISCARD("baseline numerically singular: no 2x-baseline rule to apply");
  }
  RC_LOG() << format_report({r});
  RC_ASSERT(r.passed);
  if (p.dtype != DType::BF16) {  // lse is fp32 in bf16 mode too; checked for the others
    const TensorReport l = check_lse(p, in, c);
    RC_LOG() << format_report({l});
    RC_ASSERT(l.passed);
  }
}

Problem fixed(const std::string& member, int Lq, int Lkv, int D, DType dt) {
  Problem p;
  set_member(p, member);
  p.B = 1, p.Hq = 4, p.Hkv = 2, p.Lq = Lq, p.Lkv = Lkv, p.D = D, p.Dv = D, p.dtype = dt, p.seed = 97;
  return p;
}

}  // namespace

RC_GTEST_PROP(FastForward, SoftmaxMatchesReference, ()) { property("softmax"); }
RC_GTEST_PROP(FastForward, ParallaxMatchesReference, ()) { property("parallax"); }
RC_GTEST_PROP(FastForward, ParallaxCentredMatchesReference, ()) { property("parallax_centred"); }
RC_GTEST_PROP(FastForward, LlaMatchesReference, ()) { property("lla"); }
RC_GTEST_PROP(FastForward, LlaCovMatchesReference, ()) { property("lla_cov"); }
RC_GTEST_PROP(FastForward, LearnedQueryMatchesReference, ()) { property("learned_query"); }
// The same rule on the docs/math.md §7 hazard inputs (tests/support.hpp gen_hazard), every member.
RC_GTEST_PROP(FastForward, HazardInputsMatchReference, ()) {
  property(*rc::gen::element<std::string>("softmax", "parallax", "parallax_centred", "lla", "lla_cov", "learned_query"),
           true);
}

// Portable kernels (chosen where AVX-512 is missing) pass the same check.
RC_GTEST_PROP(FastForward, GenericKernelsMatchReference, ()) {
  fast::force_generic(true);
  try {
    property(*rc::gen::element<std::string>("softmax", "parallax", "lla_cov"));
  } catch (...) {
    fast::force_generic(false);
    throw;
  }
  fast::force_generic(false);
}

// Several query and key tiles, GQA, causal, window and padding; awkward D = 59 and L = 97.
TEST(FastForward, MultiTileAwkwardShapes) {
  for (const char* m : {"softmax", "parallax", "lla_cov"})
    for (DType dt : {DType::F32, DType::BF16}) {
      Problem p = fixed(m, 97, 161, 59, dt);
      p.window = 120;
      p.B = 2, p.start = {0, 11}, p.used = {161, 150};
      const Inputs in = make_inputs(p);
      const TensorReport r = check_forward(p, in, fast::forward(p, in));
      EXPECT_TRUE(r.passed) << m << " " << to_string(dt) << "\n" << format_report({r});
    }
}

// L = 1025 causal, D = 64: 17 query tiles, 22 key tiles (seqlen 1025 as in FlashAttention's tests).
TEST(FastForward, Length1025) {
  Problem p = fixed("parallax", 1025, 1025, 64, DType::F32);
  p.Hq = 2, p.Hkv = 1;
  const Inputs in = make_inputs(p);
  const TensorReport r = check_forward(p, in, fast::forward(p, in));
  EXPECT_TRUE(r.passed) << format_report({r});
}

// Decode (Lq = 1) with split-KV: Lkv = 1500 -> 3 chunks of 512; windows and seqused.
TEST(FastForward, DecodeSplitKv) {
  for (const char* m : {"softmax", "parallax", "lla_cov"}) {
    Problem p = fixed(m, 1, 1500, 32, DType::F32);
    p.decode = true, p.B = 3, p.used = {1500, 1100, 700}, p.start = {0, 3, 600}, p.window = 1200;
    const Inputs in = make_inputs(p);
    const auto c = fast::forward(p, in);
    const TensorReport r = check_forward(p, in, c);
    EXPECT_TRUE(r.passed) << m << "\n" << format_report({r});
  }
}

// Decode equals the last row of the corresponding prefill (docs/math.md property), up to rounding:
// split-KV (3 chunks) vs one pass differ only in summation order, bound 4u sqrt(L) max|out|.
TEST(FastForward, DecodeEqualsLastPrefillRow) {
  Problem pre = fixed("parallax", 40, 1500, 32, DType::F32);
  const Inputs inp = make_inputs(pre);
  Problem dec = pre;
  dec.Lq = 1, dec.decode = true;
  Inputs ind = inp;
  const std::size_t row = std::size_t(pre.Hq) * pre.D, rowo = std::size_t(pre.Hq) * pre.Dv;
  ind.q.shape[1] = ind.r.shape[1] = ind.dO.shape[1] = 1;
  ind.q.data.assign(inp.q.data.end() - row, inp.q.data.end());
  ind.r.data.assign(inp.r.data.end() - row, inp.r.data.end());
  ind.dO.data.assign(inp.dO.data.end() - rowo, inp.dO.data.end());
  ind.lambda = Tensor<double>({1, std::size_t(pre.Hq), 1}, pre.solver.lambda);
  const auto a = fast::forward(pre, inp), b = fast::forward(dec, ind);
  double mx = 0, err = 0;
  for (std::size_t c = 0; c < rowo; ++c) {
    const double x = a.out.data[a.out.size() - rowo + c], y = b.out.data[c];
    mx = std::max(mx, std::abs(x)), err = std::max(err, std::abs(x - y));
  }
  EXPECT_GT(mx, 0.0);
  EXPECT_LE(err, 4 * 0x1p-24 * std::sqrt(1500.0) * mx) << "decode vs last prefill row";
}

// Empty rows (docs/math.md §1.4): W = 0 empties every row -> out exactly 0, lse -inf, no NaN.
TEST(FastForward, EmptyRowsAreExactZeros) {
  for (const char* m : {"softmax", "parallax", "lla", "learned_query"}) {
    Problem p = fixed(m, 7, 9, 5, DType::F32);
    p.window = 0;
    const auto c = fast::forward(p, make_inputs(p));
    for (double x : c.out.data) ASSERT_EQ(x, 0.0) << m;
    for (double x : c.saved.at("lse").data) ASSERT_TRUE(std::isinf(x) && x < 0) << m;
  }
  // Lq > Lkv causal: the first Lq - Lkv rows are empty, the others are not.
  Problem p = fixed("parallax", 9, 4, 3, DType::F32);
  const auto c = fast::forward(p, make_inputs(p));
  for (int i = 0; i < 9; ++i)
    for (int h = 0; h < p.Hq; ++h)
      for (int d = 0; d < p.Dv; ++d) {
        if (i < 5) EXPECT_EQ(c.out(0, i, h, d), 0.0);
        else EXPECT_NE(c.out(0, i, h, d), 0.0);
      }
}

// Same seed and problem -> bit-identical results with 1 and 2 threads (tiled and split-KV).
TEST(FastForward, BitIdenticalAcrossThreadCounts) {
  for (const char* m : {"softmax", "parallax", "lla_cov"})
    for (auto [Lq, Lkv] : {std::pair{130, 130}, std::pair{1, 1600}}) {
      Problem p = fixed(m, Lq, Lkv, 24, DType::F32);
      p.decode = Lq == 1;
      const Inputs in = make_inputs(p);
      const auto a = with_threads(1, [&] { return fast::forward(p, in); });
      const auto b = with_threads(2, [&] { return fast::forward(p, in); });
      EXPECT_TRUE(bit_identical(a, b)) << m << " Lq=" << Lq;
    }
}

// bf16 storage: both kernel sets — AMX tile products (chosen where CPUID and the OS allow it)
// and the FMA kernels on widened inputs (forced) — pass the reference check on awkward shapes:
// D = 59 (AMX pads d to 64 in the packed K), Dv = D (AMX pads V^T to a multiple of 16 columns),
// whole and partial key tiles (Lkv = 100 = 48 + 48 + 4), window, padding, GQA, and LLA (query
// anchor: its fp32 probe is split into bf16 pieces on AMX; rounding it to bf16 would fail this
// check, docs/math.md §7.2).
TEST(FastForward, Bf16KernelSetsMatchReference) {
  for (bool fma : {false, true}) {
    fast::force_fma(fma);
    const std::string kern = fast::forward_kernel(DType::BF16);
    if (fma) EXPECT_NE(kern, "amx");
    std::printf("bf16 kernel set: %s\n", kern.c_str());
    for (auto [m, D] : {std::pair{"softmax", 59}, std::pair{"parallax", 64}, std::pair{"parallax", 59},
                        std::pair{"lla", 64}, std::pair{"lla_cov", 59}, std::pair{"learned_query", 64}}) {
        Problem p = fixed(m, 65, 100, D, DType::BF16);
        p.window = 80;
        p.start = {7}, p.used = {96};
        const Inputs in = make_inputs(p);
        const TensorReport r = check_forward(p, in, fast::forward(p, in));
        EXPECT_TRUE(r.passed) << m << " D=" << D << " " << kern << "\n" << format_report({r});
      }
  }
  fast::force_fma(false);
}

// The bf16 forward of p on the default kernel (AMX where the CPU has it) and with the widening
// FMA kernel forced, in that order; the default is restored.
std::pair<CandidateResult, CandidateResult> amx_and_fma(const Problem& p, const Inputs& in) {
  fast::force_fma(false);
  CandidateResult a = fast::forward(p, in);
  fast::force_fma(true);
  CandidateResult b = fast::forward(p, in);
  fast::force_fma(false);
  return {std::move(a), std::move(b)};
}
// Largest |difference| of a saved tensor between two runs, and the largest |value| of the first.
std::pair<double, double> max_diff(const Tensor<double>& x, const Tensor<double>& y) {
  double err = 0, xmax = 0;
  for (std::size_t t = 0; t < x.size(); ++t)
    err = std::max(err, std::abs(x.data[t] - y.data[t])), xmax = std::max(xmax, std::abs(x.data[t]));
  return {err, xmax};
}

// The AMX path keeps z = r.k in fp32: the probe is split exactly into bf16 pieces. LLA's theta is
// an fp32 value (not bf16), so the saved zbar = sum_j p_j z_j of the AMX and the widening kernels
// must agree to fp32 rounding: both are fp32 sums of exact products, so they differ by at most
// 2 * 4u (sqrt(D) + sqrt(Lkv)) max|theta| max||k|| (dot product and weighted mean, each kernel);
// rounding theta to bf16 would move zbar by ~2^-9 |theta||k| >> this.
TEST(FastForward, Bf16AmxKeepsProbeProductsInFp32) {
  Problem p = fixed("lla_cov", 80, 80, 64, DType::BF16);
  p.solver.lambda = 0.3;
  const Inputs in = make_inputs(p);
  const auto [a, b] = amx_and_fma(p, in);
  double tmax = 0;
  for (double x : a.saved.at("probe").data) tmax = std::max(tmax, std::abs(x));
  const double kmax = max_row_norm(in.k);
  const auto [err, zmax] = max_diff(a.saved.at("zbar"), b.saved.at("zbar"));
  const double bound = 2 * 4 * 0x1p-24 * (std::sqrt(64.0) + std::sqrt(80.0)) * tmax * kmax;
  std::printf("zbar AMX vs widened: max diff %.3g (bound %.3g, max|zbar| %.3g)\n", err, bound, zmax);
  EXPECT_GT(zmax, 0.0);
  EXPECT_LE(err, bound);
}

// The AMX value products keep the weights P1 = 2^(s2 - m2) in fp32 (three exact bf16 pieces).
// The saved vbar = sum_j p_j v_j of the AMX and the FMA kernels then differ only by fp32
// rounding, in the logits and in the weighted sum. Per kernel, the probabilistic bound of an
// n-term fp32 sum is 4u sqrt(n) sum|terms|: a logit tau q.k moves by e_s <= 4u sqrt(D) S1 with
// S1 = max over (i, j) of tau sum_d |q_id k_jd|, which moves vbar by at most 2 e_s max|v| (the
// weights shift by relative e_s, vbar by sum_j p_j e_j (v_j - vbar)); the weighted sum adds
// 4u sqrt(Lkv) max|v|. Two kernels: |diff| <= 2 * 4u (2 sqrt(D) S1 + sqrt(Lkv)) max|v|.
// Rounding P1 to bf16 (relative 2^-9 per weight, what bf16 GPU kernels do) moves the vbar of a
// row with two keys by ~2^-10 |v1 - v2|, far above this bound.
TEST(FastForward, Bf16AmxKeepsWeightsInFp32) {
  Problem p = fixed("parallax", 200, 200, 64, DType::BF16);
  const Inputs in = make_inputs(p);
  const auto [a, b] = amx_and_fma(p, in);
  double vmax = 0, s1 = 0;
  for (double x : in.v.data) vmax = std::max(vmax, std::abs(x));
  for (int i = 0; i < p.Lq; ++i)
    for (int h = 0; h < p.Hq; ++h)
      for (int j = 0; j < p.Lkv; ++j) {
        double s = 0;
        for (int d = 0; d < p.D; ++d) s += std::abs(in.q(0, i, h, d) * in.k(0, j, h / p.group(), d));
        s1 = std::max(s1, p.tau() * s);
      }
  const auto [err, vbmax] = max_diff(a.saved.at("vbar"), b.saved.at("vbar"));
  const double bound = 2 * 4 * 0x1p-24 * (2 * std::sqrt(double(p.D)) * s1 + std::sqrt(double(p.Lkv))) * vmax;
  std::printf("vbar %s vs FMA: max diff %.3g (bound %.3g, max|v| %.3g)\n", fast::forward_kernel(DType::BF16).c_str(),
              err, bound, vmax);
  EXPECT_GT(vbmax, 0.0);
  EXPECT_LE(err, bound);
}

// Outlier tokens (keys and values x30 every 17th token) spread z = r.k far from any single key's
// z. The online re-centring of the shift (fwd_step) keeps the closed form's cancellation at the
// level of the reference's two-pass centred algorithm: fast fp64 out error <= 2x the reference
// run in double + 4 u64 (sqrt(Lkv) + sqrt(D)) max|out| (the plain floor, without the S1 and probe
// terms that hazard inputs otherwise get). With the shift fixed at the first key's z the error
// of the first case was 1.9e-12 against the reference's 5.9e-14 (limit ~1.6e-13); re-centred
// 2.5e-14. Several seeds, several query tiles (Lq = 70) and a split-KV decode row.
TEST(FastForward, OutlierTokensKeepTwoPassAccuracy) {
  for (std::uint64_t seed : {50, 51, 52, 53}) {
    for (auto [Lq, Lkv] : {std::pair{6, 65}, std::pair{70, 300}, std::pair{1, 2100}}) {
      Problem p;
      set_member(p, "parallax_centred");
      p.B = 1, p.Hq = 1, p.Hkv = 1, p.D = 7, p.Dv = 3, p.Lq = Lq, p.Lkv = Lkv, p.dtype = DType::F64, p.seed = seed;
      p.decode = Lq == 1;
      p.gen = InputGen::Outliers;
      const Inputs in = make_inputs(p);
      const auto c = fast::forward(p, in);
      const auto T = attention_forward<dd>(p, in);
      const auto F = attention_forward<double>(p, in);
      double ec = 0, eb = 0, mx = 0;
      for (std::size_t i = 0; i < c.out.size(); ++i) {
        const double tr = to_double(T.out.data[i]);
        ec = std::max(ec, std::abs(c.out.data[i] - tr)), eb = std::max(eb, std::abs(F.out.data[i] - tr));
        mx = std::max(mx, std::abs(tr));
      }
      const double limit = 2 * eb + 4 * 0x1p-53 * (std::sqrt(double(Lkv)) + std::sqrt(7.0)) * mx;
      EXPECT_LE(ec, limit) << "seed " << seed << " Lq=" << Lq << " Lkv=" << Lkv << ": fast " << ec << " reference-double " << eb;
    }
  }
}

// bf16 with AMX: bit-identical for 1 and 2 threads (tiled path and a single-tile split-KV case).
TEST(FastForward, Bf16BitIdenticalAcrossThreadCounts) {
  for (const char* m : {"softmax", "parallax", "lla_cov"})
    for (auto [Lq, Lkv] : {std::pair{130, 130}, std::pair{20, 1600}}) {
      Problem p = fixed(m, Lq, Lkv, 40, DType::BF16);
      const Inputs in = make_inputs(p);
      const auto a = with_threads(1, [&] { return fast::forward(p, in); });
      const auto b = with_threads(2, [&] { return fast::forward(p, in); });
      EXPECT_TRUE(bit_identical(a, b)) << m << " Lq=" << Lq << " " << fast::forward_kernel(DType::BF16);
      EXPECT_TRUE(bit_identical(a.saved.at("lse"), b.saved.at("lse"))) << m;
    }
}

// Bad input and unsupported problems give plx::Error with a reason, never a crash.
TEST(FastForward, BadInputIsRejected) {
  Problem p = fixed("parallax", 5, 6, 4, DType::F32);
  const Inputs good = make_inputs(p);
  Inputs in = good;
  in.k.shape[3] = 3, in.k.data.resize(in.k.data.size() / 4 * 3);
  EXPECT_THROW(fast::forward(p, in), Error);  // wrong shape
  in = good;
  in.k.data[7] = std::nan("");
  EXPECT_THROW(fast::forward(p, in), Error);  // NaN
  in = good;
  in.r.data[3] = INFINITY;
  EXPECT_THROW(fast::forward(p, in), Error);  // Inf
  in = good;
  in.dO.data[0] = std::nan("");
  EXPECT_THROW(fast::backward(p, in), Error);  // NaN upstream gradient
  std::string why;
  Problem q = p;
  q.dtype = DType::F16;
  EXPECT_FALSE(fast::supports(q, &why));
  EXPECT_NE(why.find("float16"), std::string::npos) << why;
  EXPECT_THROW(fast::forward(q, make_inputs(q)), Error);
  q = p, q.D = q.Dv = 600;
  EXPECT_FALSE(fast::supports(q, &why));
  EXPECT_NE(why.find("D=600"), std::string::npos) << why;
  q = fixed("lla", 5, 6, 4, DType::F32), q.solver.block = 2;
  EXPECT_FALSE(fast::supports(q, &why));
  EXPECT_THROW(fast::forward(q, make_inputs(q)), Error);
  q = fixed("lla", 5, 6, 4, DType::F32), q.solver.method = SolverMethod::CG;  // CG: tests/fast/test_lla.cpp
  EXPECT_TRUE(fast::supports(q, &why)) << why;
  q = fixed("lla", 5, 6, 4, DType::F32);
  EXPECT_TRUE(fast::supports(q, &why)) << why;
  EXPECT_FALSE(fast::supports_backward(q, &why));
  EXPECT_THROW(fast::backward(q, make_inputs(q)), Error);
  q = p, q.Hq = 3;  // not a multiple of Hkv
  EXPECT_FALSE(fast::supports(q, &why));
  EXPECT_THROW(fast::forward(q, good), Error);
}
