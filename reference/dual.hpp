// reference/dual.hpp — a forward-mode dual number Dual<T> = v + d·eps (eps^2 = 0) over any scalar T.
//
// Charter: just enough arithmetic (+ - * /, exp, log, sqrt, abs, comparisons on the value) and
// Eigen glue for attention_forward<Dual<T>> to run, so that the tangent of its output is the exact
// directional derivative of the forward (forward-mode AD, the second gradient oracle of
// reference/gradcheck.hpp). Comparisons, max and branches look at the value only (derivative
// of the branch taken). Converting a double to Dual<T> goes through the oracle's input table
// (see gradcheck.hpp); outside an oracle call it gives a constant. No reverse mode here.
#pragma once
#include <cmath>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "reference/errors.hpp"
#include "reference/scalar.hpp"

namespace plx {

template <class T> struct Dual {
  T v = T(0), d = T(0);
  Dual() = default;
  Dual(double x) : v(x) {}  // NOLINT: implicit, constants in the forward are written as T(x)
  Dual(int x) : v(x) {}     // NOLINT
  template <class U = T, std::enable_if_t<!std::is_same_v<U, double>, int> = 0>
  Dual(const T& x) : v(x) {}  // NOLINT
  Dual(const T& x, const T& dx) : v(x), d(dx) {}
  explicit operator double() const { return ScalarTraits<T>::to_double(v); }

  Dual& operator+=(const Dual& o) { v += o.v, d += o.d; return *this; }
  Dual& operator-=(const Dual& o) { v -= o.v, d -= o.d; return *this; }
  Dual& operator*=(const Dual& o) { d = d * o.v + v * o.d, v *= o.v; return *this; }
  Dual& operator/=(const Dual& o) { *this = *this / o; return *this; }
  friend Dual operator+(const Dual& a, const Dual& b) { return {a.v + b.v, a.d + b.d}; }
  friend Dual operator-(const Dual& a, const Dual& b) { return {a.v - b.v, a.d - b.d}; }
  friend Dual operator-(const Dual& a) { return {-a.v, -a.d}; }
  friend Dual operator+(const Dual& a) { return a; }
  friend Dual operator*(const Dual& a, const Dual& b) { return {a.v * b.v, a.d * b.v + a.v * b.d}; }
  friend Dual operator/(const Dual& a, const Dual& b) {
    T q = a.v / b.v;
    return {q, (a.d - q * b.d) / b.v};
  }
  friend bool operator==(const Dual& a, const Dual& b) { return a.v == b.v; }
  friend bool operator!=(const Dual& a, const Dual& b) { return a.v != b.v; }
  friend bool operator<(const Dual& a, const Dual& b) { return a.v < b.v; }
  friend bool operator>(const Dual& a, const Dual& b) { return a.v > b.v; }
  friend bool operator<=(const Dual& a, const Dual& b) { return a.v <= b.v; }
  friend bool operator>=(const Dual& a, const Dual& b) { return a.v >= b.v; }
};

template <class T> Dual<T> exp(const Dual<T>& a) {
  using std::exp;
  T e = exp(a.v);
  return {e, e * a.d};
}
template <class T> Dual<T> log(const Dual<T>& a) {
  using std::log;
  return {log(a.v), a.d / a.v};
}
template <class T> Dual<T> sqrt(const Dual<T>& a) {
  using std::sqrt;
  T s = sqrt(a.v);
  return {s, s > T(0) ? T(a.d / (T(2) * s)) : T(0)};
}
template <class T> Dual<T> abs(const Dual<T>& a) { return a.v < T(0) ? -a : a; }
template <class T> Dual<T> fabs(const Dual<T>& a) { return abs(a); }
template <class T> Dual<T> abs2(const Dual<T>& a) { return a * a; }
template <class T> Dual<T> conj(const Dual<T>& a) { return a; }
template <class T> Dual<T> real(const Dual<T>& a) { return a; }
template <class T> Dual<T> imag(const Dual<T>&) { return Dual<T>(); }
template <class T> bool isfinite(const Dual<T>& a) { return is_finite(a.v) && is_finite(a.d); }
template <class T> bool is_finite(const Dual<T>& a) { return is_finite(a.v) && is_finite(a.d); }

// How a double input becomes a Dual while an oracle runs (gradcheck.hpp): inputs arrive encoded
// as the finite doubles code(i) = (i + 1) * 2^900 (far above any legitimate input or constant),
// and decode to value x_i + t e_i with tangent e_i. Any other double is a constant (tangent 0).
template <class T> struct DualInputTable {
  static constexpr int kExp = 900;
  const std::vector<double>* x = nullptr;  // base values, by code index
  const std::vector<double>* e = nullptr;  // direction, by code index
  T t = T(0);                              // position along the direction
  mutable std::size_t decoded = 0;         // how many conversions hit the table (a sanity check)
  static DualInputTable*& current() { static DualInputTable* c = nullptr; return c; }
  static std::mutex& lock() { static std::mutex m; return m; }
  static double code(std::size_t i) { return std::ldexp(double(i + 1), kExp); }
};

template <class T> struct ScalarTraits<Dual<T>> {
  static std::string name() { return "dual<" + ScalarTraits<T>::name() + ">"; }
  static double eps() { return ScalarTraits<T>::eps(); }
  static double to_double(const Dual<T>& x) { return ScalarTraits<T>::to_double(x.v); }
  static Dual<T> from_double(double c) {
    DualInputTable<T>* tab = DualInputTable<T>::current();
    if (tab && std::abs(c) >= std::ldexp(1.0, DualInputTable<T>::kExp)) {
      const double idx = std::ldexp(c, -DualInputTable<T>::kExp) - 1;
      const std::size_t i = std::size_t(idx);
      if (idx < 0 || double(i) != idx || i >= tab->x->size()) throw Error("dual input table: bad code");
#pragma omp atomic
      tab->decoded++;
      const T e = ScalarTraits<T>::from_double((*tab->e)[i]);
      return {T(ScalarTraits<T>::from_double((*tab->x)[i]) + tab->t * e), e};
    }
    return Dual<T>(ScalarTraits<T>::from_double(c));
  }
  static void thread_setup() { ScalarTraits<T>::thread_setup(); }
};

}  // namespace plx

namespace Eigen {
template <class T> struct NumTraits<plx::Dual<T>> : GenericNumTraits<plx::Dual<T>> {
  typedef plx::Dual<T> Real;
  typedef plx::Dual<T> NonInteger;
  typedef plx::Dual<T> Nested;
  typedef plx::Dual<T> Literal;
  enum {
    IsComplex = 0, IsInteger = 0, IsSigned = 1, RequireInitialization = 1,
    ReadCost = 2, AddCost = 2 * NumTraits<T>::AddCost, MulCost = 3 * NumTraits<T>::MulCost
  };
  static inline Real epsilon() { return Real(NumTraits<T>::epsilon()); }
  static inline Real dummy_precision() { return Real(NumTraits<T>::dummy_precision()); }
  static inline Real highest() { return Real(NumTraits<T>::highest()); }
  static inline Real lowest() { return Real(NumTraits<T>::lowest()); }
  static inline int digits10() { return NumTraits<T>::digits10(); }
};
}  // namespace Eigen
