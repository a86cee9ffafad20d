// kernels/backward_step.cuh — the per-(query, key) weights of the backward (SPEC §5.2), shared
// by the mma.sync passes (v1, parallax_backward.cu) and the wgmma passes (v2,
// parallax_backward_wgmma.cu).
//
// Charter: with p = exp2(tau log2e s - lse2) (0 where the pair is masked), a = dO.v, z = r.k and
// the row's t = <dO, out>, b = <dO, vbar>, zbar:
//   sw = p (1 + zbar - z),  gl = tau p (a - t + (zbar - z)(a - b)),  gu = -p (a - b)
// (softmax: sw = p, gl = tau p (a - t), no gu). The passes round sw, gl, gu to the input type
// before their products (as FlashAttention rounds P and dS). Nothing here touches memory.
#pragma once
#include "kernels/backward_params.hpp"
#include "kernels/device_common.cuh"

namespace plx::cuda::detail {

// Block-wide mask constants of one batch: query i sits at P_i = off + i.
struct MaskB {
  int start, used, off;  // off = used - Lq
};
__device__ __forceinline__ MaskB mask_of(const BwdParams& p, int b) {
  MaskB mk;
  mk.used = p.used ? p.used[b] : p.Lkv;
  mk.start = p.start ? p.start[b] : 0;
  mk.off = mk.used - p.Lq;
  return mk;
}
// Raw allowed range [lo, hi) of query i (lo > hi possible: empty). lo, hi are monotone in i.
__device__ __forceinline__ void bwd_range(const BwdParams& p, const MaskB& mk, int i, int& lo, int& hi) {
  const int P = mk.off + i;
  int l = mk.start, h = mk.used < p.Lkv ? mk.used : p.Lkv;
  if (p.causal) h = h < P + 1 ? h : P + 1;
  if (p.window >= 0) l = l > P - p.window + 1 ? l : P - p.window + 1;
  if (l < 0) l = 0;
  lo = l, hi = h;
}

// Copy 4 bytes global -> shared; when !pred nothing is read and the 4 bytes are zeroed.
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem, bool pred) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int n = pred ? 4 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}

struct BwdWeights {
  float sw, gl, gu;
};
template <bool PLX>
__device__ __forceinline__ BwdWeights bwd_weights(float s, float z, float a, float lse2, float t, float b, float zb,
                                                  bool ok, float qscale, float scale) {
  const float pj = ok ? exp2f(s * qscale - lse2) : 0.f;
  if (PLX) {
    const float dz = zb - z, amb = a - b;
    return {pj * (1.f + dz), scale * (pj * (a - t + dz * amb)), -pj * amb};
  }
  return {pj, scale * (pj * (a - t)), 0.f};
}

}  // namespace plx::cuda::detail
