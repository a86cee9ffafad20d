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
//
// The cascade works for any scalar T whose values are split into four doubles: `split(x, c)`
// writes the four components (returns false if x cannot be split exactly enough, then the
// caller falls back to generic arithmetic), `join(s)` sums the five levels into a T.
// Core: C (m x n) = A B^T with A given as a[(i k + d) 4 + c] and B as b[c sc + d sd + j]
// (component c, inner index d, output column j contiguous), so a caller can split B once
// and reuse it (e.g. a whole head's keys, offset to the rows it needs).
template <class T, class Join>
void cascade_core(long m, long n, long k, const double* a, const double* b, long sc, long sd,
                  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>& C, Join join) {
  C.resize(m, n);
  if (m == 0 || n == 0) return;
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
        const double* __restrict b0 = b + 0 * sc + d * sd + j0;
        const double* __restrict b1 = b + 1 * sc + d * sd + j0;
        const double* __restrict b2 = b + 2 * sc + d * sd + j0;
        const double* __restrict b3 = b + 3 * sc + d * sd + j0;
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
        const double lv[5] = {s0[j], s1[j], s2[j], s3[j], s4[j]};
        C(i, j0 + j) = join(lv);
      }
    }
  }
}


// A and B as Eigen matrices of T: split both (false if split refuses an entry), then the core.
template <class T, class DA, class DB, class Split, class Join>
bool cascade_product_nt(const Eigen::MatrixBase<DA>& A, const Eigen::MatrixBase<DB>& B,
                        Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>& C, Split split, Join join) {
  const long m = A.rows(), n = B.rows(), k = A.cols();
  C.resize(m, n);
  if (m == 0 || n == 0) return true;
  std::vector<double> a(4 * m * k), b(4 * k * n);  // a[(i k + d) 4 + c]; b[(c k + d) n + j]
  for (long i = 0; i < m; ++i)
    for (long d = 0; d < k; ++d)
      if (!split(A(i, d), &a[(i * k + d) * 4])) return false;
  double y4[4];
  for (long j = 0; j < n; ++j)
    for (long d = 0; d < k; ++d) {
      if (!split(B(j, d), y4)) return false;
      for (int c = 0; c < 4; ++c) b[(c * k + d) * n + j] = y4[c];
    }
  cascade_core<T>(m, n, k, a.data(), b.data(), k * n, n, C, join);
  return true;
}

template <class DA, class DB>
Eigen::Matrix<qd_real, Eigen::Dynamic, Eigen::Dynamic> qd_product_nt(const Eigen::MatrixBase<DA>& A,
                                                                     const Eigen::MatrixBase<DB>& B) {
  Eigen::Matrix<qd_real, Eigen::Dynamic, Eigen::Dynamic> C;
  cascade_product_nt<qd_real>(
      A, B, C,
      [](const qd_real& x, double* c) {
        for (int t = 0; t < 4; ++t) c[t] = x.x[t];
        return true;
      },
      [](const double* s) {  // smallest level first, IEEE (not sloppy) adds
        qd_real r(s[4]);
        for (int l = 3; l >= 0; --l) r = qd_real::ieee_add(r, qd_real(s[l]));
        return r;
      });
  return C;
}

// The same cascade for the Boost multiprecision scalars of at most ~200 bits (cpp_bin_float_50,
// MPFR at <= 60 digits): each entry x is split exactly into four doubles by successive rounding
// (x0 = fl(x), x1 = fl(x - x0), ...; 4 x 53 = 212 bits cover the 168-200 bits of T, so the split
// is exact) and the five levels are summed in T. The product is then more accurate than T's own
// dot product (16 2^-209 sum|ab| against k u_T sum|ab|), at double-arithmetic speed. Entries
// whose leading double is outside [2^-800, 2^800] (the lower components would leave the normal
// double range) make it return false: the caller then uses T's generic product.
template <class T> bool mp_split4(const T& x, double* c) {
  T r = x;
  for (int t = 0; t < 4; ++t) {
    c[t] = r.template convert_to<double>();
    if (t == 0) {
      const double ax = std::fabs(c[0]);
      if (!(ax <= 0x1p800) || (ax != 0 && ax < 0x1p-800)) return false;  // also NaN / Inf
      if (T(c[0]) == x) {  // an exact double (inputs, exact zeros): nothing below it
        c[1] = c[2] = c[3] = 0;
        return true;
      }
    }
    r -= T(c[t]);
  }
  return r == 0 || abs(r) <= abs(x) * T(0x1p-212);  // exact split (or below the kernel's error)
}
template <class T> T mp_join5(const double* s) {
  T r(s[4]);
  for (int l = 3; l >= 0; --l) r += T(s[l]);
  return r;
}
// MPFR: the same split and join through the C interface (mpfr_get_d, mpfr_sub_d, mpfr_add_d in
// place: one allocation per entry instead of one per operation; identical results).
template <> inline bool mp_split4<mpfr>(const mpfr& x, double* c) {
  mpfr_srcptr xp = x.backend().data();
  c[0] = mpfr_get_d(xp, MPFR_RNDN);
  const double ax = std::fabs(c[0]);
  if (!(ax <= 0x1p800) || (ax != 0 && ax < 0x1p-800)) return false;  // also NaN / Inf
  if (mpfr_cmp_d(xp, c[0]) == 0) {
    c[1] = c[2] = c[3] = 0;
    return true;
  }
  mpfr r = x;
  mpfr_ptr rp = r.backend().data();
  mpfr_sub_d(rp, rp, c[0], MPFR_RNDN);
  for (int t = 1; t < 4; ++t) {
    c[t] = mpfr_get_d(rp, MPFR_RNDN);
    mpfr_sub_d(rp, rp, c[t], MPFR_RNDN);
  }
  return mpfr_zero_p(rp) || abs(r) <= abs(x) * mpfr(0x1p-212);
}
template <> inline mpfr mp_join5<mpfr>(const double* s) {
  mpfr r;
  mpfr_ptr rp = r.backend().data();
  mpfr_set_d(rp, s[4], MPFR_RNDN);
  for (int l = 3; l >= 0; --l) mpfr_add_d(rp, rp, s[l], MPFR_RNDN);
  return r;
}

template <class T, class DA, class DB>
bool mp_cascade_product_nt(const Eigen::MatrixBase<DA>& A, const Eigen::MatrixBase<DB>& B,
                           Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>& C) {
  return cascade_product_nt<T>(A, B, C, mp_split4<T>, mp_join5<T>);
}
// The same with B already split (b[c sc + d sd + j], see cascade_core), A split here.
template <class T, class DA>
bool mp_cascade_product_presplit(const Eigen::MatrixBase<DA>& A, const double* b, long n, long sc, long sd,
                                 Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>& C) {
  const long m = A.rows(), k = A.cols();
  std::vector<double> a(4 * m * k);
  for (long i = 0; i < m; ++i)
    for (long d = 0; d < k; ++d)
      if (!mp_split4<T>(A(i, d), &a[(i * k + d) * 4])) return false;
  cascade_core<T>(m, n, k, a.data(), b, sc, sd, C, mp_join5<T>);
  return true;
}

}  // namespace plx::detail
