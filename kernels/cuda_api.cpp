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
#include <cstdlib>
#include <string>
#include <utility>

#include "kernels/host_io.hpp"
#include "kernels/kernels_internal.hpp"
#include "kernels/lla_api.hpp"
#include "kernels/param_check.hpp"

namespace plx::cuda {

namespace {
std::string str(long long x) { return std::to_string(x); }
}  // namespace

bool available(std::string* why_not) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    if (why_not) *why_not = e != cudaSuccess ? std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e) : "no CUDA device";
    cudaGetLastError();  // clear the sticky error of a failed init
    return false;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess || prop.major < 9) {
    if (why_not) *why_not = "device 0 is not sm_90 or newer (kernels are built for sm_90)";
    return false;
  }
  return true;
}

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
  auto strides = [&](const char* name, std::int64_t bs, std::int64_t rs, std::int64_t hs, bool used) {
    if (used) c.strides(name, bs, rs, hs, "; the feature axis must be contiguous");
  };
  strides("q strides", p.q_batch_stride, p.q_row_stride, p.q_head_stride, true);
  strides("r strides", p.r_batch_stride, p.r_row_stride, p.r_head_stride, plx);
  strides("k strides", p.k_batch_stride, p.k_row_stride, p.k_head_stride, true);
  strides("v strides", p.v_batch_stride, p.v_row_stride, p.v_head_stride, true);
  strides("out strides", p.o_batch_stride, p.o_row_stride, p.o_head_stride, true);
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
    need(p.decode_version == 0 || p.decode_version == 2 || p.decode_version == 3, "decode_version",
         "must be 0 (default), 2 or 3, got " + str(p.decode_version));
    need(p.num_splits >= 1 && p.num_splits <= 1024, "num_splits", "must lie in [1, 1024], got " + str(p.num_splits));
    c.grid_dim(p.Hkv, "Hkv"), c.grid_dim(p.B, "B"), c.grid_dim(p.Hq, "Hq", " (combine)");
    need(p.num_splits == 1 || (p.workspace && reinterpret_cast<std::uintptr_t>(p.workspace) % 16 == 0), "workspace",
         "a 16-byte aligned workspace is needed when num_splits > 1");
  } else {
    need(p.forward_version >= 0 && p.forward_version <= 3, "forward_version",
         "must be 0 (default), 1 (mma.sync), 2 (wgmma) or 3 (TMA + wgmma), got " + str(p.forward_version));
    need(p.forward_version < 2 || p.D == 128, "forward_version",
         str(p.forward_version) + " (wgmma) supports D = 128 only, got D=" + str(p.D));
    need(p.forward_flags >= -1 && p.forward_flags <= 63, "forward_flags", "must be -1 (default) or in [0, 63], got " + str(p.forward_flags));
    c.grid_dim(p.Hq, "Hq"), c.grid_dim(p.B, "B");
  }
  // Index arithmetic: per-row tensors use 64-bit offsets, element offsets are 64-bit.
  need(double(p.B) * p.Hq * p.Lq < 9e18, "B*Hq*Lq", "too large");
}

void launch(const AttnParams& p, Op op, void* stream) {
  check_params(p, op);
  const int e = op == Op::Decode ? detail::launch_decode(p, stream) : detail::launch_forward(p, stream);
  if (op == Op::Forward && p.forward_version == 3 && e == int(cudaErrorNotSupported))
    throw Error("forward_version 3 (TMA) needs tensor maps of K and V, and the CUDA driver has no "
                "cuTensorMapEncodeTiled (or rejected these tensors); nothing was launched. Use forward_version 0 "
                "(the default, which then runs v2) or 2");
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

int decode_smem_bytes(const AttnParams& p) { return detail::decode_smem(p.D, p.Hq / p.Hkv, p.decode_version); }

CandidateResult forward(const Problem& pr, const Inputs& in) {
  validate(pr);
  if (pr.probe == Probe::Solver) return lla_forward(pr, in);  // LLA: kernels/lla.cu
  std::string why;
  if (!supports(pr, &why)) throw Error("cuda::forward: unsupported problem: " + why);
  io::require_inputs(pr, in, /*with_dO=*/false, "cuda::forward");  // bad input: before any device work
  if (!available(&why)) throw Error("cuda::forward: no usable device: " + why);
  const DType dt = pr.dtype;
  const std::size_t B = pr.B, Lq = pr.Lq, Lkv = pr.Lkv, Hq = pr.Hq, Hkv = pr.Hkv, D = pr.D, Dv = pr.Dv;
  const bool plx = pr.probe == Probe::Learned;
  io::require_shapes(pr, in, /*with_dO=*/false);

  const char* who = "cuda::forward";
  io::DevBuf dq = io::upload_exact(in.q, dt, who, "q"), dk = io::upload_exact(in.k, dt, who, "k");
  io::DevBuf dv = io::upload_exact(in.v, dt, who, "v"), dr;
  if (plx) dr = io::upload_exact(in.r, dt, who, "r");
  const std::size_t n_out = B * Lq * Hq * Dv, n_row = B * Hq * Lq;
  io::DevBuf dout = io::poisoned(n_out * 2), dvbar = io::poisoned(n_out * 2);
  io::DevBuf dlse = io::poisoned(n_row * 4), dm = io::poisoned(n_row * 4), dd1 = io::poisoned(n_row * 4),
             dzb = io::poisoned(n_row * 4);
  io::DevBuf dstart = io::upload_ints(pr.start, "cudaMemcpy start"), dused = io::upload_ints(pr.used, "cudaMemcpy used");

  AttnParams p;
  p.q = dq.get(), p.r = plx ? dr.get() : nullptr, p.k = dk.get(), p.v = dv.get();
  p.out = dout.get(), p.vbar = dvbar.get();
  p.lse = dlse.as<float>(), p.m = dm.as<float>(), p.d1 = dd1.as<float>(), p.zbar = dzb.as<float>();
  p.q_batch_stride = Lq * Hq * D, p.q_row_stride = Hq * D, p.q_head_stride = D;
  p.r_batch_stride = Lq * Hq * D, p.r_row_stride = Hq * D, p.r_head_stride = D;
  p.k_batch_stride = Lkv * Hkv * D, p.k_row_stride = Hkv * D, p.k_head_stride = D;
  p.v_batch_stride = Lkv * Hkv * Dv, p.v_row_stride = Hkv * Dv, p.v_head_stride = Dv;
  p.o_batch_stride = Lq * Hq * Dv, p.o_row_stride = Hq * Dv, p.o_head_stride = Dv;
  p.B = pr.B, p.Hq = pr.Hq, p.Hkv = pr.Hkv, p.Lq = pr.Lq, p.Lkv = pr.Lkv, p.D = pr.D, p.Dv = pr.Dv;
  p.scale = static_cast<float>(pr.tau());
  p.causal = pr.causal, p.window = pr.window;
  p.start = dstart.as<const int>(), p.used = dused.as<const int>();
  p.dtype = dt == DType::BF16 ? ElemType::BF16 : ElemType::F16;
  p.mech = plx ? Mechanism::Parallax : Mechanism::Softmax;
  const Op op = pr.Lq == 1 ? Op::Decode : Op::Forward;
  io::DevBuf dws;
  // Test hook: the prefill kernel for D = 128 problems (v2 and v3 take no other D; D = 64 keeps v1).
  if (const char* v = std::getenv("PLX_CUDA_FORWARD_VERSION"); v && op == Op::Forward && (p.D == 128 || std::atoi(v) == 1))
    p.forward_version = std::atoi(v);
  if (const char* v = std::getenv("PLX_CUDA_FORWARD_FLAGS"); v && op == Op::Forward) p.forward_flags = std::atoi(v);
  if (op == Op::Decode) {
    const int sms = io::multiprocessor_count();
    if (const char* v = std::getenv("PLX_CUDA_DECODE_VERSION")) p.decode_version = std::atoi(v);  // tests pick v2/v3
    if (const char* s = std::getenv("PLX_CUDA_SPLITS")) p.num_splits = std::atoi(s);  // tests force splits
    else p.num_splits = decode_num_splits(p, sms);
    if (p.num_splits > 1) {
      dws = io::DevBuf(decode_workspace_floats(p) * 4);
      io::fill(dws.get(), 0xFF, decode_counters_offset(p) * 4, "cudaMemset workspace (poison)");
      io::fill(dws.as<float>() + decode_counters_offset(p), 0, std::size_t(p.B) * p.Hkv * 4, "cudaMemset workspace counters");
      p.workspace = dws.as<float>();
    }
  }
  launch(p, op, nullptr);
  io::synchronize("kernel execution");

  CandidateResult res;
  res.out = io::download_16(dout.get(), dt, {B, Lq, Hq, Dv});
  res.saved["vbar"] = io::download_16(dvbar.get(), dt, {B, Lq, Hq, Dv});
  res.saved["lse"] = io::download_f32(dlse.get(), {B, Hq, Lq});
  res.saved["m"] = io::download_f32(dm.get(), {B, Hq, Lq});
  res.saved["omega"] = io::download_f32(dd1.get(), {B, Hq, Lq});
  if (plx) res.saved["zbar"] = io::download_f32(dzb.get(), {B, Hq, Lq});
  return res;
}

}  // namespace plx::cuda
