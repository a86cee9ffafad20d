// kernels/backward_api.cpp — host side of the CUDA backward: validation, upload, launch.
//
// Charter: check_backward_params() rejects every launch the backward kernels cannot take, before
// any CUDA call (unsupported D/Dv, dtype or mechanism, null or misaligned pointers, strides that
// break 16-byte rows, a non-contiguous feature axis, L = 0, grids over the hardware limits, bad
// masks); launch_backward() checks every CUDA call and launch; backward() runs the CUDA forward
// (saving what the backward needs) and then the backward on a Problem + Inputs, with every output
// poisoned (0xFF) first, and widens the results to double — the transfers, poisoning and CUDA
// error checks through kernels/host_io.hpp. Host compiler only.
#include "kernels/backward_api.hpp"

#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cuda_api.hpp"  // available(), forward-pass validation and launch (launch.hpp)
#include "kernels/host_io.hpp"
#include "kernels/param_check.hpp"
#include "kernels/problem_params.hpp"

namespace plx::cuda {

namespace {
std::string num(long long x) { return std::to_string(x); }
}  // namespace

void check_backward_params(const BwdParams& p) {
  const detail::ParamCheck c("cuda backward params");
  auto need = [&](bool ok, const std::string& field, const std::string& why) { c.need(ok, field, why); };
  const bool plx = p.mech == Mechanism::Parallax;
  need(p.mech == Mechanism::Softmax || p.mech == Mechanism::Parallax, "mech", "must be softmax or parallax");
  c.shapes(p, "differentiate");
  need(p.d_stride == 1, "d_stride", "the feature axis must be contiguous (stride 1), got " + num(p.d_stride));
  for (auto [x, name, required] : {std::tuple<const void*, const char*, bool>{p.q, "q", true}, {p.k, "k", true},
                                   {p.v, "v", true}, {p.out, "out", true}, {p.dout, "dout", true}, {p.dq, "dq", true},
                                   {p.dk, "dk", true}, {p.dv, "dv", true}, {p.r, "r", plx}, {p.vbar, "vbar", plx},
                                   {p.dr, "dr", plx}, {p.workspace, "workspace", true}})
    c.pointer(x, name, required, 16);
  for (auto [x, name, required] : {std::tuple<const void*, const char*, bool>{p.lse, "lse", !plx}, {p.m, "m", plx},
                                   {p.d1, "d1", plx}, {p.zbar, "zbar", plx}, {p.start, "start", false},
                                   {p.used, "used", false}})
    c.pointer(x, name, required, 4, required ? "is null (saved by the forward; required)" : "is null");
  c.attention_strides(p, plx);
  const char* tail = "; the feature axis must be contiguous";
  c.strides("dout strides", p.do_batch_stride, p.do_row_stride, p.do_head_stride, tail);
  c.strides("dq strides", p.dq_batch_stride, p.dq_row_stride, p.dq_head_stride, tail);
  c.strides("dk strides", p.dk_batch_stride, p.dk_row_stride, p.dk_head_stride, tail);
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
  c.grid_dim(p.Hq, "Hq"), c.grid_dim(p.Hkv, "Hkv"), c.grid_dim(p.B, "B");
  const int k = int(p.kernel);
  need(k >= 0 && k <= 2, "kernel", "must be Auto, MmaSync or Wgmma, got " + num(k));
  need(k < 0 || k > 2 || backward_kernel_fits(p.kernel, p.D), "kernel",
       std::string(k >= 0 && k <= 2 ? name(p.kernel) : "?") + " supports D = 128 only, got D=" + num(p.D));
  need((double(p.B) * p.Hq * p.Lq + 3) / 4 <= 2147483647.0, "B*Hq*Lq", "grid too large for the row preprocessing");
  // The workspace holds 3 B*Hq*Lq + B*Hkv*D floats indexed with 64-bit offsets; kernels use int for positions.
  need(p.Lq < (1 << 30) && p.Lkv < (1 << 30), "Lq/Lkv", "must be < 2^30");
}

void launch_backward(const BwdParams& p, void* stream) {
  check_backward_params(p);
  io::check(detail::launch_backward_kernels(p, stream), "backward launch");
}

bool supports_backward(const Problem& p, std::string* why_not) {
  auto no = [&](const std::string& w) {
    if (why_not) *why_not = w;
    return false;
  };
  if (p.decode) return no("decode is forward only (docs/math.md §6.1): no backward");
  if (p.probe == Probe::Solver) return no("LLA (solver probe) has no CUDA backward");
  if (p.probe == Probe::Learned && p.anchor != Anchor::KeyMean) return no("learned probe with the query anchor has no CUDA backward");
  if (p.probe == Probe::None && p.anchor != Anchor::KeyMean) return no("softmax with a query anchor has no CUDA backward");
  if (p.dtype != DType::BF16 && p.dtype != DType::F16) return no("dtype " + to_string(p.dtype) + " (kernels take bfloat16 or float16)");
  if (p.D != p.Dv || (p.D != 64 && p.D != 128)) return no("head dims D=" + num(p.D) + ", Dv=" + num(p.Dv) + " (need D = Dv in {64, 128})");
  if (p.Hkv < 1 || p.Hq % p.Hkv != 0) return no("Hq must be a multiple of Hkv");
  if (p.B > 65535 || p.Hq > 65535) return no("B or Hq over the grid limit 65535");
  return true;
}

CandidateResult backward(const Problem& pr, const Inputs& in, const RunOptions& opt) {
  validate(pr);
  std::string why;
  if (!supports_backward(pr, &why)) throw Error("cuda::backward: unsupported problem: " + why);
  io::require_inputs(pr, in, /*with_dO=*/true, "cuda::backward");  // bad input: before any device work
  if (!available(&why)) throw Error("cuda::backward: no usable device: " + why);
  const DType dt = pr.dtype;
  const std::size_t B = pr.B, Lq = pr.Lq, Lkv = pr.Lkv, Hq = pr.Hq, Hkv = pr.Hkv, D = pr.D, Dv = pr.Dv;
  const bool plx = pr.probe == Probe::Learned;
  io::require_shapes(pr, in, /*with_dO=*/true);
  if (opt.backward != BackwardKernel::Auto && !backward_kernel_fits(opt.backward, pr.D))
    throw Error(std::string("cuda::backward: backward kernel ") + name(opt.backward) + " does not take D=" + num(pr.D));
  if (opt.forward != ForwardKernel::Auto && !forward_kernel_fits(opt.forward, pr.D))
    throw Error(std::string("cuda::backward: forward kernel ") + name(opt.forward) + " does not take D=" + num(pr.D));

  const char* who = "cuda::backward";
  const ForwardBuffers fb = upload_forward(pr, in, who);
  io::DevBuf bdo = io::upload_exact(in.dO, dt, who, "dO");
  const std::size_t n_q = B * Lq * Hq * D, n_kv = B * Lkv * Hkv * D, n_row = B * Hq * Lq;
  io::DevBuf gq = io::poisoned(n_q * 2), gr = io::poisoned(n_q * 2), gk = io::poisoned(n_kv * 2), gv = io::poisoned(n_kv * 2);
  io::DevBuf ws = io::poisoned((n_row * 3 + B * Hkv * D) * 4);  // backward_workspace_floats

  // ---- forward (prefill kernel even for Lq = 1: a one-query prefill row, not a decode step) ----
  AttnParams f = make_attn_params(pr, fb);
  f.forward_kernel = opt.forward;
  LaunchExtras x;
  x.tensor_maps = opt.tensor_maps;
  launch(f, Op::Forward, nullptr, x);

  // ---- backward: the same tensors, dO, the gradients and the workspace ----
  BwdParams p;
  p.q = f.q, p.r = f.r, p.k = f.k, p.v = f.v, p.out = f.out, p.vbar = plx ? f.vbar : nullptr, p.dout = bdo.get();
  p.lse = f.lse, p.m = f.m, p.d1 = f.d1, p.zbar = f.zbar;
  p.dq = gq.get(), p.dr = plx ? gr.get() : nullptr, p.dk = gk.get(), p.dv = gv.get(), p.workspace = ws.as<float>();
  p.q_batch_stride = p.r_batch_stride = p.o_batch_stride = p.do_batch_stride = p.dq_batch_stride = f.q_batch_stride;
  p.q_row_stride = p.r_row_stride = p.o_row_stride = p.do_row_stride = p.dq_row_stride = f.q_row_stride;
  p.q_head_stride = p.r_head_stride = p.o_head_stride = p.do_head_stride = p.dq_head_stride = f.q_head_stride;
  p.k_batch_stride = p.v_batch_stride = p.dk_batch_stride = f.k_batch_stride;
  p.k_row_stride = p.v_row_stride = p.dk_row_stride = f.k_row_stride;
  p.k_head_stride = p.v_head_stride = p.dk_head_stride = f.k_head_stride;
  p.B = f.B, p.Hq = f.Hq, p.Hkv = f.Hkv, p.Lq = f.Lq, p.Lkv = f.Lkv, p.D = f.D, p.Dv = f.Dv, p.scale = f.scale;
  p.causal = f.causal, p.window = f.window, p.start = f.start, p.used = f.used, p.dtype = f.dtype, p.mech = f.mech;
  p.kernel = opt.backward;
  launch_backward(p, nullptr);
  io::synchronize("kernel execution");

  const std::vector<std::size_t> rows{B, Hq, Lq};
  CandidateResult res;
  download_forward(pr, fb, res);
  res.dq = io::download_16(gq.get(), dt, {B, Lq, Hq, D});
  res.dk = io::download_16(gk.get(), dt, {B, Lkv, Hkv, D});
  res.dv = io::download_16(gv.get(), dt, {B, Lkv, Hkv, Dv});
  if (plx) res.dr = io::download_16(gr.get(), dt, {B, Lq, Hq, D});
  res.saved["t"] = io::download_f32(ws.as<float>() + n_row, rows);
  res.saved["b"] = io::download_f32(ws.as<float>() + 2 * n_row, rows);
  return res;
}

}  // namespace plx::cuda
