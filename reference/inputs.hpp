// reference/inputs.hpp — Problem -> input tensors, deterministically.
//
// Charter: every element is a pure function of (seed, tensor stream, flat index), so
// the same problem gives bit-identical inputs on any platform and thread count.
// Values are rounded to problem.dtype before anyone (reference or candidate) sees
// them, and stored as doubles that are exactly representable in that dtype.
// Generators implement the hazards of docs/math.md §7. Inputs never contain all zeros.
#pragma once
#include <cmath>
#include <vector>

#include "reference/problem.hpp"
#include "reference/rng.hpp"
#include "reference/tensor.hpp"

namespace plx {

struct Inputs {
  Tensor<double> q, r, k, v;  // [B,Lq,Hq,D], [B,Lq,Hq,D], [B,Lkv,Hkv,D], [B,Lkv,Hkv,Dv]
  Tensor<double> dO;          // [B,Lq,Hq,Dv]   upstream gradient for backward checks
  Tensor<double> lambda;      // [B,Hq,Lq]      ridge per row (all equal unless lambda_per_row)
};

namespace detail {
inline Tensor<double> normal_tensor(std::vector<std::size_t> shape, std::uint64_t seed, Stream s, double scale = 1.0) {
  Tensor<double> t(std::move(shape));
  CounterRng g = rng_for(seed, s);
  for (std::size_t i = 0; i < t.size(); ++i) t.data[i] = scale * g.normal(i);
  return t;
}
// Scale every D-vector (last axis) to RMS 1.
inline void rms_normalise(Tensor<double>& t) {
  const std::size_t D = t.shape.back();
  for (std::size_t o = 0; o < t.size(); o += D) {
    double ss = 0;
    for (std::size_t d = 0; d < D; ++d) ss += t.data[o + d] * t.data[o + d];
    double f = ss > 0 ? std::sqrt(double(D) / ss) : 1.0;
    for (std::size_t d = 0; d < D; ++d) t.data[o + d] *= f;
  }
}
// A fixed unit vector of length D drawn from the Aux stream.
inline std::vector<double> unit_vector(int D, std::uint64_t seed, std::uint64_t sub) {
  CounterRng g = rng_for(seed, Stream::Aux, sub);
  std::vector<double> u(D);
  double ss = 0;
  for (int d = 0; d < D; ++d) { u[d] = g.normal(d); ss += u[d] * u[d]; }
  if (ss == 0) { u[0] = 1; ss = 1; }
  for (auto& x : u) x /= std::sqrt(ss);
  return u;
}
}  // namespace detail

inline double default_gen_param(InputGen g) {
  switch (g) {
    case InputGen::Anisotropic: return 1e4;   // cond(cov(k))
    case InputGen::Outliers: return 30.0;     // outlier magnitude factor
    case InputGen::Sink: return 8.0;          // sink key size along the mean query direction
    case InputGen::NearDuplicate: return 1e-3;
    case InputGen::LargeScale: return 8.0;
    case InputGen::LargeR: return 100.0;
    case InputGen::ZCancel: return 64.0;     // common key offset along u
    default: return 0.0;
  }
}

inline Inputs make_inputs(const Problem& p) {
  validate(p);
  using detail::normal_tensor;
  const std::size_t B = p.B, Lq = p.Lq, Lkv = p.Lkv, Hq = p.Hq, Hkv = p.Hkv, D = p.D, Dv = p.Dv;
  const double param = p.gen_param > 0 ? p.gen_param : default_gen_param(p.gen);
  Inputs in;
  in.q = normal_tensor({B, Lq, Hq, D}, p.seed, Stream::Q);
  in.k = normal_tensor({B, Lkv, Hkv, D}, p.seed, Stream::K);
  in.v = normal_tensor({B, Lkv, Hkv, Dv}, p.seed, Stream::V);
  in.r = normal_tensor({B, Lq, Hq, D}, p.seed, Stream::R, p.r_scale);
  in.dO = normal_tensor({B, Lq, Hq, Dv}, p.seed, Stream::dO);

  switch (p.gen) {
    case InputGen::Normal: break;
    case InputGen::RmsNorm:
      detail::rms_normalise(in.q), detail::rms_normalise(in.k);
      break;
    case InputGen::Anisotropic:  // coordinate d of k scaled by cond^(-d/(2(D-1)))
      for (std::size_t o = 0; o < in.k.size(); o += D)
        for (std::size_t d = 0; d < D; ++d)
          in.k.data[o + d] *= D > 1 ? std::pow(param, -0.5 * double(d) / double(D - 1)) : 1.0;
      break;
    case InputGen::Outliers:
      for (std::size_t b = 0; b < B; ++b)
        for (std::size_t j = 5; j < Lkv; j += 17)
          for (std::size_t h = 0; h < Hkv; ++h) {
            for (std::size_t d = 0; d < D; ++d) in.k(b, j, h, d) *= param;
            for (std::size_t d = 0; d < Dv; ++d) in.v(b, j, h, d) *= param;
          }
      break;
    case InputGen::Sink: {  // queries share direction u; key 0 points along u with size param
      detail::rms_normalise(in.q), detail::rms_normalise(in.k);
      auto u = detail::unit_vector(p.D, p.seed, 1);
      for (std::size_t o = 0; o < in.q.size(); o += D)
        for (std::size_t d = 0; d < D; ++d) in.q.data[o + d] += 0.5 * std::sqrt(double(D)) * u[d];
      for (std::size_t b = 0; b < B; ++b)
        for (std::size_t h = 0; h < Hkv; ++h)
          for (std::size_t d = 0; d < D; ++d) in.k(b, 0, h, d) = param * u[d];
      break;
    }
    case InputGen::NearDuplicate:
      for (std::size_t b = 0; b < B; ++b)
        for (std::size_t j = 1; j < Lkv; j += 2)
          for (std::size_t h = 0; h < Hkv; ++h)
            for (std::size_t d = 0; d < D; ++d)
              in.k(b, j, h, d) = in.k(b, j - 1, h, d) + param * in.k(b, j, h, d);
      break;
    case InputGen::LargeScale:
      detail::rms_normalise(in.q), detail::rms_normalise(in.k);
      for (auto& x : in.q.data) x *= param;
      break;
    case InputGen::LargeR: {  // r large, keys offset along u: |zbar| >> sigma_z
      auto u = detail::unit_vector(p.D, p.seed, 2);
      for (auto& x : in.r.data) x *= param;
      for (std::size_t o = 0; o < in.k.size(); o += D)
        for (std::size_t d = 0; d < D; ++d) in.k.data[o + d] += 4.0 * u[d];
      break;
    }
    case InputGen::ZCancel: {
      // The cancellation hazard of docs/math.md §7.1: every key gets the offset c u (c = param) and
      // every r the component 2 r_scale sqrt(D) u, so z_j = r.k_j = r.k0_j + c r.u has mean
      // ~ 2 c r_scale sqrt(D) over the keys but spread only |r| ~ r_scale sqrt(5 D): z - zbar
      // loses log10(0.9 c) digits (1.8 at c = 64) unless a kernel shifts z first (r.u < 0
      // would need n.u < -2 sqrt(D) for the row's normal draw n: 5.3 sigma at D = 7). The
      // offset adds the same c q.u to every logit of a row, so the softmax weights are those
      // of the unshifted keys (a row constant), and LLA's centred statistics see keys with a
      // large common mean (raw second moments would cancel too, docs/math.md §7.4).
      auto u = detail::unit_vector(p.D, p.seed, 3);
      const double s = 2.0 * p.r_scale * std::sqrt(double(D));
      for (std::size_t o = 0; o < in.r.size(); o += D)
        for (std::size_t d = 0; d < D; ++d) in.r.data[o + d] += s * u[d];
      for (std::size_t o = 0; o < in.k.size(); o += D)
        for (std::size_t d = 0; d < D; ++d) in.k.data[o + d] += param * u[d];
      break;
    }
  }

  // Ridge per row: lambda * 4^(2u-1) in [lambda/4, 4 lambda], rounded to fp32 so any
  // fp32 candidate sees the same value.
  in.lambda = Tensor<double>({B, Hq, Lq}, p.solver.lambda);
  if (p.solver.lambda_per_row) {
    CounterRng g = rng_for(p.seed, Stream::Lambda);
    for (std::size_t i = 0; i < in.lambda.size(); ++i)
      in.lambda.data[i] = double(float(p.solver.lambda * std::pow(4.0, 2.0 * g.uniform(i) - 1.0)));
  }

  for (Tensor<double>* t : {&in.q, &in.r, &in.k, &in.v, &in.dO})
    for (auto& x : t->data) x = round_to(p.dtype, x);
  if (p.probe != Probe::Learned)  // r is not an input of this member: keep it as zeros
    std::fill(in.r.data.begin(), in.r.data.end(), 0.0);
  return in;
}

// Check an externally supplied input set against a problem: shapes and finiteness.
// Reports the tensor and the first offending index.
inline void check_inputs(const Problem& p, const Inputs& in) {
  validate(p);
  const std::size_t B = p.B, Lq = p.Lq, Lkv = p.Lkv, Hq = p.Hq, Hkv = p.Hkv, D = p.D, Dv = p.Dv;
  in.q.require_shape({B, Lq, Hq, D}, "q");
  in.k.require_shape({B, Lkv, Hkv, D}, "k");
  in.v.require_shape({B, Lkv, Hkv, Dv}, "v");
  if (p.probe == Probe::Learned) in.r.require_shape({B, Lq, Hq, D}, "r");
  if (p.probe == Probe::Solver) in.lambda.require_shape({B, Hq, Lq}, "lambda");
  auto finite = [](const Tensor<double>& t, const char* name) {
    for (std::size_t i = 0; i < t.size(); ++i)
      if (!std::isfinite(t.data[i])) {
        std::string idx;
        std::size_t rem = i;
        std::vector<std::size_t> pos(t.shape.size());
        for (std::size_t a = t.shape.size(); a-- > 0;) { pos[a] = rem % t.shape[a]; rem /= t.shape[a]; }
        throw Error(std::string("tensor '") + name + "' has a non-finite value " + std::to_string(t.data[i]) +
                    " at index " + shape_str(pos));
      }
  };
  finite(in.q, "q"), finite(in.k, "k"), finite(in.v, "v");
  if (p.probe == Probe::Learned) finite(in.r, "r");
  if (p.probe == Probe::Solver) {
    finite(in.lambda, "lambda");
    for (std::size_t i = 0; i < in.lambda.size(); ++i)
      if (in.lambda.data[i] < 0) throw Error("tensor 'lambda' has a negative entry at flat index " + std::to_string(i));
  }
}

}  // namespace plx
