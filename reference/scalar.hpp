// reference/scalar.hpp — the scalar types the reference is instantiated on.
//
// Charter: names every supported scalar (double, long double, dd_real, float128,
// libqd's quad-double qd_real, cpp_bin_float_50/100, MPFR at run-time precision), gives each a uniform set of
// traits (name, unit roundoff, conversion to/from double, per-thread set-up) and
// the Eigen glue that libqd's dd_real lacks. It also holds Neumaier's compensated
// sum, which every sum over keys in the reference uses. No algorithm lives here.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

#include <qd/dd_real.h>
#include <qd/qd_real.h>

#include <boost/multiprecision/cpp_bin_float.hpp>
#include <boost/multiprecision/float128.hpp>
#include <boost/multiprecision/mpfr.hpp>
#include <boost/multiprecision/eigen.hpp>

#include <Eigen/Core>

// ---------------------------------------------------------------------------
// Eigen glue for libqd's double-double (Eigen knows nothing about it).
namespace Eigen {
template <>
struct NumTraits<dd_real> : GenericNumTraits<dd_real> {
  typedef dd_real Real;
  typedef dd_real NonInteger;
  typedef dd_real Nested;
  enum {
    IsComplex = 0, IsInteger = 0, IsSigned = 1, RequireInitialization = 1,
    ReadCost = 2, AddCost = 20, MulCost = 25
  };
  static inline Real epsilon() { return dd_real(dd_real::_eps); }
  static inline Real dummy_precision() { return dd_real(1e-28); }
  static inline Real highest() { return dd_real::_max; }
  static inline Real lowest() { return -dd_real::_max; }
  static inline int digits10() { return 31; }
};
}  // namespace Eigen

// The same glue for libqd's quad-double (four doubles, u = 2^-209 ~ 1.2e-63 for + and *:
// the fast 50-digit tier; its exp/log are accurate to ~2^-200).
namespace Eigen {
template <>
struct NumTraits<qd_real> : GenericNumTraits<qd_real> {
  typedef qd_real Real;
  typedef qd_real NonInteger;
  typedef qd_real Nested;
  enum {
    IsComplex = 0, IsInteger = 0, IsSigned = 1, RequireInitialization = 1,
    ReadCost = 4, AddCost = 60, MulCost = 100
  };
  static inline Real epsilon() { return qd_real(qd_real::_eps); }
  static inline Real dummy_precision() { return qd_real(1e-60); }
  static inline Real highest() { return qd_real::_max; }
  static inline Real lowest() { return -qd_real::_max; }
  static inline int digits10() { return 62; }
};
}  // namespace Eigen

// Functions Eigen's generic code looks up by ADL that libqd does not spell.
inline dd_real abs2(const dd_real& a) { return sqr(a); }
inline dd_real conj(const dd_real& a) { return a; }
inline dd_real real(const dd_real& a) { return a; }
inline dd_real imag(const dd_real&) { return dd_real(0.0); }
inline qd_real abs2(const qd_real& a) { return sqr(a); }
inline qd_real conj(const qd_real& a) { return a; }
inline qd_real real(const qd_real& a) { return a; }
inline qd_real imag(const qd_real&) { return qd_real(0.0); }

namespace plx {

namespace mp = boost::multiprecision;
using dd = dd_real;
using qd4 = qd_real;  // quad-double (not `qd`: libqd owns a namespace qd)
using f128 = mp::float128;
using bf50 = mp::number<mp::cpp_bin_float<50>, mp::et_off>;
using bf100 = mp::number<mp::cpp_bin_float<100>, mp::et_off>;
using mpfr = mp::number<mp::mpfr_float_backend<0>, mp::et_off>;

// Traits every scalar provides. `eps()` is the unit roundoff u (half an ulp of 1).
template <class T> struct ScalarTraits;

template <> struct ScalarTraits<float> {
  static std::string name() { return "float"; }
  static double eps() { return 0x1p-24; }
  static double to_double(float x) { return x; }
  static float from_double(double x) { return static_cast<float>(x); }
  static void thread_setup() {}
};
template <> struct ScalarTraits<double> {
  static std::string name() { return "double"; }
  static double eps() { return 0x1p-53; }
  static double to_double(double x) { return x; }
  static double from_double(double x) { return x; }
  static void thread_setup() {}
};
template <> struct ScalarTraits<long double> {
  static std::string name() { return "long_double"; }
  static double eps() { return std::numeric_limits<long double>::epsilon() / 2; }
  static double to_double(long double x) { return static_cast<double>(x); }
  static long double from_double(double x) { return x; }
  static void thread_setup() {}
};
template <> struct ScalarTraits<dd> {
  static std::string name() { return "dd"; }
  static double eps() { return 0x1p-104; }  // libqd: ~2^-104 for + and *; exp/log ~2^-100
  static double to_double(const dd& x) { return x.x[0]; }
  static dd from_double(double x) { return dd(x); }
  static void thread_setup() {}
};
template <> struct ScalarTraits<qd4> {
  static std::string name() { return "qd"; }
  static double eps() { return 0x1p-209; }  // libqd: ~2^-209 for + and * (sloppy add: relative to max operand); exp/log ~2^-200
  static double to_double(const qd4& x) { return x.x[0]; }
  static qd4 from_double(double x) { return qd4(x); }
  static void thread_setup() {}
};
template <> struct ScalarTraits<f128> {
  static std::string name() { return "float128"; }
  static double eps() { return 0x1p-113; }
  static double to_double(const f128& x) { return x.convert_to<double>(); }
  static f128 from_double(double x) { return f128(x); }
  static void thread_setup() {}
};
template <> struct ScalarTraits<bf50> {
  static std::string name() { return "bf50"; }
  static double eps() { return std::pow(10.0, -50.0); }
  static double to_double(const bf50& x) { return x.convert_to<double>(); }
  static bf50 from_double(double x) { return bf50(x); }
  static void thread_setup() {}
};
template <> struct ScalarTraits<bf100> {
  static std::string name() { return "bf100"; }
  static double eps() { return std::pow(10.0, -100.0); }
  static double to_double(const bf100& x) { return x.convert_to<double>(); }
  static bf100 from_double(double x) { return bf100(x); }
  static void thread_setup() {}
};

// MPFR's precision is chosen at run time with set_mpfr_digits10() before any
// computation starts (Boost 1.74 keeps one process-wide default; threads only read it).
struct MpfrPrecision {
  static unsigned& digits10() { static unsigned d = 60; return d; }
};
inline void set_mpfr_digits10(unsigned d) {
  MpfrPrecision::digits10() = d;
  boost::multiprecision::mpfr_float::default_precision(d);
}
template <> struct ScalarTraits<mpfr> {
  static std::string name() { return "mpfr" + std::to_string(MpfrPrecision::digits10()); }
  static double eps() { return std::pow(10.0, -double(MpfrPrecision::digits10())); }
  static double to_double(const mpfr& x) { return x.convert_to<double>(); }
  static mpfr from_double(double x) { return mpfr(x); }
  static void thread_setup() {}
};

template <class T> double to_double(const T& x) { return ScalarTraits<T>::to_double(x); }
template <class T> T from_double(double x) { return ScalarTraits<T>::from_double(x); }

// A double-double split of any scalar: hi = round(x), lo = round(x - hi).
// This is how fixtures carry ~30 digits of truth in two float64 datasets.
template <class T> std::pair<double, double> split_hi_lo(const T& x) {
  double hi = to_double(x);
  if (!std::isfinite(hi)) return {hi, 0.0};
  T rest = x - from_double<T>(hi);
  return {hi, to_double(rest)};
}

// Neumaier's compensated summation: error <= 2u * sum|x_i| + O(n u^2 sum|x_i|),
// independent of n to first order.
template <class T> struct Neumaier {
  T sum = T(0), comp = T(0);
  void add(const T& x) {
    using std::abs;
    T t = sum + x;
    if (abs(sum) >= abs(x)) comp += (sum - t) + x;
    else comp += (x - t) + sum;
    sum = t;
  }
  T value() const { return sum + comp; }
};

template <class T> bool is_finite(const T& x) {
  using std::isfinite;
  using boost::multiprecision::isfinite;
  return isfinite(x);
}
inline bool is_finite(const dd& x) { return x.isfinite() && !x.isnan(); }
inline bool is_finite(const qd4& x) { return x.isfinite() && !x.isnan(); }

}  // namespace plx
