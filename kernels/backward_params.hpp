// kernels/backward_params.hpp — the params struct of the plx CUDA backward (softmax, Parallax).
//
// Charter: plain pointers, element strides and shapes for the backward of docs/math.md §5.1 / §5.2 on
// bf16 or fp16 tensors (fp32 accumulation), fed by what the prefill forward saves
// (kernels/params.hpp: out, vbar, lse, m, d1, zbar). No CUDA types, so host code and the
// CPU-only argument checks include it without nvcc. Every tensor's feature (last) axis must
// be contiguous (d_stride = 1) and every row 16-byte aligned (strides multiples of 8 elements).
// It does not own memory. The backward is always deterministic (no atomics: a key-tile pass
// for dk/dv and a query-tile pass for dq/dr); there is no atomic fast mode.
#pragma once
#include <cstdint>

#include "kernels/params.hpp"  // ElemType, Mechanism

namespace plx::cuda {

// The tile passes by technique (the row preprocessing is one kernel for both).
enum class BackwardKernel : int {
  Auto = 0,
  MmaSync = 1,  // mma.sync m16n8k16 (parallax_backward.cu)
  Wgmma = 2     // wgmma, D = 128 (parallax_backward_wgmma.cu)
};

struct BwdParams {
  // ---- forward inputs (device pointers, 16-byte aligned) ----------------------------------
  const void* q = nullptr;     // [B, Lq, Hq, D]    queries
  const void* r = nullptr;     // [B, Lq, Hq, D]    Parallax probe (unscaled); unused (may be null) for softmax
  const void* k = nullptr;     // [B, Lkv, Hkv, D]  keys
  const void* v = nullptr;     // [B, Lkv, Hkv, Dv] values
  // ---- saved by the forward ----------------------------------------------------------------
  const void* out = nullptr;   // [B, Lq, Hq, Dv]   forward output (ElemType)
  const void* vbar = nullptr;  // [B, Lq, Hq, Dv]   Parallax: softmax mean O1/d1 (ElemType); unused for softmax
  const float* lse = nullptr;  // [B, Hq, Lq]       softmax: m + ln d1, natural units (-inf = empty row)
  const float* m = nullptr;    // [B, Hq, Lq]       Parallax: row max of tau q.k, natural units (0 for empty rows)
  const float* d1 = nullptr;   // [B, Hq, Lq]       Parallax: sum_j exp(s_j - m) (0 = empty row)
  const float* zbar = nullptr; // [B, Hq, Lq]       Parallax: sum_j p_j r.k_j
  // ---- upstream gradient --------------------------------------------------------------------
  const void* dout = nullptr;  // [B, Lq, Hq, Dv]   dL/dout (ElemType)
  // ---- gradients (ElemType; every element is written) ------------------------------------
  void* dq = nullptr;          // [B, Lq, Hq, D]
  void* dr = nullptr;          // [B, Lq, Hq, D]    Parallax only (may be null for softmax)
  void* dk = nullptr;          // [B, Lkv, Hkv, D]  summed over the query-head group (GQA/MQA)
  void* dv = nullptr;          // [B, Lkv, Hkv, Dv] summed over the query-head group
  // ---- scratch ----------------------------------------------------------------------------------
  float* workspace = nullptr;  // device, >= backward_workspace_floats(p) floats, 16-byte aligned: per row
                               // lse2 (base-2 log-normaliser, +inf = empty), t = <dO,out>, b = <dO,vbar>
  // ---- strides in elements (batch, sequence position, head) -------------------------------------
  std::int64_t q_batch_stride = 0, q_row_stride = 0, q_head_stride = 0;
  std::int64_t r_batch_stride = 0, r_row_stride = 0, r_head_stride = 0;
  std::int64_t k_batch_stride = 0, k_row_stride = 0, k_head_stride = 0;
  std::int64_t v_batch_stride = 0, v_row_stride = 0, v_head_stride = 0;
  std::int64_t o_batch_stride = 0, o_row_stride = 0, o_head_stride = 0;     // out and vbar
  std::int64_t do_batch_stride = 0, do_row_stride = 0, do_head_stride = 0;  // dout
  std::int64_t dq_batch_stride = 0, dq_row_stride = 0, dq_head_stride = 0;  // dq and dr
  std::int64_t dk_batch_stride = 0, dk_row_stride = 0, dk_head_stride = 0;  // dk and dv
  std::int64_t d_stride = 1;   // stride of the feature axis of every tensor: must be 1 (contiguous)
  // ---- shapes (docs/math.md §1.1) -----------------------------------------------------------------------
  int B = 0, Hq = 0, Hkv = 0;  // Hq % Hkv == 0; query head h reads kv head h / (Hq / Hkv)
  int Lq = 0, Lkv = 0;         // >= 1
  int D = 0, Dv = 0;           // supported: D = Dv in {64, 128}
  float scale = 0;             // tau (> 0, finite), multiplies q.k only
  // ---- mask (docs/math.md §1.2; identical to the forward's) ---------------------------------------------
  bool causal = true;          // end-aligned: query i sits at P_i = used_b - Lq + i
  int window = -1;             // keep the W most recent keys incl. the diagonal; -1 = off
  const int* start = nullptr;  // device [B] first usable key per batch, or null (= 0)
  const int* used = nullptr;   // device [B] used keys per batch, or null (= Lkv)
  // ---- what ---------------------------------------------------------------------------------------
  ElemType dtype = ElemType::BF16;
  Mechanism mech = Mechanism::Parallax;
  BackwardKernel kernel = BackwardKernel::Auto;  // tile passes; Auto: kernels/capabilities.hpp
};

// Workspace (4-byte words): three per-row arrays [B, Hq, Lq]: lse2, t, b; then the key reference
// kref [B, Hkv, D] (the mean of each batch's first kBwdKeyRefRows allowed keys) that dq and dr
// are formed against.
constexpr int kBwdKeyRefRows = 64;
inline std::int64_t backward_workspace_floats(const BwdParams& p) {
  return 3 * std::int64_t(p.B) * p.Hq * p.Lq + std::int64_t(p.B) * p.Hkv * p.D;
}

}  // namespace plx::cuda
