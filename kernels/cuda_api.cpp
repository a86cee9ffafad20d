// kernels/cuda_api.cpp — host side of the plx CUDA kernels: validation, upload, launch.
//
// Charter: check_params() rejects every launch the kernels cannot take, before any CUDA call
// (unsupported D/Dv, dtype, group size, misaligned pointers or strides, L = 0, grids over the
// hardware limits, bad masks); forward() turns a Problem + Inputs into device buffers (inputs
// must be exact in bf16/fp16, as the reference saw them), poisons the outputs with 0xFF bytes
// (NaN), launches, and widens the results to double — the transfers, poisoning and CUDA error
// checks through kernels/host_io.hpp. Compiled by the host compiler; device code lives in the
// .cu files.
#include "kernels/cuda_api.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

#include "kernels/host_io.hpp"
#include "kernels/kernels_internal.hpp"
#include "kernels/lla_api.hpp"
#include "kernels/param_check.hpp"
#include "kernels/problem_params.hpp"

namespace plx::cuda {

namespace {
std::string str(long long x) { return std::to_string(x); }
}  // namespace

bool available(std::string* why_not) { return io::device_available(why_not); }

bool supports(const Problem& p, std::string* why_not) {
  auto no = [&](const std::string& w) {
    if (why_not) *why_not = w;
    return false;
  };
  if (p.probe == Probe::Solver) return lla_supports(p, why_not);  // kernels/lla_api.hpp
  if (p.probe == Probe::Learned && p.anchor != Anchor::KeyMean)
    return no("learned probe with the query anchor has no CUDA kernel");
  if (p.dtype != DType::BF16 && p.dtype != DType::F16) return no("dtype " + to_string(p.dtype) + " (kernels take bfloat16 or float16)");
  if (p.D != p.Dv || (p.D != 64 && p.D != 128)) return no("head dims D=" + str(p.D) + ", Dv=" + str(p.Dv) + " (need D = Dv in {64, 128})");
  if (p.Hkv < 1 || p.Hq % p.Hkv != 0) return no("Hq must be a multiple of Hkv");
  if (p.Lq == 1 && p.Hq / p.Hkv > 16) return no("decode group size Hq/Hkv > 16");
  if (p.B > 65535 || p.Hq > 65535) return no("B or Hq over the grid limit 65535");
  return true;
}

void check_params(const AttnParams& p, Op op) {
  const detail::ParamCheck c("cuda params");
  auto need = [&](bool ok, const std::string& field, const std::string& why) { c.need(ok, field, why); };
  const bool plx = p.mech == Mechanism::Parallax;
  need(p.mech == Mechanism::Softmax || p.mech == Mechanism::Parallax, "mech", "must be softmax or parallax");
  c.shapes(p, "compute");
  // Pointers: present and 16-byte aligned (the kernels move 16-byte vectors); row statistics 4.
  c.pointer(p.q, "q", true, 16), c.pointer(p.k, "k", true, 16), c.pointer(p.v, "v", true, 16);
  c.pointer(p.out, "out", true, 16), c.pointer(p.r, "r", plx, 16), c.pointer(p.vbar, "vbar", false, 16);
  for (auto [x, name] : {std::pair<const void*, const char*>{p.lse, "lse"}, {p.m, "m"}, {p.d1, "d1"}, {p.zbar, "zbar"},
                         {p.start, "start"}, {p.used, "used"}})
    c.pointer(x, name, false, 4);
  // Strides: rows must start on 16-byte boundaries (multiples of 8 elements), non-negative.
  c.attention_strides(p, plx);
  // Distinct heads must not alias (a zero head stride with H > 1 would make every head read
  // one row; a zero row stride with L > 1 likewise): the kernels assume a dense tensor view.
  need(p.Hq == 1 || (p.q_head_stride > 0 && p.o_head_stride > 0 && (!plx || p.r_head_stride > 0)), "head strides",
       "must be > 0 when Hq > 1");
  need(p.Hkv == 1 || (p.k_head_stride > 0 && p.v_head_stride > 0), "kv head strides", "must be > 0 when Hkv > 1");
  need(p.Lq == 1 || (p.q_row_stride > 0 && p.o_row_stride > 0), "row strides", "must be > 0 when Lq > 1");
  need(p.Lkv == 1 || (p.k_row_stride > 0 && p.v_row_stride > 0), "kv row strides", "must be > 0 when Lkv > 1");
  // Grid limits: gridDim.y, .z <= 65535, gridDim.x <= 2^31 - 1.
  if (op == Op::Decode) {
    need(p.Lq == 1, "Lq", "decode takes exactly one query per sequence, got " + str(p.Lq));
    need(p.Hq / p.Hkv <= 16, "Hq/Hkv", "decode supports group sizes up to 16, got " + str(p.Hq / p.Hkv));
    const int dk = int(p.decode_kernel);
    need(dk >= 0 && dk <= 2, "decode_kernel", "must be Auto, CudaCore or MmaSync, got " + str(dk));
    need(p.num_splits >= 1 && p.num_splits <= 1024, "num_splits", "must lie in [1, 1024], got " + str(p.num_splits));
    c.grid_dim(p.Hkv, "Hkv"), c.grid_dim(p.B, "B"), c.grid_dim(p.Hq, "Hq", " (combine)");
    need(p.num_splits == 1 || (p.workspace && reinterpret_cast<std::uintptr_t>(p.workspace) % 16 == 0), "workspace",
         "a 16-byte aligned workspace is needed when num_splits > 1");
  } else {
    const int fk = int(p.forward_kernel);
    need(fk >= 0 && fk <= 3, "forward_kernel", "must be Auto, MmaSync, Wgmma or Tma, got " + str(fk));
    need(fk < 0 || fk > 3 || p.forward_kernel == ForwardKernel::Auto || forward_kernel_fits(p.forward_kernel, p.D),
         "forward_kernel", std::string(fk >= 0 && fk <= 3 ? name(p.forward_kernel) : "?") +
                               " supports D = 128 only, got D=" + str(p.D));
    c.grid_dim(p.Hq, "Hq"), c.grid_dim(p.B, "B");
  }
  // Index arithmetic: per-row tensors use 64-bit offsets, element offsets are 64-bit.
  need(double(p.B) * p.Hq * p.Lq < 9e18, "B*Hq*Lq", "too large");
}

void launch(const AttnParams& p, Op op, void* stream) { launch(p, op, stream, LaunchExtras{}); }

void launch(const AttnParams& p, Op op, void* stream, const LaunchExtras& x) {
  check_params(p, op);
  const int e = op == Op::Decode ? detail::launch_decode(p, stream, x.decode_flags)
                                 : detail::launch_forward(p, stream, x.tensor_maps);
  if (op == Op::Forward && p.forward_kernel == ForwardKernel::Tma && e == int(cudaErrorNotSupported))
    throw Error("forward_kernel tma needs tensor maps of K and V, and the CUDA driver has no "
                "cuTensorMapEncodeTiled (or rejected these tensors); nothing was launched. Use forward_kernel "
                "Auto (which then runs wgmma) or Wgmma");
  io::check(e, op == Op::Decode ? "decode launch" : "forward launch");
}

int decode_num_splits(const AttnParams& p, int num_sms) {
  // From the split sweep on the H200 (docs/gpu-results.md): about one wave of blocks
  // (B * Hkv * S ~ number of SMs) is fastest; more splits add combine traffic and a
  // second launch's worth of work, fewer leave SMs idle. No chunk shorter than 2 tiles.
  const long long base = (long long)p.B * p.Hkv;
  const long long want = std::max(1LL, num_sms / base);
  const long long by_len = std::max(1, p.Lkv / 128);
  return int(std::min({want, by_len, 1024LL}));
}

int decode_smem_bytes(const AttnParams& p) { return detail::decode_smem(p.D, p.Hq / p.Hkv, p.decode_kernel); }

ForwardBuffers upload_forward(const Problem& pr, const Inputs& in, const char* who) {
  const DType dt = pr.dtype;
  const std::size_t n_out = std::size_t(pr.B) * pr.Lq * pr.Hq * pr.Dv, n_row = std::size_t(pr.B) * pr.Hq * pr.Lq;
  ForwardBuffers b;
  b.q = io::upload_exact(in.q, dt, who, "q"), b.k = io::upload_exact(in.k, dt, who, "k");
  b.v = io::upload_exact(in.v, dt, who, "v");
  if (pr.probe == Probe::Learned) b.r = io::upload_exact(in.r, dt, who, "r");
  b.out = io::poisoned(n_out * 2), b.vbar = io::poisoned(n_out * 2);
  b.lse = io::poisoned(n_row * 4), b.m = io::poisoned(n_row * 4), b.d1 = io::poisoned(n_row * 4), b.zbar = io::poisoned(n_row * 4);
  b.start = io::upload_ints(pr.start, "cudaMemcpy start"), b.used = io::upload_ints(pr.used, "cudaMemcpy used");
  return b;
}

AttnParams make_attn_params(const Problem& pr, const ForwardBuffers& b) {
  const std::int64_t Lq = pr.Lq, Lkv = pr.Lkv, Hq = pr.Hq, Hkv = pr.Hkv, D = pr.D, Dv = pr.Dv;
  const bool plx = pr.probe == Probe::Learned;
  AttnParams p;
  p.q = b.q.get(), p.r = plx ? b.r.get() : nullptr, p.k = b.k.get(), p.v = b.v.get();
  p.out = b.out.get(), p.vbar = b.vbar.get();
  p.lse = b.lse.as<float>(), p.m = b.m.as<float>(), p.d1 = b.d1.as<float>(), p.zbar = b.zbar.as<float>();
  p.q_batch_stride = Lq * Hq * D, p.q_row_stride = Hq * D, p.q_head_stride = D;
  p.r_batch_stride = Lq * Hq * D, p.r_row_stride = Hq * D, p.r_head_stride = D;
  p.k_batch_stride = Lkv * Hkv * D, p.k_row_stride = Hkv * D, p.k_head_stride = D;
  p.v_batch_stride = Lkv * Hkv * Dv, p.v_row_stride = Hkv * Dv, p.v_head_stride = Dv;
  p.o_batch_stride = Lq * Hq * Dv, p.o_row_stride = Hq * Dv, p.o_head_stride = Dv;
  p.B = pr.B, p.Hq = pr.Hq, p.Hkv = pr.Hkv, p.Lq = pr.Lq, p.Lkv = pr.Lkv, p.D = pr.D, p.Dv = pr.Dv;
  p.scale = static_cast<float>(pr.tau());
  p.causal = pr.causal, p.window = pr.window;
  p.start = b.start.as<const int>(), p.used = b.used.as<const int>();
  p.dtype = pr.dtype == DType::BF16 ? ElemType::BF16 : ElemType::F16;
  p.mech = plx ? Mechanism::Parallax : Mechanism::Softmax;
  return p;
}

void download_forward(const Problem& pr, const ForwardBuffers& b, CandidateResult& res) {
  const std::size_t B = pr.B, Lq = pr.Lq, Hq = pr.Hq, Dv = pr.Dv;
  res.out = io::download_16(b.out.get(), pr.dtype, {B, Lq, Hq, Dv});
  res.saved["vbar"] = io::download_16(b.vbar.get(), pr.dtype, {B, Lq, Hq, Dv});
  res.saved["lse"] = io::download_f32(b.lse.get(), {B, Hq, Lq});
  res.saved["m"] = io::download_f32(b.m.get(), {B, Hq, Lq});
  res.saved["omega"] = io::download_f32(b.d1.get(), {B, Hq, Lq});
  if (pr.probe == Probe::Learned) res.saved["zbar"] = io::download_f32(b.zbar.get(), {B, Hq, Lq});
}

CandidateResult forward(const Problem& pr, const Inputs& in, const RunOptions& opt) {
  validate(pr);
  if (pr.probe == Probe::Solver) return lla_forward(pr, in, opt.lla);  // LLA: kernels/lla.cu
  std::string why;
  if (!supports(pr, &why)) throw Error("cuda::forward: unsupported problem: " + why);
  io::require_inputs(pr, in, /*with_dO=*/false, "cuda::forward");  // bad input: before any device work
  if (!available(&why)) throw Error("cuda::forward: no usable device: " + why);
  io::require_shapes(pr, in, /*with_dO=*/false);
  const Op op = pr.Lq == 1 ? Op::Decode : Op::Forward;
  if (op == Op::Forward && opt.forward != ForwardKernel::Auto && !forward_kernel_fits(opt.forward, pr.D))
    throw Error(std::string("cuda::forward: forward kernel ") + name(opt.forward) + " does not take D=" + str(pr.D));

  const ForwardBuffers buf = upload_forward(pr, in, "cuda::forward");
  AttnParams p = make_attn_params(pr, buf);
  io::DevBuf dws;
  if (op == Op::Forward) p.forward_kernel = opt.forward;
  if (op == Op::Decode) {
    p.decode_kernel = opt.decode;
    p.num_splits = opt.num_splits > 0 ? opt.num_splits : decode_num_splits(p, io::multiprocessor_count());
    if (p.num_splits > 1) {
      dws = io::DevBuf(decode_workspace_floats(p) * 4);
      io::fill(dws.get(), 0xFF, decode_counters_offset(p) * 4, "cudaMemset workspace (poison)");
      io::fill(dws.as<float>() + decode_counters_offset(p), 0, std::size_t(p.B) * p.Hkv * 4, "cudaMemset workspace counters");
      p.workspace = dws.as<float>();
    }
  }
  LaunchExtras x;
  x.tensor_maps = opt.tensor_maps;
  launch(p, op, nullptr, x);
  io::synchronize("kernel execution");
  CandidateResult res;
  download_forward(pr, buf, res);
  return res;
}

}  // namespace plx::cuda
