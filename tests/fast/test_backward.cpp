// tests/fast/test_backward.cpp — fast::backward gradients against the reference backward.
//
// Charter: softmax and Parallax (both forms) on random problems: dq, dk, dv (and dr) must be
// within 2x the error of the reference backward run in the candidate's precision (float, or
// double in F64 mode; bf16 inputs are exact in float and gradients are fp32) or below a
// derived floor; GQA group sums, windows, padding and empty rows included. Also bit-identical
// dk / dv for 1 vs 2 threads, a multi-tile fixed case, and decode refusal.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "tests/fast/fast_support.hpp"
#include "validation/problem_json.hpp"
#include "tests/support.hpp"

using namespace plx;
using namespace plx::test;

namespace {

std::vector<TensorReport> check_grads(const Problem& p, const Inputs& in, const CandidateResult& c) {
  const Gradients<dd> t = attention_backward<dd>(p, in);
  Gradients<double> bd;
  if (p.dtype == DType::F64) bd = attention_backward<double>(p, in);
  else {
    const Gradients<float> bf = attention_backward<float>(p, in);
    bd = {as_double(bf.dq), as_double(bf.dk), as_double(bf.dv), as_double(bf.dr), as_double(bf.dlambda)};
  }
  // Floor: a gradient entry sums over keys (dq, dr: n = Lkv), or over queries of the G
  // heads (dk, dv: n = G Lq); each term carries the forward's weight error. Same
  // derivation as the forward floor (fast_support.hpp, with the logit bound S1) with
  // n = Lq G + Lkv, in fp32 (gradients are fp32 even for bf16 inputs, so no bf16 output term).
  Problem pf = p;
  if (pf.dtype == DType::BF16) pf.dtype = DType::F32;
  const double u = acc_u(pf), s1 = logit_bound(p, in);
  Tolerance tol;
  tol.rel_floor = floor_rel(pf, double(p.Lq) * p.group() + p.Lkv, s1);
  // Absolute part. ds_ij = p (a_ij - t_i + zc (a_ij - b_i)) [softmax: p (a_ij - t_i)] with
  // a = g.v_j, t = g.out, b = g.vbar, zc = zbar - z_j, times tau k, tau q or r (dq, dk, dr:
  // F = tau(|k| + |q|) + |r|). Errors, per term:
  //  - a and t, b are Dv-term dot products computed differently: 4u sqrt(Dv) |g||v| each;
  //  - t and b use the candidate's own forward out and vbar: each entry off by dout, the error
  //    the candidate's forward actually has (measured against the truth here; the forward's
  //    own accuracy is held to its rule by test_forward.cpp). bf16 storage reports a
  //    bf16-rounded out, so there dout is the fp32 forward floor 4u(sqrt(Lkv) + max(sqrt(D), S1))
  //    max|out| instead. It enters as sqrt(Dv)|g| dout (exact zeros of the truth, e.g. one-key
  //    rows where a = t, are then u-level nonzeros; a sink row in fp32 with D = 1 had
  //    |a - t| off by 6.4u|g||v|, more than the dot-product term alone).
  // Row norms: |g|, |v|, |k|, |q|, |r| maxima.
  const double gn = max_row_norm(in.dO), vn = max_row_norm(in.v), kn = max_row_norm(in.k), qn = max_row_norm(in.q);
  const double rn = p.probe == Probe::Learned ? max_row_norm(in.r) : 0.0;
  double dout = 0;
  const Tensor<double> tout = as_double(attention_forward<dd>(p, in).out);
  if (p.dtype == DType::BF16) {
    double omax = 0;
    for (double x : tout.data) omax = std::max(omax, std::abs(x));
    dout = floor_rel(pf, p.Lkv, s1) * omax;
  } else {
    for (std::size_t i = 0; i < tout.size(); ++i) dout = std::max(dout, std::abs(c.out.data[i] - tout.data[i]));
  }
  const double F = p.tau() * (kn + qn) + rn;
  tol.abs_floor = (4 * u * std::sqrt(double(p.Dv)) * gn * vn + std::sqrt(double(p.Dv)) * gn * dout) * F;
  tol.why = "2x same-precision reference backward, floor 4u(sqrt(G Lq + Lkv) + max(sqrt(D),S1)) max|grad| + "
            "(4u sqrt(Dv)|g||v| + sqrt(Dv)|g| dout) (tau(|k|+|q|) + |r|), "
            "dout = the candidate forward's measured out error (bf16: the fp32 forward floor)";
  const DType dt = p.dtype == DType::F64 ? DType::F64 : DType::F32;
  std::vector<TensorReport> r;
  r.push_back(compare_tensor("dq", c.dq, as_double(t.dq), dt, tol, &bd.dq));
  r.push_back(compare_tensor("dk", c.dk, as_double(t.dk), dt, tol, &bd.dk));
  r.push_back(compare_tensor("dv", c.dv, as_double(t.dv), dt, tol, &bd.dv));
  if (p.probe == Probe::Learned) r.push_back(compare_tensor("dr", c.dr, as_double(t.dr), dt, tol, &bd.dr));
  return r;
}

void property(const std::string& member, bool hazard = false) {
  Problem p = *gen_problem(member);
  p.dtype = *rc::gen::element(DType::F32, DType::BF16, DType::F64);
  if (hazard) p.gen = *gen_hazard();
  RC_TAG(to_string(p.dtype));
  RC_TAG(to_string(p.gen));
  RC_LOG() << problem_json_text(p) << "\n";
  const Inputs in = make_inputs(p);
  const CandidateResult c = fast::backward(p, in);
  const auto rs = check_grads(p, in, c);
  RC_LOG() << format_report(rs);
  for (const auto& r : rs) RC_ASSERT(r.passed);
  if (p.probe == Probe::None) RC_ASSERT(c.dr.empty());
}

Problem fixed(const std::string& member, int Lq, int Lkv, int D) {
  Problem p;
  set_member(p, member);
  p.B = 2, p.Hq = 4, p.Hkv = 2, p.Lq = Lq, p.Lkv = Lkv, p.D = D, p.Dv = D, p.dtype = DType::F32, p.seed = 5;
  p.start = {0, 9}, p.used = {Lkv, Lkv - 20}, p.window = 100;
  return p;
}

}  // namespace

RC_GTEST_PROP(FastBackward, SoftmaxMatchesReference, ()) { property("softmax"); }
RC_GTEST_PROP(FastBackward, ParallaxMatchesReference, ()) { property("parallax"); }
RC_GTEST_PROP(FastBackward, ParallaxCentredMatchesReference, ()) { property("parallax_centred"); }
// The same rule on the docs/math.md §7 hazard inputs (tests/support.hpp gen_hazard).
RC_GTEST_PROP(FastBackward, HazardInputsMatchReference, ()) {
  property(*rc::gen::element<std::string>("softmax", "parallax", "parallax_centred"), true);
}

// Several query tiles (64) and key tiles (48), GQA, odd D.
TEST(FastBackward, MultiTile) {
  for (const char* m : {"softmax", "parallax"}) {
    const Problem p = fixed(m, 150, 170, 37);
    const Inputs in = make_inputs(p);
    const auto rs = check_grads(p, in, fast::backward(p, in));
    for (const auto& r : rs) EXPECT_TRUE(r.passed) << m << "\n" << format_report(rs);
  }
}

TEST(FastBackward, BitIdenticalAcrossThreadCounts) {
  for (const char* m : {"softmax", "parallax"}) {
    const Problem p = fixed(m, 150, 170, 20);
    const Inputs in = make_inputs(p);
    const auto a = with_threads(1, [&] { return fast::backward(p, in); });
    const auto b = with_threads(2, [&] { return fast::backward(p, in); });
    EXPECT_TRUE(bit_identical(a, b)) << m;
  }
}

TEST(FastBackward, DecodeIsRefused) {
  Problem p = fixed("parallax", 1, 30, 4);
  p.decode = true;
  std::string why;
  EXPECT_FALSE(fast::supports_backward(p, &why));
  EXPECT_NE(why.find("decode"), std::string::npos) << why;
  EXPECT_THROW(fast::backward(p, make_inputs(p)), Error);
}
