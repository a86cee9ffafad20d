// tests/validation/test_fast_golden.cpp — the fast CPU path against every committed golden
// fixture it supports, through the same path as `plx check --fixture F --run fast` (issue 5:
// the fast path is validated on the committed fixtures, not only on random problems).
//
// Each supported fixture must pass its recommended tolerance (the 2x same-precision-baseline
// rule with its derived floor, validation/check.hpp). Where the same-precision baseline cannot
// run in the candidate's precision (the fp32 reference's ridge solve is singular, docs/math.md §7.3:
// lla_near_zero_delta_f32), `out` is judged by the conditioning bound instead
// (validation/conditioning.hpp: per-row limits from cond(C + lambda I)); a report still on the
// float64 fallback baseline (no rule applies) counts as not judged. Not judged, and counted:
// fixtures the fast path does not support (candidate_supports says why). The counts are
// asserted against the manifest, so a fast path that starts refusing fixtures or a suite that
// loses its baselines fails here instead of passing with fewer checks.
// ConditioningRule.*: the conditioning bound on lla_near_zero_delta_f32 passes the real fast
// path and fails plausible bugs (a 1e-2 or 1e-4 relative error in out, lambda off by 2); on
// every committed LLA fixture it covers, an independent stable fp32 computation (the reference's
// covariance form in float) stays within it, so the bound is not tighter than fp32 allows.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "reference/all.hpp"
#include "validation/candidates.hpp"
#include "validation/check.hpp"
#include "validation/conditioning.hpp"
#include "validation/fixture.hpp"

using namespace plx;

TEST(FastOnGolden, EverySupportedFixturePasses) {
#ifndef PLX_HAVE_FAST
  GTEST_SKIP() << "plx_fast is not built (PLX_WITH_FAST=OFF)";
#else
  const char* src = std::getenv("PLX_SOURCE_DIR");
  ASSERT_NE(src, nullptr) << "PLX_SOURCE_DIR must point at the repository root";
  const std::filesystem::path golden = std::filesystem::path(src) / "fixtures" / "golden";
  std::ifstream mf(golden / "manifest.json");
  ASSERT_TRUE(mf) << "missing " << (golden / "manifest.json");
  const nlohmann::json manifest = nlohmann::json::parse(mf);

  int total = 0, judged = 0, unsupported = 0, no_baseline = 0, conditioning = 0;
  for (auto it = manifest["files"].begin(); it != manifest["files"].end(); ++it) {
    ++total;
    const std::string path = (golden / it.key()).string();
    const FixtureData fx = read_fixture(path);
    std::string why;
    if (!candidate_supports("fast", fx.p, &why)) {
      ++unsupported;
      std::cout << "not supported by fast: " << it.key() << " (" << why << ")\n";
      continue;
    }
    const CandidateResult r = run_candidate("fast", fx.p, fx.in);
    Candidate c = candidate_from_result("run:fast", r, fx.p, candidate_dtypes("fast", fx.p));
    for (auto t = c.tensors.begin(); t != c.tensors.end();)  // only tensors the fixture has truth for
      t = fx.truth.count(t->first) ? std::next(t) : c.tensors.erase(t);
    const CheckResult res = check_candidate(path, fx, c);
    bool fallback = false, by_conditioning = false;
    for (const auto& rep : res.reports) {
      fallback = fallback || rep.rule == kRuleFallback;
      by_conditioning = by_conditioning || rep.rule == kRuleConditioning;
    }
    if (fallback) {
      ++no_baseline;
      std::cout << "no same-precision baseline and no conditioning bound, not judged: " << it.key() << "\n"
                << res.format();
      continue;
    }
    ++judged;
    if (by_conditioning) {
      ++conditioning;
      std::cout << "judged by the conditioning rule: " << it.key() << "\n" << res.format();
    }
    EXPECT_TRUE(res.passed) << res.format();
  }
  std::cout << "fast on golden: " << judged << " judged (" << conditioning << " by the conditioning rule), "
            << unsupported << " not supported, " << no_baseline << " not judged (no rule), of " << total << "\n";
  EXPECT_EQ(judged + unsupported + no_baseline, total);
  // The committed suite (30 Nov 2026): 35 fixtures; 3 not supported (two float16 problems, a
  // block-diagonal LLA); 32 judged, one of them (lla_near_zero_delta_f32) by the conditioning
  // rule because its fp32 baseline cannot run. Fewer judged, or any fixture left without a
  // rule, means the fast path, the checker or the suite lost coverage. (parallax_z_cancel_f32,
  // added 30 Nov, failed here with the fast backward of before: dr 6.4x its baseline.)
  EXPECT_GE(judged, 32);
  EXPECT_EQ(no_baseline, 0);
  EXPECT_GE(conditioning, 1);
#endif
}

namespace {
#ifdef PLX_HAVE_FAST
struct NearZeroDelta {
  std::string path;
  FixtureData fx;
  NearZeroDelta() {
    const char* src = std::getenv("PLX_SOURCE_DIR");
    if (!src) throw Error("PLX_SOURCE_DIR must point at the repository root");
    path = (std::filesystem::path(src) / "fixtures" / "golden" / "lla_near_zero_delta_f32.h5").string();
    fx = read_fixture(path);
  }
  CheckResult check(const CandidateResult& r) const {
    const Candidate c = candidate_from_result("run:fast", r, fx.p, candidate_dtypes("fast", fx.p));
    return check_candidate(path, fx, c);
  }
};
const NearZeroDelta& nzd() {
  static const NearZeroDelta s;
  return s;
}
const TensorReport& out_report(const CheckResult& r) {
  for (const auto& rep : r.reports)
    if (rep.name == "out") return rep;
  throw Error("no report for out");
}
#endif
}  // namespace

// The real fast path passes the conditioning bound, and the report says which rule judged it.
TEST(ConditioningRule, FastPathPassesOnNearZeroDelta) {
#ifndef PLX_HAVE_FAST
  GTEST_SKIP() << "plx_fast is not built (PLX_WITH_FAST=OFF)";
#else
  const NearZeroDelta& s = nzd();
  const CheckResult res = s.check(run_candidate("fast", s.fx.p, s.fx.in));
  const TensorReport& o = out_report(res);
  std::cout << res.format();
  EXPECT_TRUE(res.passed) << res.format();
  EXPECT_EQ(o.rule, kRuleConditioning);
  EXPECT_TRUE(o.per_element_limit);
  bool noted = false;
  for (const auto& n : res.notes) noted = noted || n.find("judged by the conditioning rule") != std::string::npos;
  EXPECT_TRUE(noted) << res.format();
  // Measured 2026-11-29: the fast path's worst row uses 0.19 of its limit (3.8e-4 vs 2.0e-3 at
  // row i=4, kappa = 1.4e3). The limit is not tuned to it; the assertion that matters is PASS.
  EXPECT_LT(o.worst_limit_ratio, 1.0);
#endif
}

// Plausible bugs fail it: a relative error of 1e-2 or 1e-4 in every entry of out (measured
// 2026-11-29: worst error/limit 876 and 8.8, on 489 and 88 of 528 entries; the limits are the
// floor 1.0e-4 on well-conditioned rows and up to 1.8e-2 per row), and the ridge off by a
// factor 2 (docs/math.md §3.1: the code's lambda is 2 lambda_paper / omega, so mixing the conventions
// gives 2x or omega x) or by 1/2 (~9e3), run through the real fast path so the wrong lambda
// propagates exactly as a backend's would. The fast path itself uses 0.10 of the limit.
TEST(ConditioningRule, PlausibleBugsFailOnNearZeroDelta) {
#ifndef PLX_HAVE_FAST
  GTEST_SKIP() << "plx_fast is not built (PLX_WITH_FAST=OFF)";
#else
  const NearZeroDelta& s = nzd();
  const CandidateResult good = run_candidate("fast", s.fx.p, s.fx.in);
  for (double rel : {1e-2, 1e-4}) {
    CandidateResult bad = good;
    for (auto& x : bad.out.data) x = double(float(x * (1 + rel)));
    const CheckResult res = s.check(bad);
    std::cout << "out x (1 + " << rel << "): worst error/limit " << out_report(res).worst_limit_ratio << "\n";
    EXPECT_FALSE(res.passed) << "relative perturbation " << rel << "\n" << res.format();
    EXPECT_EQ(out_report(res).rule, kRuleConditioning);
  }
  for (double f : {2.0, 0.5}) {
    Inputs in = s.fx.in;
    for (auto& l : in.lambda.data) l *= f;
    const CheckResult res = s.check(run_candidate("fast", s.fx.p, in));
    std::cout << "lambda x " << f << ": worst error/limit " << out_report(res).worst_limit_ratio << "\n";
    EXPECT_FALSE(res.passed) << "lambda x " << f << "\n" << res.format();
    EXPECT_EQ(out_report(res).rule, kRuleConditioning);
  }
#endif
}

// The bound is what a stable fp32 computation achieves, not a limit fitted to the fast path:
// the reference's own covariance form (docs/math.md §3.5, key-mean anchor, centred; Cholesky of
// C + lambda I) run in float, rounded to the fixture's dtype, passes it on every committed
// LLA fixture the rule covers, including lla_near_zero_delta_f32 where the query-centred fp32
// reference cannot run. For the query anchor the truth carries the factor Delta/d = 1/(1 +
// delta_eps/Delta) that the covariance form omits: delta_eps/Delta <= 1.9e-7 on these
// fixtures (diag eps_over_delta), i.e. <= 1.9e-7 |out|, below the floor (3e-6 max|out|).
// Measured 2026-11-29, worst error/limit: 0.025 (lla_decode_f32) to 0.30 (lla_per_row_lambda_bf16,
// where the bf16 output rounding floor decides); lla_near_zero_delta_f32: error 4.7e-4, 0.14.
// Not covered: query-centred fp32 implementations, which solve the worse system Sigma/omega
// (docs/math.md §7.4) and exceed this bound (the fp32 reference in that form: 1.5x on lla_direct_f32,
// 9.3x on lla_anisotropic_f32); where their fp32 baseline runs, the 2x rule judges them.
TEST(ConditioningRule, StableFp32CovarianceFormIsWithinTheBoundOnEveryLlaFixture) {
  const char* src = std::getenv("PLX_SOURCE_DIR");
  ASSERT_NE(src, nullptr) << "PLX_SOURCE_DIR must point at the repository root";
  const std::filesystem::path golden = std::filesystem::path(src) / "fixtures" / "golden";
  std::ifstream mf(golden / "manifest.json");
  ASSERT_TRUE(mf);
  const nlohmann::json manifest = nlohmann::json::parse(mf);
  int covered = 0;
  for (auto it = manifest["files"].begin(); it != manifest["files"].end(); ++it) {
    const FixtureData fx = read_fixture((golden / it.key()).string());
    const DType X = fx.p.dtype;
    if (fx.p.probe != Probe::Solver || X == DType::F64) continue;
    std::string why;
    const auto L = lla_conditioning_limit(fx.p, fx.in, X, &why);
    if (!L) {
      std::cout << it.key() << ": not covered (" << why << ")\n";
      continue;
    }
    ++covered;
    Problem pc = fx.p;
    pc.anchor = Anchor::KeyMean, pc.form = Formulation::Centred;  // the stable formulation
    Tensor<double> out = convert<double>(attention_forward<float>(pc, fx.in).out, [](float x) { return double(x); });
    for (auto& x : out.data) x = round_to(X, x);
    const Tolerance tol = tolerance_from_json(fx.tolerances["out"][to_string(X)]);
    const TensorReport r = compare_tensor("out", out, fx.truth.at("out").hi, X, tol, nullptr, &L->limit);
    std::cout << it.key() << ": max kappa(C + lambda I) " << L->max_kappa << ", fp32 covariance form error "
              << r.max_abs << ", worst error/limit " << r.worst_limit_ratio << "\n";
    EXPECT_TRUE(r.passed) << it.key() << "\n" << format_report({r});
  }
  // lla_direct, lla_anisotropic, lla_near_zero_delta, lla_per_row_lambda_bf16, lla_decode,
  // lla_cross_window, lla_cov, lla_cov_anisotropic (the block-diagonal and CG fixtures are not covered).
  EXPECT_EQ(covered, 8);
}
