// kernels/params.hpp — the one params struct every plx CUDA kernel takes.
//
// Charter: plain pointers, element strides and shapes for softmax / Parallax attention
// on bf16 or fp16 inputs (fp32 accumulation), and which kernel (by technique) runs it. No CUDA
// types here, so host code and the CPU-only argument checks (check_params in kernels/cuda_api.cpp)
// include it without nvcc. The last (feature) axis of every tensor must be contiguous (stride 1);
// the other strides are free but must keep every row 16-byte aligned (multiples of 8 elements).
// It does not own memory. LLA has its own struct (kernels/lla_params.hpp), the backward too
// (kernels/backward_params.hpp).
#pragma once
#include <cstdint>

namespace plx::cuda {

enum class ElemType : int { BF16 = 0, F16 = 1 };     // element type of q, r, k, v, out, vbar
enum class Mechanism : int { Softmax = 0, Parallax = 1 };
enum class Op : int { Decode = 0, Forward = 1 };    // split-KV decode (Lq = 1) | prefill forward

// The kernels by technique; Auto picks from the capability table (kernels/capabilities.hpp).
enum class ForwardKernel : int {
  Auto = 0,
  MmaSync = 1,  // mma.sync m16n8k16, any supported D (parallax_forward.cu)
  Wgmma = 2,    // wgmma with cp.async loads, D = 128 (parallax_forward_wgmma.cu)
  Tma = 3       // warp-specialized TMA producer + wgmma consumers, D = 128, needs driver tensor maps
                // (parallax_forward_tma.cu)
};
enum class DecodeKernel : int {
  Auto = 0,
  CudaCore = 1,  // fp32 FMA on CUDA cores, one warp per key group (parallax_decode.cu)
  MmaSync = 2    // mma.sync tensor cores, group rows padded to 16, fused split combine (parallax_decode.cu)
};
struct AttnParams {
  // ---- inputs (device pointers, 16-byte aligned) ------------------------------------
  const void* q = nullptr;  // [B, Lq, Hq, D]   queries
  const void* r = nullptr;  // [B, Lq, Hq, D]   Parallax probe r (unscaled); unused (may be null) for softmax
  const void* k = nullptr;  // [B, Lkv, Hkv, D] keys
  const void* v = nullptr;  // [B, Lkv, Hkv, Dv] values
  // ---- outputs ------------------------------------------------------------------------
  void* out = nullptr;      // [B, Lq, Hq, Dv]  attention output, ElemType
  void* vbar = nullptr;     // [B, Lq, Hq, Dv]  optional: softmax mean O1/d1 (saved for the backward), ElemType
  float* lse = nullptr;     // [B, Hq, Lq]      optional: m + ln d1, natural log units (-inf for empty rows)
  float* m = nullptr;       // [B, Hq, Lq]      optional: row max of tau q.k, NATURAL units (0 for empty rows)
  float* d1 = nullptr;      // [B, Hq, Lq]      optional: sum_j exp(s_j - m) (= omega; 0 for empty rows)
  float* zbar = nullptr;    // [B, Hq, Lq]      optional: sum_j p_j r.k_j (Parallax; 0 for softmax / empty rows)
  // ---- strides in elements (batch, sequence position, head); feature axis is stride 1 -----
  std::int64_t q_batch_stride = 0, q_row_stride = 0, q_head_stride = 0;
  std::int64_t r_batch_stride = 0, r_row_stride = 0, r_head_stride = 0;
  std::int64_t k_batch_stride = 0, k_row_stride = 0, k_head_stride = 0;
  std::int64_t v_batch_stride = 0, v_row_stride = 0, v_head_stride = 0;
  std::int64_t o_batch_stride = 0, o_row_stride = 0, o_head_stride = 0;  // out and vbar share these
  // ---- shapes (docs/math.md §1.1) ---------------------------------------------------------------
  int B = 0, Hq = 0, Hkv = 0;  // batch, query heads, kv heads (Hq % Hkv == 0; head h reads kv head h / (Hq/Hkv))
  int Lq = 0, Lkv = 0;         // queries, keys (>= 1)
  int D = 0, Dv = 0;           // head dims of q/r/k and v; supported: D = Dv in {64, 128}
  float scale = 0;             // tau (> 0, finite): multiplies q.k only, never r.k
  // ---- mask (docs/math.md §1.2, reference/problem.hpp row_range) ---------------------------------
  bool causal = true;          // end-aligned: query i sits at P_i = used_b - Lq + i
  int window = -1;             // keep the W most recent keys incl. the diagonal; -1 = off
  const int* start = nullptr;  // device [B] first usable key per batch, or null (= 0)
  const int* used = nullptr;   // device [B] used keys per batch (seqused_k), or null (= Lkv)
  // ---- what to compute ------------------------------------------------------------------
  ElemType dtype = ElemType::BF16;
  Mechanism mech = Mechanism::Parallax;
  // ---- split-KV decode (Op::Decode) ---------------------------------------------------------
  int num_splits = 1;          // chunks of the key range per row; 1 = no workspace, no combine
  DecodeKernel decode_kernel = DecodeKernel::Auto;  // Auto: kernels/capabilities.hpp
  float* workspace = nullptr;  // device, >= decode_workspace_floats(p) floats when num_splits > 1
  // ---- prefill forward (Op::Forward) ------------------------------------------------------------
  ForwardKernel forward_kernel = ForwardKernel::Auto;  // Auto: kernels/capabilities.hpp
};

// Split workspace of the decode (4-byte words): per (b, hq, split) m (base 2), d1, d2, z0 and
// O1, O2 [Dv] as floats, then B*Hkv int arrival counters (the mma_sync decode's fused combine). The counters
// must be ZERO before the first launch (cudaMemset); every launch leaves them zero again.
#if defined(__CUDACC__)
#define PLX_HD __host__ __device__
#else
#define PLX_HD
#endif
PLX_HD inline std::int64_t decode_counters_offset(const AttnParams& p) {
  return std::int64_t(p.B) * p.Hq * p.num_splits * (4 + 2 * std::int64_t(p.Dv));
}
inline std::int64_t decode_workspace_floats(const AttnParams& p) {
  return p.num_splits <= 1 ? 0 : decode_counters_offset(p) + std::int64_t(p.B) * p.Hkv;
}

}  // namespace plx::cuda
