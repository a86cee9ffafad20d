// reference/gradcheck.hpp — gradient oracles that never look at the analytic backward.
//
// Charter: differentiate the reference forward itself, L(x) = sum(dO * attention_forward(x)),
// in scalar T (bf100 or bf50 for truth, dd for cheap checks), three ways:
//   - central finite differences with one Richardson step, per input element or per direction;
//   - forward-mode AD: attention_forward<Dual<T>> gives d/dt L(x + t e) exactly (to rounding in T);
//   - the adjoint identity <dL/dx, e> = d/dt L(x + t e) for random directions (validation/gradcheck).
// Inputs enter the Dual forward through an encoded copy of Inputs (reference/dual.hpp), so the
// forward is used unmodified. One oracle call at a time per T (a mutex); the forward inside runs
// its usual OpenMP loop. Inputs perturbed: q, k, v always; r if probe == Learned; lambda if Solver.
#pragma once
#include <cmath>
#include <cstdint>
#include <mutex>
#include <vector>

#include "reference/attention.hpp"
#include "reference/backward.hpp"
#include "reference/dual.hpp"
#include "reference/rng.hpp"

namespace plx {

// A direction in input space; an empty tensor (shape {}) means zero along that input.
struct Direction {
  Tensor<double> q, k, v, r, lambda;
};

namespace detail {
// The differentiable inputs of a problem, in a fixed order, as (tensor pointer, name).
struct InputSlot {
  const char* name;
  Tensor<double> Inputs::*in;
  Tensor<double> Direction::*dir;
};
inline std::vector<InputSlot> input_slots(const Problem& p) {
  std::vector<InputSlot> s = {{"q", &Inputs::q, &Direction::q}, {"k", &Inputs::k, &Direction::k}, {"v", &Inputs::v, &Direction::v}};
  if (p.probe == Probe::Learned) s.push_back({"r", &Inputs::r, &Direction::r});
  if (p.probe == Probe::Solver) s.push_back({"lambda", &Inputs::lambda, &Direction::lambda});
  return s;
}
}  // namespace detail

// Random direction, N(0,1) entries from our portable RNG, on the tensors named in `which`
// (a subset of "qkvrl"; r and lambda only where the member has them). Entries are rounded to
// float so that x + t e stays well defined whatever T is.
inline Direction random_direction(const Problem& p, const Inputs& in, std::uint64_t seed, const std::string& which = "qkvrl") {
  Direction e;
  std::uint64_t sub = 0;
  for (const auto& s : detail::input_slots(p)) {
    ++sub;
    const char c = s.name[0] == 'l' ? 'l' : s.name[0];
    if (which.find(c) == std::string::npos) continue;
    const Tensor<double>& x = in.*(s.in);
    Tensor<double> t(x.shape);
    CounterRng g = rng_for(seed, Stream::Aux, 1000 + sub);
    for (std::size_t i = 0; i < t.size(); ++i) t.data[i] = double(float(g.normal(i)));
    e.*(s.dir) = std::move(t);
  }
  return e;
}

// L(x + t e) and its derivative in t, from one forward in Dual<T>.
template <class T> struct Jet {
  T value, slope;
};

template <class T> Jet<T> loss_jet(const Problem& p, const Inputs& in, const Direction& e, const T& t) {
  check_inputs(p, in);
  detail::check_dO(p, in);
  std::vector<double> x, ev;
  std::size_t always_read = 0;  // q, k, v, r are converted whole; lambda only for non-empty rows
  Inputs enc = in;
  for (const auto& s : detail::input_slots(p)) {
    if (std::string(s.name) != "lambda") always_read += (in.*(s.in)).size();
    const Tensor<double>& src = in.*(s.in);
    const Tensor<double>& dir = e.*(s.dir);
    if (!dir.empty()) dir.require_shape(src.shape, std::string("direction ") + s.name);
    Tensor<double>& dst = enc.*(s.in);
    for (std::size_t i = 0; i < src.size(); ++i) {
      dst.data[i] = DualInputTable<T>::code(x.size());
      x.push_back(src.data[i]);
      ev.push_back(dir.empty() ? 0.0 : dir.data[i]);
    }
  }
  Forward<Dual<T>> F;
  {
    std::lock_guard<std::mutex> lk(DualInputTable<T>::lock());
    DualInputTable<T> tab;
    tab.x = &x, tab.e = &ev, tab.t = t;
    DualInputTable<T>::current() = &tab;
    try {
      F = attention_forward<Dual<T>>(p, enc);
    } catch (...) {
      DualInputTable<T>::current() = nullptr;
      throw;
    }
    DualInputTable<T>::current() = nullptr;
    // Every encoded input must have entered through the table; a forward that read the raw
    // doubles would have seen 2^900-sized codes and produced non-finite output.
    if (tab.decoded < always_read) throw Error("gradient oracle: the forward did not read every input through from_double");
  }
  Neumaier<T> val, slope;
  for (std::size_t i = 0; i < F.out.size(); ++i) {
    const T g = from_double<T>(in.dO.data[i]);
    val.add(T(g * F.out.data[i].v));
    slope.add(T(g * F.out.data[i].d));
  }
  if (!is_finite(val.value()) || !is_finite(slope.value())) throw NumericalError("gradient oracle: non-finite loss");
  return {val.value(), slope.value()};
}

// Forward-mode AD directional derivative d/dt L(x + t e) at t = 0.
template <class T> T directional_ad(const Problem& p, const Inputs& in, const Direction& e) {
  return loss_jet<T>(p, in, e, T(0)).slope;
}

// Default FD step: h = u^(1/5), the balance of the Richardson-extrapolated central difference
// (truncation ~ h^4 |L^(5)| / 480, rounding ~ u |L| / h): ~u^(4/5), i.e. 1e-80 in bf100, 1e-40 in bf50.
template <class T> double default_fd_step() { return std::pow(ScalarTraits<T>::eps(), 0.2); }

// Central differences D(h) = (L(h) - L(-h)) / 2h at h and h/2, then Richardson: (4 D(h/2) - D(h)) / 3.
// Only the values of the Dual forward are used (its tangents are ignored).
template <class T> T directional_fd(const Problem& p, const Inputs& in, const Direction& e, double h = 0) {
  const T H = from_double<T>(h > 0 ? h : default_fd_step<T>());
  auto L = [&](const T& t) { return loss_jet<T>(p, in, e, t).value; };
  const T d1 = (L(H) - L(-H)) / (T(2) * H);
  const T h2 = H / T(2);
  const T d2 = (L(h2) - L(-h2)) / (T(2) * h2);
  return (T(4) * d2 - d1) / T(3);
}

// The full gradient, one unit direction per input element (small problems only: 1 forward per
// element for AD, 4 for FD). Returns the same layout as attention_backward.
template <class T> Gradients<T> oracle_gradient(const Problem& p, const Inputs& in, bool finite_differences, double h = 0) {
  Gradients<T> G = detail::zero_gradients<T>(p);
  auto out_of = [&](const char* n) -> Tensor<T>& {
    std::string s = n;
    return s == "q" ? G.dq : s == "k" ? G.dk : s == "v" ? G.dv : s == "r" ? G.dr : G.dlambda;
  };
  for (const auto& s : detail::input_slots(p)) {
    const Tensor<double>& x = in.*(s.in);
    Direction e;
    e.*(s.dir) = Tensor<double>(x.shape);
    for (std::size_t i = 0; i < x.size(); ++i) {
      (e.*(s.dir)).data[i] = 1.0;
      out_of(s.name).data[i] = finite_differences ? directional_fd<T>(p, in, e, h) : directional_ad<T>(p, in, e);
      (e.*(s.dir)).data[i] = 0.0;
    }
  }
  return G;
}

// <grad, e> for a gradient in any scalar, accumulated in T.
template <class T, class G> T inner(const Problem& p, const Gradients<G>& g, const Direction& e) {
  Neumaier<T> acc;
  auto add = [&](const Tensor<G>& a, const Tensor<double>& b) {
    if (b.empty()) return;
    for (std::size_t i = 0; i < b.size(); ++i) acc.add(T(T(a.data[i]) * from_double<T>(b.data[i])));
  };
  add(g.dq, e.q), add(g.dk, e.k), add(g.dv, e.v);
  if (p.probe == Probe::Learned) add(g.dr, e.r);
  if (p.probe == Probe::Solver) add(g.dlambda, e.lambda);
  return acc.value();
}

}  // namespace plx

#define PLX_GRADCHECK_TEMPLATES(T, PREFIX)                                                               \
  PREFIX Jet<T> loss_jet<T>(const Problem&, const Inputs&, const Direction&, const T&);                 \
  PREFIX T directional_ad<T>(const Problem&, const Inputs&, const Direction&);                          \
  PREFIX T directional_fd<T>(const Problem&, const Inputs&, const Direction&, double);                  \
  PREFIX Gradients<T> oracle_gradient<T>(const Problem&, const Inputs&, bool, double);
