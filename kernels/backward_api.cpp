// kernels/backward_api.cpp — host side of the CUDA backward: validation, upload, launch.
//
// Charter: check_backward_params() rejects every launch the backward kernels cannot take, before
// any CUDA call (unsupported D/Dv, dtype or mechanism, null or misaligned pointers, strides that
// break 16-byte rows, a non-contiguous feature axis, L = 0, grids over the hardware limits, bad
// masks); launch_backward() checks every CUDA call and launch; backward() runs the CUDA forward
// (saving what the backward needs) and then the backward on a Problem + Inputs, with every output
// poisoned (0xFF) first, and widens the results to double. Host compiler only.
#include "kernels/backward_api.hpp"

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cuda_api.hpp"  // available(), forward-pass validation and launch (launch.hpp)

namespace plx::cuda {

namespace {

void bcheck(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}
std::string num(long long x) { return std::to_string(x); }

struct Buf {  // device buffer owner
  void* p = nullptr;
  Buf() = default;
  explicit Buf(std::size_t bytes) {
    if (bytes) bcheck(cudaMalloc(&p, bytes), "cudaMalloc");
  }
  ~Buf() {
    if (p) cudaFree(p);
  }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
};

std::uint16_t bits_of(double x, DType t) { return t == DType::BF16 ? bf16_bits(float(x)) : f16_bits(float(x)); }
double value_of(std::uint16_t b, DType t) { return t == DType::BF16 ? double(bf16_to_float(b)) : double(f16_to_float(b)); }

}  // namespace

void check_backward_params(const BwdParams& p) {
  auto need = [](bool ok, const std::string& field, const std::string& why) {
    if (!ok) throw Error("cuda backward params '" + field + "': " + why);
  };
  const bool plx = p.mech == Mechanism::Parallax;
  need(p.dtype == ElemType::BF16 || p.dtype == ElemType::F16, "dtype", "must be bf16 or fp16");
  need(p.mech == Mechanism::Softmax || p.mech == Mechanism::Parallax, "mech", "must be softmax or parallax");
  need(p.D == 64 || p.D == 128, "D", "unsupported head dim " + num(p.D) + " (supported: 64, 128)");
  need(p.Dv == p.D, "Dv", "must equal D (got D=" + num(p.D) + ", Dv=" + num(p.Dv) + ")");
  need(p.d_stride == 1, "d_stride", "the feature axis must be contiguous (stride 1), got " + num(p.d_stride));
  need(p.B >= 1, "B", "must be >= 1, got " + num(p.B));
  need(p.Hq >= 1 && p.Hkv >= 1, "Hq/Hkv", "must be >= 1");
  need(p.Hq % p.Hkv == 0, "Hq", "must be a multiple of Hkv, got Hq=" + num(p.Hq) + ", Hkv=" + num(p.Hkv));
  need(p.Lq >= 1, "Lq", "must be >= 1 (L = 0 has nothing to differentiate), got " + num(p.Lq));
  need(p.Lkv >= 1, "Lkv", "must be >= 1 (L = 0 has nothing to differentiate), got " + num(p.Lkv));
  need(std::isfinite(p.scale) && p.scale > 0, "scale", "must be finite and > 0");
  need(p.window >= -1, "window", "must be -1 (off) or >= 0");
  auto ptr16 = [&](const void* x, const char* name, bool required) {
    need(!required || x != nullptr, name, "is null");
    need(reinterpret_cast<std::uintptr_t>(x) % 16 == 0, name, "must be 16-byte aligned");
  };
  ptr16(p.q, "q", true), ptr16(p.k, "k", true), ptr16(p.v, "v", true), ptr16(p.out, "out", true);
  ptr16(p.dout, "dout", true), ptr16(p.dq, "dq", true), ptr16(p.dk, "dk", true), ptr16(p.dv, "dv", true);
  ptr16(p.r, "r", plx), ptr16(p.vbar, "vbar", plx), ptr16(p.dr, "dr", plx);
  ptr16(p.workspace, "workspace", true);
  auto ptr4 = [&](const void* x, const char* name, bool required) {
    need(!required || x != nullptr, name, required ? "is null (saved by the forward; required)" : "is null");
    need(reinterpret_cast<std::uintptr_t>(x) % 4 == 0, name, "must be 4-byte aligned");
  };
  ptr4(p.lse, "lse", !plx), ptr4(p.m, "m", plx), ptr4(p.d1, "d1", plx), ptr4(p.zbar, "zbar", plx);
  ptr4(p.start, "start", false), ptr4(p.used, "used", false);
  auto strides = [&](const char* name, std::int64_t bs, std::int64_t rs, std::int64_t hs, bool used) {
    if (!used) return;
    for (std::int64_t s : {bs, rs, hs}) {
      need(s >= 0, name, "strides must be >= 0");
      need(s % 8 == 0, name, "strides must be multiples of 8 elements (16-byte rows), got " + num(bs) + ", " + num(rs) +
                                 ", " + num(hs) + "; the feature axis must be contiguous");
    }
  };
  strides("q strides", p.q_batch_stride, p.q_row_stride, p.q_head_stride, true);
  strides("r strides", p.r_batch_stride, p.r_row_stride, p.r_head_stride, plx);
  strides("k strides", p.k_batch_stride, p.k_row_stride, p.k_head_stride, true);
  strides("v strides", p.v_batch_stride, p.v_row_stride, p.v_head_stride, true);
  strides("out strides", p.o_batch_stride, p.o_row_stride, p.o_head_stride, true);
  strides("dout strides", p.do_batch_stride, p.do_row_stride, p.do_head_stride, true);
  strides("dq strides", p.dq_batch_stride, p.dq_row_stride, p.dq_head_stride, true);
  strides("dk strides", p.dk_batch_stride, p.dk_row_stride, p.dk_head_stride, true);
  // Dense views: distinct heads / rows must not alias (the gradients would race otherwise).
  need(p.Hq == 1 || (p.q_head_stride > 0 && p.o_head_stride > 0 && p.do_head_stride > 0 && p.dq_head_stride > 0 &&
                     (!plx || p.r_head_stride > 0)),
       "head strides", "must be > 0 when Hq > 1");
  need(p.Hkv == 1 || (p.k_head_stride > 0 && p.v_head_stride > 0 && p.dk_head_stride > 0), "kv head strides",
       "must be > 0 when Hkv > 1");
  need(p.Lq == 1 || (p.q_row_stride > 0 && p.o_row_stride > 0 && p.do_row_stride > 0 && p.dq_row_stride > 0 &&
                     (!plx || p.r_row_stride > 0)),
       "row strides", "must be > 0 when Lq > 1");
  need(p.Lkv == 1 || (p.k_row_stride > 0 && p.v_row_stride > 0 && p.dk_row_stride > 0), "kv row strides",
       "must be > 0 when Lkv > 1");
  need(p.B == 1 || (p.dq_batch_stride > 0 && p.dk_batch_stride > 0), "gradient batch strides", "must be > 0 when B > 1");
  // Grid limits: y, z <= 65535; x <= 2^31 - 1 (preprocess: 4 rows per block).
  need(p.Hq <= 65535, "Hq", "grid too large: Hq=" + num(p.Hq) + " > 65535");
  need(p.Hkv <= 65535, "Hkv", "grid too large: Hkv=" + num(p.Hkv) + " > 65535");
  need(p.B <= 65535, "B", "grid too large: B=" + num(p.B) + " > 65535");
  need((double(p.B) * p.Hq * p.Lq + 3) / 4 <= 2147483647.0, "B*Hq*Lq", "grid too large for the row preprocessing");
  // The workspace holds 3 B*Hq*Lq floats indexed with 64-bit offsets; kernels use int for positions.
  need(p.Lq < (1 << 30) && p.Lkv < (1 << 30), "Lq/Lkv", "must be < 2^30");
}

void launch_backward(const BwdParams& p, void* stream) {
  check_backward_params(p);
  bcheck(static_cast<cudaError_t>(detail::launch_backward_kernels(p, stream)), "backward launch");
}

bool supports_backward(const Problem& p, std::string* why_not) {
  auto no = [&](const std::string& w) {
    if (why_not) *why_not = w;
    return false;
  };
  if (p.decode) return no("decode is forward only (SPEC §6.1): no backward");
  if (p.probe == Probe::Solver) return no("LLA (solver probe) has no CUDA backward");
  if (p.probe == Probe::Learned && p.anchor != Anchor::KeyMean) return no("learned probe with the query anchor has no CUDA backward");
  if (p.probe == Probe::None && p.anchor != Anchor::KeyMean) return no("softmax with a query anchor has no CUDA backward");
  if (p.dtype != DType::BF16 && p.dtype != DType::F16) return no("dtype " + to_string(p.dtype) + " (kernels take bfloat16 or float16)");
  if (p.D != p.Dv || (p.D != 64 && p.D != 128)) return no("head dims D=" + num(p.D) + ", Dv=" + num(p.Dv) + " (need D = Dv in {64, 128})");
  if (p.Hkv < 1 || p.Hq % p.Hkv != 0) return no("Hq must be a multiple of Hkv");
  if (p.B > 65535 || p.Hq > 65535) return no("B or Hq over the grid limit 65535");
  return true;
}

CandidateResult backward(const Problem& pr, const Inputs& in) {
  validate(pr);
  std::string why;
  if (!supports_backward(pr, &why)) throw Error("cuda::backward: unsupported problem: " + why);
  if (!available(&why)) throw Error("cuda::backward: no usable device: " + why);
  const DType dt = pr.dtype;
  const std::size_t B = pr.B, Lq = pr.Lq, Lkv = pr.Lkv, Hq = pr.Hq, Hkv = pr.Hkv, D = pr.D, Dv = pr.Dv;
  const bool plx = pr.probe == Probe::Learned;
  in.q.require_shape({B, Lq, Hq, D}, "q");
  in.k.require_shape({B, Lkv, Hkv, D}, "k");
  in.v.require_shape({B, Lkv, Hkv, Dv}, "v");
  in.dO.require_shape({B, Lq, Hq, Dv}, "dO");
  if (plx) in.r.require_shape({B, Lq, Hq, D}, "r");

  auto upload = [&](const Tensor<double>& t, Buf& d, const char* name) {
    std::vector<std::uint16_t> h(t.size());
    for (std::size_t i = 0; i < t.size(); ++i) {
      h[i] = bits_of(t.data[i], dt);
      if (value_of(h[i], dt) != t.data[i] && std::isfinite(t.data[i]))
        throw Error(std::string("cuda::backward: input '") + name + "' is not exactly representable in " + to_string(dt));
    }
    bcheck(cudaMalloc(&d.p, h.size() * 2), "cudaMalloc");
    bcheck(cudaMemcpy(d.p, h.data(), h.size() * 2, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
  };
  Buf bq, br, bk, bv, bdo;
  upload(in.q, bq, "q"), upload(in.k, bk, "k"), upload(in.v, bv, "v"), upload(in.dO, bdo, "dO");
  if (plx) upload(in.r, br, "r");
  const std::size_t n_q = B * Lq * Hq * D, n_kv = B * Lkv * Hkv * D, n_row = B * Hq * Lq;
  Buf bout(n_q * 2), bvbar(n_q * 2), blse(n_row * 4), bm(n_row * 4), bd1(n_row * 4), bzb(n_row * 4);
  Buf gq(n_q * 2), gr(n_q * 2), gk(n_kv * 2), gv(n_kv * 2), ws(n_row * 3 * 4);
  for (Buf* b : {&bout, &bvbar, &gq, &gr}) bcheck(cudaMemset(b->p, 0xFF, n_q * 2), "cudaMemset poison");
  for (Buf* b : {&gk, &gv}) bcheck(cudaMemset(b->p, 0xFF, n_kv * 2), "cudaMemset poison");
  for (Buf* b : {&blse, &bm, &bd1, &bzb}) bcheck(cudaMemset(b->p, 0xFF, n_row * 4), "cudaMemset poison");
  bcheck(cudaMemset(ws.p, 0xFF, n_row * 3 * 4), "cudaMemset poison");
  Buf bstart, bused;
  if (!pr.start.empty()) {
    bcheck(cudaMalloc(&bstart.p, B * 4), "cudaMalloc");
    bcheck(cudaMemcpy(bstart.p, pr.start.data(), B * 4, cudaMemcpyHostToDevice), "cudaMemcpy start");
  }
  if (!pr.used.empty()) {
    bcheck(cudaMalloc(&bused.p, B * 4), "cudaMalloc");
    bcheck(cudaMemcpy(bused.p, pr.used.data(), B * 4, cudaMemcpyHostToDevice), "cudaMemcpy used");
  }
  const std::int64_t qb = Lq * Hq * D, qr = Hq * D, kb = Lkv * Hkv * D, kr = Hkv * D;

  // ---- forward (prefill kernel even for Lq = 1: a one-query prefill row, not a decode step) ----
  AttnParams f;
  f.q = bq.p, f.r = plx ? br.p : nullptr, f.k = bk.p, f.v = bv.p, f.out = bout.p, f.vbar = bvbar.p;
  f.lse = static_cast<float*>(blse.p), f.m = static_cast<float*>(bm.p), f.d1 = static_cast<float*>(bd1.p);
  f.zbar = static_cast<float*>(bzb.p);
  f.q_batch_stride = f.r_batch_stride = f.o_batch_stride = qb;
  f.q_row_stride = f.r_row_stride = f.o_row_stride = qr;
  f.q_head_stride = f.r_head_stride = f.o_head_stride = D;
  f.k_batch_stride = f.v_batch_stride = kb, f.k_row_stride = f.v_row_stride = kr, f.k_head_stride = f.v_head_stride = D;
  f.B = pr.B, f.Hq = pr.Hq, f.Hkv = pr.Hkv, f.Lq = pr.Lq, f.Lkv = pr.Lkv, f.D = pr.D, f.Dv = pr.Dv;
  f.scale = static_cast<float>(pr.tau());
  f.causal = pr.causal, f.window = pr.window;
  f.start = static_cast<const int*>(bstart.p), f.used = static_cast<const int*>(bused.p);
  f.dtype = dt == DType::BF16 ? ElemType::BF16 : ElemType::F16;
  f.mech = plx ? Mechanism::Parallax : Mechanism::Softmax;
  launch(f, Op::Forward, nullptr);

  // ---- backward ----
  BwdParams p;
  p.q = f.q, p.r = f.r, p.k = f.k, p.v = f.v, p.out = f.out, p.vbar = plx ? f.vbar : nullptr, p.dout = bdo.p;
  p.lse = f.lse, p.m = f.m, p.d1 = f.d1, p.zbar = f.zbar;
  p.dq = gq.p, p.dr = plx ? gr.p : nullptr, p.dk = gk.p, p.dv = gv.p, p.workspace = static_cast<float*>(ws.p);
  p.q_batch_stride = p.r_batch_stride = p.o_batch_stride = p.do_batch_stride = p.dq_batch_stride = qb;
  p.q_row_stride = p.r_row_stride = p.o_row_stride = p.do_row_stride = p.dq_row_stride = qr;
  p.q_head_stride = p.r_head_stride = p.o_head_stride = p.do_head_stride = p.dq_head_stride = D;
  p.k_batch_stride = p.v_batch_stride = p.dk_batch_stride = kb;
  p.k_row_stride = p.v_row_stride = p.dk_row_stride = kr;
  p.k_head_stride = p.v_head_stride = p.dk_head_stride = D;
  p.B = f.B, p.Hq = f.Hq, p.Hkv = f.Hkv, p.Lq = f.Lq, p.Lkv = f.Lkv, p.D = f.D, p.Dv = f.Dv, p.scale = f.scale;
  p.causal = f.causal, p.window = f.window, p.start = f.start, p.used = f.used, p.dtype = f.dtype, p.mech = f.mech;
  launch_backward(p, nullptr);
  bcheck(cudaDeviceSynchronize(), "kernel execution");

  auto download = [&](const Buf& d, std::vector<std::size_t> shape) {
    Tensor<double> t(std::move(shape));
    std::vector<std::uint16_t> h(t.size());
    bcheck(cudaMemcpy(h.data(), d.p, h.size() * 2, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
    for (std::size_t i = 0; i < h.size(); ++i) t.data[i] = value_of(h[i], dt);
    return t;
  };
  auto download_f = [&](const void* d) {
    Tensor<double> t({B, Hq, Lq});
    std::vector<float> h(t.size());
    bcheck(cudaMemcpy(h.data(), d, h.size() * 4, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
    for (std::size_t i = 0; i < h.size(); ++i) t.data[i] = h[i];
    return t;
  };
  CandidateResult res;
  res.out = download(bout, {B, Lq, Hq, Dv});
  res.dq = download(gq, {B, Lq, Hq, D});
  res.dk = download(gk, {B, Lkv, Hkv, D});
  res.dv = download(gv, {B, Lkv, Hkv, Dv});
  if (plx) res.dr = download(gr, {B, Lq, Hq, D});
  res.saved["vbar"] = download(bvbar, {B, Lq, Hq, Dv});
  res.saved["lse"] = download_f(blse.p);
  res.saved["m"] = download_f(bm.p);
  res.saved["omega"] = download_f(bd1.p);
  if (plx) res.saved["zbar"] = download_f(bzb.p);
  res.saved["t"] = download_f(static_cast<float*>(ws.p) + n_row);
  res.saved["b"] = download_f(static_cast<float*>(ws.p) + 2 * n_row);
  return res;
}

}  // namespace plx::cuda
