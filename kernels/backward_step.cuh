// kernels/backward_step.cuh — the per-(query, key) weights of the backward (docs/math.md §5.2), shared
// by the mma.sync passes (parallax_backward.cu) and the wgmma passes (
// parallax_backward_wgmma.cu).
//
// Charter: with p = exp2(tau log2e s - lse2) (0 where the pair is masked), a = dO.v, z = r.k and
// the row's t = <dO, out>, b = <dO, vbar>, zbar:
//   sw = p (1 + zbar - z),  gl = tau p (a - t + (zbar - z)(a - b)),  gu = -p (a - b)
// (softmax: sw = p, gl = tau p (a - t), no gu). The passes round sw, gl, gu to the input type
// before their products (as FlashAttention rounds P and dS). Nothing here touches memory.
#pragma once
#include <type_traits>
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
  // ex2.approx.ftz of -inf is 0: a masked element costs no branch (exp2f's denormal scaling and
  // a branch per element were ~10 % of the key pass's instructions), and the flushed range
  // (p < 2^-126 of the row's mass) is the one the forward's ex2.approx.ftz flushed too.
  const float pj = exp2_ftz(ok ? fmaf(s, qscale, -lse2) : -INFINITY);
  if (PLX) {
    const float dz = zb - z, amb = a - b;
    return {pj * (1.f + dz), scale * (pj * (a - t + dz * amb)), -pj * amb};
  }
  return {pj, scale * (pj * (a - t)), 0.f};
}

// Queries [i_lo, i_lo + nqt BM) that can see a key of the tile [k0, k0 + BN) (causal and
// window limits; nqt = 0 when none can), in steps of BM rows.
struct QuerySpan {
  int i_lo, nqt;
};
__device__ __forceinline__ QuerySpan queries_seeing(const BwdParams& p, const MaskB& mk, int k0, int BN, int BM) {
  const int key_lo = k0 > mk.start ? k0 : mk.start;
  int key_hi = k0 + BN < p.Lkv ? k0 + BN : p.Lkv;
  key_hi = key_hi < mk.used ? key_hi : mk.used;
  int i_lo = 0, i_hi = p.Lq;
  if (p.causal) i_lo = max(0, key_lo - mk.off);                        // needs P_i >= key_lo
  if (p.window >= 0) i_hi = min(p.Lq, key_hi - 1 + p.window - mk.off);  // needs P_i - W + 1 <= key_hi - 1
  return {i_lo, (key_lo < key_hi && i_lo < i_hi) ? (i_hi - i_lo + BM - 1) / BM : 0};
}

// The query pass's rows row0 and row0 + 8 of head hq: allowed keys and the saved statistics
// (rows past Lq: lse2 = +inf, so every weight is 0); nrows = B Hq Lq.
struct QueryRows {
  int rlo[2], rhi[2];
  float lse2[2], t[2], b[2], zb[2];
};
template <bool PLX>
__device__ __forceinline__ void query_rows(const BwdParams& p, const MaskB& mk, int b, int hq, int row0, long long nrows,
                                           QueryRows& q) {
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const int i = row0 + rr * 8;
    const bool ok = i < p.Lq;
    bwd_range(p, mk, ok ? i : p.Lq - 1, q.rlo[rr], q.rhi[rr]);
    const long long ri = ((long long)b * p.Hq + hq) * p.Lq + (ok ? i : 0);
    q.lse2[rr] = ok ? p.workspace[ri] : INFINITY;
    q.t[rr] = ok ? p.workspace[nrows + ri] : 0.f;
    q.b[rr] = ok ? p.workspace[2 * nrows + ri] : 0.f;
    q.zb[rr] = ok && PLX ? p.zbar[ri] : 0.f;
  }
}

// Query pass, one key tile from k0 in accumulator layout (rows = the thread's queries):
// s <- gl, z <- gu (a = dO.v is consumed). `full`: every row allows every key of the tile.
template <bool PLX, int NTS>
__device__ __forceinline__ void query_tile_weights(float (&s)[NTS][4], float (&z)[PLX ? NTS : 1][4],
                                                   const float (&a)[NTS][4], const QueryRows& q, int k0, bool full,
                                                   int lane, float qscale, float scale) {
  // Masked scores become -inf in one pass taken only for tiles that are not full (one branch
  // per tile); the weights then need no mask: exp2 of -inf is 0. A mask per element (`full ||
  // in range`) compiled to a branch and a convergence barrier for each element, and its
  // branch-free forms, or two copies of the loop, spilled 72-124 bytes here.
  if (!full) mask_outside<NTS>(s, k0 + (lane & 3) * 2, q.rlo, q.rhi);
#pragma unroll
  for (int n = 0; n < NTS; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int rr = e >> 1;
      const BwdWeights w = bwd_weights<PLX>(s[n][e], PLX ? z[n][e] : 0.f, a[n][e], q.lse2[rr], q.t[rr], q.b[rr], q.zb[rr],
                                            true, qscale, scale);
      s[n][e] = w.gl;
      if (PLX) z[n][e] = w.gu;
    }
}

// Key pass, one step of BM queries from q0 in transposed accumulator layout (rows = the
// thread's keys key_r0, key_r0 + 8; columns = queries): sT <- sw, aT <- gl, zT <- gu. rf holds
// the step's lse2, t, b, zbar as [4][BM] floats.
template <bool PLX, int NQT, int BM>
__device__ __forceinline__ void key_step_weights(float (&sT)[NQT][4], float (&zT)[PLX ? NQT : 1][4], float (&aT)[NQT][4],
                                                 const float* rf, const BwdParams& p, const MaskB& mk, int q0, int k0,
                                                 int BN, int key_r0, int lane, float qscale) {
  int lo_f, hi_f, lo_l, hi_l;
  bwd_range(p, mk, q0, lo_f, hi_f);
  bwd_range(p, mk, min(q0 + BM, p.Lq) - 1, lo_l, hi_l);
  const bool full = q0 + BM <= p.Lq && k0 >= lo_l && k0 + BN <= hi_f;  // every (query, key) allowed
  auto each = [&](auto masked) {  // one branch per step (see query_tile_weights)
    constexpr bool M = decltype(masked)::value;
#pragma unroll
    for (int n = 0; n < NQT; ++n)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int col = n * 8 + (lane & 3) * 2 + c;
        int lo = 0, hi = 0;
        if (M) bwd_range(p, mk, q0 + col, lo, hi);
        const float lse2 = rf[col], t = rf[BM + col];
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
          const int e = rr * 2 + c;
          const int key = key_r0 + rr * 8;
          const bool ok = !M || (q0 + col < p.Lq && key >= lo && key < hi);
          const BwdWeights w = bwd_weights<PLX>(sT[n][e], PLX ? zT[n][e] : 0.f, aT[n][e], lse2, t,
                                                PLX ? rf[2 * BM + col] : 0.f, PLX ? rf[3 * BM + col] : 0.f, ok,
                                                qscale, p.scale);
          sT[n][e] = w.sw, aT[n][e] = w.gl;
          if (PLX) zT[n][e] = w.gu;
        }
      }
  };
  if (full) each(std::false_type{});
  else each(std::true_type{});
}

// Epilogue of the key pass: the thread's key rows key_r0 and key_r0 + 8 (those < Lkv) of dk, dv.
template <class T, int NO>
__device__ __forceinline__ void store_dkdv_rows(const BwdParams& p, int b, int hk, int key_r0, int lane,
                                                const float (&dk)[NO][4], const float (&dv)[NO][4]) {
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const int j = key_r0 + rr * 8;
    if (j >= p.Lkv) continue;
    T* krow = static_cast<T*>(p.dk) + b * p.dk_batch_stride + (long long)j * p.dk_row_stride + (long long)hk * p.dk_head_stride;
    T* vrow = static_cast<T*>(p.dv) + b * p.dk_batch_stride + (long long)j * p.dk_row_stride + (long long)hk * p.dk_head_stride;
#pragma unroll
    for (int n = 0; n < NO; ++n) {
      const int col = n * 8 + (lane & 3) * 2;
      *reinterpret_cast<std::uint32_t*>(krow + col) = Pack<T>::from_float2(dk[n][rr * 2], dk[n][rr * 2 + 1]);
      *reinterpret_cast<std::uint32_t*>(vrow + col) = Pack<T>::from_float2(dv[n][rr * 2], dv[n][rr * 2 + 1]);
    }
  }
}

// Row sums of packed A fragments of the weights (a[0], a[2]: row r0; a[1], a[3]: row r0 + 8):
// exactly the rounded values the dq / dr products multiply.
template <class T> __device__ __forceinline__ void add_packed_row_sums(const std::uint32_t (&a)[4], float (&sum)[2]) {
  const float2 x0 = Pack<T>::to_float2(a[0]), x1 = Pack<T>::to_float2(a[1]);
  const float2 x2 = Pack<T>::to_float2(a[2]), x3 = Pack<T>::to_float2(a[3]);
  sum[0] += (x0.x + x0.y) + (x2.x + x2.y);
  sum[1] += (x1.x + x1.y) + (x3.x + x3.y);
}

// Epilogue of the query pass: dq and dr of the thread's rows row0, row0 + 8 (those < Lq), formed against the key reference:
// the products accumulated GL K and GU K; subtracting (row sum of GL) kref and (row sum of GU) kref
// makes them GL (K - kref) and GU (K - kref) exactly, so a common key offset (k_j = c u + noise)
// no longer multiplies the weights' rounding (their row sums vanish in exact arithmetic only).
// gsum, usum: the thread's partial row sums of the rounded GL, GU (summed over the quad here).
template <class T, int NO, bool PLX>
__device__ __forceinline__ void store_dqdr_rows(const BwdParams& p, int b, int hq, int hk, int row0, int lane,
                                                const float (&dq)[NO][4], const float (&dr)[PLX ? NO : 1][4],
                                                float (&gsum)[2], float (&usum)[2]) {
  const long long nrows = (long long)p.B * p.Hq * p.Lq;
  const float* kref = p.workspace + 3 * nrows + ((long long)b * p.Hkv + hk) * p.D;
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    gsum[rr] += __shfl_xor_sync(0xffffffffu, gsum[rr], 1);
    gsum[rr] += __shfl_xor_sync(0xffffffffu, gsum[rr], 2);
    if (PLX) {
      usum[rr] += __shfl_xor_sync(0xffffffffu, usum[rr], 1);
      usum[rr] += __shfl_xor_sync(0xffffffffu, usum[rr], 2);
    }
  }
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const int i = row0 + rr * 8;
    if (i >= p.Lq) continue;
    const long long o = b * p.dq_batch_stride + (long long)i * p.dq_row_stride + (long long)hq * p.dq_head_stride;
    T* qrow = static_cast<T*>(p.dq) + o;
    T* rrow = PLX ? static_cast<T*>(p.dr) + o : nullptr;
#pragma unroll
    for (int n = 0; n < NO; ++n) {
      const int col = n * 8 + (lane & 3) * 2;
      const float2 kr = make_float2(kref[col], kref[col + 1]);  // 4-byte aligned only
      *reinterpret_cast<std::uint32_t*>(qrow + col) =
          Pack<T>::from_float2(dq[n][rr * 2] - gsum[rr] * kr.x, dq[n][rr * 2 + 1] - gsum[rr] * kr.y);
      if (PLX)
        *reinterpret_cast<std::uint32_t*>(rrow + col) =
            Pack<T>::from_float2(dr[n][rr * 2] - usum[rr] * kr.x, dr[n][rr * 2 + 1] - usum[rr] * kr.y);
    }
  }
}

}  // namespace plx::cuda::detail
