// tests/fast/fast_support.hpp — shared checks for the fast-path tests.
//
// Charter: run the truth (double-double reference), the same-precision baseline (the
// reference instantiated on float, or double in F64 mode, on the same rounded inputs) and
// the candidate, and compare them through validation/compare.hpp with the FlashAttention
// rule plus a derived floor (see floor_rel). Also bit-identity helpers for thread counts.
#pragma once
#include <omp.h>

#include <cmath>
#include <cstring>
#include <string>

#include "fast/fast.hpp"
#include "reference/all.hpp"
#include "validation/compare.hpp"

namespace plx::test {

// Unit roundoff of the fast path's accumulation for p.dtype (fp32 for F32/BF16, fp64 debug).
inline double acc_u(const Problem& p) { return p.dtype == DType::F64 ? 0x1p-53 : 0x1p-24; }
inline DType out_dtype(const Problem& p) { return p.dtype == DType::F64 ? DType::F64 : p.dtype == DType::BF16 ? DType::BF16 : DType::F32; }

// Floor, relative to max|truth| (the FlashAttention ratio alone fails when the baseline is
// luckily exact, e.g. one-key rows): 4 u (sqrt(n_sum) + sqrt(D)) — the probabilistic
// (random-walk) rounding bound of a sum of n_sum weighted terms in precision u, plus the
// relative error of each weight exp(tau q.k) caused by a D-term dot product in the logit
// (|tau q.k| errors ~ u sqrt(D) for RMS-1 entries); 4 covers the exp2 polynomial (<= 2 ulp)
// and the final division. A bf16 output adds its rounding, u_bf16 = 2^-8 relative.
inline double floor_rel(const Problem& p, double n_sum) {
  double f = 4 * acc_u(p) * (std::sqrt(n_sum) + std::sqrt(double(p.D)));
  if (p.dtype == DType::BF16) f += 0x1p-8;
  return f;
}

template <class T> Tensor<double> as_double(const Tensor<T>& t) {
  return convert<double>(t, [](const T& x) { return to_double(x); });
}
inline Tensor<double> round_tensor(Tensor<double> t, DType d) {
  for (auto& x : t.data) x = round_to(d, x);
  return t;
}
// Same-precision baseline output: the reference's algorithm in float (double in F64 mode),
// rounded to bf16 for BF16 (what a bf16 kernel's output store does).
inline Tensor<double> baseline_out(const Problem& p, const Inputs& in) {
  if (p.dtype == DType::F64) return attention_forward_double<double>(p, in);
  return round_tensor(as_double(attention_forward<float>(p, in).out), out_dtype(p));
}

inline bool bit_identical(const Tensor<double>& a, const Tensor<double>& b) {
  return a.shape == b.shape && (a.data.empty() || std::memcmp(a.data.data(), b.data.data(), a.size() * sizeof(double)) == 0);
}
inline bool bit_identical(const CandidateResult& a, const CandidateResult& b) {
  return bit_identical(a.out, b.out) && bit_identical(a.dq, b.dq) && bit_identical(a.dk, b.dk) &&
         bit_identical(a.dv, b.dv) && bit_identical(a.dr, b.dr);
}
// Run f with n OpenMP threads, restoring the previous setting.
template <class F> auto with_threads(int n, F&& f) {
  const int old = omp_get_max_threads();
  omp_set_num_threads(n);
  auto r = f();
  omp_set_num_threads(old);
  return r;
}

}  // namespace plx::test
