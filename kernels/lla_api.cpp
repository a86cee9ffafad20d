// kernels/lla_api.cpp — host side of the LLA CUDA kernels: validation, upload, launch, download.
//
// Charter: check_lla_params() rejects every launch the kernels cannot take before any CUDA call
// (unsupported D/Dv or dtype, misaligned pointers or strides, a non-contiguous feature axis,
// L = 0, grids over the hardware limits, bad lambda / delta_eps / CG tolerances, a missing
// workspace); lla_forward() runs a Problem + Inputs (already exact in the problem's dtype),
// poisons every output and the workspace with 0xFF bytes (NaN / -1) first, widens the results
// to double (transfers, poisoning and CUDA error checks through kernels/host_io.hpp), and turns
// a row the fp32 direct solve found singular into plx::NumericalError (lla_throw_if_singular)
// unless the caller asked for the per-row status instead. Compiled by the host compiler
// (kernels are in lla.cu).
#include "kernels/lla_api.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "kernels/host_io.hpp"
#include "kernels/param_check.hpp"
#include "reference/inputs.hpp"
#include "reference/problem.hpp"
#include "reference/candidate.hpp"

namespace plx::cuda {

namespace {
std::string str(long long x) { return std::to_string(x); }
}  // namespace

void check_lla_params(const LlaParams& p, Op op) {
  const detail::ParamCheck c("lla params");
  auto need = [&](bool ok, const std::string& field, const std::string& why) { c.need(ok, field, why); };
  c.shapes(p, "compute");
  need(p.anchor == LlaAnchor::KeyMean || p.anchor == LlaAnchor::Query, "anchor", "must be KeyMean or Query");
  need(p.solver == LlaSolver::Direct || p.solver == LlaSolver::CG || p.solver == LlaSolver::JacobiCG, "solver",
       "must be Direct, CG or JacobiCG");
  need(p.lambda != nullptr || (std::isfinite(p.lambda_scalar) && p.lambda_scalar >= 0), "lambda",
       "must be finite and >= 0, got " + std::to_string(p.lambda_scalar));
  need(std::isfinite(p.delta_eps) && p.delta_eps >= 0, "delta_eps", "must be finite and >= 0");
  need(std::isfinite(p.cg_atol) && p.cg_atol >= 0, "cg_atol", "must be finite and >= 0");
  need(std::isfinite(p.cg_rtol) && p.cg_rtol >= 0, "cg_rtol", "must be finite and >= 0");
  need(p.cg_max_iters >= 1 && p.cg_max_iters <= 100000, "cg_max_iters", "must lie in [1, 100000], got " + str(p.cg_max_iters));
  c.pointer(p.q, "q", true, 16), c.pointer(p.k, "k", true, 16), c.pointer(p.v, "v", true, 16);
  c.pointer(p.out, "out", true, 16);
  for (auto [x, name] : {std::pair<const void*, const char*>{p.lambda, "lambda"}, {p.probe, "probe"}, {p.lse, "lse"},
                         {p.omega, "omega"}, {p.iters, "iters"}, {p.status, "status"}, {p.start, "start"},
                         {p.used, "used"}})
    c.pointer(x, name, false, 4);
  for (auto [s, name] : {std::pair{p.q_dim_stride, "q"}, {p.k_dim_stride, "k"}, {p.v_dim_stride, "v"}, {p.o_dim_stride, "out"}})
    need(s == 1, std::string(name) + " feature stride",
         "the feature (last) axis must be contiguous (stride 1), got " + str(s));
  auto strides = [&](const char* name, std::int64_t bs, std::int64_t rs, std::int64_t hs) { c.strides(name, bs, rs, hs); };
  strides("q strides", p.q_batch_stride, p.q_row_stride, p.q_head_stride);
  strides("k strides", p.k_batch_stride, p.k_row_stride, p.k_head_stride);
  strides("v strides", p.v_batch_stride, p.v_row_stride, p.v_head_stride);
  strides("out strides", p.o_batch_stride, p.o_row_stride, p.o_head_stride);
  need(p.Hq == 1 || (p.q_head_stride > 0 && p.o_head_stride > 0), "head strides", "must be > 0 when Hq > 1");
  need(p.Hkv == 1 || (p.k_head_stride > 0 && p.v_head_stride > 0), "kv head strides", "must be > 0 when Hkv > 1");
  need(p.Lq == 1 || (p.q_row_stride > 0 && p.o_row_stride > 0), "row strides", "must be > 0 when Lq > 1");
  need(p.Lkv == 1 || (p.k_row_stride > 0 && p.v_row_stride > 0), "kv row strides", "must be > 0 when Lkv > 1");
  c.grid_dim(p.B, "B");
  if (op == Op::Decode) {
    need(p.Lq == 1, "Lq", "decode takes exactly one query per sequence, got " + str(p.Lq));
    need(p.Hq / p.Hkv <= 16, "Hq/Hkv", "decode supports group sizes up to 16, got " + str(p.Hq / p.Hkv));
    need(p.num_splits >= 1 && p.num_splits <= 1024, "num_splits", "must lie in [1, 1024], got " + str(p.num_splits));
    c.grid_dim(p.Hkv, "Hkv"), c.grid_dim(p.Hq, "Hq");
    need(p.workspace && reinterpret_cast<std::uintptr_t>(p.workspace) % 16 == 0, "workspace",
         "a 16-byte aligned workspace of lla_workspace_floats(p) floats is needed");
  } else {
    need(p.solver != LlaSolver::Direct, "solver",
         "the matrix-free forward solves by CG or JacobiCG only (Direct: use the split-KV decode, Lq = 1)");
    c.grid_dim(p.Hq, "Hq");
  }
  need(double(p.B) * p.Hq * p.Lq < 9e18, "B*Hq*Lq", "too large");
}

void launch_lla(const LlaParams& p, Op op, void* stream) {
  check_lla_params(p, op);
  const int e = op == Op::Decode ? detail::launch_lla_decode(p, stream) : detail::launch_lla_forward(p, stream);
  io::check(e, op == Op::Decode ? "lla decode launch" : "lla forward launch");
}

int lla_decode_num_splits(const LlaParams& p, int num_sms) {
  // Pass 1 is compute-bound (D^2 FMAs per key and head, 1 block of 256 threads per SM):
  // about two waves of blocks, no chunk shorter than 4 tiles (256 keys).
  const long long base = (long long)p.B * p.Hkv;
  const long long want = std::max(1LL, (2LL * num_sms + base - 1) / base);
  const long long by_len = std::max(1, p.Lkv / 256);
  return int(std::min({want, by_len, 1024LL}));
}

bool lla_supports(const Problem& p, std::string* why_not) {
  auto no = [&](const std::string& w) {
    if (why_not) *why_not = w;
    return false;
  };
  if (p.probe != Probe::Solver) return no("not an LLA (solver probe) problem");
  if (p.block_size() != p.D) return no("block-diagonal LLA (block < D) has no CUDA kernel");
  if (p.dtype != DType::BF16 && p.dtype != DType::F16) return no("dtype " + to_string(p.dtype) + " (kernels take bfloat16 or float16)");
  if (p.D != p.Dv || (p.D != 64 && p.D != 128)) return no("head dims D=" + str(p.D) + ", Dv=" + str(p.Dv) + " (need D = Dv in {64, 128})");
  if (p.Hkv < 1 || p.Hq % p.Hkv != 0) return no("Hq must be a multiple of Hkv");
  if (p.Lq == 1 && p.Hq / p.Hkv > 16) return no("decode group size Hq/Hkv > 16");
  if (p.Lq > 1 && p.solver.method == SolverMethod::Direct)
    return no("prefill LLA (Lq > 1) runs matrix-free CG only: set solver.method to cg or jacobi_cg");
  if (p.B > 65535 || p.Hq > 65535) return no("B or Hq over the grid limit 65535");
  const double big = std::numeric_limits<float>::max();
  if (p.solver.cg_atol > big || p.solver.cg_rtol > big || p.anchor_knobs.delta_eps > big || p.solver.lambda > big)
    return no("lambda / delta_eps / CG tolerances must fit in float");
  return true;
}

CandidateResult lla_forward(const Problem& pr, const Inputs& in, const LlaRunOptions& opt) {
  check_inputs(pr, in);
  std::string why;
  if (!lla_supports(pr, &why)) throw Error("cuda::lla_forward: unsupported problem: " + why);
  const bool decode = opt.path == LlaPath::SplitKV || (opt.path == LlaPath::Auto && pr.Lq == 1);
  if (decode && pr.Lq != 1) throw Error("cuda::lla_forward: the split-KV path needs Lq = 1");
  if (!decode && pr.solver.method == SolverMethod::Direct)
    throw Error("cuda::lla_forward: the matrix-free path needs solver.method cg or jacobi_cg");
  if (!io::device_available(&why)) throw Error("cuda::lla_forward: no usable device: " + why);
  const DType dt = pr.dtype;
  const std::size_t B = pr.B, Lq = pr.Lq, Lkv = pr.Lkv, Hq = pr.Hq, Hkv = pr.Hkv, D = pr.D, Dv = pr.Dv;
  const char* who = "cuda::lla_forward";
  io::DevBuf dq = io::upload_exact(in.q, dt, who, "q"), dk = io::upload_exact(in.k, dt, who, "k");
  io::DevBuf dv = io::upload_exact(in.v, dt, who, "v");
  const std::size_t n_row = B * Hq * Lq;
  io::DevBuf dlam = io::upload_floats(in.lambda, "cudaMemcpy lambda");
  io::DevBuf dout = io::poisoned(B * Lq * Hq * Dv * 2), dprobe = io::poisoned(B * Lq * Hq * D * 4);
  io::DevBuf dlse = io::poisoned(n_row * 4), dom = io::poisoned(n_row * 4), dit = io::poisoned(n_row * 4),
             dst = io::poisoned(n_row * 4);
  io::DevBuf dstart = io::upload_ints(pr.start, "cudaMemcpy start"), dused = io::upload_ints(pr.used, "cudaMemcpy used");
  LlaParams p;
  p.q = dq.get(), p.k = dk.get(), p.v = dv.get(), p.lambda = dlam.as<const float>();
  p.out = dout.get(), p.probe = dprobe.as<float>(), p.lse = dlse.as<float>();
  p.omega = dom.as<float>(), p.iters = dit.as<int>(), p.status = dst.as<int>();
  p.q_batch_stride = Lq * Hq * D, p.q_row_stride = Hq * D, p.q_head_stride = D;
  p.k_batch_stride = Lkv * Hkv * D, p.k_row_stride = Hkv * D, p.k_head_stride = D;
  p.v_batch_stride = Lkv * Hkv * Dv, p.v_row_stride = Hkv * Dv, p.v_head_stride = Dv;
  p.o_batch_stride = Lq * Hq * Dv, p.o_row_stride = Hq * Dv, p.o_head_stride = Dv;
  p.B = pr.B, p.Hq = pr.Hq, p.Hkv = pr.Hkv, p.Lq = pr.Lq, p.Lkv = pr.Lkv, p.D = pr.D, p.Dv = pr.Dv;
  p.scale = float(pr.tau());
  p.causal = pr.causal, p.window = pr.window;
  p.start = dstart.as<const int>(), p.used = dused.as<const int>();
  p.dtype = dt == DType::BF16 ? ElemType::BF16 : ElemType::F16;
  p.anchor = pr.anchor == Anchor::Query ? LlaAnchor::Query : LlaAnchor::KeyMean;
  p.delta_eps = float(pr.anchor_knobs.delta_eps), p.sgn0_zero = pr.anchor_knobs.sgn0 == Sgn0::Zero;
  p.solver = pr.solver.method == SolverMethod::Direct ? LlaSolver::Direct
             : pr.solver.method == SolverMethod::CG   ? LlaSolver::CG
                                                      : LlaSolver::JacobiCG;
  p.cg_atol = float(pr.solver.cg_atol), p.cg_rtol = float(pr.solver.cg_rtol), p.cg_max_iters = pr.solver.cg_max_iters;
  io::DevBuf dws;
  if (decode) {
    const int sms = io::multiprocessor_count();
    p.num_splits = opt.num_splits > 0 ? opt.num_splits : lla_decode_num_splits(p, sms);
    dws = io::poisoned(lla_workspace_floats(p) * 4);  // every record that is read must have been written
    p.workspace = dws.as<float>();
  }
  launch_lla(p, decode ? Op::Decode : Op::Forward, nullptr);
  io::synchronize("lla kernel execution");

  CandidateResult res;
  res.out = io::download_16(dout.get(), dt, {B, Lq, Hq, Dv});
  res.saved["probe"] = io::download_f32(dprobe.get(), {B, Lq, Hq, D});
  res.saved["lse"] = io::download_f32(dlse.get(), {B, Hq, Lq});
  res.saved["omega"] = io::download_f32(dom.get(), {B, Hq, Lq});
  res.saved["cg_iters"] = io::download_i32(dit.get(), {B, Hq, Lq});
  res.saved["status"] = io::download_i32(dst.get(), {B, Hq, Lq});
  if (opt.throw_on_singular) lla_throw_if_singular(res.saved.at("status"));
  return res;
}

void lla_throw_if_singular(const Tensor<double>& status) {
  if (status.shape.size() != 3) throw Error("lla_throw_if_singular: status must be [B, Hq, Lq], got " + shape_str(status.shape));
  const std::size_t n = status.size();
  std::size_t first = n, count = 0;
  for (std::size_t r = 0; r < n; ++r)
    if (status.data[r] == double(kLlaSingular)) count += 1, first = std::min(first, r);
  if (!count) return;
  const std::size_t Hq = status.shape[1], Lq = status.shape[2];
  const std::size_t b = first / (Hq * Lq), h = first / Lq % Hq, i = first % Lq;
  throw NumericalError("cuda::lla_forward: singular ridge system at row (b=" + std::to_string(b) + ", h=" +
                       std::to_string(h) + ", i=" + std::to_string(i) + ") (" + std::to_string(count) + " of " +
                       std::to_string(n) + " rows): C + lambda I is not numerically positive definite in fp32 "
                       "(a Cholesky pivot <= D u32 max diag); lambda = 0 with too few or affinely dependent keys?");
}

}  // namespace plx::cuda
