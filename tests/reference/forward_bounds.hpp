// tests/reference/forward_bounds.hpp — per-row error scales and the row-wise check
// shared by the reference forward's identity tests.
//
// Charter: turns a reference run (saved tensors + diagnostics) into a per-row magnitude
// `scale_i` that bounds every term the forward adds up (so rounding error <= c u scale_i),
// and a condition factor `kappa_i` for rows whose probe comes from a solve. The check
// compares candidate and truth outputs row by row through validation's compare_tensor.
// It computes no expected values: only sizes of terms, from the inputs.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <string>

#include "reference/all.hpp"
#include "validation/compare.hpp"

namespace plx::test {

// Magnitude of the terms in row i's output sums (docs/math.md §3.2, §4.1, §4.2):
//   scale_i = max(1, omega/|d|) * (1 + 2 zeta + 2 sigma) * max_j |v_j|,
//   zeta = |theta| (max_j |k_j| + |q|),   sigma = tau |q| max_j |k_j|,
// where theta is the row's probe (r, rho or theta), d its denominator (omega for key-mean
// anchors). zeta bounds |z_j|, |zbar|, |theta.e_j| and |z_j - zbar| / 2 by Cauchy-Schwarz,
// so every form's sum over keys has sum_j |term_j| <= scale_i. sigma bounds |s_j|: a logit
// computed with D-term dot products is off by <= D u sigma, which moves each weight
// relatively by <= 2 D u sigma and the output by <= D u (2 sigma max|v|) <= D u scale_i.
// So one evaluation's rounding error is <= (66 + D + 8) u scale_i: 66 u from the tiled
// Neumaier sums (reference/attention.hpp), D u from the dot products (z_j = theta.k_j and
// the logits), and a few u from O(1) scalar operations.
// kappa_i: cond(Sigma / omega) and cond(C + lambda I) (the larger) for solver probes, else 0;
// a solve perturbs theta by <= kappa (66 + D + 1) u |theta| (Cholesky backward error plus
// the tiled sums that form the matrix), which moves the output by <= kappa (67 + D) u scale_i.
struct RowBounds {
  Tensor<double> scale, kappa, n_keys;  // [B, Hq, Lq]
};

template <class T>
RowBounds row_bounds(const Problem& p, const Inputs& in, const Forward<T>& F) {
  RowBounds rb{Tensor<double>({std::size_t(p.B), std::size_t(p.Hq), std::size_t(p.Lq)}),
               Tensor<double>({std::size_t(p.B), std::size_t(p.Hq), std::size_t(p.Lq)}),
               Tensor<double>({std::size_t(p.B), std::size_t(p.Hq), std::size_t(p.Lq)})};
  const auto& probe = F.saved.at("probe");
  for (int b = 0; b < p.B; ++b)
    for (int h = 0; h < p.Hq; ++h)
      for (int i = 0; i < p.Lq; ++i) {
        const RowRange R = row_range(p, b, i);
        rb.n_keys(b, h, i) = R.size();
        if (R.empty()) continue;
        const int g = h / p.group();
        double th = 0, qn = 0, kmax = 0, vmax = 0;
        for (int d = 0; d < p.D; ++d) {
          th += std::pow(to_double(probe(b, i, h, d)), 2);
          qn += in.q(b, i, h, d) * in.q(b, i, h, d);
        }
        for (int j = R.lo; j < R.hi; ++j) {
          double kn = 0;
          for (int d = 0; d < p.D; ++d) kn += in.k(b, j, g, d) * in.k(b, j, g, d);
          kmax = std::max(kmax, std::sqrt(kn));
          for (int d = 0; d < p.Dv; ++d) vmax = std::max(vmax, std::abs(in.v(b, j, g, d)));
        }
        const double zeta = std::sqrt(th) * (kmax + std::sqrt(qn)), sigma = p.tau() * std::sqrt(qn) * kmax;
        const double omega = to_double(F.saved.at("omega")(b, h, i)), dd = to_double(F.saved.at("d")(b, h, i));
        const double gamma = std::max(1.0, dd != 0 ? omega / std::abs(dd) : 1.0);
        rb.scale(b, h, i) = gamma * (1 + 2 * zeta + 2 * sigma) * vmax;
        if (p.probe == Probe::Solver && !F.diag.empty())
          rb.kappa(b, h, i) = std::max(F.diag.at("cond_C")(b, h, i), F.diag.at("cond_Sigma")(b, h, i));
      }
  return rb;
}

// Rounding constant of one forward evaluation (see RowBounds): 66 + D + 8.
inline double c_round(const Problem& p) { return 66.0 + p.D + 8.0; }

inline bool verbose() { return std::getenv("PLX_VERBOSE") != nullptr; }

// Row-wise check: |cand - truth| <= limit_i on every entry of row (b, h, i), each row going
// through compare_tensor. A negative limit skips the row; a non-finite one is a failure. Returns "" on success, else the report of the worst row. The
// largest err / limit seen is written to *worst_ratio (printed with PLX_VERBOSE set).
template <class Limit>
std::string check_rows(const std::string& name, const Problem& p, const Tensor<double>& cand,
                       const Tensor<double>& truth, Limit limit, const std::string& why, double* worst_ratio = nullptr) {
  const std::size_t Dv = truth.shape[3];
  double ratio = 0;
  std::string fail;
  for (int b = 0; b < p.B; ++b)
    for (int h = 0; h < p.Hq; ++h)
      for (int i = 0; i < int(truth.shape[1]); ++i) {
        Tensor<double> c({Dv}), t({Dv});
        for (std::size_t d = 0; d < Dv; ++d) c.data[d] = cand(b, i, h, d), t.data[d] = truth(b, i, h, d);
        const double lim = limit(b, h, i);
        if (lim < 0) continue;  // the caller's way to leave a row unconstrained
        if (!std::isfinite(lim) && fail.empty()) {
          fail = name + ": non-finite limit at row (b=" + std::to_string(b) + ", h=" + std::to_string(h) +
                 ", i=" + std::to_string(i) + ")";
          continue;
        }
        auto rep = compare_tensor(name, c, t, DType::F64, Tolerance{0, lim, 0, why});
        if (rep.nonfinite == 0 && lim > 0) ratio = std::max(ratio, rep.max_abs / lim);
        if (!rep.passed && fail.empty()) {
          std::ostringstream o;
          o << name << ": row (b=" << b << ", h=" << h << ", i=" << i << ") of problem " << member_name(p)
            << " B=" << p.B << " Hq=" << p.Hq << " Hkv=" << p.Hkv << " Lq=" << p.Lq << " Lkv=" << p.Lkv
            << " D=" << p.D << " Dv=" << p.Dv << " causal=" << p.causal << " window=" << p.window
            << " seed=" << p.seed << " limit=" << lim << "\n"
            << format_report({rep});
          fail = o.str();
        }
      }
  if (worst_ratio) *worst_ratio = std::max(*worst_ratio, ratio);
  if (verbose()) std::printf("  [%s] max err/limit = %.3g\n", name.c_str(), ratio);
  return fail;
}

template <class T> Tensor<double> to_double_tensor(const Tensor<T>& t) {
  return convert<double>(t, [](const T& x) { return to_double(x); });
}

inline ForwardOptions saved_diag() {
  ForwardOptions o;
  o.saved = o.diagnostics = true;
  return o;
}

}  // namespace plx::test
