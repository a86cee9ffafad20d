// reference/verified_solve.hpp — verified enclosure of the solution of an interval linear system.
//
// Charter: verified_solve(A, b) returns intervals x_i that contain A^-1 b for EVERY real matrix
// A in the interval matrix A and every b in b (and proves each such A nonsingular), or says
// "not verified" with the reason. Method (Krawczyk's operator with Rump's residual form, see
// Rump, "Verification methods", Acta Numerica 2010, §10): at the working precision P of Ival,
//   1. Am = mid(A), bm = mid(b); R ~ Am^-1 by Gauss-Jordan with partial pivoting (ordinary
//      rounding-to-nearest MPFR arithmetic, not interval arithmetic);
//   2. x~ = R bm, improved by two steps of residual correction x~ += R (bm - Am x~);
//   3. in interval arithmetic: Z = R (b - A x~) and C = I - R A; c = ||C||_inf (upper bound);
//   4. if c < 1 then for every A, b: RA is nonsingular, so A is, and
//        x - x~ = R (b - A x~) + (I - R A)(x - x~)  gives  ||x - x~||_inf <= ||Z||_inf / (1 - c) =: delta
//      and componentwise  x_i in x~_i + Z_i + [-1, 1] (sum_k |C_ik|) delta.
//   If c >= 1 (the system is singular, or too ill-conditioned for P bits, or A too wide), the
//   result is "not verified"; the caller retries at a higher P. Only R and x~ are approximate:
//   any R and x~ give a correct enclosure when the test c < 1 passes.
// Cost: O(n^3) MPFR operations; widths ~ cond(A) 2^-P |x| for point-like A and b.
#pragma once
#include <mpfr.h>

#include <cstdio>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "reference/interval.hpp"

namespace plx {

struct VerifiedSolve {
  bool verified = false;
  std::string reason;                                      // why not, when !verified
  Eigen::Matrix<Ival, Eigen::Dynamic, 1> x;                // the enclosure, when verified
  double contraction = 0;                                  // upper bound of ||I - R A||_inf
};

namespace detail {

// A point value at the working precision, rounded to nearest (RAII over mpfr_t).
struct Mp {
  mpfr_t v;
  Mp() { mpfr_init2(v, IvalPrecision::bits()), mpfr_set_zero(v, 1); }
  Mp(const Mp& o) { mpfr_init2(v, IvalPrecision::bits()), mpfr_set(v, o.v, MPFR_RNDN); }
  Mp& operator=(const Mp& o) {
    if (this != &o) mpfr_set(v, o.v, MPFR_RNDN);
    return *this;
  }
  ~Mp() { mpfr_clear(v); }
};

inline void mid_of(const Ival& a, Mp& m) {
  mpfr_add(m.v, a.lo, a.hi, MPFR_RNDN);
  mpfr_div_2ui(m.v, m.v, 1, MPFR_RNDN);
}
inline Ival point(const Mp& m) {
  Ival r;
  mpfr_set(r.lo, m.v, MPFR_RNDD), mpfr_set(r.hi, m.v, MPFR_RNDU);
  return r;
}
}  // namespace detail

// See the charter. A and b may be point or interval valued; n = A.rows() = A.cols() = b.size().
inline VerifiedSolve verified_solve(const Eigen::Matrix<Ival, Eigen::Dynamic, Eigen::Dynamic>& A,
                                    const Eigen::Matrix<Ival, Eigen::Dynamic, 1>& b) {
  using detail::Mp;
  const int n = int(A.rows());
  VerifiedSolve out;
  const long P = IvalPrecision::bits();
  if (n == 0) {
    out.verified = true;
    out.x.resize(0);
    return out;
  }
  for (int i = 0; i < n; ++i) {
    if (!is_finite(b(i))) return out.reason = "right-hand side is not finite", out;
    for (int j = 0; j < n; ++j)
      if (!is_finite(A(i, j))) return out.reason = "matrix is not finite", out;
  }
  // 1. R = inverse of mid(A) by Gauss-Jordan with partial pivoting on [M | I].
  std::vector<Mp> M(std::size_t(n) * n), Rm(std::size_t(n) * n);
  auto m = [&](int i, int j) -> mpfr_t& { return M[std::size_t(i) * n + j].v; };
  auto r = [&](int i, int j) -> mpfr_t& { return Rm[std::size_t(i) * n + j].v; };
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) detail::mid_of(A(i, j), M[std::size_t(i) * n + j]);
    mpfr_set_ui(r(i, i), 1, MPFR_RNDN);
  }
  Mp t, f;
  for (int c = 0; c < n; ++c) {
    int piv = c;
    for (int i = c + 1; i < n; ++i)
      if (mpfr_cmpabs(m(i, c), m(piv, c)) > 0) piv = i;
    if (mpfr_zero_p(m(piv, c))) {
      out.reason = "the midpoint matrix is singular at " + std::to_string(P) + " bits (zero pivot in column " +
                   std::to_string(c) + ")";
      return out;
    }
    if (piv != c)
      for (int j = 0; j < n; ++j) mpfr_swap(m(c, j), m(piv, j)), mpfr_swap(r(c, j), r(piv, j));
    mpfr_set(t.v, m(c, c), MPFR_RNDN);
    for (int j = 0; j < n; ++j) mpfr_div(m(c, j), m(c, j), t.v, MPFR_RNDN), mpfr_div(r(c, j), r(c, j), t.v, MPFR_RNDN);
    for (int i = 0; i < n; ++i) {
      if (i == c || mpfr_zero_p(m(i, c))) continue;
      mpfr_set(f.v, m(i, c), MPFR_RNDN);
      for (int j = 0; j < n; ++j) {
        mpfr_mul(t.v, f.v, m(c, j), MPFR_RNDN), mpfr_sub(m(i, j), m(i, j), t.v, MPFR_RNDN);
        mpfr_mul(t.v, f.v, r(c, j), MPFR_RNDN), mpfr_sub(r(i, j), r(i, j), t.v, MPFR_RNDN);
      }
    }
  }
  // 2. x~ = R bm, then two residual corrections with the midpoint system.
  std::vector<Mp> bm(n), xt(n), res(n);
  for (int i = 0; i < n; ++i) detail::mid_of(b(i), bm[i]);
  std::vector<Mp> Am(std::size_t(n) * n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) detail::mid_of(A(i, j), Am[std::size_t(i) * n + j]);
  auto apply_R = [&](const std::vector<Mp>& v, std::vector<Mp>& y) {
    for (int i = 0; i < n; ++i) {
      mpfr_set_zero(y[i].v, 1);
      for (int j = 0; j < n; ++j) mpfr_mul(t.v, r(i, j), v[j].v, MPFR_RNDN), mpfr_add(y[i].v, y[i].v, t.v, MPFR_RNDN);
    }
  };
  apply_R(bm, xt);
  std::vector<Mp> corr(n);
  for (int step = 0; step < 2; ++step) {
    for (int i = 0; i < n; ++i) {
      mpfr_set(res[i].v, bm[i].v, MPFR_RNDN);
      for (int j = 0; j < n; ++j)
        mpfr_mul(t.v, Am[std::size_t(i) * n + j].v, xt[j].v, MPFR_RNDN), mpfr_sub(res[i].v, res[i].v, t.v, MPFR_RNDN);
    }
    apply_R(res, corr);
    for (int i = 0; i < n; ++i) mpfr_add(xt[i].v, xt[i].v, corr[i].v, MPFR_RNDN);
  }
  // 3. Z = R (b - A x~) and C = I - R A in interval arithmetic (R and x~ as exact points).
  std::vector<Ival> Ri(std::size_t(n) * n), xi(n), d(n);
  for (std::size_t k = 0; k < Ri.size(); ++k) Ri[k] = detail::point(Rm[k]);
  for (int i = 0; i < n; ++i) xi[i] = detail::point(xt[i]);
  for (int i = 0; i < n; ++i) {
    Ival s = b(i);
    for (int j = 0; j < n; ++j) s -= A(i, j) * xi[j];
    d[i] = s;
  }
  std::vector<Ival> Z(n);
  for (int i = 0; i < n; ++i) {
    Ival s(0);
    for (int j = 0; j < n; ++j) s += Ri[std::size_t(i) * n + j] * d[j];
    Z[i] = s;
  }
  // Row sums of |C| (rounded up, in MPFR) and c = their max.
  std::vector<Mp> rho(n);
  mpfr_t cmax, mg, tmp;
  mpfr_inits2(P, cmax, mg, tmp, (mpfr_ptr)0);
  mpfr_set_zero(cmax, 1);
  for (int i = 0; i < n; ++i) {
    mpfr_set_zero(rho[i].v, 1);
    for (int j = 0; j < n; ++j) {
      Ival s(i == j ? 1 : 0);
      for (int k = 0; k < n; ++k) s -= Ri[std::size_t(i) * n + k] * A(k, j);
      mpfr_neg(tmp, s.lo, MPFR_RNDU);  // |C_ij| <= max(-lo, hi)
      mpfr_max(mg, tmp, s.hi, MPFR_RNDU);
      mpfr_add(rho[i].v, rho[i].v, mg, MPFR_RNDU);
    }
    mpfr_max(cmax, cmax, rho[i].v, MPFR_RNDU);
  }
  out.contraction = mpfr_get_d(cmax, MPFR_RNDU);
  if (!(mpfr_cmp_ui(cmax, 1) < 0)) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "||I - R A||_inf <= %.3g is not < 1 at %ld bits", out.contraction, P);
    out.reason = std::string(buf) + " (the system is singular, or too ill-conditioned for this precision)";
    mpfr_clears(cmax, mg, tmp, (mpfr_ptr)0);
    return out;
  }
  // 4. delta = ||Z||_inf / (1 - c), rounded up.
  mpfr_t zn, den, delta;
  mpfr_inits2(P, zn, den, delta, (mpfr_ptr)0);
  mpfr_set_zero(zn, 1);
  for (int i = 0; i < n; ++i) {
    mpfr_neg(tmp, Z[i].lo, MPFR_RNDU);
    mpfr_max(mg, tmp, Z[i].hi, MPFR_RNDU);
    mpfr_max(zn, zn, mg, MPFR_RNDU);
  }
  mpfr_ui_sub(den, 1, cmax, MPFR_RNDD);
  mpfr_div(delta, zn, den, MPFR_RNDU);
  out.x.resize(n);
  for (int i = 0; i < n; ++i) {
    Ival e;
    mpfr_mul(e.hi, rho[i].v, delta, MPFR_RNDU);
    mpfr_neg(e.lo, e.hi, MPFR_RNDD);
    out.x(i) = xi[i] + Z[i] + e;
  }
  mpfr_clears(cmax, mg, tmp, zn, den, delta, (mpfr_ptr)0);
  out.verified = true;
  return out;
}

}  // namespace plx
