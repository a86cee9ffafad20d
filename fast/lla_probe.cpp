// fast/lla_probe.cpp — LLA's solver probe per row, in the stable covariance form (docs/math.md §3.5).
//
// Charter: for every query row, theta = (C + lambda I)^-1 (kbar - q) with the weighted key
// mean kbar and the centred covariance C (two passes over the row's keys, never raw Sigma~,
// docs/math.md §7.4), Cholesky; this small per-row D x D solve runs in fp64 whatever A is (its error
// is amplified by cond(C + lambda I)), theta is then rounded to A. Also Delta/omega and omega.
// LLA's output is then the Parallax tile kernel with r = theta (docs/math.md §4.3 key identity).
// Cost O(|A_i| D^2) per row: correct for every shape, fast only for short rows / small D
// (this is the part of the fast path that is not optimised). No block variant.
// CG (solver.method = cg / jacobi_cg, docs/math.md §3.7): the reference's fixed-count iteration of
// reference/solvers.hpp on the reference's system — Sigma rho = mu (query anchor, unnormalised
// pivoted weights, ridge lambda omega) or (C + lambda I) theta = kbar - q (key-mean anchor) —
// matrix-free: one fused pass per matvec over the row's centred keys e_j (k_j - q or k_j - kbar,
// built once per row, never raw Sigma~), out += w_j (e_j . x) e_j. fp64 like the direct solve.
// The query anchor's rho becomes the kernel probe theta = rho / (Delta/omega),
// Delta/omega = 1 - rho.(kbar - q), exact for any rho (docs/math.md §3.2 / §10 identity).
#include <cmath>
#include <vector>

#include "fast/lla_probe.hpp"
#include "reference/dtype.hpp"

namespace plx::fast {

namespace {
template <class S> double as_double(S x) { return double(x); }
template <> double as_double<std::uint16_t>(std::uint16_t x) { return bf16_to_float(x); }


// docs/math.md §3.7 CG on M x = y, M x = sum_j wt_j (e_j . x) e_j + shift x (E row-major n x D),
// transcribed from reference/solvers.hpp solve_cg (same 1e-10, same squared-norm test).
void cg_solve(const std::vector<double>& E, const std::vector<double>& wt, int n, int D, double shift,
              const std::vector<double>& y, const SolverKnobs& s, std::vector<double>& x, LlaSolveReport& rep) {
  std::vector<double> res(y), z(D), pdir(D), Sp(D), diag(D, 1.0);
  const bool jacobi = s.method == SolverMethod::JacobiCG;
  auto matvec = [&](const std::vector<double>& v, std::vector<double>& out) {
    for (int d = 0; d < D; ++d) out[d] = shift * v[d];
    for (int j = 0; j < n; ++j) {
      const double* e = E.data() + std::size_t(j) * D;
      double t = 0;
      for (int d = 0; d < D; ++d) t += e[d] * v[d];
      t *= wt[j];
      for (int d = 0; d < D; ++d) out[d] += t * e[d];
    }
  };
  if (jacobi) {  // diag = sum_j wt_j e_j o e_j + shift
    for (int d = 0; d < D; ++d) diag[d] = shift;
    for (int j = 0; j < n; ++j)
      for (int d = 0; d < D; ++d) diag[d] += wt[j] * E[std::size_t(j) * D + d] * E[std::size_t(j) * D + d];
  }
  auto dot = [&](const std::vector<double>& a, const std::vector<double>& b) {
    double t = 0;
    for (int d = 0; d < D; ++d) t += a[d] * b[d];
    return t;
  };
  x.assign(D, 0.0);
  for (int d = 0; d < D; ++d) z[d] = res[d] / diag[d];
  pdir = z;
  const double nrm0 = dot(res, z);
  bool active = nrm0 != 0.0;
  const double thresh = std::max(nrm0, s.cg_atol) * s.cg_rtol;
  rep = {};
  rep.converged = !active;
  for (int it = 0; it < s.cg_max_iters; ++it) {
    if (active) ++rep.iterations;
    matvec(pdir, Sp);
    const double nrm = dot(res, z);
    const double a = active ? nrm / (dot(pdir, Sp) + 1e-10) : 0.0;
    for (int d = 0; d < D; ++d) x[d] += a * pdir[d], res[d] -= a * Sp[d];
    for (int d = 0; d < D; ++d) z[d] = res[d] / diag[d];
    const double nrm1 = dot(res, z);
    const bool stop = nrm1 <= thresh || !std::isfinite(nrm1);
    if (active && stop) rep.converged = std::isfinite(nrm1);
    active = active && !stop;
    const double bt = active ? nrm1 / nrm : 0.0;
    for (int d = 0; d < D; ++d) pdir[d] = z[d] + bt * pdir[d];
  }
  matvec(x, Sp);  // true residual
  double rr = 0, ny = 0;
  for (int d = 0; d < D; ++d) rr += (Sp[d] - y[d]) * (Sp[d] - y[d]), ny += y[d] * y[d];
  rep.rel_residual = ny > 0 ? std::sqrt(rr / ny) : 0.0;
}
}  // namespace

template <class S, class A>
void lla_probe(const Problem& p, const S* q, const S* k, const double* lambda, A* theta_out, A* dom_out,
               A* omega_out, LlaSolveReport* rep) {
  using W = double;  // working precision of the solve
  const int B = p.B, Hq = p.Hq, Hkv = p.Hkv, Lq = p.Lq, Lkv = p.Lkv, D = p.D, G = p.group();
  const W tau = W(p.tau());
  const long nrow = long(B) * Hq * Lq;
  std::vector<std::string> errs(nrow);
#pragma omp parallel
  {
    std::vector<W> thw(D), s, kbar(D), C(std::size_t(D) * D), ec(D), y(D), qv(D), E, wt;
#pragma omp for schedule(dynamic, 4)
    for (long t = 0; t < nrow; ++t) {
      const int i = int(t % Lq), h = int((t / Lq) % Hq), b = int(t / (long(Lq) * Hq));
      const std::size_t qo = ((std::size_t(b) * Lq + i) * Hq + h) * D;  // [B,Lq,Hq,D]
      std::vector<W>& th = thw;
      const std::size_t ro = (std::size_t(b) * Hq + h) * Lq + i;        // [B,Hq,Lq]
      
      dom_out[ro] = A(0), omega_out[ro] = A(0);
      std::fill(theta_out + qo, theta_out + qo + D, A(0));
      const RowRange R = row_range(p, b, i);
      if (R.empty()) continue;
      const int n = R.size();
      auto krow = [&](int j) { return k + ((std::size_t(b) * Lkv + j) * Hkv + h / G) * D; };
      for (int d = 0; d < D; ++d) qv[d] = W(as_double(q[qo + d]));
      s.resize(n);
      W m = -std::numeric_limits<W>::infinity();
      for (int jj = 0; jj < n; ++jj) {
        const S* kr = krow(R.lo + jj);
        W acc = 0;
        for (int d = 0; d < D; ++d) acc += qv[d] * W(as_double(kr[d]));
        s[jj] = tau * acc;
        m = std::max(m, s[jj]);
      }
      W om = 0;
      for (int jj = 0; jj < n; ++jj) s[jj] = std::exp(s[jj] - m), om += s[jj];
      if (p.solver.method != SolverMethod::Direct) {
        const bool qa = p.anchor == Anchor::Query;
        const W lam = W(lambda[ro]);
        std::fill(kbar.begin(), kbar.end(), W(0));
        for (int jj = 0; jj < n; ++jj) {
          const S* kr = krow(R.lo + jj);
          for (int d = 0; d < D; ++d) kbar[d] += (s[jj] / om) * W(as_double(kr[d]));
        }
        // Query: e_j = k_j - q, weights w_j, y = mu = sum w_j e_j; key mean: e_j = k_j - kbar, p_j, y = kbar - q.
        E.resize(std::size_t(n) * D), wt.resize(n);
        std::fill(y.begin(), y.end(), W(0));
        for (int jj = 0; jj < n; ++jj) {
          const S* kr = krow(R.lo + jj);
          W* e = E.data() + std::size_t(jj) * D;
          wt[jj] = qa ? s[jj] : s[jj] / om;
          for (int d = 0; d < D; ++d) e[d] = W(as_double(kr[d])) - (qa ? qv[d] : kbar[d]);
          if (qa)
            for (int d = 0; d < D; ++d) y[d] += s[jj] * e[d];
        }
        if (!qa)
          for (int d = 0; d < D; ++d) y[d] = kbar[d] - qv[d];
        LlaSolveReport rr;
        cg_solve(E, wt, n, D, qa ? lam * om : lam, y, p.solver, thw, rr);
        if (rep) rep[ro] = rr;
        // Delta/omega = 1 - x.(kbar - q) (query: x = rho); key mean: 1/(1 + alpha), alpha = delta.theta.
        W xd = 0;
        for (int d = 0; d < D; ++d) xd += th[d] * (kbar[d] - qv[d]);
        const W dm = qa ? W(1) - xd : W(1) / (W(1) + xd);
        bool fin = std::isfinite(dm) && dm != W(0);
        for (int d = 0; d < D; ++d) fin = fin && std::isfinite(qa ? th[d] / dm : th[d]);
        if (!fin) {
          errs[t] = "fast LLA: the CG solve gave a non-finite probe or Delta = 0 at row (b=" + std::to_string(b) +
                    ", h=" + std::to_string(h) + ", i=" + std::to_string(i) + "), lambda=" + std::to_string(double(lam)) +
                    " (" + std::to_string(rr.iterations) + " iterations, relative residual " +
                    std::to_string(rr.rel_residual) + ")";
          continue;
        }
        for (int d = 0; d < D; ++d) theta_out[qo + d] = A(qa ? th[d] / dm : th[d]);
        dom_out[ro] = A(dm), omega_out[ro] = A(om);
        continue;
      }
      std::fill(kbar.begin(), kbar.end(), W(0));
      for (int jj = 0; jj < n; ++jj) {
        const S* kr = krow(R.lo + jj);
        const W pj = s[jj] / om;
        for (int d = 0; d < D; ++d) kbar[d] += pj * W(as_double(kr[d]));
      }
      std::fill(C.begin(), C.end(), W(0));
      for (int jj = 0; jj < n; ++jj) {  // lower triangle of C = sum p (k - kbar)(k - kbar)^T
        const S* kr = krow(R.lo + jj);
        const W pj = s[jj] / om;
        for (int d = 0; d < D; ++d) ec[d] = W(as_double(kr[d])) - kbar[d];
        for (int r = 0; r < D; ++r) {
          const W f = pj * ec[r];
          W* Cr = C.data() + std::size_t(r) * D;
          for (int c = 0; c <= r; ++c) Cr[c] += f * ec[c];
        }
      }
      const W lam = W(lambda[ro]);
      for (int d = 0; d < D; ++d) C[std::size_t(d) * D + d] += lam;
      // Cholesky C = L L^T in place (lower), then solve L L^T theta = kbar - q.
      bool ok = true;
      for (int c = 0; c < D && ok; ++c) {
        W dg = C[std::size_t(c) * D + c];
        for (int e = 0; e < c; ++e) dg -= C[std::size_t(c) * D + e] * C[std::size_t(c) * D + e];
        if (!(dg > W(0))) { ok = false; break; }
        const W l = std::sqrt(dg);
        C[std::size_t(c) * D + c] = l;
        for (int r = c + 1; r < D; ++r) {
          W v = C[std::size_t(r) * D + c];
          for (int e = 0; e < c; ++e) v -= C[std::size_t(r) * D + e] * C[std::size_t(c) * D + e];
          C[std::size_t(r) * D + c] = v / l;
        }
      }
      if (!ok) {
        errs[t] = "fast LLA: C + lambda I is not positive definite in the working precision at row (b=" +
                  std::to_string(b) + ", h=" + std::to_string(h) + ", i=" + std::to_string(i) +
                  "), lambda=" + std::to_string(double(lam));
        continue;
      }
      for (int d = 0; d < D; ++d) y[d] = kbar[d] - qv[d];
      const std::vector<W> delta = y;
      for (int r = 0; r < D; ++r) {  // forward substitution
        W v = y[r];
        for (int e = 0; e < r; ++e) v -= C[std::size_t(r) * D + e] * y[e];
        y[r] = v / C[std::size_t(r) * D + r];
      }
      for (int r = D - 1; r >= 0; --r) {  // back substitution with L^T
        W v = y[r];
        for (int e = r + 1; e < D; ++e) v -= C[std::size_t(e) * D + r] * y[e];
        y[r] = v / C[std::size_t(r) * D + r];
      }
      W al = 0;
      for (int d = 0; d < D; ++d) theta_out[qo + d] = A(y[d]), al += delta[d] * y[d];
      dom_out[ro] = A(W(1) / (W(1) + al)), omega_out[ro] = A(om);  // Delta/omega = 1/(1 + alpha), docs/math.md §3.5
    }
  }
  for (const auto& e : errs)
    if (!e.empty()) throw NumericalError(e);
}

template void lla_probe<float, float>(const Problem&, const float*, const float*, const double*, float*, float*, float*,
                                     LlaSolveReport*);
template void lla_probe<std::uint16_t, float>(const Problem&, const std::uint16_t*, const std::uint16_t*,
                                              const double*, float*, float*, float*, LlaSolveReport*);
template void lla_probe<double, double>(const Problem&, const double*, const double*, const double*, double*, double*,
                                        double*, LlaSolveReport*);

}  // namespace plx::fast
