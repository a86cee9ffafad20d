// tests/fast/test_lla.cpp — the fast path's LLA solves (direct and CG) against the reference.
//
// Charter: CG and Jacobi-CG (docs/math.md §3.7) on both anchors, fp32 and fp64, through the same
// out check as tests/fast/test_forward.cpp (2x a same-precision reference run of the same
// CG, plus derived floors); the per-row solver report (iterations, converged flag) against
// the reference's; CG at convergence equals the direct solve within the bound that follows
// from the stopping test; bit-identical results for 1 and 2 threads; plx::Error for CG with
// a block-diagonal system.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "tests/fast/fast_support.hpp"
#include "validation/candidates.hpp"
#include "validation/cg_rule.hpp"
#include "validation/check.hpp"
#include "validation/fixture.hpp"
#include "tests/support.hpp"

using namespace plx;
using namespace plx::test;

namespace {

Problem fixed_lla(const std::string& member, SolverMethod method, int Lq, int Lkv, int D, DType dt) {
  Problem p;
  set_member(p, member);
  p.B = 1, p.Hq = 4, p.Hkv = 2, p.Lq = Lq, p.Lkv = Lkv, p.D = D, p.Dv = D, p.dtype = dt, p.seed = 31;
  p.solver.method = method;
  return p;
}

}  // namespace

// Random problems (edge shapes, GQA, windows, padding, per-row lambda) with a CG solve, judged
// as `plx check` judges a CG candidate: the CG rule (validation/cg_rule.hpp, docs/cg.md §5),
// against the direct-solve truth with per-row limits from the same-precision CG baseline; rows
// the iteration cap ends are not judged. (Against the stored CG iterate with the 2x rule, about
// 1.2 % of random seeds failed: a float CG that runs many steps lands ~|x_k - x*| from that
// iterate, as does the baseline, and two such samples are no rule.)
RC_GTEST_PROP(FastLla, CgMatchesReference, ()) {
  Problem p = *gen_problem(*rc::gen::element<std::string>("lla", "lla_cov"));
  p.solver.method = *rc::gen::element(SolverMethod::CG, SolverMethod::JacobiCG);
  p.solver.cg_max_iters = *rc::gen::element(3, 32);
  p.dtype = *rc::gen::element(DType::F32, DType::F64);
  RC_TAG(to_string(p.solver.method));
  const Inputs in = make_inputs(p);
  CandidateResult c;
  try {
    c = fast::forward(p, in);
  } catch (const NumericalError&) {
    RC_DISCARD("CG gave Delta = 0 or a non-finite probe");
  }
  FixtureData fx;
  fx.p = p, fx.in = in;
  try {
    const auto truth = reference_truth_dd(p, in, false);
    fx.truth["out"] = Truth{truth.at("out"), Tensor<double>(truth.at("out").shape, 0.0)};
  } catch (const NumericalError&) {
    RC_DISCARD("singular system in the reference");
  }
  for (DType X : {DType::F64, DType::F32, DType::BF16, DType::F16}) {
    const Tolerance tol = recommended_tolerance(p, "out", X);
    fx.tolerances["out"][to_string(X)] = {{"baseline_ratio", tol.baseline_ratio}, {"abs_floor", tol.abs_floor},
                                          {"rel_floor", tol.rel_floor}, {"why", tol.why}};
  }
  CheckResult r;
  try {
    r = check_candidate("random", fx, candidate_from_result("fast", c, p, candidate_dtypes("fast", p)), CheckOptions{});
  } catch (const NumericalError&) {  // the direct problem's Cholesky (the rule's truth) found it singular
    RC_DISCARD("singular direct system");
  }
  RC_LOG() << r.format();
  RC_ASSERT(!r.reports.empty());
  RC_TAG(r.reports[0].rule);  // the CG rule, unless no float CG baseline ran (then the 2x rule)
  RC_ASSERT(r.verdict != Verdict::Fail);
}

// Fixed cases: both anchors, both CG variants, fp32/fp64/bf16, several tiles, a window, GQA,
// and a small iteration cap so that rows stop unconverged.
TEST(FastLla, CgFixedCasesMatchReference) {
  for (const char* m : {"lla", "lla_cov"})
    for (SolverMethod sm : {SolverMethod::CG, SolverMethod::JacobiCG})
      for (auto [dt, iters] : {std::pair{DType::F32, 32}, std::pair{DType::F64, 4}, std::pair{DType::BF16, 32}}) {
          Problem p = fixed_lla(m, sm, 70, 70, 12, dt);
          p.window = 50, p.solver.lambda = 0.3, p.solver.cg_max_iters = iters;
          const Inputs in = make_inputs(p);
          const TensorReport r = check_forward(p, in, fast::forward(p, in));
          EXPECT_TRUE(r.passed) << m << " " << to_string(sm) << " " << to_string(dt) << " iters=" << iters << "\n"
                                << format_report({r});
        }
}

// The per-row report follows the reference's CG: with a cap of 3 iterations and a small ridge
// some rows stop unconverged (iterations = 3, converged = 0), others converge early (the first
// causal rows have |A| < D keys, so CG ends in <= |A| + 1 steps, docs/math.md §3.7). Iteration counts
// may differ by one where nrm' is within rounding of the threshold (the stopping test compares
// a rounded squared norm with rtol max(atol, nrm0)); in fp64 vs double-double that is rare.
TEST(FastLla, CgReportMatchesReference) {
  for (const char* m : {"lla", "lla_cov"}) {
    Problem p = fixed_lla(m, SolverMethod::CG, 40, 40, 16, DType::F64);
    p.solver.lambda = 0.05, p.solver.cg_max_iters = 3;
    const Inputs in = make_inputs(p);
    const auto c = fast::forward(p, in);
    ForwardOptions o;
    o.diagnostics = true;
    const Forward<dd> F = attention_forward<dd>(p, in, o);
    const auto& it = c.saved.at("cg_iters");
    const auto& cv = c.saved.at("cg_converged");
    const auto& ri = F.diag.at("cg_iters");
    int unconverged = 0, converged = 0, differ = 0;
    for (std::size_t t = 0; t < it.size(); ++t) {
      const double ref = to_double(ri.data[t]);
      EXPECT_LE(std::abs(it.data[t] - ref), 1.0) << m << " row " << t;
      differ += it.data[t] != ref;
      if (cv.data[t] == 0.0) {
        ++unconverged;
        EXPECT_EQ(it.data[t], 3.0) << "an unconverged row ran every iteration";
      } else {
        ++converged;
        EXPECT_LE(it.data[t], 3.0);
      }
      EXPECT_TRUE(std::isfinite(c.saved.at("cg_residual").data[t]));
    }
    EXPECT_GT(unconverged, 0) << m << ": the cap of 3 iterations must leave rows unconverged";
    EXPECT_GT(converged, 0) << m << ": rows with <= 2 keys converge within 3 iterations";
    EXPECT_LE(differ, int(it.size()) / 20) << m << ": iteration counts differ from the reference on many rows";
  }
}

// docs/math.md property "exact solve equals CG at convergence". The stopping test nrm' <= rtol
// max(atol, nrm0) with atol <= nrm0 gives ||res|| <= sqrt(rtol) ||y||, so
// ||theta_cg - theta|| <= ||(C + lambda I)^-1|| ||res|| <= sqrt(rtol) ||y|| / lambda, and the
// key-mean output moves by |sum_j p_j (dtheta.(k_j - kbar)) (v_j - vbar)| <=
// ||dtheta|| max_j ||k_j - kbar|| 2 max|v| <= ||dtheta|| 2 max||k|| 2 max|v|; plus the fp64
// rounding floor 1e-12 max|out| (both runs are fp64). Default tolerances (atol = rtol = 1e-12):
// tighter ones stall on the 1e-10 in the step denominator (docs/math.md §3.7) before the test fires
// (measured: relative residual 3.5e-10 after 60 iterations with rtol = 1e-20).
TEST(FastLla, CgAtConvergenceEqualsDirect) {
  Problem p = fixed_lla("lla_cov", SolverMethod::CG, 50, 50, 16, DType::F64);
  p.solver.lambda = 1.0, p.solver.cg_max_iters = 60;
  const Inputs in = make_inputs(p);
  const auto cg = fast::forward(p, in);
  for (std::size_t t = 0; t < cg.saved.at("cg_converged").size(); ++t)
    ASSERT_EQ(cg.saved.at("cg_converged").data[t], 1.0)
        << "CG must converge for this bound; row " << t << ": " << cg.saved.at("cg_iters").data[t]
        << " iterations, relative residual " << cg.saved.at("cg_residual").data[t];
  Problem pd = p;
  pd.solver.method = SolverMethod::Direct;
  const auto di = fast::forward(pd, in);
  double kmax = 0, qmax = 0, vmax = 0, omax = 0, err = 0;
  auto rownorm_max = [&](const Tensor<double>& t) {
    double mx = 0;
    for (std::size_t o = 0; o < t.size(); o += p.D) {
      double ss = 0;
      for (int d = 0; d < p.D; ++d) ss += t.data[o + d] * t.data[o + d];
      mx = std::max(mx, std::sqrt(ss));
    }
    return mx;
  };
  kmax = rownorm_max(in.k), qmax = rownorm_max(in.q);
  for (double x : in.v.data) vmax = std::max(vmax, std::abs(x));
  for (std::size_t t = 0; t < di.out.size(); ++t)
    omax = std::max(omax, std::abs(di.out.data[t])), err = std::max(err, std::abs(cg.out.data[t] - di.out.data[t]));
  const double dtheta = std::sqrt(p.solver.cg_rtol) * (kmax + qmax) / p.solver.lambda;
  const double bound = dtheta * 2 * kmax * 2 * vmax + 1e-12 * omax;
  EXPECT_GT(omax, 0.0);
  EXPECT_LE(err, bound) << "CG vs direct, bound " << bound;
}

// Same problem -> bit-identical CG results with 1 and 2 threads (rows are independent solves).
TEST(FastLla, CgBitIdenticalAcrossThreadCounts) {
  for (const char* m : {"lla", "lla_cov"}) {
    Problem p = fixed_lla(m, SolverMethod::JacobiCG, 130, 130, 24, DType::F32);
    const Inputs in = make_inputs(p);
    const auto a = with_threads(1, [&] { return fast::forward(p, in); });
    const auto b = with_threads(2, [&] { return fast::forward(p, in); });
    EXPECT_TRUE(bit_identical(a, b)) << m;
    EXPECT_TRUE(bit_identical(a.saved.at("cg_iters"), b.saved.at("cg_iters"))) << m;
  }
}

// CG needs the full system (the block-diagonal variant is direct only): plx::Error, and a
// reason from supports(); the full-system CG is supported forward-only.
TEST(FastLla, CgBadInputIsRejected) {
  Problem p = fixed_lla("lla", SolverMethod::CG, 5, 6, 4, DType::F32);
  std::string why;
  EXPECT_TRUE(fast::supports(p, &why)) << why;
  EXPECT_FALSE(fast::supports_backward(p, &why));
  Problem q = p;
  q.solver.block = 2;
  EXPECT_FALSE(fast::supports(q, &why));
  EXPECT_NE(why.find("block"), std::string::npos) << why;
  EXPECT_THROW(fast::forward(q, make_inputs(p)), Error);
  q = p, q.solver.cg_max_iters = 0;
  EXPECT_FALSE(fast::supports(q, &why));
  EXPECT_THROW(fast::forward(q, make_inputs(p)), Error);
}
