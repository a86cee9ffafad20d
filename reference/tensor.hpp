// reference/tensor.hpp — a minimal dense row-major tensor used by every layer.
//
// Charter: owns a flat std::vector<T> and a shape; index helpers for the canonical
// heads-last layouts ([B, L, H, D]) and the per-row layout ([B, H, L]). No maths,
// no views with strides: kernels with strides live in fast/ and kernels/.
#pragma once
#include <cstddef>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include "reference/errors.hpp"

namespace plx {

inline std::string shape_str(const std::vector<std::size_t>& s) {
  std::ostringstream o;
  o << "[";
  for (std::size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

template <class T> struct Tensor {
  std::vector<std::size_t> shape;
  std::vector<T> data;

  Tensor() = default;
  explicit Tensor(std::vector<std::size_t> s, const T& fill = T(0)) : shape(std::move(s)) {
    std::size_t n = 1;
    for (auto d : shape) n *= d;
    data.assign(n, fill);
  }
  std::size_t size() const { return data.size(); }
  bool empty() const { return shape.empty(); }
  std::size_t dim(std::size_t i) const { return shape.at(i); }
  T* ptr() { return data.data(); }
  const T* ptr() const { return data.data(); }
  // Flat index of a 4-d position.
  std::size_t at4(std::size_t a, std::size_t b, std::size_t c, std::size_t d) const {
    return ((a * shape[1] + b) * shape[2] + c) * shape[3] + d;
  }
  std::size_t at3(std::size_t a, std::size_t b, std::size_t c) const {
    return (a * shape[1] + b) * shape[2] + c;
  }
  T& operator()(std::size_t a, std::size_t b, std::size_t c, std::size_t d) { return data[at4(a, b, c, d)]; }
  const T& operator()(std::size_t a, std::size_t b, std::size_t c, std::size_t d) const { return data[at4(a, b, c, d)]; }
  T& operator()(std::size_t a, std::size_t b, std::size_t c) { return data[at3(a, b, c)]; }
  const T& operator()(std::size_t a, std::size_t b, std::size_t c) const { return data[at3(a, b, c)]; }

  void require_shape(const std::vector<std::size_t>& want, const std::string& name) const {
    if (shape != want)
      throw Error("tensor '" + name + "': shape " + shape_str(shape) + " but the problem needs " + shape_str(want));
  }
};

// Convert element type (e.g. double inputs -> extended scalar).
template <class To, class From, class F> Tensor<To> convert(const Tensor<From>& t, F f) {
  Tensor<To> out;
  out.shape = t.shape;
  out.data.reserve(t.data.size());
  for (const auto& x : t.data) out.data.push_back(f(x));
  return out;
}

}  // namespace plx
