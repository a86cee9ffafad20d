// kernels/lla_params.hpp — the params struct of the LLA (Local Linear Attention) CUDA kernels.
//
// Charter: plain pointers, element strides and shapes for LLA on bf16 / fp16 inputs with fp32
// accumulation and fp32 solver state (docs/math.md §3). No CUDA types and no reference headers, so
// host code, the C++17 .cu files and the benchmarks include it. Two launch paths
// (kernels/lla_api.hpp): Op::Decode — split-KV two-pass decode (docs/math.md §6.4) that forms the
// centred key covariance C by the Chan rule and solves on the device (Cholesky or dense CG);
// Op::Forward — one block per query row, matrix-free CG (docs/math.md §3.7), any Lq (prefill and
// decode). It does not own memory. The feature axis of every tensor is contiguous.
#pragma once
#include <cstdint>

#include "kernels/params.hpp"  // ElemType, Op

namespace plx::cuda {

enum class LlaAnchor : int { KeyMean = 0, Query = 1 };            // lla_cov | lla (FlashLLA, docs/math.md §3.2)
enum class LlaSolver : int { Direct = 0, CG = 1, JacobiCG = 2 };  // docs/math.md §3.7

// Per-row solver status (the `status` output).
enum LlaStatus : int {
  kLlaOk = 0,            // direct solve succeeded, or CG's stopping test fired (or rhs = 0), or empty row
  kLlaNotConverged = 1,  // CG ran cg_max_iters iterations without meeting the test (docs/math.md §7.5)
  kLlaNonFinite = 2,     // CG residual norm became NaN/Inf (counted as failure, docs/math.md §7.5)
  kLlaSingular = 3       // Cholesky pivot <= D u32 max diag in fp32: C + lambda I not numerically PD
                         //   (output NaN; lla_forward then throws plx::NumericalError by default)
};

struct LlaParams {
  // ---- inputs (device pointers, 16-byte aligned) -----------------------------------------
  const void* q = nullptr;       // [B, Lq, Hq, D]   queries
  const void* k = nullptr;       // [B, Lkv, Hkv, D] keys
  const void* v = nullptr;       // [B, Lkv, Hkv, Dv] values
  const float* lambda = nullptr; // device [B, Hq, Lq] ridge per row (dense), or null: lambda_scalar
  float lambda_scalar = 0.1f;    // ridge (>= 0, finite) when `lambda` is null (docs/math.md §3.1 units)
  // ---- outputs ------------------------------------------------------------------------------
  void* out = nullptr;           // [B, Lq, Hq, Dv] ElemType
  float* probe = nullptr;        // optional dense [B, Lq, Hq, D] fp32: rho (Query anchor) or theta (KeyMean),
                                 //   the reference's saved "probe" convention; 0 for empty rows
  float* lse = nullptr;          // optional dense [B, Hq, Lq]: m + ln omega (natural log; -inf for empty rows)
  float* omega = nullptr;        // optional dense [B, Hq, Lq]: sum_j exp(s_j - m) (0 for empty rows)
  int* iters = nullptr;          // optional dense [B, Hq, Lq]: CG iterations taken while active (0: direct)
  int* status = nullptr;         // optional dense [B, Hq, Lq]: LlaStatus
  // ---- strides in elements (batch, sequence position, head); feature axis is stride 1 ------
  std::int64_t q_batch_stride = 0, q_row_stride = 0, q_head_stride = 0;
  std::int64_t k_batch_stride = 0, k_row_stride = 0, k_head_stride = 0;
  std::int64_t v_batch_stride = 0, v_row_stride = 0, v_head_stride = 0;
  std::int64_t o_batch_stride = 0, o_row_stride = 0, o_head_stride = 0;
  std::int64_t q_dim_stride = 1, k_dim_stride = 1, v_dim_stride = 1, o_dim_stride = 1;  // feature axis: must be 1
  // ---- shapes (docs/math.md §1.1) -----------------------------------------------------------------
  int B = 0, Hq = 0, Hkv = 0;    // head h reads kv head h / (Hq / Hkv)
  int Lq = 0, Lkv = 0;           // >= 1
  int D = 0, Dv = 0;             // supported: D = Dv in {64, 128}
  float scale = 0;               // tau (> 0): multiplies q.k only; regression features are raw k - q
  // ---- mask (docs/math.md §1.2; reference/problem.hpp row_range) -----------------------------------
  bool causal = true;
  int window = -1;
  const int* start = nullptr;    // device [B] or null (= 0)
  const int* used = nullptr;     // device [B] or null (= Lkv)
  // ---- what to compute --------------------------------------------------------------------
  ElemType dtype = ElemType::BF16;
  LlaAnchor anchor = LlaAnchor::KeyMean;
  float delta_eps = 1e-12f;      // Query anchor: d = Delta + delta_eps * sgn(Delta) (docs/math.md §3.2)
  bool sgn0_zero = false;        // sgn(0) = 0 (FlashLLA naive) instead of +1
  LlaSolver solver = LlaSolver::CG;
  float cg_atol = 1e-12f, cg_rtol = 1e-12f;  // squared-norm test vs max(atol, nrm0) * rtol (docs/math.md §3.7)
  int cg_max_iters = 32;         // at most this many iterations (the reference runs exactly this many;
                                 //   iterations after the test fires change nothing, the kernel stops)
  // ---- split-KV decode (Op::Decode) ---------------------------------------------------------
  int num_splits = 1;            // chunks of the key range per row
  float* workspace = nullptr;    // device, >= lla_workspace_floats(p) floats (16-byte aligned)
};

// Decode workspace (floats): per (b, hq, split) the pass-1 record m (base 2), omega, kbar[D],
// S[D*D] (unnormalised centred second moment); per (b, hq) the solve record (M, omega, a, b,
// flags, r[D], kbar[D], combined C[D*D]); per (b, hq, split) the pass-2 record d1, d2, O1[Dv], O2[Dv].
PLX_HD inline std::int64_t lla_rec1_floats(int D) { return 4 + D + std::int64_t(D) * D; }
PLX_HD inline std::int64_t lla_rec_solve_floats(int D) { return 8 + 2 * std::int64_t(D) + std::int64_t(D) * D; }
PLX_HD inline std::int64_t lla_rec2_floats(int Dv) { return 4 + 2 * std::int64_t(Dv); }
inline std::int64_t lla_workspace_floats(const LlaParams& p) {
  const std::int64_t rows = std::int64_t(p.B) * p.Hq;
  return rows * (p.num_splits * (lla_rec1_floats(p.D) + lla_rec2_floats(p.Dv)) + lla_rec_solve_floats(p.D));
}

}  // namespace plx::cuda
