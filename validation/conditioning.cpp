// validation/conditioning.cpp — the conditioning bound of validation/conditioning.hpp.
//
// Per row: weights, kbar, vbar, C, M = Cov_p(k, v) and the solves W^T = Bm^-1 M,
// theta = Bm^-1 delta in double-double (libqd, u = 2^-104; two-pass centred moments as in
// the reference, docs/math.md §7.4), then kappa = cond_2(Bm) from the eigenvalues and ||W||_2 from the
// singular values of the dd results rounded to double. Rounding Bm to double moves its
// eigenvalues by <= 2^-53 ||Bm||, i.e. kappa by a relative 2^-53 kappa (< 1e-3 for every row
// the rule accepts, kappa < 2^23); a bound needs one correct digit.
#include "validation/conditioning.hpp"

#include <Eigen/Dense>
#include <cmath>
#include <limits>
#include <sstream>

#include "reference/attention.hpp"

namespace plx {

std::optional<ConditioningLimit> lla_conditioning_limit(const Problem& p, const Inputs& in, DType X,
                                                        std::string* why_not, const Tensor<double>* rows,
                                                        bool sigma_kappa) {
  auto decline = [&](const std::string& w) -> std::optional<ConditioningLimit> {
    if (why_not) *why_not = w;
    return std::nullopt;
  };
  if (p.probe != Probe::Solver) return decline("the conditioning rule covers LLA solver probes only");
  if (p.block_size() != p.D)
    return decline("the conditioning rule needs the full solve (block-diagonal LLA has no covariance identity)");
  if (p.solver.method != SolverMethod::Direct)
    return decline("the conditioning rule needs a direct solve (the truth of a CG problem is the reference's "
                   "fixed-count iteration, not the solution of the system)");
  using T = dd;
  const int B = p.B, Hq = p.Hq, Lq = p.Lq, D = p.D, Dv = p.Dv, G = p.group();
  const double eps = X == DType::F64 ? 0x1p-53 : 0x1p-24;  // u_acc, as in the fixture's floor
  const bool query = p.anchor == Anchor::Query;
  const double deps = p.anchor_knobs.delta_eps;
  ConditioningLimit L;
  L.u_acc = eps;
  L.limit = Tensor<double>({std::size_t(B), std::size_t(Lq), std::size_t(Hq), std::size_t(Dv)}, 0.0);
  L.kappa = Tensor<double>({std::size_t(B), std::size_t(Hq), std::size_t(Lq)}, 0.0);
  const T tau = from_double<T>(p.tau());
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < Hq; ++h)
      for (int i = 0; i < Lq; ++i) {
        const RowRange R = row_range(p, b, i);
        if (R.empty()) continue;  // out = 0 exactly: the floor judges it
        if (rows && (*rows)(b, h, i) == 0) continue;  // not asked for: limit 0
        const int n = R.size(), g = h / G;
        Mat<T> K(n, D), V(n, Dv);
        Vec<T> q(D);
        for (int d = 0; d < D; ++d) q(d) = from_double<T>(in.q(b, i, h, d));
        for (int j = 0; j < n; ++j) {
          for (int d = 0; d < D; ++d) K(j, d) = from_double<T>(in.k(b, R.lo + j, g, d));
          for (int c = 0; c < Dv; ++c) V(j, c) = from_double<T>(in.v(b, R.lo + j, g, c));
        }
        Vec<T> s = tau * (K * q);
        const T m = s.maxCoeff();
        Vec<T> w(n);
        T omega = T(0);
        for (int j = 0; j < n; ++j) {
          using std::exp;
          w(j) = exp(T(s(j) - m));
          omega += w(j);
        }
        const Vec<T> pw = w / omega;
        const Vec<T> kbar = K.transpose() * pw, vbar = V.transpose() * pw;
        const Mat<T> Ek = K.rowwise() - kbar.transpose(), Ev = V.rowwise() - vbar.transpose();
        const Mat<T> PEk = Ek.array().colwise() * pw.array();
        Mat<T> Bm = PEk.transpose() * Ek;      // C (two-pass, centred)
        const Mat<T> M = PEk.transpose() * Ev;  // Cov_p(k, v), D x Dv
        Bm.diagonal().array() += from_double<T>(in.lambda(b, h, i));
        const Vec<T> delta = kbar - q;
        Eigen::LLT<Mat<T>> llt(Bm);
        // sigma_kappa: the query-centred system Sigma / omega = C + delta delta^T + lambda I
        const Eigen::MatrixXd Bd = sigma_kappa ? detail::to_double_mat(Mat<T>(Bm + delta * delta.transpose()))
                                               : detail::to_double_mat(Bm);
        const double kappa = detail::cond_spd(Bd);
        const std::string where = "row (b=" + std::to_string(b) + ", h=" + std::to_string(h) +
                                  ", i=" + std::to_string(i) + ")";
        if (llt.info() != Eigen::Success || !std::isfinite(kappa))
          return decline("C + lambda I is not positive definite at " + where);
        if (eps * kappa >= 0.5) {
          std::ostringstream o;
          o << "eps kappa = " << eps * kappa << " >= 1/2 at " << where << " (kappa(C + lambda I) = " << kappa
            << "): the first-order bound does not hold";
          return decline(o.str());
        }
        const Mat<T> Wt = llt.solve(M);  // W^T, D x Dv
        const Vec<T> theta = llt.solve(delta);
        const Vec<T> outc = vbar - Wt.transpose() * delta;
        Eigen::JacobiSVD<Eigen::MatrixXd> svd(detail::to_double_mat(Wt));
        const double nW = svd.singularValues().size() ? svd.singularValues()(0) : 0.0;
        auto nrm = [](const Vec<T>& x) { return to_double(T(x.norm())); };
        const double amp = 2 * eps * kappa / (1 - eps * kappa);
        double bound = amp * nW * nrm(delta) + 2 * eps * nW * (nrm(kbar) + nrm(q)) + eps * nrm(vbar);
        if (query) {  // delta_eps / Delta, Delta = omega / (1 + alpha) (docs/math.md §3.5)
          const double alpha = to_double(T(delta.dot(theta)));
          const double eod = deps * (1 + alpha) / to_double(omega);
          bound += eod * amp * nrm(outc);
        }
        for (int c = 0; c < Dv; ++c) L.limit(b, i, h, c) = bound;
        L.kappa(b, h, i) = kappa;
        L.max_kappa = std::max(L.max_kappa, kappa);
      }
  std::ostringstream o;
  o << "conditioning rule (no same-precision baseline): per row, |err| <= max(floor, 2 eps kappa/(1 - eps kappa) "
       "||W||_2 |kbar - q|_2 + 2 eps ||W||_2 (|kbar|_2 + |q|_2) + eps |vbar|_2 [+ (delta_eps/Delta) 2 eps kappa/(1 - "
       "eps kappa) |out_cov|_2]) with kappa = cond_2(C + lambda I), W = Cov(v,k)(C + lambda I)^-1 from the inputs in "
       "double-double, eps = u_acc = "
    << eps << "; max kappa " << L.max_kappa << " (validation/conditioning.hpp)";
  L.why = o.str();
  return L;
}

}  // namespace plx
