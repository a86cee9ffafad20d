// validation/cg_rule.hpp — how `plx check` judges a candidate for an LLA problem solved by
// conjugate gradients (solver.method = cg | jacobi_cg).
//
// Charter: a truncated CG iterate amplifies rounding by 1e8-1e14 (docs/cg.md §2): in float32
// every correct implementation lands about |x_k - x*| away from the exact k-step iterate the
// fixture stores, so the 2x same-precision rule against that iterate compares two samples of
// the same spread (a coin toss). What correct implementations share is the *converged*
// solution x* (the direct ridge solve), which is continuous in the inputs and determined by the
// reference to ~u_dd cond(Sigma). The rule judges each tensor against the direct-solve truth
// and allows, per row, twice the distance a same-precision CG baseline lands from it:
//
//   limit_r = 2 max_v max_{e in row r} |baseline_v(e) - direct(e)|      (v: symmetric variants)
//
// where the baseline is the reference's CG in the candidate's accumulation precision (or the
// chosen emulation profile), run on `variants` orderings of the feature axes (exact symmetries:
// only rounding differs), each with the problem's stopping test and with one 100x looser in
// squared norm (a float CG's test may fire a step earlier than the exact iteration's: its
// computed residual carries rounding; about one step of slack here). The truncation error |x_k - x*| is common to every correct CG with
// the problem's knobs and dominates that distance, so the ratio of two correct implementations
// stays near 1 on rows the stopping test ends (measured in docs/cg.md §5); an implementation that
// stops early, uses a smaller ridge or a looser stopping test lands farther from x* and fails.
//
// Rows not judged, with the count and reason in the report:
//  * rows the iteration cap ends: a query row whose float64 CG runs past K - max(2, K/8) steps
//    (the margin covers the few steps a float32 iteration lags behind). There the iterate is the
//    truncated one, and correct float32 implementations land at distances from x* that differ by
//    up to 3-8x (each is exact CG delayed by a rounding-dependent number of steps; docs/cg.md §5):
//    no limit both passes them and catches a mistake. dk and dv sum over query rows: they are
//    judged only when no row is capped.
//  * rows whose limit exceeds a quarter of the row's own largest |direct| entry (the iteration is
//    too far from converged for the baseline to say anything).
//  * every gradient (dq, dk, dv, dlambda): the backward of a CG problem solves a second, adjoint
//    system by CG whose stopping step differs from the forward's; a float32 baseline's dq sits
//    at 1.2-2.1x of the limit above on rows whose forward converged (tests/validation/
//    test_cg_rule.cpp). The gradients are measured against the direct-solve gradients and
//    reported without a verdict.
// Rows are the trailing feature axis of out.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "reference/dtype.hpp"
#include "reference/inputs.hpp"
#include "reference/problem.hpp"
#include "reference/tensor.hpp"

namespace plx {

// Does the CG rule apply to p (a solver probe solved by CG or Jacobi-CG)?
bool cg_rule_applies(const Problem& p);

inline constexpr const char* kCgRuleGradientsWhy =
    "gradients of a CG-solved problem are not judged: the backward's adjoint CG stops at its own step, which the "
    "forward's iteration counts do not tell (docs/cg.md §5); the error against the direct-solve gradients is shown";

// The baseline also runs with cg_rtol x this (one CG step of slack in the stopping test).
inline constexpr double kCgRuleLooseRtol = 100.0;

// The fraction of a row's largest |direct| entry above which a row's limit makes it "not judged".
inline constexpr double kCgRuleNotJudgedFraction = 0.25;

struct CgRuleTensor {
  Tensor<double> direct;  // the converged (direct-solve) truth, double-double rounded to double
  Tensor<double> limit;   // per-entry limit (the row's); +inf in rows not judged
  std::size_t rows = 0;
  std::size_t rows_at_cap = 0;  // not judged: the iteration cap, not the stopping test, ends them
  std::size_t rows_far = 0;     // not judged: limit > kCgRuleNotJudgedFraction x the row's largest |direct|
  std::size_t rows_not_judged() const { return rows_at_cap + rows_far; }
  std::string not_judged_why;   // non-empty: the whole tensor is not judged, for this reason
};

struct CgRule {
  std::map<std::string, CgRuleTensor> tensors;  // out (+ gradients when asked)
  int variants_used = 0;                        // baseline runs that succeeded
  std::size_t rows_at_cap = 0;                  // query rows (b, h, i) the cap stops, of B Hq Lq
  bool conditioning = false;                    // the conditioning bound's term is in out's limits
  std::string baseline_note;                    // what the baseline is
  std::string why;                              // the rule in one line, for reports
};

// The limits for candidates of dtype X. `profile` is an emulation profile name ("" = the
// reference in X's accumulation precision), `variants` >= 1 the number of feature orderings.
// Throws plx::Error when no baseline run succeeds (every ordering's CG broke down).
CgRule cg_rule(const Problem& p, const Inputs& in, DType X, bool gradients, const std::string& profile, int variants);

}  // namespace plx
