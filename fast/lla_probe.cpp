// fast/lla_probe.cpp — LLA's solver probe per row, in the stable covariance form (SPEC §3.5).
//
// Charter: for every query row, theta = (C + lambda I)^-1 (kbar - q) with the weighted key
// mean kbar and the centred covariance C (two passes over the row's keys, never raw Sigma~,
// SPEC §7.4), Cholesky; this small per-row D x D solve runs in fp64 whatever A is (its error
// is amplified by cond(C + lambda I)), theta is then rounded to A. Also alpha and omega.
// LLA's output is then the Parallax tile kernel with r = theta (SPEC §4.3 key identity).
// Cost O(|A_i| D^2) per row: correct for every shape, fast only for short rows / small D
// (this is the part of the fast path that is not optimised). No CG, no block variant.
#include <cmath>
#include <vector>

#include "fast/lla_probe.hpp"
#include "reference/dtype.hpp"

namespace plx::fast {

namespace {
template <class S> double as_double(S x) { return double(x); }
template <> double as_double<std::uint16_t>(std::uint16_t x) { return bf16_to_float(x); }
}  // namespace

template <class S, class A>
void lla_probe(const Problem& p, const S* q, const S* k, const double* lambda, A* theta_out, A* alpha_out,
               A* omega_out) {
  using W = double;  // working precision of the solve
  const int B = p.B, Hq = p.Hq, Hkv = p.Hkv, Lq = p.Lq, Lkv = p.Lkv, D = p.D, G = p.group();
  const W tau = W(p.tau());
  const long nrow = long(B) * Hq * Lq;
  std::vector<std::string> errs(nrow);
#pragma omp parallel
  {
    std::vector<W> thw(D), s, kbar(D), C(std::size_t(D) * D), ec(D), y(D), qv(D);
#pragma omp for schedule(dynamic, 4)
    for (long t = 0; t < nrow; ++t) {
      const int i = int(t % Lq), h = int((t / Lq) % Hq), b = int(t / (long(Lq) * Hq));
      const std::size_t qo = ((std::size_t(b) * Lq + i) * Hq + h) * D;  // [B,Lq,Hq,D]
      std::vector<W>& th = thw;
      const std::size_t ro = (std::size_t(b) * Hq + h) * Lq + i;        // [B,Hq,Lq]
      
      alpha_out[ro] = A(0), omega_out[ro] = A(0);
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
      alpha_out[ro] = A(al), omega_out[ro] = A(om);
    }
  }
  for (const auto& e : errs)
    if (!e.empty()) throw NumericalError(e);
}

template void lla_probe<float, float>(const Problem&, const float*, const float*, const double*, float*, float*, float*);
template void lla_probe<std::uint16_t, float>(const Problem&, const std::uint16_t*, const std::uint16_t*,
                                              const double*, float*, float*, float*);
template void lla_probe<double, double>(const Problem&, const double*, const double*, const double*, double*, double*,
                                        double*);

}  // namespace plx::fast
