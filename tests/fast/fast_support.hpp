// tests/fast/fast_support.hpp — shared checks for the fast-path tests.
//
// Charter: run the truth (double-double reference), the same-precision baseline (the
// reference instantiated on float, or double in F64 mode, on the same rounded inputs) and
// the candidate, and compare them through validation/compare.hpp with the FlashAttention
// rule plus a derived floor (see floor_rel): check_forward (out) and check_lse. Also
// bit-identity helpers for thread counts.
#pragma once
#include <omp.h>

#include <cmath>
#include <cstring>
#include <string>

#include "fast/fast.hpp"
#include "reference/all.hpp"
#include "tests/support.hpp"  // max_row_norm
#include "validation/compare.hpp"

namespace plx::test {

// Unit roundoff of the fast path's accumulation for p.dtype (fp32 for F32/BF16, fp64 debug).
inline double acc_u(const Problem& p) { return p.dtype == DType::F64 ? 0x1p-53 : 0x1p-24; }
inline DType out_dtype(const Problem& p) { return p.dtype == DType::F64 ? DType::F64 : p.dtype == DType::BF16 ? DType::BF16 : DType::F32; }

// Bound on the logit magnitudes: S1 = tau max|q_i| max|k_j| >= tau sum_d |q_id k_jd| >= |tau q.k|
// (Cauchy-Schwarz), in natural units.
inline double logit_bound(const Problem& p, const Inputs& in) {
  return p.tau() * max_row_norm(in.q) * max_row_norm(in.k);
}

// Floor, relative to max|truth| (the FlashAttention ratio alone fails when the baseline is
// luckily exact, e.g. one-key rows): 4 u (sqrt(n_sum) + max(sqrt(D), S1)) — the probabilistic
// (random-walk) rounding bound of a sum of n_sum weighted terms in precision u, plus the
// relative error of each weight exp(tau q.k) caused by the absolute rounding of its logit,
// which exp turns into a relative error of the same size: ~u sqrt(D) for the D-term dot product
// of RMS-1 entries, but ~u |logit| once the logits are large (the scaling by tau log2 e and the
// dot product round relative to the logit itself: sinks, outlier tokens, large scales), so the
// term is u max(sqrt(D), S1) with S1 = logit_bound (pass 0 to keep sqrt(D)). 4 covers the exp2
// polynomial (<= 2 ulp) and the final division. A bf16 output adds its rounding, 2^-8 relative.
// (Found by the hazard property tests: a sink row in fp64 with D = 1, logits ~17 in base 2, had
// a 20-34 ulp error against a 1-ulp reference; the old floor 4u(sqrt(n) + sqrt(D)) assumed RMS-1
// logits.)
inline double floor_rel(const Problem& p, double n_sum, double s1 = 0) {
  double f = 4 * acc_u(p) * (std::sqrt(n_sum) + std::max(std::sqrt(double(p.D)), s1));
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

// The out check of one problem; returns the report (printed on failure). For CG solves the
// key-mean anchor needs the reference's diagnostics (condition numbers, an eigen-solve per row)
// only for the CG floor: they are computed on a second call, when the first check fails.
inline TensorReport check_forward(const Problem& p, const Inputs& in, const CandidateResult& c,
                                  bool cg_diagnostics = false) {
  ForwardOptions o;
  o.saved = p.probe != Probe::None;
  const bool cg_solve = p.probe == Probe::Solver && p.solver.method != SolverMethod::Direct;
  o.diagnostics = (p.probe != Probe::None && p.anchor == Anchor::Query) || (cg_solve && cg_diagnostics);
  const bool cg = cg_solve && o.diagnostics;
  const Forward<dd> F = attention_forward<dd>(p, in, o);
  const Tensor<double> truth = as_double(F.out);
  const Tensor<double> base = baseline_out(p, in);
  Tolerance tol;
  tol.baseline_ratio = 2.0;
  tol.rel_floor = floor_rel(p, p.Lkv, logit_bound(p, in));
  tol.why = "2x same-precision reference baseline, floor 4u(sqrt(Lkv)+max(sqrt(D),S1)) max(max|out|, max|v|) (+2^-8 max|out| for bf16 out)";
  {
    // The accumulation part of the floor scales with the weighted sum of |v| (the error of an
    // n-term weighted mean is <= gamma_n sum_j p_j |v_j| / sum_j p_j), which max|out| underestimates
    // when the v_j cancel: a rapidcheck case (softmax fp32, Lq = 1, Lkv = 7, D = 16, Dv = 1,
    // rapidcheck seed 2117842974088316798) had out = -0.027 from |v| ~ 1, where the fast path's
    // correct-looking 5.4e-8 error was 1.3x a floor scaled by |out|. The bound uses max|v| for
    // that part; the bf16 output rounding (2^-8) stays relative to |out|.
    double vmax = 0, omax = 0;
    for (double x : in.v.data) vmax = std::max(vmax, std::abs(x));
    for (double x : truth.data) omax = std::max(omax, std::abs(x));
    const double acc_part = tol.rel_floor - (p.dtype == DType::BF16 ? 0x1p-8 : 0.0);
    tol.abs_floor += acc_part * std::max(0.0, vmax - omax);
  }
  if (p.probe != Probe::None) {
    // Probe members add the rounding of z_j = theta.k_j: |dz| <~ u (sqrt(D) + sqrt(Lkv)) |theta| |k|
    // (D-term dot product, Lkv-term weighted means of z), entering out through
    // sum_j p_j dz_j (v_j - vbar) (<= 2 max|v| dz); a query anchor multiplies the probe by
    // gamma = 1 + alpha (LLA: theta = gamma rho) and the error of gamma = 1/(Delta/omega) by gamma^2
    // (for the learned query-anchored probe the first factor over-counts by one gamma).
    double pmax = 0, kn = 0, vmax = 0, gmax = 1;
    for (const auto& x : F.saved.at("probe").data) pmax = std::max(pmax, std::abs(to_double(x)));
    for (std::size_t o0 = 0; o0 < in.k.size(); o0 += p.D) {
      double ss = 0;
      for (int d = 0; d < p.D; ++d) ss += in.k.data[o0 + d] * in.k.data[o0 + d];
      kn = std::max(kn, std::sqrt(ss));
    }
    for (double x : in.v.data) vmax = std::max(vmax, std::abs(x));
    if (o.diagnostics)
      for (double a : F.diag.at("alpha").data) gmax = std::max(gmax, std::abs(1 + a));
    // Added to (not replacing) the accumulation term above: both roundings are present at once.
    tol.abs_floor += 4 * acc_u(p) * (std::sqrt(double(p.D)) + std::sqrt(double(p.Lkv))) * gmax * gmax * gmax * pmax *
                    kn * 2 * vmax;
    tol.why += "; + 4u(sqrt(D)+sqrt(Lkv)) gamma^3 |probe| |k| 2max|v| (rounding of z = probe.k)";
    if (cg) {
      // A fixed-count CG is not backward stable: its rounding errors are amplified by up to
      // ~kappa per iteration of the recurrences (attainable accuracy ~ u kappa ||x||, Greenbaum),
      // so two correct fp64 CGs with different matvec summation orders (the fast path's fused
      // matrix-free pass vs the reference's formed matrix) differ by up to
      // 4 u64 iters kappa |probe|; that moves out by the probe term above (|k| 2max|v| gamma^3).
      // kappa = cond(Sigma/omega) (query anchor) or cond(C + lambda I) (key mean), per row.
      double kap = 1;
      for (double c : F.diag.at(p.anchor == Anchor::Query ? "cond_Sigma" : "cond_C").data)
        if (std::isfinite(c)) kap = std::max(kap, c);
      tol.abs_floor += 4 * 0x1p-53 * p.solver.cg_max_iters * kap * gmax * gmax * gmax * pmax * kn * 2 * vmax;
      tol.why += "; + 4 u64 iters kappa gamma^3 |probe| |k| 2max|v| (fp64 CG rounding amplification)";
    }
  }
  TensorReport r = compare_tensor("out", c.out, truth, out_dtype(p), tol, &base);
  if (!r.passed && cg_solve && !cg) return check_forward(p, in, c, true);
  return r;
}

// lse (saved) against the truth: |lse| error <= |m| u + (error of ln omega) ~ 4u(|lse| + sqrt(Lkv) + sqrt(D));
// empty rows (lse = -inf in both) are set to 0 in both before comparing.
inline TensorReport check_lse(const Problem& p, const Inputs& in, const CandidateResult& c) {
  ForwardOptions o;
  o.saved = true;
  Tensor<double> truth = as_double(attention_forward<dd>(p, in, o).saved.at("lse"));
  Tensor<double> cand = c.saved.at("lse");
  double mx = 0;
  for (std::size_t i = 0; i < truth.size(); ++i) {
    if (std::isinf(truth.data[i]) && std::isinf(cand.data[i]) && truth.data[i] < 0 && cand.data[i] < 0)
      truth.data[i] = cand.data[i] = 0;
    mx = std::max(mx, std::abs(truth.data[i]));
  }
  Tolerance tol;
  // The logit's own rounding enters lse one to one; it is ~u sqrt(D) for RMS-1 entries but ~u S1
  // (S1 = tau max|q| max|k|) once the logits are large, as in floor_rel. (A random rapidcheck seed,
  // 8459633643634654143, found an fp64 outlier case with lse = 79.8 whose 3-ulp error was 1.03x
  // the floor with sqrt(D) alone.)
  tol.abs_floor = 4 * acc_u(p) * (mx + std::sqrt(double(p.Lkv)) + std::max(std::sqrt(double(p.D)), logit_bound(p, in)) + 1);
  tol.why = "4u(max|lse| + sqrt(Lkv) + max(sqrt(D), S1) + 1): rounding of m and of the logit, plus ln of an Lkv-term sum";
  return compare_tensor("lse", cand, truth, DType::F32, tol, nullptr);
}

}  // namespace plx::test
