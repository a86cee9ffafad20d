// validation/cg_rule.cpp — the CG rule (see the header for the derivation).
#include "validation/cg_rule.hpp"

#include <cmath>
#include <limits>

#include "reference/all.hpp"
#include "validation/conditioning.hpp"
#include "validation/emulate.hpp"
#include "validation/fixture.hpp"
#include "validation/symmetry.hpp"

namespace plx {

bool cg_rule_applies(const Problem& p) {
  return p.probe == Probe::Solver && p.solver.method != SolverMethod::Direct;
}

namespace {
// Entries per row: the trailing (feature) axis, except dlambda ([B, Hq, Lq], one per row).
std::size_t row_length(const std::string& name, const Tensor<double>& t) {
  if (name == "dlambda" || t.shape.empty()) return 1;
  return t.shape.back();
}
}  // namespace

CgRule cg_rule(const Problem& p, const Inputs& in, DType X, bool gradients, const std::string& profile, int variants) {
  if (!cg_rule_applies(p)) throw Error("the CG rule applies to solver probes solved by cg or jacobi_cg");
  if (variants < 1) throw Error("the CG rule needs at least one baseline run (variants >= 1)");
  CgRule rule;
  Problem direct = p;
  direct.solver.method = SolverMethod::Direct;
  const auto truth = reference_truth_dd(direct, in, gradients);

  // Per tensor, per entry: the largest |baseline_v - direct| over the variants.
  std::map<std::string, Tensor<double>> dist;
  std::string note;
  // Each ordering runs twice: with the problem's stopping test and with it 100x looser (squared
  // norms: 10x in the residual, about one CG step here). A correct float CG's computed residual
  // differs from the exact iteration's by rounding, so near the threshold its test may fire a
  // step earlier; without that allowance two correct float32 CGs sat at up to 1.4x of each
  // other's limit on converged rows (tests/validation/test_cg_rule.cpp).
  Problem loose = p;
  loose.solver.cg_rtol = p.solver.cg_rtol * kCgRuleLooseRtol;
  for (int run = 0; run < 2 * variants; ++run) {
    const int v = run / 2;
    const Problem& pr = run % 2 ? loose : p;
    const FeaturePerm f = feature_permutation(p, unsigned(v));
    bool fell_back = false;
    std::string vnote;
    std::map<std::string, Tensor<double>> b;
    try {
      b = unpermute_outputs(profile_baseline(pr, permute_inputs(in, f), X, gradients, profile, &vnote, &fell_back), f);
    } catch (const NumericalError&) {
      continue;  // this ordering's CG broke down (e.g. Delta = 0): no sample
    }
    if (fell_back) continue;  // a float64 run rounded to X is not a same-precision sample
    if (note.empty()) note = vnote;
    rule.variants_used += run % 2 == 0;
    for (const auto& [n, t] : b) {
      if (!truth.count(n) || t.shape != truth.at(n).shape) continue;
      auto& d = dist[n];
      if (d.empty()) d = Tensor<double>(t.shape, 0.0);
      const auto& x = truth.at(n);
      for (std::size_t i = 0; i < t.size(); ++i) {
        const double e = std::fabs(t.data[i] - x.data[i]);
        d.data[i] = std::max(d.data[i], std::isfinite(e) ? e : std::numeric_limits<double>::infinity());
      }
    }
  }
  if (rule.variants_used == 0)
    throw Error("the CG rule has no baseline: the " + to_string(X) + " CG broke down on every one of " +
                std::to_string(variants) + " feature orderings");
  rule.baseline_note = note;

  // Which query rows the stopping test ends (the float64 run of the same CG, diagnostics on):
  // a row is judged when it stops at k <= K - margin, the margin leaving room for the delay of a
  // float32 iteration; rows the cap stops are not judged (see the header).
  const int K = p.solver.cg_max_iters;
  const int margin = std::max(2, K / 8);
  ForwardOptions fo;
  fo.diagnostics = true;
  Tensor<double> iters;
  try {
    iters = attention_forward<double>(p, in, fo).diag.at("cg_iters");  // [B, Hq, Lq]
  } catch (const NumericalError& e) {
    throw Error(std::string("the CG rule needs the float64 run's iteration counts, which failed: ") + e.what());
  }
  std::size_t capped = 0;
  for (double k : iters.data) capped += k > K - margin;
  rule.rows_at_cap = capped;
  auto row_converged = [&](const std::string& n, std::size_t row) {
    const std::size_t Hq = p.Hq, Lq = p.Lq;
    std::size_t b, h, i;
    if (n == "dlambda") b = row / (Hq * Lq), h = row / Lq % Hq, i = row % Lq;  // [B, Hq, Lq]
    else b = row / (Lq * Hq), i = row / Hq % Lq, h = row % Hq;                 // [B, Lq, Hq, .]
    return iters(b, h, i) <= K - margin;
  };

  // The rounding part of a converged row's error: the conditioning bound of the direct solve
  // (validation/conditioning.hpp) for candidates that form the regression's data in X's
  // accumulation precision. Two correct float32 CGs differ there by ordinary rounding, which a
  // maximum over a few baseline runs samples too thinly to be a limit with margin (measured:
  // 1.09-1.38x on float32 covariance-form cases with the baseline term alone).
  std::string cond_why;
  Tensor<double> judged_rows(iters.shape, 0.0);
  for (std::size_t t = 0; t < iters.size(); ++t) judged_rows.data[t] = iters.data[t] <= K - margin;
  const bool query_centred = p.anchor == Anchor::Query && p.form == Formulation::Accumulator;
  const auto cond = lla_conditioning_limit(direct, in, X, &cond_why, &judged_rows, query_centred);
  rule.conditioning = cond.has_value();
  for (const auto& [n, x] : truth) {
    if (!dist.count(n)) continue;
    const Tensor<double>& d = dist.at(n);
    const bool per_query_row = n == "out" || n == "dq" || n == "dr" || n == "dlambda";
    CgRuleTensor ct;
    ct.direct = x;
    ct.limit = Tensor<double>(x.shape, 0.0);
    if (n != "out") {  // a gradient: the adjoint solve's own stopping steps are unknown here
      ct.limit = Tensor<double>(x.shape, std::numeric_limits<double>::infinity());
      ct.rows = x.size() / row_length(n, x);
      ct.not_judged_why = kCgRuleGradientsWhy;
      rule.tensors[n] = std::move(ct);
      continue;
    }
    const std::size_t len = row_length(n, x);
    for (std::size_t r0 = 0; r0 < x.size(); r0 += len) {
      double worst = 0, mag = 0;
      for (std::size_t e = r0; e < r0 + len; ++e) worst = std::max(worst, d.data[e]), mag = std::max(mag, std::fabs(x.data[e]));
      double lim = 2.0 * worst;
      if (cond && n == "out") lim += cond->limit.data[r0];  // the bound is the same for every entry of a row
      ++ct.rows;
      const bool converged = per_query_row ? row_converged(n, r0 / len) : capped == 0;
      if (!converged) {
        lim = std::numeric_limits<double>::infinity();
        ++ct.rows_at_cap;
      } else if (mag > 0 && lim > kCgRuleNotJudgedFraction * mag) {
        lim = std::numeric_limits<double>::infinity();
        ++ct.rows_far;
      }
      for (std::size_t e = r0; e < r0 + len; ++e) ct.limit.data[e] = lim;
    }
    rule.tensors[n] = std::move(ct);
  }
  rule.why = "CG rule (docs/cg.md): judged against the converged (direct-solve) truth in double-double; per row, "
             "2x the largest distance to it of the " + to_string(X) + " CG baseline over " +
             std::to_string(rule.variants_used) + " feature orderings, each also with a 100x looser stopping test (its truncation error is common to every "
             "correct CG)" + std::string(rule.conditioning ? ", plus the direct solve's conditioning bound (rounding)" : "") + "; rows the iteration cap stops (k > K - max(2, K/8) in float64) and rows whose limit exceeds 1/4 of the row are "
             "not judged";
  return rule;
}

}  // namespace plx
