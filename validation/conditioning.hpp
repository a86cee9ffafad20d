// validation/conditioning.hpp — a limit for LLA's `out` derived from the conditioning of the
// ridge system, for fixtures whose same-precision baseline cannot run.
//
// Charter: when the reference cannot run in the candidate's accumulation precision (its
// float32 Cholesky of the query-centred Sigma fails, docs/math.md §7.3/§7.4), the 2x same-precision
// rule has nothing to compare with. This file gives the limit a candidate that forms the
// regression's data in precision u_acc and solves the ridge system stably can be held to,
// per output row, computed from the fixture's inputs in double-double:
//
//   out_i = g_i (vbar - W delta),  W = Cov_p(v, k) (C + lambda I)^-1,  delta = kbar - q,
//   g_i = Delta / d = 1 / (1 + delta_eps / Delta)   (query anchor; 1 for the key-mean anchor)
//
// (docs/math.md §3.5: the ridge regression of v on k centred at kbar, evaluated at q). If the data
// Bm = C + lambda I and M = Cov_p(k, v) carry a normwise relative error eps (one rounding each,
// eps = u_acc), the perturbation theorem for linear systems (Higham, Accuracy and Stability of
// Numerical Algorithms, 2nd ed., Thm 7.2, applied to W^T = Bm^-1 M with both Bm and M
// perturbed) gives ||dW||_2 <= 2 eps kappa / (1 - eps kappa) ||W||_2, kappa = cond_2(Bm), so
//
//   |d out_i|_2 <= 2 eps kappa/(1 - eps kappa) ||W||_2 |delta|_2      (slope error, extrapolated to q)
//                + 2 eps ||W||_2 (|kbar|_2 + |q|_2)                     (delta = kbar - q: two roundings)
//                + eps |vbar|_2                                         (the weighted mean itself)
//                + (delta_eps/Delta) 2 eps kappa/(1 - eps kappa) |out_cov|_2   (g_i: Delta's relative
//                   error is <= that of alpha = delta.theta, <= 2 eps kappa)
//
// and every entry of row i is within that bound. The candidate's final rounding to its dtype
// and its k-term sums are the fixture's floor, applied on top as max(floor, bound). The limit is
// first order (it needs eps kappa < 1; the rule declines rows with eps kappa >= 1/2) and uses
// eps = u_acc, not the worst-case gamma_{n+D} of forming C by n-term sums: that worst case is
// up to (n + D) = 41 times larger on lla_near_zero_delta_f32 and would let a 1e-4 error
// through. Measured there (docs/fixtures.md): fp32 implementations use at most 0.10 (the fast
// path), 0.14 (the reference's covariance form in float), 0.27 / 0.30 (numpy fp32 emulations)
// of the per-row limit, while a 1e-4 relative error in out exceeds it 8.8x; on the other 7 LLA
// fixtures it covers, the float covariance form uses 0.025-0.30
// (tests/validation/test_fast_golden.cpp). It is the bound of the stable (covariance)
// formulation: fp32 query-centred implementations, which solve Sigma/omega (cond up to 1.9e5
// here), exceed it and are judged by the 2x rule wherever their fp32 baseline runs.
// Applies to: solver probes (lla, lla_cov), full solve (block = D), direct method. Not to the
// block-diagonal variant (no covariance identity, Delta can vanish), CG (the truth is the
// reference's own fixed-count iteration, whose error is not a conditioning effect), or
// gradients (the rule covers `out` only).
#pragma once
#include <optional>
#include <string>

#include "reference/dtype.hpp"
#include "reference/inputs.hpp"
#include "reference/problem.hpp"
#include "reference/tensor.hpp"

namespace plx {

struct ConditioningLimit {
  Tensor<double> limit;      // [B,Lq,Hq,Dv]: the bound above for every entry of row (b, i, h)
  Tensor<double> kappa;      // [B,Hq,Lq]: cond_2(C + lambda I) (0 for empty rows)
  double u_acc = 0;          // eps of the derivation: 2^-24 (fp32/bf16/fp16 candidates) or 2^-53
  double max_kappa = 0;      // over the non-empty rows
  std::string why;           // the derivation in one line, for reports
};

// The bound for candidates of dtype X, or std::nullopt with *why_not when the rule does not
// apply (member, block, solver method, or eps kappa >= 1/2 on some row).
// `rows` (optional, [B, Hq, Lq]): compute only the rows where it is nonzero (the others get
// limit 0 and kappa 0 and never decline the rule); the CG rule asks only for converged rows.
// `sigma_kappa`: take kappa as cond_2 of the query-centred system Sigma / omega = C + delta
// delta^T + lambda I (>= cond(C + lambda I)), the system a query-centred implementation
// solves: the same first-order bound for the rounding of *that* system's data (the CG rule
// uses it for FlashLLA, whose float32 CGs solve Sigma).
std::optional<ConditioningLimit> lla_conditioning_limit(const Problem& p, const Inputs& in, DType X,
                                                        std::string* why_not = nullptr,
                                                        const Tensor<double>* rows = nullptr, bool sigma_kappa = false);

}  // namespace plx
