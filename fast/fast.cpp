// fast/fast.cpp — plx::fast public API: checks, conversion to kernel storage, dispatch, results.
//
// Charter: supports() names what the fast path does not do; forward()/backward()
// validate the problem and inputs (plx::Error), convert inputs once to the storage type of
// p.dtype, run the LLA probe pre-pass when needed, call the tile drivers of the ISA chosen
// at run time, apply the query-anchor normalisation (docs/math.md §3.2/§4.3: out = (omega/d)
// ((Delta/omega) vbar - M), M = vbar - out_keymean) and widen results to double. Kernel
// output buffers are NaN-poisoned before the drivers run. No arithmetic kernels here.
#include "fast/fast.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cpuid.h>
#include <type_traits>
#include <limits>
#include <vector>

#include "fast/dispatch.hpp"
#include "fast/lla_probe.hpp"

namespace plx::fast {

namespace {
std::atomic<bool> g_force_generic{false};
bool use_avx512() {
  static const bool have = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  return have && !g_force_generic.load();
}
std::atomic<bool> g_force_fma{false};
// AMX for the forward products: CPUID AMX-TILE + AMX-BF16, the OS enables the tile state in XCR0
// (bits 17, 18), and Linux grants this process XTILEDATA (arch_prctl ARCH_REQ_XCOMP_PERM).
bool amx_available() {
  static const bool ok = [] {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool tile = (d >> 24) & 1u, bf16 = (d >> 22) & 1u;
    if (!tile || !bf16) return false;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1u)) return false;  // OSXSAVE
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if (((lo >> 17) & 3u) != 3u) return false;
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ok;
}
bool use_amx() { return use_avx512() && !g_force_fma.load() && amx_available(); }
constexpr int kMaxD = 512;   // tile buffers are sized for L1/L2; beyond this the kernels are not tuned or tested
constexpr int kMaxDlla = 256;  // LLA pre-pass holds a D x D matrix per thread

template <class A> A qnan() { return std::numeric_limits<A>::quiet_NaN(); }

// Storage conversion (values are exactly representable in p.dtype: check_inputs + make_inputs).
template <class S> S store(double x);
template <> float store<float>(double x) { return float(x); }
template <> double store<double>(double x) { return x; }
template <> std::uint16_t store<std::uint16_t>(double x) { return bf16_bits(float(x)); }

template <class S> std::vector<S> to_storage(const Tensor<double>& t) {
  std::vector<S> v(t.size());
  for (std::size_t i = 0; i < t.size(); ++i) v[i] = store<S>(t.data[i]);
  return v;
}
template <class A> std::vector<A> to_acc_vec(const Tensor<double>& t) {
  std::vector<A> v(t.size());
  for (std::size_t i = 0; i < t.size(); ++i) v[i] = A(t.data[i]);
  return v;
}
template <class A> Tensor<double> widen(const std::vector<A>& v, std::vector<std::size_t> shape, DType round = DType::F64) {
  Tensor<double> t(std::move(shape));
  for (std::size_t i = 0; i < v.size(); ++i) t.data[i] = round_to(round, double(v[i]));
  return t;
}

// Unsupported member / dtype / size, or "" if fine.
std::string why_not_forward(const Problem& p) {
  if (p.dtype == DType::F16) return "fast path: float16 inputs are not implemented (float32, bfloat16, float64 are)";
  if (p.D > kMaxD || p.Dv > kMaxD)
    return "fast path: head dimension D=" + std::to_string(p.D) + ", Dv=" + std::to_string(p.Dv) +
           " exceeds the supported maximum " + std::to_string(kMaxD);
  if (p.probe == Probe::Solver) {
    if (p.block_size() != p.D)
      return "fast path: block-diagonal LLA (solver.block=" + std::to_string(p.solver.block) +
             " < D) is not implemented; use the reference";
    if (p.D > kMaxDlla) return "fast path: LLA needs D <= " + std::to_string(kMaxDlla) + ", got D=" + std::to_string(p.D);
  }
  return "";
}
std::string why_not_backward(const Problem& p) {
  std::string w = why_not_forward(p);
  if (!w.empty()) return w;
  if (p.decode) return "fast path: a decode step is forward only (docs/math.md §6.1)";
  if (p.probe == Probe::Solver) return "fast path: the LLA backward is not implemented (softmax and Parallax are)";
  if (p.probe == Probe::Learned && p.anchor == Anchor::Query)
    return "fast path: the backward of the query-anchored learned probe is not implemented";
  return "";
}

template <class S, class A> void run_fwd(const FwdArgs<S, A>& a) {
  if constexpr (std::is_same_v<S, std::uint16_t>)
    if (use_amx()) return amx::fwd(a);
  if (use_avx512()) avx512::fwd(a);
  else generic::fwd(a);
}
template <class S, class A> void run_bwd(const BwdArgs<S, A>& a) {
  if (use_avx512()) avx512::bwd(a);
  else generic::bwd(a);
}

template <class S, class A> CandidateResult run(const Problem& p, const Inputs& in, bool backward) {
  const std::size_t B = p.B, Lq = p.Lq, Lkv = p.Lkv, Hq = p.Hq, Hkv = p.Hkv, D = p.D, Dv = p.Dv;
  const std::size_t nrow = B * Hq * Lq;
  const auto q = to_storage<S>(in.q), k = to_storage<S>(in.k), v = to_storage<S>(in.v);
  std::vector<A> r, dom_pre, omega_pre;  // dom_pre = Delta/omega of the LLA solve
  std::vector<LlaSolveReport> cg_rep;
  const bool cg = p.probe == Probe::Solver && p.solver.method != SolverMethod::Direct;
  if (p.probe == Probe::Learned) r = to_acc_vec<A>(in.r);
  if (p.probe == Probe::Solver) {
    r.assign(B * Lq * Hq * D, qnan<A>()), dom_pre.assign(nrow, qnan<A>()), omega_pre.assign(nrow, qnan<A>());
    if (cg) cg_rep.resize(nrow);
    lla_probe<S, A>(p, q.data(), k.data(), in.lambda.ptr(), r.data(), dom_pre.data(), omega_pre.data(),
                    cg ? cg_rep.data() : nullptr);
  }
  // Outputs poisoned with NaN: every entry must be written by the drivers.
  std::vector<A> out(B * Lq * Hq * Dv, qnan<A>()), vbar(out.size(), qnan<A>()), m2(nrow, qnan<A>()),
      d1(nrow, qnan<A>()), zbar(nrow, qnan<A>()), z0(nrow, qnan<A>());
  FwdArgs<S, A> fa;
  fa.p = &p, fa.q = q.data(), fa.k = k.data(), fa.v = v.data(), fa.r = r.empty() ? nullptr : r.data();
  fa.out = out.data(), fa.vbar = vbar.data(), fa.m2 = m2.data(), fa.d1 = d1.data(), fa.zbar = zbar.data();
  std::vector<A> zbs(nrow, qnan<A>());
  fa.z0 = z0.data(), fa.zbar_shifted = zbs.data();
  run_fwd(fa);

  CandidateResult res;
  // Query anchor (docs/math.md §3.2, §4.3): S_j = w_j (1 - theta.(k_j - q)) / d, i.e.
  // out = (omega / d) ((Delta/omega) vbar - M), M = vbar - out_keymean, Delta/omega = 1 - theta.(kbar - q).
  std::vector<A> out_final = out;
  if (p.anchor == Anchor::Query && p.probe != Probe::None) {
    for (int b = 0; b < p.B; ++b)
      for (int h = 0; h < p.Hq; ++h)
        for (int i = 0; i < p.Lq; ++i) {
          const std::size_t ro = (std::size_t(b) * Hq + h) * Lq + i, oo = ((std::size_t(b) * Lq + i) * Hq + h) * Dv;
          if (!(d1[ro] > A(0))) continue;  // empty row: already 0
          A dom;                           // Delta / omega
          if (p.probe == Probe::Solver) {
            dom = dom_pre[ro];  // docs/math.md §3.5: Delta = omega / (1 + alpha) (CG: 1 - rho.(kbar - q))
          } else {  // learned: 1 - r.(kbar - q) = 1 - zb' - (z0 - r.k_lo) - r.(k_lo - q), zb' = zbar - z0
                    // (mean relative to the kernel's final shift z0) and one dot product with
                    // k_lo - q: no cancellation of r.k vs r.q; z0 - r.k_lo is a difference of two
                    // values of z (the shift is a weighted mean of z), rounded like zbar itself.
            const std::size_t qo = ((std::size_t(b) * Lq + i) * Hq + h) * D;
            const int klo = row_range(p, b, i).lo;
            A e0 = 0, zlo = 0;
            for (std::size_t d = 0; d < D; ++d) {
              const double kd = in.k(b, klo, h / p.group(), d);
              e0 += r[qo + d] * A(kd - in.q.data[qo + d]);
              zlo += r[qo + d] * A(kd);
            }
            dom = A(1) - zbs[ro] - (z0[ro] - zlo) - e0;
          }
          // omega: d1 = sum 2^(s2 - m2) = sum exp(s - m) uses the same pivot (base 2 only changes units).
          const A omega = p.probe == Probe::Solver ? omega_pre[ro] : d1[ro];
          const A Delta = dom * omega, eps = A(p.anchor_knobs.delta_eps);
          const A dd = Delta > A(0) ? Delta + eps : Delta < A(0) ? Delta - eps : (p.anchor_knobs.sgn0 == Sgn0::Plus ? eps : A(0));
          if (dd == A(0))
            throw NumericalError("fast path: query-anchored denominator d = 0 at row (b=" + std::to_string(b) +
                                 ", h=" + std::to_string(h) + ", i=" + std::to_string(i) + ")");
          if (p.probe == Probe::Solver) {  // kernel probe theta = rho / (Delta/omega): out = (Delta / d) out_cov
            const A f = Delta / dd;
            for (std::size_t c = 0; c < Dv; ++c) out_final[oo + c] = f * out[oo + c];
          } else {
            const A f = omega / dd;
            for (std::size_t c = 0; c < Dv; ++c) {
              const A M = vbar[oo + c] - out[oo + c];
              out_final[oo + c] = f * (dom * vbar[oo + c] - M);
            }
          }
        }
  }
  res.out = widen(out_final, {B, Lq, Hq, Dv}, p.dtype == DType::BF16 ? DType::BF16 : DType::F64);
  std::vector<A> m(nrow), lse(nrow);
  for (std::size_t t = 0; t < nrow; ++t) {
    m[t] = A(double(m2[t]) * 0.6931471805599453);
    lse[t] = d1[t] > A(0) ? A(double(m[t]) + std::log(double(d1[t]))) : -std::numeric_limits<A>::infinity();
  }
  res.saved["m"] = widen(m, {B, Hq, Lq});
  res.saved["lse"] = widen(lse, {B, Hq, Lq});
  res.saved["omega"] = widen(d1, {B, Hq, Lq});
  res.saved["vbar"] = widen(vbar, {B, Lq, Hq, Dv});
  if (p.probe != Probe::None) res.saved["zbar"] = widen(zbar, {B, Hq, Lq});
  if (p.probe == Probe::Solver) {  // the probe the reference saves: rho (query anchor) or theta
    std::vector<A> pr = r;
    if (p.anchor == Anchor::Query)
      for (int b = 0; b < p.B; ++b)
        for (int i = 0; i < p.Lq; ++i)
          for (int h = 0; h < p.Hq; ++h) {
            const A dm = dom_pre[(std::size_t(b) * Hq + h) * Lq + i];
            for (std::size_t d = 0; d < D; ++d) pr[((std::size_t(b) * Lq + i) * Hq + h) * D + d] *= dm;
          }
    res.saved["probe"] = widen(pr, {B, Lq, Hq, D});
  }
  if (cg) {  // the reference's CG report (diagnostics cg_iters, cg_residual) plus the converged flag
    Tensor<double> it({B, Hq, Lq}), rr({B, Hq, Lq}), cv({B, Hq, Lq});
    for (std::size_t t = 0; t < nrow; ++t)
      it.data[t] = cg_rep[t].iterations, rr.data[t] = cg_rep[t].rel_residual, cv.data[t] = cg_rep[t].converged;
    res.saved["cg_iters"] = std::move(it), res.saved["cg_residual"] = std::move(rr), res.saved["cg_converged"] = std::move(cv);
  }
  if (!backward) return res;

  const auto dO = to_storage<S>(in.dO);
  std::vector<A> dq(B * Lq * Hq * D, qnan<A>()), dk(B * Lkv * Hkv * D, qnan<A>()), dv(B * Lkv * Hkv * Dv, qnan<A>()),
      dr(p.probe == Probe::Learned ? dq.size() : 0, qnan<A>());
  BwdArgs<S, A> ba;
  ba.p = &p, ba.q = q.data(), ba.k = k.data(), ba.v = v.data(), ba.dO = dO.data();
  ba.r = r.empty() ? nullptr : r.data();
  ba.out = out.data(), ba.vbar = vbar.data(), ba.m2 = m2.data(), ba.d1 = d1.data(), ba.zbar = zbar.data();
  ba.dq = dq.data(), ba.dk = dk.data(), ba.dv = dv.data(), ba.dr = dr.empty() ? nullptr : dr.data();
  run_bwd(ba);
  res.dq = widen(dq, {B, Lq, Hq, D});
  res.dk = widen(dk, {B, Lkv, Hkv, D});
  res.dv = widen(dv, {B, Lkv, Hkv, Dv});
  if (!dr.empty()) res.dr = widen(dr, {B, Lq, Hq, D});
  return res;
}

CandidateResult dispatch(const Problem& p, const Inputs& in, bool backward) {
  check_inputs(p, in);
  const std::string w = backward ? why_not_backward(p) : why_not_forward(p);
  if (!w.empty()) throw Error(w);
  if (backward) in.dO.require_shape({std::size_t(p.B), std::size_t(p.Lq), std::size_t(p.Hq), std::size_t(p.Dv)}, "dO");
  if (backward)
    for (double x : in.dO.data)
      if (!std::isfinite(x)) throw Error("tensor 'dO' has a non-finite value");
  switch (p.dtype) {
    case DType::F32: return run<float, float>(p, in, backward);
    case DType::BF16: return run<std::uint16_t, float>(p, in, backward);
    case DType::F64: return run<double, double>(p, in, backward);
    default: throw Error("fast path: unsupported dtype " + to_string(p.dtype));
  }
}
}  // namespace

bool supports(const Problem& p, std::string* why_not) {
  std::string w;
  try {
    validate(p);
    w = why_not_forward(p);
  } catch (const Error& e) {
    w = e.what();
  }
  if (why_not) *why_not = w;
  return w.empty();
}
bool supports_backward(const Problem& p, std::string* why_not) {
  std::string w;
  try {
    validate(p);
    w = why_not_backward(p);
  } catch (const Error& e) {
    w = e.what();
  }
  if (why_not) *why_not = w;
  return w.empty();
}

CandidateResult forward(const Problem& p, const Inputs& in) { return dispatch(p, in, false); }
CandidateResult backward(const Problem& p, const Inputs& in) { return dispatch(p, in, true); }

std::string isa() { return use_avx512() ? "avx512" : "generic"; }
void force_generic(bool on) { g_force_generic = on; }
std::string forward_kernel(DType dt) {
  if (dt == DType::BF16 && use_amx()) return "amx";
  return use_avx512() ? "avx512" : "generic";
}
void force_fma(bool on) { g_force_fma = on; }

template <class S, class A> void attention_forward_tiles(const FwdArgs<S, A>& a) { run_fwd(a); }
template <class S, class A> void attention_backward_tiles(const BwdArgs<S, A>& a) { run_bwd(a); }
template void attention_forward_tiles<float, float>(const FwdArgs<float, float>&);
template void attention_forward_tiles<std::uint16_t, float>(const FwdArgs<std::uint16_t, float>&);
template void attention_forward_tiles<double, double>(const FwdArgs<double, double>&);
template void attention_backward_tiles<float, float>(const BwdArgs<float, float>&);
template void attention_backward_tiles<std::uint16_t, float>(const BwdArgs<std::uint16_t, float>&);
template void attention_backward_tiles<double, double>(const BwdArgs<double, double>&);

}  // namespace plx::fast
