// reference/interval.hpp — Ival, a closed interval [lo, hi] with MPFR endpoints and outward rounding.
//
// Charter: the scalar of the certified tier (reference/certify.hpp). Every operation returns an
// interval that contains the exact real result for every choice of real operands inside its
// argument intervals (inclusion isotonicity): sums and differences round the lower endpoint down
// and the upper one up, products and quotients take the endpoint products by sign case, exp, log
// and sqrt are monotone and round their endpoints outward (MPFR rounds them correctly in a given
// direction). Comparisons are certain-or-throw: `a < b` is true when every point of a is below
// every point of b, false when no point is, and otherwise throws NotVerified, so a branch the
// reference takes on intervals is the branch the exact-real computation takes. Division by an
// interval that contains 0, and log/sqrt outside their domain, throw NotVerified as well.
// The working precision (bits of both endpoints) is process-wide, set by IvalPrecision::set()
// before a computation starts; threads only read it.
//
// Why a type of our own over MPFR rather than MPFI through Boost's mpfi_float: MPFR is already a
// dependency (no new package); we need the certain-or-throw comparison semantics (mpfi_float's
// comparisons answer "equal" for overlapping intervals, which would silently pick a branch); and
// the arithmetic needed (+ - * / exp log sqrt abs) is a page of directed-rounding calls.
#pragma once
#include <mpfr.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include <Eigen/Core>

#include "reference/errors.hpp"

namespace plx {

// A certified computation could not decide something at the working precision (a comparison of
// overlapping intervals, a division by an interval containing 0, a linear system that the
// verification method cannot prove nonsingular). The message says what and where.
struct NotVerified : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct IvalPrecision {
  static long& bits_ref() {
    static long b = 256;
    return b;
  }
  static long bits() { return bits_ref(); }
  static void set(long b) { bits_ref() = b; }
};

class Ival {
 public:
  mpfr_t lo, hi;

  Ival() {
    init();
    mpfr_set_zero(lo, 1), mpfr_set_zero(hi, 1);
  }
  Ival(int x) {  // NOLINT: implicit, like the other scalars of the reference
    init();
    mpfr_set_si(lo, x, MPFR_RNDD), mpfr_set_si(hi, x, MPFR_RNDU);
  }
  Ival(long x) {
    init();
    mpfr_set_si(lo, x, MPFR_RNDD), mpfr_set_si(hi, x, MPFR_RNDU);
  }
  Ival(double x) {  // exact (the working precision is >= 53 bits); NaN stays NaN
    init();
    mpfr_set_d(lo, x, MPFR_RNDD), mpfr_set_d(hi, x, MPFR_RNDU);
  }
  Ival(const Ival& o) {
    init();
    mpfr_set(lo, o.lo, MPFR_RNDD), mpfr_set(hi, o.hi, MPFR_RNDU);
  }
  Ival(Ival&& o) noexcept {
    mpfr_init2(lo, MPFR_PREC_MIN), mpfr_init2(hi, MPFR_PREC_MIN);
    mpfr_swap(lo, o.lo), mpfr_swap(hi, o.hi);
  }
  Ival& operator=(const Ival& o) {
    if (this != &o) mpfr_set(lo, o.lo, MPFR_RNDD), mpfr_set(hi, o.hi, MPFR_RNDU);
    return *this;
  }
  Ival& operator=(Ival&& o) noexcept {
    mpfr_swap(lo, o.lo), mpfr_swap(hi, o.hi);
    return *this;
  }
  ~Ival() { mpfr_clear(lo), mpfr_clear(hi); }

  // [a, b] from two doubles (a <= b), exact.
  static Ival hull(double a, double b) {
    Ival r;
    mpfr_set_d(r.lo, a, MPFR_RNDD), mpfr_set_d(r.hi, b, MPFR_RNDU);
    return r;
  }

  bool is_nan() const { return mpfr_nan_p(lo) || mpfr_nan_p(hi); }
  bool is_point() const { return mpfr_equal_p(lo, hi); }
  bool contains_zero() const { return mpfr_sgn(lo) <= 0 && mpfr_sgn(hi) >= 0; }
  double lo_d() const { return mpfr_get_d(lo, MPFR_RNDD); }  // rounded outward
  double hi_d() const { return mpfr_get_d(hi, MPFR_RNDU); }
  double mid_d() const {  // nearest double to the midpoint (not rigorous; for display and traits)
    mpfr_t m;
    mpfr_init2(m, mpfr_get_prec(lo) + 1);
    mpfr_add(m, lo, hi, MPFR_RNDN);
    mpfr_div_2ui(m, m, 1, MPFR_RNDN);
    const double d = mpfr_get_d(m, MPFR_RNDN);
    mpfr_clear(m);
    return d;
  }

  Ival& operator+=(const Ival& b) {
    mpfr_add(lo, lo, b.lo, MPFR_RNDD), mpfr_add(hi, hi, b.hi, MPFR_RNDU);
    return *this;
  }
  Ival& operator-=(const Ival& b) {
    if (this == &b) return *this = *this - b;
    mpfr_sub(lo, lo, b.hi, MPFR_RNDD), mpfr_sub(hi, hi, b.lo, MPFR_RNDU);
    return *this;
  }
  Ival& operator*=(const Ival& b);
  Ival& operator/=(const Ival& b);

 private:
  void init() {
    const long p = IvalPrecision::bits();
    mpfr_init2(lo, p), mpfr_init2(hi, p);
  }
  friend Ival operator-(const Ival& a, const Ival& b);
};

inline Ival operator+(const Ival& a, const Ival& b) {
  Ival r;
  mpfr_add(r.lo, a.lo, b.lo, MPFR_RNDD), mpfr_add(r.hi, a.hi, b.hi, MPFR_RNDU);
  return r;
}
inline Ival operator-(const Ival& a, const Ival& b) {
  Ival r;
  mpfr_sub(r.lo, a.lo, b.hi, MPFR_RNDD), mpfr_sub(r.hi, a.hi, b.lo, MPFR_RNDU);
  return r;
}
inline Ival operator-(const Ival& a) {
  Ival r;
  mpfr_neg(r.lo, a.hi, MPFR_RNDD), mpfr_neg(r.hi, a.lo, MPFR_RNDU);
  return r;
}
inline Ival operator+(const Ival& a) { return a; }

// Sign class of an interval: 1 (lo >= 0), -1 (hi <= 0), 0 (contains 0 in its interior).
inline int ival_sign(const Ival& a) { return mpfr_sgn(a.lo) >= 0 ? 1 : mpfr_sgn(a.hi) <= 0 ? -1 : 0; }

inline Ival operator*(const Ival& a, const Ival& b) {
  Ival r;
  const int sa = ival_sign(a), sb = ival_sign(b);
  // lo = (x1 * y1) rounded down, hi = (x2 * y2) rounded up, by the sign case of a and b.
  auto set = [&](const mpfr_t x1, const mpfr_t y1, const mpfr_t x2, const mpfr_t y2) {
    mpfr_mul(r.lo, x1, y1, MPFR_RNDD), mpfr_mul(r.hi, x2, y2, MPFR_RNDU);
  };
  if (sa > 0) {
    if (sb > 0) set(a.lo, b.lo, a.hi, b.hi);
    else if (sb < 0) set(a.hi, b.lo, a.lo, b.hi);
    else set(a.hi, b.lo, a.hi, b.hi);
  } else if (sa < 0) {
    if (sb > 0) set(a.lo, b.hi, a.hi, b.lo);
    else if (sb < 0) set(a.hi, b.hi, a.lo, b.lo);
    else set(a.lo, b.hi, a.lo, b.lo);
  } else {
    if (sb > 0) set(a.lo, b.hi, a.hi, b.hi);
    else if (sb < 0) set(a.hi, b.lo, a.lo, b.lo);
    else {  // both straddle 0: lo = min(a.lo b.hi, a.hi b.lo), hi = max(a.lo b.lo, a.hi b.hi)
      Ival t;
      mpfr_mul(r.lo, a.lo, b.hi, MPFR_RNDD), mpfr_mul(t.lo, a.hi, b.lo, MPFR_RNDD);
      mpfr_min(r.lo, r.lo, t.lo, MPFR_RNDD);
      mpfr_mul(r.hi, a.lo, b.lo, MPFR_RNDU), mpfr_mul(t.hi, a.hi, b.hi, MPFR_RNDU);
      mpfr_max(r.hi, r.hi, t.hi, MPFR_RNDU);
    }
  }
  return r;
}

inline Ival operator/(const Ival& a, const Ival& b) {
  const int sb = ival_sign(b);
  if (sb == 0 || (mpfr_zero_p(b.lo) && mpfr_zero_p(b.hi)) || (sb > 0 && mpfr_zero_p(b.lo)) || (sb < 0 && mpfr_zero_p(b.hi)))
    throw NotVerified("division by an interval that contains 0");
  Ival r;
  const int sa = ival_sign(a);
  auto set = [&](const mpfr_t x1, const mpfr_t y1, const mpfr_t x2, const mpfr_t y2) {
    mpfr_div(r.lo, x1, y1, MPFR_RNDD), mpfr_div(r.hi, x2, y2, MPFR_RNDU);
  };
  if (sb > 0) {
    if (sa > 0) set(a.lo, b.hi, a.hi, b.lo);
    else if (sa < 0) set(a.lo, b.lo, a.hi, b.hi);
    else set(a.lo, b.lo, a.hi, b.lo);
  } else {
    if (sa > 0) set(a.hi, b.hi, a.lo, b.lo);
    else if (sa < 0) set(a.hi, b.lo, a.lo, b.hi);
    else set(a.hi, b.hi, a.lo, b.hi);
  }
  return r;
}

inline Ival& Ival::operator*=(const Ival& b) { return *this = *this * b; }
inline Ival& Ival::operator/=(const Ival& b) { return *this = *this / b; }

inline Ival exp(const Ival& a) {
  Ival r;
  mpfr_exp(r.lo, a.lo, MPFR_RNDD), mpfr_exp(r.hi, a.hi, MPFR_RNDU);
  return r;
}
inline Ival log(const Ival& a) {
  if (mpfr_sgn(a.lo) <= 0) throw NotVerified("log of an interval that reaches 0 or below");
  Ival r;
  mpfr_log(r.lo, a.lo, MPFR_RNDD), mpfr_log(r.hi, a.hi, MPFR_RNDU);
  return r;
}
// sqrt on [max(lo, 0), hi]: callers take roots of sums of squares, whose exact value is >= 0.
inline Ival sqrt(const Ival& a) {
  if (mpfr_sgn(a.hi) < 0) throw NotVerified("sqrt of a negative interval");
  Ival r;
  if (mpfr_sgn(a.lo) < 0) mpfr_set_zero(r.lo, 1);
  else mpfr_sqrt(r.lo, a.lo, MPFR_RNDD);
  mpfr_sqrt(r.hi, a.hi, MPFR_RNDU);
  return r;
}
inline Ival abs(const Ival& a) {
  const int s = ival_sign(a);
  if (s > 0) return a;
  if (s < 0) return -a;
  Ival r;  // [0, max(-lo, hi)]
  mpfr_set_zero(r.lo, 1);
  mpfr_neg(r.hi, a.lo, MPFR_RNDU);
  mpfr_max(r.hi, r.hi, a.hi, MPFR_RNDU);
  return r;
}
inline Ival sqr(const Ival& a) {  // x^2 of every x in a: >= 0, tighter than a * a
  Ival m = abs(a), r;
  mpfr_mul(r.lo, m.lo, m.lo, MPFR_RNDD), mpfr_mul(r.hi, m.hi, m.hi, MPFR_RNDU);
  return r;
}
inline Ival abs2(const Ival& a) { return sqr(a); }
inline const Ival& conj(const Ival& a) { return a; }
inline const Ival& real(const Ival& a) { return a; }
inline Ival imag(const Ival&) { return Ival(0); }
inline bool is_finite(const Ival& a) { return mpfr_number_p(a.lo) && mpfr_number_p(a.hi); }
inline bool isfinite(const Ival& a) { return is_finite(a); }

// Certain-or-throw comparisons (see the charter).
inline bool ival_less(const Ival& a, const Ival& b, const char* op) {
  if (a.is_nan() || b.is_nan()) throw NotVerified(std::string("comparison '") + op + "' with NaN");
  if (mpfr_less_p(a.hi, b.lo)) return true;
  if (mpfr_greaterequal_p(a.lo, b.hi)) return false;
  throw NotVerified(std::string("comparison '") + op + "' of overlapping intervals");
}
inline bool ival_less_equal(const Ival& a, const Ival& b, const char* op) {
  if (a.is_nan() || b.is_nan()) throw NotVerified(std::string("comparison '") + op + "' with NaN");
  if (mpfr_lessequal_p(a.hi, b.lo)) return true;
  if (mpfr_greater_p(a.lo, b.hi)) return false;
  throw NotVerified(std::string("comparison '") + op + "' of overlapping intervals");
}
inline bool operator<(const Ival& a, const Ival& b) { return ival_less(a, b, "<"); }
inline bool operator>(const Ival& a, const Ival& b) { return ival_less(b, a, ">"); }
inline bool operator<=(const Ival& a, const Ival& b) { return ival_less_equal(a, b, "<="); }
inline bool operator>=(const Ival& a, const Ival& b) { return ival_less_equal(b, a, ">="); }
inline bool operator==(const Ival& a, const Ival& b) {
  if (a.is_point() && b.is_point() && mpfr_equal_p(a.lo, b.lo)) return true;
  if (mpfr_less_p(a.hi, b.lo) || mpfr_less_p(b.hi, a.lo)) return false;
  throw NotVerified("comparison '==' of overlapping intervals");
}
inline bool operator!=(const Ival& a, const Ival& b) { return !(a == b); }

// The interval hull of max over a set: [max lo, max hi] contains max_j x_j for every choice
// of x_j in the intervals (max is monotone in each argument).
inline Ival ival_max(const Ival& a, const Ival& b) {
  Ival r;
  mpfr_max(r.lo, a.lo, b.lo, MPFR_RNDD), mpfr_max(r.hi, a.hi, b.hi, MPFR_RNDU);
  return r;
}

}  // namespace plx

namespace Eigen {
template <>
struct NumTraits<plx::Ival> : GenericNumTraits<plx::Ival> {
  typedef plx::Ival Real;
  typedef plx::Ival NonInteger;
  typedef plx::Ival Nested;
  typedef plx::Ival Literal;
  enum {
    IsComplex = 0, IsInteger = 0, IsSigned = 1, RequireInitialization = 1,
    ReadCost = 2, AddCost = 50, MulCost = 60
  };
  static inline Real epsilon() { return Real(std::ldexp(1.0, -int(plx::IvalPrecision::bits()))); }
  static inline Real dummy_precision() { return Real(1e-60); }
  static inline Real highest() { return Real(std::numeric_limits<double>::max()); }
  static inline Real lowest() { return Real(-std::numeric_limits<double>::max()); }
  static inline int digits10() { return int(plx::IvalPrecision::bits() * 0.30103); }
  static inline int digits() { return int(plx::IvalPrecision::bits()); }
};
}  // namespace Eigen
