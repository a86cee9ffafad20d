// reference/dd_kernels.hpp — matrix products for the double-double and quad-double tiers,
// built from doubles (dd_product_nt: below; qd_product_nt: at the end of the file).
//
// Charter: C = A * B^T over dd_real with every product formed exactly (FMA two-product)
// and every sum accumulated with TwoSum into a (sum, error) pair — the "Dot2" scheme of
// Ogita, Rump and Oishi — so the result is as accurate as a dd computation
// (|error| <= n^2 u^2 sum|a_i b_i| + u^2 |result|, u = 2^-53) while the inner loop is
// plain double arithmetic that the compiler vectorises. Roughly 10x faster than Eigen's
// generic product over libqd's dd_real. Used by reference/attention.hpp when T = dd.
// Deterministic: fixed loop order, no dependence on threads or cache sizes.
#pragma once
#include <cmath>
#include <vector>

#include <Eigen/Core>

#include "reference/scalar.hpp"

namespace plx::detail {

// C (m x n) = A (m x k) * B (n x k)^T. A and B are any dd_real Eigen expressions.
template <class DA, class DB>
Eigen::Matrix<dd, Eigen::Dynamic, Eigen::Dynamic> dd_product_nt(const Eigen::MatrixBase<DA>& A,
                                                                 const Eigen::MatrixBase<DB>& B) {
  const long m = A.rows(), n = B.rows(), k = A.cols();
  Eigen::Matrix<dd, Eigen::Dynamic, Eigen::Dynamic> C(m, n);
  if (m == 0 || n == 0) return C;
  // Split A into row-major hi/lo, B into k-major hi/lo (contiguous along n).
  std::vector<double> ahi(m * k), alo(m * k), bhi(k * n), blo(k * n);
  for (long i = 0; i < m; ++i)
    for (long d = 0; d < k; ++d) {
      const dd& a = A(i, d);
      ahi[i * k + d] = a.x[0], alo[i * k + d] = a.x[1];
    }
  for (long j = 0; j < n; ++j)
    for (long d = 0; d < k; ++d) {
      const dd& b = B(j, d);
      bhi[d * n + j] = b.x[0], blo[d * n + j] = b.x[1];
    }
  constexpr long NT = 256;  // columns per chunk: B chunk (2 k NT doubles) stays in L2
  std::vector<double> shi(NT), serr(NT);
  for (long j0 = 0; j0 < n; j0 += NT) {
    const long nt = std::min(NT, n - j0);
    for (long i = 0; i < m; ++i) {
      std::fill(shi.begin(), shi.begin() + nt, 0.0);
      std::fill(serr.begin(), serr.begin() + nt, 0.0);
      double* __restrict sh = shi.data();
      double* __restrict se = serr.data();
      for (long d = 0; d < k; ++d) {
        const double ah = ahi[i * k + d], al = alo[i * k + d];
        const double* __restrict bh = &bhi[d * n + j0];
        const double* __restrict bl = &blo[d * n + j0];
#pragma omp simd
        for (long j = 0; j < nt; ++j) {
          const double p = ah * bh[j];
          const double e = std::fma(ah, bh[j], -p) + (ah * bl[j] + al * bh[j]);  // exact product error + cross terms
          const double s = sh[j] + p;                                             // TwoSum(sh, p)
          const double bp = s - sh[j];
          const double err = (sh[j] - (s - bp)) + (p - bp);
          sh[j] = s;
          se[j] += err + e;
        }
      }
      for (long j = 0; j < nt; ++j) {  // quick-two-sum renormalisation into a dd
        const double s = sh[j] + se[j];
        C(i, j0 + j) = dd(s, se[j] - (s - sh[j]));
      }
    }
  }
  return C;
}

}  // namespace plx::detail

namespace plx::detail {

// C (m x n) = A (m x k) * B (n x k)^T over libqd's quad-double (the fast 50-digit tier).
// Each entry of A and B is split into its four doubles a0..a3, b0..b3 (|a_{c+1}| <= ulp(a_c)/2).
// The product a.b keeps the ten component products with c1 + c2 <= 3 (the rest are below
// 2^-212 |a b|); those with c1 + c2 <= 2 are split exactly (FMA two-product), those with
// c1 + c2 = 3 are rounded once (error <= 2^-53 * 2^-159 |a b|). Every term enters a cascade
// of five double accumulators s0..s4 at the level of its magnitude: TwoSum into its level,
// the exact error carried down level by level, s4 plain. The level-l accumulator only ever
// receives errors <= u |s_{l-1}| plus terms of size ~u^l |a b|, so after k steps
// |error| <= ~(k u)^5 sum|a b| + k 2^-212 sum|a b| (u = 2^-53): below 1e-60 sum|a b| for
// k <= 4096, i.e. the result is as accurate as quad-double arithmetic on well-conditioned
// sums. The five levels are summed into a qd_real smallest first with IEEE adds.
// The inner loop is plain double arithmetic over a chunk of n that the compiler vectorises
// (needs -ffp-contract=off, which plx_reference sets: TwoSum must not be contracted).
// Deterministic: fixed loop order, independent of threads and cache sizes.
template <class DA, class DB>
Eigen::Matrix<qd_real, Eigen::Dynamic, Eigen::Dynamic> qd_product_nt(const Eigen::MatrixBase<DA>& A,
                                                                     const Eigen::MatrixBase<DB>& B) {
  const long m = A.rows(), n = B.rows(), k = A.cols();
  Eigen::Matrix<qd_real, Eigen::Dynamic, Eigen::Dynamic> C(m, n);
  if (m == 0 || n == 0) return C;
  std::vector<double> a(4 * m * k), b(4 * k * n);  // a[(i k + d) 4 + c]; b[(c k + d) n + j]
  for (long i = 0; i < m; ++i)
    for (long d = 0; d < k; ++d) {
      const qd_real& x = A(i, d);
      for (int c = 0; c < 4; ++c) a[(i * k + d) * 4 + c] = x.x[c];
    }
  for (long j = 0; j < n; ++j)
    for (long d = 0; d < k; ++d) {
      const qd_real& y = B(j, d);
      for (int c = 0; c < 4; ++c) b[(c * k + d) * n + j] = y.x[c];
    }
  constexpr long NT = 128;  // columns per chunk: the B chunk (4 k NT doubles) stays in L2
  std::vector<double> acc(5 * NT);
  for (long j0 = 0; j0 < n; j0 += NT) {
    const long nt = std::min(NT, n - j0);
    for (long i = 0; i < m; ++i) {
      std::fill(acc.begin(), acc.end(), 0.0);
      double* __restrict s0 = acc.data();
      double* __restrict s1 = s0 + NT;
      double* __restrict s2 = s1 + NT;
      double* __restrict s3 = s2 + NT;
      double* __restrict s4 = s3 + NT;
      for (long d = 0; d < k; ++d) {
        const double* ai = &a[(i * k + d) * 4];
        const double a0 = ai[0], a1 = ai[1], a2 = ai[2], a3 = ai[3];
        const double* __restrict b0 = &b[(0 * k + d) * n + j0];
        const double* __restrict b1 = &b[(1 * k + d) * n + j0];
        const double* __restrict b2 = &b[(2 * k + d) * n + j0];
        const double* __restrict b3 = &b[(3 * k + d) * n + j0];
#pragma omp simd
        for (long j = 0; j < nt; ++j) {
          const double p00 = a0 * b0[j], e00 = std::fma(a0, b0[j], -p00);
          const double p01 = a0 * b1[j], e01 = std::fma(a0, b1[j], -p01);
          const double p10 = a1 * b0[j], e10 = std::fma(a1, b0[j], -p10);
          const double p02 = a0 * b2[j], e02 = std::fma(a0, b2[j], -p02);
          const double p11 = a1 * b1[j], e11 = std::fma(a1, b1[j], -p11);
          const double p20 = a2 * b0[j], e20 = std::fma(a2, b0[j], -p20);
          const double l3 = ((a0 * b3[j] + a3 * b0[j]) + (a1 * b2[j] + a2 * b1[j])) + ((e02 + e11) + e20);
          double t0 = s0[j], t1 = s1[j], t2 = s2[j], t3 = s3[j], t4 = s4[j], c;
// TwoSum: S <- fl(S + X), C <- the exact error.
#define PLX_TWO_SUM(S, X)                                              \
  do {                                                                 \
    const double x_ = (X), t_ = S + x_, bp_ = t_ - S;                  \
    c = (S - (t_ - bp_)) + (x_ - bp_);                                 \
    S = t_;                                                            \
  } while (0)
          PLX_TWO_SUM(t0, p00);  // level 0, error carried down to level 4
          PLX_TWO_SUM(t1, c); PLX_TWO_SUM(t2, c); PLX_TWO_SUM(t3, c); t4 += c;
          PLX_TWO_SUM(t1, e00); PLX_TWO_SUM(t2, c); PLX_TWO_SUM(t3, c); t4 += c;  // level 1
          PLX_TWO_SUM(t1, p01); PLX_TWO_SUM(t2, c); PLX_TWO_SUM(t3, c); t4 += c;
          PLX_TWO_SUM(t1, p10); PLX_TWO_SUM(t2, c); PLX_TWO_SUM(t3, c); t4 += c;
          PLX_TWO_SUM(t2, e01); PLX_TWO_SUM(t3, c); t4 += c;  // level 2
          PLX_TWO_SUM(t2, e10); PLX_TWO_SUM(t3, c); t4 += c;
          PLX_TWO_SUM(t2, p02); PLX_TWO_SUM(t3, c); t4 += c;
          PLX_TWO_SUM(t2, p11); PLX_TWO_SUM(t3, c); t4 += c;
          PLX_TWO_SUM(t2, p20); PLX_TWO_SUM(t3, c); t4 += c;
          PLX_TWO_SUM(t3, l3); t4 += c;  // level 3
#undef PLX_TWO_SUM
          s0[j] = t0, s1[j] = t1, s2[j] = t2, s3[j] = t3, s4[j] = t4;
        }
      }
      for (long j = 0; j < nt; ++j) {
        qd_real r(s4[j]);
        r = qd_real::ieee_add(r, qd_real(s3[j]));
        r = qd_real::ieee_add(r, qd_real(s2[j]));
        r = qd_real::ieee_add(r, qd_real(s1[j]));
        C(i, j0 + j) = qd_real::ieee_add(r, qd_real(s0[j]));
      }
    }
  }
  return C;
}

}  // namespace plx::detail
