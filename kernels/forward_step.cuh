// kernels/forward_step.cuh — the per-tile online step and the epilogue of the prefill forward,
// shared by the mma.sync kernel (parallax_forward.cu) and the wgmma kernel (
// parallax_forward_wgmma.cu).
//
// Charter: both kernels hold a thread's accumulators in the same fragment layout (rows
// r0 = 16 w + lane / 4 and r0 + 8 of the warp's 16 rows; n8 tile i, element e: column
// 8 i + 2 (lane % 4) + (e & 1), row r0 + 8 (e >> 1)), so the masking, the online max in
// base 2, the exponentials, the Parallax re-centring of the shift (docs/math.md §7.1) and the stores
// of out, vbar, lse, m, d1, zbar are one piece of code. Nothing here touches shared memory.
#pragma once
#include <cmath>

#include "kernels/device_common.cuh"

namespace plx::cuda::detail {

// Raw allowed range of row i (lo may exceed hi: empty). Unlike key_range it keeps lo and hi
// monotone in i, so a block's key range is [lo(first row), hi(last row)).
__device__ __forceinline__ void raw_range(const AttnParams& p, int b, int i, int& lo, int& hi) {
  const int used = p.used ? p.used[b] : p.Lkv;
  const int start = p.start ? p.start[b] : 0;
  const long long P = (long long)used - p.Lq + i;
  long long l = start, h = used;
  if (p.causal) h = h < P + 1 ? h : P + 1;
  if (p.window >= 0) l = l > P - p.window + 1 ? l : P - p.window + 1;
  if (l < 0) l = 0;
  if (h > p.Lkv) h = p.Lkv;
  if (h < 0) h = 0;
  if (l > p.Lkv) l = p.Lkv;
  lo = int(l), hi = int(h);
}

// Allowed keys of the thread's two rows row0 and row0 + 8 (rows past Lq take the last row's).
__device__ __forceinline__ void thread_row_ranges(const AttnParams& p, int b, int row0, int (&rlo)[2], int (&rhi)[2]) {
  raw_range(p, b, min(row0, p.Lq - 1), rlo[0], rhi[0]);
  raw_range(p, b, min(row0 + 8, p.Lq - 1), rlo[1], rhi[1]);
}

template <int NTO, bool PLX>
__device__ __forceinline__ void zero_accumulators(float (&o1)[NTO][4], float (&o2)[PLX ? NTO : 1][4]) {
#pragma unroll
  for (int i = 0; i < NTO; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      o1[i][e] = 0.f;
      if (PLX) o2[i][e] = 0.f;
    }
}

// Running state of the thread's two rows: max (base 2), d1 and d2 (Parallax: row totals;
// softmax: per-thread partial d1), and the shift z0.
struct RowState {
  float m[2] = {-INFINITY, -INFINITY}, d1[2] = {0.f, 0.f}, d2[2] = {0.f, 0.f}, z0[2] = {0.f, 0.f};
};

// Per-row sums of f(i, e) over a tile in accumulator layout, as four independent chains per row.
template <int NTS, class F>
__device__ __forceinline__ void row_sums(F f, float (&out)[2]) {
  float acc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
  for (int i = 0; i < NTS; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[e >> 1][(i & 1) * 2 + (e & 1)] += f(i, e);
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) out[rr] = (acc[rr][0] + acc[rr][1]) + (acc[rr][2] + acc[rr][3]);
}

// One key tile, in two halves so a kernel can run the first while Z = R K^T is still in flight:
// online_p1 turns s (raw q.k) into p1 = exp2(tau log2e s - m) in place and returns the
// per-row factors alpha for the new max; online_p2 turns z (r.k) into p2 = p1 (z - z0) in place
// and rescales (and, for Parallax, re-centres) the accumulators. key0 is the tile's first key
// plus 2 (lane % 4); `full` means every row allows every key. online_step runs both.
struct TileFactors {
  float alpha[2], ls1[2];
  bool rescale;
};
template <int NTS>
__device__ __forceinline__ TileFactors online_p1(float (&s)[NTS][4], RowState& st, int key0, bool full,
                                                 const int (&rlo)[2], const int (&rhi)[2], float qscale) {
  // The max is taken on the raw q.k (qscale > 0 keeps the order); the scaled logit and the
  // subtraction of the max are one fma inside the exponential.
  float mx[2] = {-INFINITY, -INFINITY};
  if (!full) mask_outside<NTS>(s, key0, rlo, rhi);
  {  // four independent chains per row instead of one of 2 NTS
    float acc[2][4] = {{-INFINITY, -INFINITY, -INFINITY, -INFINITY}, {-INFINITY, -INFINITY, -INFINITY, -INFINITY}};
#pragma unroll
    for (int i = 0; i < NTS; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[e >> 1][(i & 1) * 2 + (e & 1)] = fmaxf(acc[e >> 1][(i & 1) * 2 + (e & 1)], s[i][e]);
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) mx[rr] = fmaxf(fmaxf(acc[rr][0], acc[rr][1]), fmaxf(acc[rr][2], acc[rr][3]));
  }
  float alpha[2], m_use[2];
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 1));
    mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 2));
    const float m_new = fmaxf(st.m[rr], mx[rr] * qscale);
    m_use[rr] = m_new == -INFINITY ? 0.f : m_new;  // safe pivot (docs/math.md §1.4)
    alpha[rr] = exp2_ftz(st.m[rr] - m_use[rr]);
    st.m[rr] = m_new;
  }
#pragma unroll
  for (int i = 0; i < NTS; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) s[i][e] = exp2_ftz(fmaf(s[i][e], qscale, -m_use[e >> 1]));
  float ls1[2];
  row_sums<NTS>([&](int i, int e) { return s[i][e]; }, ls1);
  // Rescaling the accumulators is skipped when no row of the warp raised its max (alpha = 1
  // exactly): most tiles of a long row.
  return {{alpha[0], alpha[1]}, {ls1[0], ls1[1]}, __any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f) != 0};
}

template <int NTS, int NTO, bool PLX>
__device__ __forceinline__ void online_p2(const float (&s)[NTS][4], float (&z)[PLX ? NTS : 1][4], float (&o1)[NTO][4],
                                          float (&o2)[PLX ? NTO : 1][4], RowState& st, const TileFactors& f) {
  const float(&alpha)[2] = f.alpha;
  const float(&ls1)[2] = f.ls1;
  const bool rescale = f.rescale;
  if constexpr (PLX) {
    // Online re-centring (docs/math.md §7.1 shift): z0 follows the running p1-weighted mean of z, so
    // P2 = P1 (z - z0) stays ~ P1 (z - zbar) even when later tiles bring dominant keys whose
    // z is far from the first tile's (outlier tokens, large logits). d1, d2 are row totals
    // (quad-reduced per tile); moving the centre by dz = z0' - z0 is the exact update
    // d2 -= dz d1, O2 -= dz O1, applied with the rescale by alpha.
    float w[2] = {ls1[0], ls1[1]}, wz[2];
    row_sums<NTS>([&](int i, int e) { return s[i][e] * z[i][e]; }, wz);
    float dz[2];
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      w[rr] += __shfl_xor_sync(0xffffffffu, w[rr], 1);
      w[rr] += __shfl_xor_sync(0xffffffffu, w[rr], 2);
      wz[rr] += __shfl_xor_sync(0xffffffffu, wz[rr], 1);
      wz[rr] += __shfl_xor_sync(0xffffffffu, wz[rr], 2);
      const float d1o = st.d1[rr], d1n = alpha[rr] * d1o + w[rr];
      // Any z0 is exact (d2, O2 follow it), so the approximate division only moves the centre.
      const float zn = d1n > 0.f ? __fdividef(alpha[rr] * (d1o * st.z0[rr] + st.d2[rr]) + wz[rr], d1n) : st.z0[rr];
      dz[rr] = zn - st.z0[rr];
      st.d2[rr] = alpha[rr] * (st.d2[rr] - dz[rr] * d1o);
      st.d1[rr] = d1n;
      st.z0[rr] = zn;
    }
#pragma unroll
    for (int i = 0; i < NTS; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) z[i][e] = s[i][e] * (z[i][e] - st.z0[e >> 1]);  // p2 (masked: p1 = 0)
    float ls2[2];
    row_sums<NTS>([&](int i, int e) { return z[i][e]; }, ls2);
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      ls2[rr] += __shfl_xor_sync(0xffffffffu, ls2[rr], 1);
      ls2[rr] += __shfl_xor_sync(0xffffffffu, ls2[rr], 2);
      st.d2[rr] += ls2[rr];
    }
    if (rescale) {
#pragma unroll
      for (int i = 0; i < NTO; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          o2[i][e] = alpha[e >> 1] * fmaf(-dz[e >> 1], o1[i][e], o2[i][e]);
          o1[i][e] *= alpha[e >> 1];
        }
    } else {
#pragma unroll
      for (int i = 0; i < NTO; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) o2[i][e] = fmaf(-dz[e >> 1], o1[i][e], o2[i][e]);
    }
  } else {
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) st.d1[rr] = st.d1[rr] * alpha[rr] + ls1[rr];  // per-thread partial
    if (rescale) {
#pragma unroll
      for (int i = 0; i < NTO; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) o1[i][e] *= alpha[e >> 1];
    }
  }
}

template <int NTS, int NTO, bool PLX>
__device__ __forceinline__ void online_step(float (&s)[NTS][4], float (&z)[PLX ? NTS : 1][4], float (&o1)[NTO][4],
                                            float (&o2)[PLX ? NTO : 1][4], RowState& st, int key0, bool full,
                                            const int (&rlo)[2], const int (&rhi)[2], float qscale) {
  const TileFactors f = online_p1<NTS>(s, st, key0, full, rlo, rhi, qscale);
  online_p2<NTS, NTO, PLX>(s, z, o1, o2, st, f);
}

// Epilogue: out = vbar + (zbar_c vbar - O2 / d1) (Parallax, zbar_c = d2 / d1 about z0) or vbar
// (softmax), vbar = O1 / d1, and the saved row statistics. row0 = the thread's first row.
template <class T, int NTO, bool PLX>
__device__ __forceinline__ void store_rows(const AttnParams& p, int b, int hq, int row0, int lane,
                                           const float (&o1)[NTO][4], const float (&o2)[PLX ? NTO : 1][4],
                                           RowState& st) {
  if (!PLX) {  // softmax: per-thread partial sums; Parallax keeps row totals (online_step)
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      st.d1[rr] += __shfl_xor_sync(0xffffffffu, st.d1[rr], 1);
      st.d1[rr] += __shfl_xor_sync(0xffffffffu, st.d1[rr], 2);
    }
  }
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const int i = row0 + rr * 8;
    if (i >= p.Lq) continue;
    const bool e = !(st.d1[rr] > 0.f);
    const float inv = e ? 0.f : 1.f / st.d1[rr], zb = PLX ? st.d2[rr] * inv : 0.f;
    T* orow = static_cast<T*>(p.out) + b * p.o_batch_stride + (long long)i * p.o_row_stride + hq * p.o_head_stride;
    T* vrow = p.vbar ? static_cast<T*>(p.vbar) + b * p.o_batch_stride + (long long)i * p.o_row_stride +
                           hq * p.o_head_stride
                     : nullptr;
#pragma unroll
    for (int nt = 0; nt < NTO; ++nt) {
      const int col = nt * 8 + (lane & 3) * 2;
      const float vb0 = o1[nt][rr * 2] * inv, vb1 = o1[nt][rr * 2 + 1] * inv;
      float out0 = vb0, out1 = vb1;
      if (PLX) {
        out0 = vb0 + (zb * vb0 - o2[nt][rr * 2] * inv);
        out1 = vb1 + (zb * vb1 - o2[nt][rr * 2 + 1] * inv);
      }
      *reinterpret_cast<std::uint32_t*>(orow + col) = Pack<T>::from_float2(out0, out1);
      if (vrow) *reinterpret_cast<std::uint32_t*>(vrow + col) = Pack<T>::from_float2(vb0, vb1);
    }
    if ((lane & 3) == 0) {
      const long long row = ((long long)b * p.Hq + hq) * p.Lq + i;
      if (p.lse) p.lse[row] = e ? -INFINITY : (st.m[rr] + log2f(st.d1[rr])) * kLn2;
      if (p.m) p.m[row] = e ? 0.f : st.m[rr] * kLn2;
      if (p.d1) p.d1[row] = st.d1[rr];
      if (p.zbar) p.zbar[row] = e || !PLX ? 0.f : zb + st.z0[rr];
    }
  }
}

}  // namespace plx::cuda::detail
