// reference/dd_kernels.hpp — matrix products for the double-double tier, built from doubles.
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
