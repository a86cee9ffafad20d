// tests/fast/test_forward.cpp — fast::forward against the double-double reference.
//
// Charter: random problems (gen_problem: edge shapes, GQA, windows, padding, empty rows) for
// every supported member and dtype; the candidate error must be <= 2x the error of the same
// algorithm run by the reference in the candidate's precision, or below a derived floor
// (tests/fast/fast_support.hpp). Also: fixed larger cases (several tiles, split-KV decode,
// D = 59, L = 97 / 1025), exact zeros for empty rows, bit-identical results for 1 vs 2
// threads, the portable kernels, and plx::Error for bad input / unsupported problems.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "tests/fast/fast_support.hpp"
#include "tests/support.hpp"

using namespace plx;
using namespace plx::test;

namespace {

// The out check of one problem; returns the report (printed on failure).
TensorReport check_forward(const Problem& p, const Inputs& in, const CandidateResult& c) {
  ForwardOptions o;
  o.saved = p.probe != Probe::None;
  o.diagnostics = p.probe != Probe::None && p.anchor == Anchor::Query;
  const Forward<dd> F = attention_forward<dd>(p, in, o);
  const Tensor<double> truth = as_double(F.out);
  const Tensor<double> base = baseline_out(p, in);
  Tolerance tol;
  tol.baseline_ratio = 2.0;
  tol.rel_floor = floor_rel(p, p.Lkv);
  tol.why = "2x same-precision reference baseline, floor 4u(sqrt(Lkv)+sqrt(D)) max|out| (+2^-8 for bf16 out)";
  if (p.probe != Probe::None) {
    // Probe members add the rounding of z_j = theta.k_j: |dz| <~ u (sqrt(D) + sqrt(Lkv)) |theta| |k|
    // (D-term dot product, Lkv-term weighted means of z), entering out through
    // sum_j p_j dz_j (v_j - vbar) (<= 2 max|v| dz); a query anchor multiplies the probe by
    // gamma = 1 + alpha (LLA: theta = gamma rho) and the error of gamma = 1/(Delta/omega) by gamma^2
    // (for the learned query-anchored probe the first factor over-counts by one gamma).
    double pmax = 0, kn = 0, vmax = 0, gmax = 1;
    for (const auto& x : F.saved.at("probe").data) pmax = std::max(pmax, std::abs(to_double(x)));
    for (std::size_t o0 = 0; o0 < in.k.size(); o0 += p.D) {
      double ss = 0;
      for (int d = 0; d < p.D; ++d) ss += in.k.data[o0 + d] * in.k.data[o0 + d];
      kn = std::max(kn, std::sqrt(ss));
    }
    for (double x : in.v.data) vmax = std::max(vmax, std::abs(x));
    if (o.diagnostics)
      for (double a : F.diag.at("alpha").data) gmax = std::max(gmax, std::abs(1 + a));
    tol.abs_floor = 4 * acc_u(p) * (std::sqrt(double(p.D)) + std::sqrt(double(p.Lkv))) * gmax * gmax * gmax * pmax *
                    kn * 2 * vmax;
    tol.why += "; + 4u(sqrt(D)+sqrt(Lkv)) gamma^3 |probe| |k| 2max|v| (rounding of z = probe.k)";
  }
  return compare_tensor("out", c.out, truth, out_dtype(p), tol, &base);
}

// lse (saved) against the truth: |lse| error <= |m| u + (error of ln omega) ~ 4u(|lse| + sqrt(Lkv) + sqrt(D));
// empty rows (lse = -inf in both) are set to 0 in both before comparing.
TensorReport check_lse(const Problem& p, const Inputs& in, const CandidateResult& c) {
  ForwardOptions o;
  o.saved = true;
  Tensor<double> truth = as_double(attention_forward<dd>(p, in, o).saved.at("lse"));
  Tensor<double> cand = c.saved.at("lse");
  double mx = 0;
  for (std::size_t i = 0; i < truth.size(); ++i) {
    if (std::isinf(truth.data[i]) && std::isinf(cand.data[i]) && truth.data[i] < 0 && cand.data[i] < 0)
      truth.data[i] = cand.data[i] = 0;
    mx = std::max(mx, std::abs(truth.data[i]));
  }
  Tolerance tol;
  tol.abs_floor = 4 * acc_u(p) * (mx + std::sqrt(double(p.Lkv)) + std::sqrt(double(p.D)) + 1);
  tol.why = "4u(max|lse| + sqrt(Lkv) + sqrt(D) + 1): rounding of m plus ln of an Lkv-term sum";
  return compare_tensor("lse", cand, truth, DType::F32, tol, nullptr);
}

void property(const std::string& member) {
  Problem p = *gen_problem(member);
  p.dtype = *rc::gen::element(DType::F32, DType::BF16, DType::F64);
  RC_TAG(to_string(p.dtype));
  const Inputs in = make_inputs(p);
  CandidateResult c;
  try {
    c = fast::forward(p, in);
  } catch (const NumericalError&) {  // LLA with a singular system in fp32: the reference must agree it is bad
    RC_DISCARD("numerically singular");
  }
  const TensorReport r = check_forward(p, in, c);
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

// Decode equals the last row of the corresponding prefill (SPEC property), up to rounding:
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

// Empty rows (SPEC §1.4): W = 0 empties every row -> out exactly 0, lse -inf, no NaN.
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
  EXPECT_THROW(fast::forward_backward(p, in), Error);  // NaN upstream gradient
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
  q = fixed("lla", 5, 6, 4, DType::F32), q.solver.method = SolverMethod::CG;
  EXPECT_FALSE(fast::supports(q, &why));
  q = fixed("lla", 5, 6, 4, DType::F32);
  EXPECT_TRUE(fast::supports(q, &why)) << why;
  EXPECT_FALSE(fast::supports_backward(q, &why));
  EXPECT_THROW(fast::forward_backward(q, make_inputs(q)), Error);
  q = p, q.Hq = 3;  // not a multiple of Hkv
  EXPECT_FALSE(fast::supports(q, &why));
  EXPECT_THROW(fast::forward(q, good), Error);
}
