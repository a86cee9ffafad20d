// kernels/parallax_decode.cu — split-KV decode (flash-decoding) for Parallax and softmax.
//
// Charter: Lq = 1, end-aligned, per-batch start/used, windows, GQA/MQA. One block per
// (split, kv head, batch) reads each K/V row of its chunk exactly once (16-byte cp.async,
// two shared-memory stages) and serves all G = Hq/Hkv query heads of the group.
// Two kernels (kernels/capabilities.hpp picks; bench/cuda/bench_parallax_decode.cu times both):
//   mma_sync: the G heads are the rows of mma.sync m16n8k16 tiles (padded to 16), fp32
//      scores/sums, p1 and p2 fed to the PV mma as hi + lo pairs of the input type (no 16-bit
//      rounding of P; the extra mma is free in a memory-bound kernel). Tuning bits (kDec*): for
//      G <= 4 the 16 mma rows are stacked — A rows q (0-7) / r (8-15) in the score mma, so one mma
//      gives s and z; p1 hi / p1 lo / p2 hi / p2 lo as rows 0-3 / 4-7 / 8-11 / 12-15 in the PV mma
//      (32 instead of 96 mma per warp and 16 keys, 127 instead of 230 registers); and the fused
//      combine stages the split records in shared memory and weights each split once;
//   cuda_core: fp32 FMA throughout (p1, p2 never rounded), compute-bound for G >= 4.
// Stable formulation (both): the closed form of docs/math.md §4.1 with the per-row shift
// z_j -> z_j - z0 of docs/math.md §7.1, so out = (O1/d1)(1 + d2/d1) - O2/d1 does not cancel when
// |zbar| >> sigma_z (the output is invariant to z0; only rounding depends on it).
// cuda_core uses z0 = r.k_lo (the row's first allowed key, the same in every split); mma_sync uses, per
// warp, the p1-weighted mean of z over its first keys with weight (a running zbar, closer
// to zbar, hence smaller p2 = p1 (z - z0) and smaller bf16 rounding of p2).
// Splits (and mma_sync's warps) are merged by the exact raw-accumulator combine of docs/math.md §6.2:
// pivots rescaled by exp2(m_c - M), shifts re-centred on the heaviest part's z0 with
// d2 += (z0_c - Z0) d1_c, O2 += (z0_c - Z0) O1_c (exact algebra, fp32).
// Not here: LLA, backward, Lq > 1.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdlib>

#include "kernels/device_common.cuh"
#include "kernels/capabilities.hpp"
#include "kernels/kernels_internal.hpp"

namespace plx::cuda::detail {

constexpr int kDecThreads = 128;  // 4 warps
constexpr int kDecTile = 64;      // keys per shared-memory stage
constexpr int kDecPad = 16;       // elements of row padding: row stride = 8 words mod 32 banks

// Tuning bits of the mma_sync decode (bench/cuda/bench_parallax_decode.cu times each through
// LaunchExtras::decode_flags; the library launches kDecDefaultFlags):
constexpr int kDecStack = 1;        // G <= 4: q/r and p1/p2 hi/lo stacked as the 16 mma rows
constexpr int kDecFastCombine = 2;  // last block stages the split records in smem before combining
constexpr int kDecNoAutoV2 = 4;     // Auto never picks the cuda_core kernel (MHA, B*Hkv >= 128, one split)
constexpr int kDecDefaultFlags = kDecStack | kDecFastCombine;

// Arrival counters of mma_sync's fused combine: B*Hkv ints after the split records (params.hpp).
__device__ __forceinline__ int* decode_counters(const AttnParams& p) {
  return reinterpret_cast<int*>(p.workspace + decode_counters_offset(p));
}

template <int D, int GMAX> struct DecodeCoreSmem {
  static constexpr int RS = D + kDecPad;                       // smem row stride (elements)
  static constexpr int kv_bytes = 2 /*K,V*/ * 2 /*stages*/ * kDecTile * RS * 2;
  static constexpr int qr_floats = 2 * GMAX * D;               // q (scaled, base 2) and r
  static constexpr int p_floats = 2 * kDecTile * GMAX;          // P1, P2 [key][g]
  static constexpr int misc_floats = 4 * GMAX * 3 + GMAX;       // red max, red d1, red d2, z0
  static constexpr int bytes = kv_bytes + 4 * (qr_floats + p_floats + misc_floats);
};

// The end of a row's exact combine (docs/math.md §6.2), for N output columns from col on: vbar = A / d1
// and, for Parallax, out = vbar + (zbar vbar - C / d1) with zbar = d2 / d1 the mean of z - z0 (the
// shifted closed form: no cancellation when |zbar| >> sigma_z); for col = 0 also the row's lse, m,
// d1 and zbar = d2 / d1 + z0. M is the pivot in base 2. Empty rows (d1 = 0) give zeros.
template <class T, bool PLX, int N>
__device__ __forceinline__ void finalize_row(const AttnParams& p, int b, int hq, int col, float M, float d1, float d2,
                                             float z0, const float (&a)[N], const float (&c)[N]) {
  float o[N], vb[N];
#pragma unroll
  for (int e = 0; e < N; ++e) o[e] = 0.f, vb[e] = 0.f;
  if (d1 > 0.f) {
    const float inv = 1.f / d1, zb = d2 * inv;
#pragma unroll
    for (int e = 0; e < N; ++e) {
      vb[e] = a[e] * inv;
      o[e] = PLX ? vb[e] + (zb * vb[e] - c[e] * inv) : vb[e];
    }
  }
  T* op = static_cast<T*>(p.out) + b * p.o_batch_stride + hq * p.o_head_stride + col;
  if constexpr (N == 2) {
    *reinterpret_cast<std::uint32_t*>(op) = Pack<T>::from_float2(o[0], o[1]);
  } else {
    static_assert(N == 4, "two or four columns");
    *reinterpret_cast<uint2*>(op) = make_uint2(Pack<T>::from_float2(o[0], o[1]), Pack<T>::from_float2(o[2], o[3]));
  }
  if (p.vbar) {
    T* vp = static_cast<T*>(p.vbar) + b * p.o_batch_stride + hq * p.o_head_stride + col;
    if constexpr (N == 2) *reinterpret_cast<std::uint32_t*>(vp) = Pack<T>::from_float2(vb[0], vb[1]);
    else *reinterpret_cast<uint2*>(vp) = make_uint2(Pack<T>::from_float2(vb[0], vb[1]), Pack<T>::from_float2(vb[2], vb[3]));
  }
  if (col == 0) {
    const long long row = ((long long)b * p.Hq + hq) * p.Lq;
    const bool e = !(d1 > 0.f);
    if (p.lse) p.lse[row] = e ? -INFINITY : (M + log2f(d1)) * kLn2;
    if (p.m) p.m[row] = e ? 0.f : M * kLn2;
    if (p.d1) p.d1[row] = d1;
    if (p.zbar) p.zbar[row] = e || !PLX ? 0.f : d2 / d1 + z0;
  }
}

template <class T, int D, int GMAX, bool PLX>
__global__ void __launch_bounds__(kDecThreads) parallax_decode_kernel(const AttnParams p) {
  using S = DecodeCoreSmem<D, GMAX>;
  constexpr int RS = S::RS, TK = kDecTile, NT = kDecThreads;
  constexpr int CH = D / 8;            // 16-byte chunks per row
  constexpr int NCP = D / 2;           // column pairs (Dv = D)
  constexpr int KP = NT / NCP;         // key parts in the PV stage (2 for D=128, 4 for D=64)
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Ks = reinterpret_cast<T*>(smem_raw);        // [2][TK][RS]
  T* Vs = Ks + 2 * TK * RS;                      // [2][TK][RS]
  float* qs = reinterpret_cast<float*>(Vs + 2 * TK * RS);  // [GMAX][D]
  float* rs = qs + GMAX * D;                     // [GMAX][D]
  float* P1 = rs + GMAX * D;                     // [TK][GMAX]
  float* P2 = P1 + TK * GMAX;                    // [TK][GMAX]
  float* red = P2 + TK * GMAX;                   // [4][GMAX]
  float* red1 = red + 4 * GMAX;                  // [4][GMAX]
  float* red2 = red1 + 4 * GMAX;                 // [4][GMAX]
  float* z0s = red2 + 4 * GMAX;                  // [GMAX]

  const int split = blockIdx.x, hk = blockIdx.y, b = blockIdx.z;
  const int G = p.Hq / p.Hkv;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const KeyRange R = key_range(p, b, 0);
  const int n = R.hi - R.lo;
  const int S_ = p.num_splits;
  const int cs = ((n + S_ - 1) / S_ + TK - 1) / TK * TK;  // chunk size, whole tiles
  const int c_lo = min(R.hi, R.lo + split * cs), c_hi = min(R.hi, c_lo + cs);
  const int ntiles = (c_hi - c_lo + TK - 1) / TK;

  const T* kbase = static_cast<const T*>(p.k) + b * p.k_batch_stride + hk * p.k_head_stride;
  const T* vbase = static_cast<const T*>(p.v) + b * p.v_batch_stride + hk * p.v_head_stride;
  auto load_tile = [&](int t, int buf) {
    cp_async_kv_tile<TK, CH, RS, NT>(Ks + buf * TK * RS, Vs + buf * TK * RS, kbase, vbase, p.k_row_stride,
                                     p.v_row_stride, c_lo + t * TK, c_hi, c_lo, tid);
  };
  if (ntiles > 0) load_tile(0, 0);
  cp_async_commit();

  // q (scaled to base-2 logits) and r of the group's heads; zero rows for g >= G.
  const float qscale = p.scale * kLog2e;
  for (int idx = tid; idx < GMAX * D; idx += NT) {
    const int g = idx / D, d = idx % D;
    float qv = 0.f, rv = 0.f;
    if (g < G) {
      const int hq = hk * G + g;
      qv = Pack<T>::to_float(static_cast<const T*>(p.q)[b * p.q_batch_stride + hq * p.q_head_stride + d]) * qscale;
      if (PLX) rv = Pack<T>::to_float(static_cast<const T*>(p.r)[b * p.r_batch_stride + hq * p.r_head_stride + d]);
    }
    qs[idx] = qv, rs[idx] = rv;
  }
  __syncthreads();
  // z0 = r . k_lo, identical arithmetic in every split of this (b, kv head).
  for (int g = warp; g < GMAX; g += NT / 32) {
    float acc = 0.f;
    if (PLX && n > 0 && g < G)
      for (int d = lane; d < D; d += 32) acc += rs[g * D + d] * Pack<T>::to_float(kbase[(long long)R.lo * p.k_row_stride + d]);
    acc = warp_sum(acc);
    if (lane == 0) z0s[g] = acc;
  }
  __syncthreads();
  float z0[GMAX];
#pragma unroll
  for (int g = 0; g < GMAX; ++g) z0[g] = z0s[g];

  float m_run[GMAX], d1p[GMAX], d2p[GMAX], o1[GMAX][2], o2[GMAX][2];
#pragma unroll
  for (int g = 0; g < GMAX; ++g) {
    m_run[g] = -INFINITY, d1p[g] = 0.f, d2p[g] = 0.f;
    o1[g][0] = o1[g][1] = o2[g][0] = o2[g][1] = 0.f;
  }
  const int j = tid >> 1, part = tid & 1;          // scoring role: key j, half of the chunks
  const int cp = tid % NCP, kp = tid / NCP;        // PV role: column pair cp, key part kp

  for (int t = 0; t < ntiles; ++t) {
    const int buf = t & 1;
    if (t + 1 < ntiles) load_tile(t + 1, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const int k0 = c_lo + t * TK;
    const int nk = min(TK, c_hi - k0);
    // ---- scores s (base 2) and z for key j, all heads of the group ----
    float s[GMAX], z[GMAX];
#pragma unroll
    for (int g = 0; g < GMAX; ++g) s[g] = 0.f, z[g] = 0.f;
    const T* krow = Ks + (buf * TK + j) * RS;
#pragma unroll 4
    for (int c = part; c < CH; c += 2) {
      const uint4 kv = *reinterpret_cast<const uint4*>(krow + c * 8);
      float kf[8];
      float2 f;
      f = Pack<T>::to_float2(kv.x), kf[0] = f.x, kf[1] = f.y;
      f = Pack<T>::to_float2(kv.y), kf[2] = f.x, kf[3] = f.y;
      f = Pack<T>::to_float2(kv.z), kf[4] = f.x, kf[5] = f.y;
      f = Pack<T>::to_float2(kv.w), kf[6] = f.x, kf[7] = f.y;
#pragma unroll
      for (int g = 0; g < GMAX; ++g) {
        const float4 qa = *reinterpret_cast<const float4*>(qs + g * D + c * 8);
        const float4 qb = *reinterpret_cast<const float4*>(qs + g * D + c * 8 + 4);
        s[g] += qa.x * kf[0] + qa.y * kf[1] + qa.z * kf[2] + qa.w * kf[3] + qb.x * kf[4] + qb.y * kf[5] + qb.z * kf[6] +
                qb.w * kf[7];
        if (PLX) {
          const float4 ra = *reinterpret_cast<const float4*>(rs + g * D + c * 8);
          const float4 rb = *reinterpret_cast<const float4*>(rs + g * D + c * 8 + 4);
          z[g] += ra.x * kf[0] + ra.y * kf[1] + ra.z * kf[2] + ra.w * kf[3] + rb.x * kf[4] + rb.y * kf[5] + rb.z * kf[6] +
                  rb.w * kf[7];
        }
      }
    }
    const bool valid = j < nk;
#pragma unroll
    for (int g = 0; g < GMAX; ++g) {
      s[g] += __shfl_xor_sync(0xffffffffu, s[g], 1);
      if (PLX) z[g] += __shfl_xor_sync(0xffffffffu, z[g], 1);
      s[g] = valid ? s[g] : -INFINITY;
      const float mx = warp_max(s[g]);
      if (lane == 0) red[warp * GMAX + g] = mx;
    }
    __syncthreads();
    float alpha[GMAX];
#pragma unroll
    for (int g = 0; g < GMAX; ++g) {
      const float mt = fmaxf(fmaxf(red[g], red[GMAX + g]), fmaxf(red[2 * GMAX + g], red[3 * GMAX + g]));
      const float m_new = fmaxf(m_run[g], mt);
      const float m_use = m_new == -INFINITY ? 0.f : m_new;  // safe pivot (docs/math.md §1.4)
      alpha[g] = exp2f(m_run[g] - m_use);                     // 0 while nothing was seen
      m_run[g] = m_new;
      const float p1 = exp2f(s[g] - m_use);                   // 0 for masked keys
      const float p2 = PLX ? p1 * (z[g] - z0[g]) : 0.f;
      if (part == 0) {
        P1[j * GMAX + g] = p1, P2[j * GMAX + g] = p2;
        d1p[g] = d1p[g] * alpha[g] + p1;
        d2p[g] = d2p[g] * alpha[g] + p2;
      }
    }
    __syncthreads();
    // ---- O1 += p1 v, O2 += p2 v for this thread's column pair ----
#pragma unroll
    for (int g = 0; g < GMAX; ++g) {
      o1[g][0] *= alpha[g], o1[g][1] *= alpha[g];
      if (PLX) o2[g][0] *= alpha[g], o2[g][1] *= alpha[g];
    }
    const T* vcol = Vs + buf * TK * RS + cp * 2;
    for (int jj = kp; jj < nk; jj += KP) {
      const float2 vf = Pack<T>::to_float2(*reinterpret_cast<const std::uint32_t*>(vcol + jj * RS));
#pragma unroll
      for (int g = 0; g < GMAX; ++g) {
        const float a = P1[jj * GMAX + g];
        o1[g][0] += a * vf.x, o1[g][1] += a * vf.y;
        if (PLX) {
          const float c2 = P2[jj * GMAX + g];
          o2[g][0] += c2 * vf.x, o2[g][1] += c2 * vf.y;
        }
      }
    }
    __syncthreads();
  }
  cp_async_wait<0>();
  __syncthreads();

  // ---- block reductions: d1, d2 over scoring threads; O over key parts ----
#pragma unroll
  for (int g = 0; g < GMAX; ++g) {
    const float a = warp_sum(d1p[g]), c = PLX ? warp_sum(d2p[g]) : 0.f;
    if (lane == 0) red1[warp * GMAX + g] = a, red2[warp * GMAX + g] = c;
  }
  float* ored = reinterpret_cast<float*>(smem_raw);  // [KP][GMAX][2][D] reuses the K/V stages
  for (int q = 1; q < KP; ++q) {
    if (kp == q)
#pragma unroll
      for (int g = 0; g < GMAX; ++g) {
        float* o = ored + ((q * GMAX + g) * 2) * D;
        o[cp * 2] = o1[g][0], o[cp * 2 + 1] = o1[g][1];
        o[D + cp * 2] = o2[g][0], o[D + cp * 2 + 1] = o2[g][1];
      }
  }
  __syncthreads();
  if (kp != 0) return;
#pragma unroll
  for (int g = 0; g < GMAX; ++g)
    for (int q = 1; q < KP; ++q) {
      const float* o = ored + ((q * GMAX + g) * 2) * D;
      o1[g][0] += o[cp * 2], o1[g][1] += o[cp * 2 + 1];
      o2[g][0] += o[D + cp * 2], o2[g][1] += o[D + cp * 2 + 1];
    }
#pragma unroll
  for (int g = 0; g < GMAX; ++g) {
    if (g >= G) break;
    const int hq = hk * G + g;
    const float d1 = red1[g] + red1[GMAX + g] + red1[2 * GMAX + g] + red1[3 * GMAX + g];
    const float d2 = red2[g] + red2[GMAX + g] + red2[2 * GMAX + g] + red2[3 * GMAX + g];
    if (S_ == 1) {
      const float a[2] = {o1[g][0], o1[g][1]}, c[2] = {o2[g][0], o2[g][1]};
      finalize_row<T, PLX, 2>(p, b, hq, cp * 2, m_run[g], d1, d2, z0[g], a, c);
    } else {
      float* w = p.workspace + (((long long)b * p.Hq + hq) * S_ + split) * (4 + 2 * D);
      if (cp == 0) w[0] = m_run[g], w[1] = d1, w[2] = d2, w[3] = z0[g];
      w[4 + cp * 2] = o1[g][0], w[4 + cp * 2 + 1] = o1[g][1];
      w[4 + D + cp * 2] = o2[g][0], w[4 + D + cp * 2 + 1] = o2[g][1];
    }
  }
}

// Exact combine of docs/math.md §6.2 for one (b, hq) and one output column pair, reading the split
// workspace through L2 (__ldcg: other blocks wrote it).
template <class T, int D, bool PLX> __device__ __forceinline__ void combine_one(const AttnParams& p, int b, int hq, int cp) {
  const float* w0 = p.workspace + ((long long)b * p.Hq + hq) * p.num_splits * (4 + 2 * D);
  const int S_ = p.num_splits;
  float M = -INFINITY;
  int cbest = 0;
  for (int c = 0; c < S_; ++c) {
    const float mc = __ldcg(w0 + c * (4 + 2 * D));
    if (mc > M) M = mc, cbest = c;
  }
  const float Z0 = __ldcg(w0 + cbest * (4 + 2 * D) + 3);  // shift of the heaviest split (near zbar)
  float d1 = 0.f, d2 = 0.f, a[2] = {0.f, 0.f}, cc[2] = {0.f, 0.f};
  if (M != -INFINITY) {
    for (int c = 0; c < S_; ++c) {
      const float* w = w0 + c * (4 + 2 * D);
      const float mc = __ldcg(w);
      if (mc == -INFINITY) continue;  // empty chunk: weight 0, never -inf - -inf
      const float wt = exp2f(mc - M);
      const float dz = __ldcg(w + 3) - Z0;  // re-centre the shift
      const float e1 = __ldcg(w + 1);
      d1 += wt * e1, d2 += wt * (__ldcg(w + 2) + dz * e1);
      const float x0 = __ldcg(w + 4 + cp * 2), x1 = __ldcg(w + 4 + cp * 2 + 1);
      a[0] += wt * x0, a[1] += wt * x1;
      if (PLX) cc[0] += wt * (__ldcg(w + 4 + D + cp * 2) + dz * x0), cc[1] += wt * (__ldcg(w + 4 + D + cp * 2 + 1) + dz * x1);
    }
  }
  finalize_row<T, PLX, 2>(p, b, hq, cp * 2, M, d1, d2, Z0, a, cc);
}

// The cuda_core decode's separate combine launch: one block per (hq, b), one thread per output column pair.
template <class T, int D, bool PLX>
__global__ void __launch_bounds__(D / 2) parallax_decode_combine_kernel(const AttnParams p) {
  combine_one<T, D, PLX>(p, blockIdx.y, blockIdx.x, threadIdx.x);
}

// x = hi + lo with hi = round(x) and lo = round(x - hi) in T, packed in pairs for mma A fragments.
template <class T> __device__ __forceinline__ void split_pack(float a, float b, std::uint32_t& hi, std::uint32_t& lo) {
  hi = Pack<T>::from_float2(a, b);
  const float2 h = Pack<T>::to_float2(hi);
  lo = Pack<T>::from_float2(a - h.x, b - h.y);
}

// ---- mma_sync: tensor cores. The rows of the m16n8k16 tiles are the G query heads of the kv
// group (zero-padded to 16); warp w owns keys [16w, 16w + 16) of every 64-key stage and
// keeps its own online state (m, d1, d2, O1, O2); the 4 warp states are merged at the end
// with the same exact rescaling as the split combine. p1, p2 are rounded to the input
// type as a hi + lo pair (two mma per PV step), so P carries ~2^-16 relative error instead of
// FlashAttention's 2^-9; scores and sums stay fp32.
constexpr int kDecMmaTile = 64;
constexpr int kDecMmaStages = 3;  // cp.async stages: two tiles in flight while one is computed
template <int D> struct DecodeMmaSmem {
  static constexpr int RS = D + 8;  // ldmatrix rows 16-byte aligned and conflict-free
  static constexpr int qr_bytes = 2 * 16 * RS * 2;
  static constexpr int kv_bytes = 2 * kDecMmaStages * kDecMmaTile * RS * 2;
  static constexpr int CW = 4 + 2 * D;  // per warp and row: m, d1, d2, z0, O1[D], O2[D]
  static constexpr int comb_bytes = 4 * 16 * CW * 4;
  static_assert(comb_bytes <= kv_bytes, "warp-merge buffer reuses the K/V stages");
  static constexpr int bytes = qr_bytes + kv_bytes;
};

template <class T, int D, bool PLX>
__device__ __forceinline__ void decode_finish(const AttnParams& p, int b, int hq, int split, float M, float d1, float d2,
                                              float z0, int cp, float a0, float a1, float c0, float c1) {
  if (p.num_splits == 1) {
    const float a[2] = {a0, a1}, c[2] = {c0, c1};
    finalize_row<T, PLX, 2>(p, b, hq, cp * 2, M, d1, d2, z0, a, c);
  } else {
    float* w = p.workspace + (((long long)b * p.Hq + hq) * p.num_splits + split) * (4 + 2 * D);
    if (cp == 0) w[0] = M, w[1] = d1, w[2] = d2, w[3] = z0;
    w[4 + cp * 2] = a0, w[4 + cp * 2 + 1] = a1;
    w[4 + D + cp * 2] = c0, w[4 + D + cp * 2 + 1] = c1;
  }
}

// ---- the mma_sync decode kernel's parts (parallax_decode_mma_kernel below runs them in order) ----

// The G query (and r) rows of kv head hk into shared memory as the A operand rows (cp.async).
template <class T, int D, bool PLX, bool STK>
__device__ __forceinline__ void decode_mma_load_rows(const AttnParams& p, T* Qs, T* Rs, int b, int hk, int G, int tid) {
  using S3 = DecodeMmaSmem<D>;
  constexpr int RS = S3::RS, NT = 128, CH = D / 8;
  if (STK) {
    // Stacked rows (G <= 4): rows 0-3 and 4-7 = q of heads 0-3 (twice), rows 8-11 and 12-15
    // = r of heads 0-3 (twice; zero for softmax). One score mma gives s (row g) and z (row 8+g),
    // and lanes 16-31 (rows 4-7) see the same head as lanes 0-15 without a shuffle.
    for (int idx = tid; idx < 16 * CH; idx += NT) {
      const int row = idx / CH, c = idx % CH, g = row & 3;
      const bool isr = row >= 8;
      const bool ok = g < G && (PLX || !isr);
      const int hq = hk * G + (ok ? g : 0);
      const T* src = isr && PLX ? static_cast<const T*>(p.r) + b * p.r_batch_stride + hq * p.r_head_stride
                                : static_cast<const T*>(p.q) + b * p.q_batch_stride + hq * p.q_head_stride;
      cp_async16(Qs + row * RS + c * 8, src + c * 8, ok);
    }
  } else {
    for (int idx = tid; idx < 16 * CH; idx += NT) {  // q, r rows of the group; zero rows g >= G
      const int g = idx / CH, c = idx % CH;
      const bool ok = g < G;
      const int hq = hk * G + (ok ? g : 0);
      cp_async16(Qs + g * RS + c * 8, static_cast<const T*>(p.q) + b * p.q_batch_stride + hq * p.q_head_stride + c * 8, ok);
      if (PLX)
        cp_async16(Rs + g * RS + c * 8, static_cast<const T*>(p.r) + b * p.r_batch_stride + hq * p.r_head_stride + c * 8, ok);
    }
  }
}

// One 16-key step of a warp with the stacked rows (G <= 4): s and z from one score mma, the
// online softmax update, the shift z0 and p2, then p1/p2 hi/lo as the PV mma's A rows.
template <class T, int D, bool PLX>
__device__ __forceinline__ void decode_mma_step_stacked(int kw, int c_hi, int buf, int warp, int lane, float qscale,
                                                        unsigned qs_addr, unsigned ks_addr, unsigned vs_addr, unsigned a_off,
                                                        unsigned bk_off, unsigned bv_off, float (&o1)[D / 8][4],
                                                        float (&m_run)[2], float (&d1)[2], float (&d2)[2], float (&z0r)[2],
                                                        bool (&z0set)[2]) {
  using S3 = DecodeMmaSmem<D>;
  constexpr int RS = S3::RS, TK = kDecMmaTile, NTO = D / 8;
  // ---- stacked step: 16 score mma (s and z together) + 16 PV mma (p1/p2 hi/lo stacked) ----
  float s[2][4];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) s[i][e] = 0.f;
  const unsigned kb = ks_addr + (buf * TK + warp * 16) * RS * 2;
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
    std::uint32_t aq[4], b0, b1, b2, b3;
    ldsm_x4(qs_addr + a_off + ks * 32, aq[0], aq[1], aq[2], aq[3]);
    ldsm_x4(kb + bk_off + ks * 32, b0, b1, b2, b3);
    mma16816<T>(s[0], aq, b0, b1);
    mma16816<T>(s[1], aq, b2, b3);
  }
  // s[i][0..1]: q.k of head (r0 & 3), keys kw + 8i + 2(lane&3) + {0,1}; s[i][2..3]: r.k (= z) of the same keys
  float x[2][2], mx = -INFINITY;
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int key = kw + i * 8 + (lane & 3) * 2 + e;
      x[i][e] = key < c_hi ? s[i][e] * qscale : -INFINITY;
      mx = fmaxf(mx, x[i][e]);
    }
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
  const float m_new = fmaxf(m_run[0], mx);
  const float m_use = m_new == -INFINITY ? 0.f : m_new;
  const float alpha = exp2f(m_run[0] - m_use);
  m_run[0] = m_new;
  float ls1 = 0.f, ls2 = 0.f, p2[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int e = 0; e < 2; ++e) x[i][e] = exp2f(x[i][e] - m_use), ls1 += x[i][e];
  if (PLX) {
    const bool need = !z0set[0] && mx != -INFINITY;
    if (__any_sync(0xffffffffu, need)) {
      float w = ls1, wz = x[0][0] * s[0][2] + x[0][1] * s[0][3] + x[1][0] * s[1][2] + x[1][1] * s[1][3];
      w += __shfl_xor_sync(0xffffffffu, w, 1);
      w += __shfl_xor_sync(0xffffffffu, w, 2);
      wz += __shfl_xor_sync(0xffffffffu, wz, 1);
      wz += __shfl_xor_sync(0xffffffffu, wz, 2);
      if (need) z0r[0] = wz / w, z0set[0] = true;
    }
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int e = 0; e < 2; ++e) p2[i][e] = x[i][e] * (s[i][2 + e] - z0r[0]), ls2 += p2[i][e];
  }
  d1[0] = d1[0] * alpha + ls1, d2[0] = d2[0] * alpha + ls2;
#pragma unroll
  for (int i = 0; i < NTO; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) o1[i][e] *= alpha;
  // A rows: 0-3 p1 hi, 4-7 p1 lo, 8-11 p2 hi, 12-15 p2 lo (hi + lo = p to ~2^-16, as the unstacked rows).
  const bool lo_half = lane >= 16;
  std::uint32_t a[4], h, l;
  split_pack<T>(x[0][0], x[0][1], h, l), a[0] = lo_half ? l : h;
  split_pack<T>(x[1][0], x[1][1], h, l), a[2] = lo_half ? l : h;
  if (PLX) {
    split_pack<T>(p2[0][0], p2[0][1], h, l), a[1] = lo_half ? l : h;
    split_pack<T>(p2[1][0], p2[1][1], h, l), a[3] = lo_half ? l : h;
  } else {
    a[1] = a[3] = 0u;
  }
  const unsigned vb = vs_addr + (buf * TK + warp * 16) * RS * 2;
#pragma unroll
  for (int np = 0; np < D / 16; ++np) {
    std::uint32_t b0, b1, b2, b3;
    ldsm_x4_t(vb + bv_off + np * 32, b0, b1, b2, b3);
    mma16816<T>(o1[2 * np], a, b0, b1);
    mma16816<T>(o1[2 * np + 1], a, b2, b3);
  }
}

// One 16-key step of a warp with the group's heads as rows (any G <= 16): s and z from separate
// score mma, the online softmax update per row pair, the shift z0 and p2, then the PV mma with
// p1 and p2 each as a hi + lo pair.
template <class T, int D, bool PLX>
__device__ __forceinline__ void decode_mma_step_rows(int kw, int c_hi, int buf, int warp, int lane, float qscale,
                                                     unsigned qs_addr, unsigned rs_addr, unsigned ks_addr, unsigned vs_addr,
                                                     unsigned a_off, unsigned bk_off, unsigned bv_off, float (&o1)[D / 8][4],
                                                     float (&o2)[PLX ? D / 8 : 1][4], float (&m_run)[2], float (&d1)[2],
                                                     float (&d2)[2], float (&z0r)[2], bool (&z0set)[2]) {
  using S3 = DecodeMmaSmem<D>;
  constexpr int RS = S3::RS, TK = kDecMmaTile, NTO = D / 8;
  float s[2][4], z[2][4];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) s[i][e] = 0.f, z[i][e] = 0.f;
  const unsigned kb = ks_addr + (buf * TK + warp * 16) * RS * 2;
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
    std::uint32_t aq[4], ar[4], b0, b1, b2, b3;
    ldsm_x4(qs_addr + a_off + ks * 32, aq[0], aq[1], aq[2], aq[3]);
    ldsm_x4(kb + bk_off + ks * 32, b0, b1, b2, b3);
    mma16816<T>(s[0], aq, b0, b1);
    mma16816<T>(s[1], aq, b2, b3);
    if (PLX) {
      ldsm_x4(rs_addr + a_off + ks * 32, ar[0], ar[1], ar[2], ar[3]);
      mma16816<T>(z[0], ar, b0, b1);
      mma16816<T>(z[1], ar, b2, b3);
    }
  }
  float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int key = kw + i * 8 + (lane & 3) * 2 + (e & 1);
      const float x = key < c_hi ? s[i][e] * qscale : -INFINITY;
      s[i][e] = x;
      mx[e >> 1] = fmaxf(mx[e >> 1], x);
    }
  float alpha[2], m_use[2];
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 1));
    mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 2));
    const float m_new = fmaxf(m_run[rr], mx[rr]);
    m_use[rr] = m_new == -INFINITY ? 0.f : m_new;
    alpha[rr] = exp2f(m_run[rr] - m_use[rr]);
    m_run[rr] = m_new;
  }
  float ls1[2] = {0.f, 0.f}, ls2[2] = {0.f, 0.f};
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      s[i][e] = exp2f(s[i][e] - m_use[e >> 1]);
      ls1[e >> 1] += s[i][e];
    }
  if (PLX) {
    const bool need0 = !z0set[0] && mx[0] != -INFINITY, need1 = !z0set[1] && mx[1] != -INFINITY;
    if (__any_sync(0xffffffffu, need0 || need1)) {
      float w[2] = {0.f, 0.f}, wz[2] = {0.f, 0.f};
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) w[e >> 1] += s[i][e], wz[e >> 1] += s[i][e] * z[i][e];
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        w[rr] += __shfl_xor_sync(0xffffffffu, w[rr], 1);
        w[rr] += __shfl_xor_sync(0xffffffffu, w[rr], 2);
        wz[rr] += __shfl_xor_sync(0xffffffffu, wz[rr], 1);
        wz[rr] += __shfl_xor_sync(0xffffffffu, wz[rr], 2);
      }
      if (need0) z0r[0] = wz[0] / w[0], z0set[0] = true;
      if (need1) z0r[1] = wz[1] / w[1], z0set[1] = true;
    }
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        z[i][e] = s[i][e] * (z[i][e] - z0r[e >> 1]);  // p2
        ls2[e >> 1] += z[i][e];
      }
  }
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) d1[rr] = d1[rr] * alpha[rr] + ls1[rr], d2[rr] = d2[rr] * alpha[rr] + ls2[rr];
#pragma unroll
  for (int i = 0; i < NTO; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      o1[i][e] *= alpha[e >> 1];
      if (PLX) o2[i][e] *= alpha[e >> 1];
    }
  // p1, p2 as hi + lo pairs of the input type (p = hi + lo to ~2^-16 relative): the PV
  // products then carry no 16-bit rounding of P (decode is memory-bound; the extra mma is free).
  std::uint32_t ap[4], apl[4], az[4], azl[4];
  split_pack<T>(s[0][0], s[0][1], ap[0], apl[0]);
  split_pack<T>(s[0][2], s[0][3], ap[1], apl[1]);
  split_pack<T>(s[1][0], s[1][1], ap[2], apl[2]);
  split_pack<T>(s[1][2], s[1][3], ap[3], apl[3]);
  if (PLX) {
    split_pack<T>(z[0][0], z[0][1], az[0], azl[0]);
    split_pack<T>(z[0][2], z[0][3], az[1], azl[1]);
    split_pack<T>(z[1][0], z[1][1], az[2], azl[2]);
    split_pack<T>(z[1][2], z[1][3], az[3], azl[3]);
  }
  const unsigned vb = vs_addr + (buf * TK + warp * 16) * RS * 2;
#pragma unroll
  for (int np = 0; np < D / 16; ++np) {
    std::uint32_t b0, b1, b2, b3;
    ldsm_x4_t(vb + bv_off + np * 32, b0, b1, b2, b3);
    mma16816<T>(o1[2 * np], ap, b0, b1);
    mma16816<T>(o1[2 * np + 1], ap, b2, b3);
    mma16816<T>(o1[2 * np], apl, b0, b1);
    mma16816<T>(o1[2 * np + 1], apl, b2, b3);
    if (PLX) {
      mma16816<T>(o2[2 * np], az, b0, b1);
      mma16816<T>(o2[2 * np + 1], az, b2, b3);
      mma16816<T>(o2[2 * np], azl, b0, b1);
      mma16816<T>(o2[2 * np + 1], azl, b2, b3);
    }
  }
}

// The 4 warps' states through shared memory (comb), merged per (head, column pair) by the exact
// rescaling of docs/math.md §6.2, then decode_finish: the output, or this split's record.
template <class T, int D, bool PLX, bool STK>
__device__ __forceinline__ void decode_mma_merge_warps(const AttnParams& p, float* comb, int b, int hk, int G, int split,
                                                       int tid, int lane, int warp, float (&o1)[D / 8][4],
                                                       float (&o2)[PLX ? D / 8 : 1][4], float (&m_run)[2], float (&d1)[2],
                                                       float (&d2)[2], float (&z0r)[2]) {
  using S3 = DecodeMmaSmem<D>;
  constexpr int NT = 128, NTO = D / 8, CW = S3::CW;
  const int r0 = lane >> 2;
  // ---- merge the 4 warp states (exact rescaling, docs/math.md §6.2) ----
  if (STK) {
    // rows r0 (lanes 0-15: hi, 16-31: lo) hold O1 of head r0 & 3 in e = 0, 1 and O2 in e = 2, 3
    d1[0] += __shfl_xor_sync(0xffffffffu, d1[0], 1);
    d1[0] += __shfl_xor_sync(0xffffffffu, d1[0], 2);
    d2[0] += __shfl_xor_sync(0xffffffffu, d2[0], 1);
    d2[0] += __shfl_xor_sync(0xffffffffu, d2[0], 2);
    float* c = comb + (warp * 16 + r0) * CW;
    if (lane < 16 && (lane & 3) == 0) c[0] = m_run[0], c[1] = d1[0], c[2] = d2[0], c[3] = z0r[0];
#pragma unroll
    for (int nt = 0; nt < NTO; ++nt) {
      float v[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) v[e] = o1[nt][e] + __shfl_xor_sync(0xffffffffu, o1[nt][e], 16);  // hi + lo
      const int col = nt * 8 + (lane & 3) * 2;
      if (lane < 16) {
        c[4 + col] = v[0], c[4 + col + 1] = v[1];
        if (PLX) c[4 + D + col] = v[2], c[4 + D + col + 1] = v[3];
      }
    }
  }
#pragma unroll
  for (int rr = 0; rr < 2 && !STK; ++rr) {
    d1[rr] += __shfl_xor_sync(0xffffffffu, d1[rr], 1);
    d1[rr] += __shfl_xor_sync(0xffffffffu, d1[rr], 2);
    d2[rr] += __shfl_xor_sync(0xffffffffu, d2[rr], 1);
    d2[rr] += __shfl_xor_sync(0xffffffffu, d2[rr], 2);
    float* c = comb + (warp * 16 + r0 + 8 * rr) * CW;
    if ((lane & 3) == 0) c[0] = m_run[rr], c[1] = d1[rr], c[2] = d2[rr], c[3] = z0r[rr];
#pragma unroll
    for (int nt = 0; nt < NTO; ++nt) {
      const int col = nt * 8 + (lane & 3) * 2;
      c[4 + col] = o1[nt][rr * 2], c[4 + col + 1] = o1[nt][rr * 2 + 1];
      if (PLX) c[4 + D + col] = o2[nt][rr * 2], c[4 + D + col + 1] = o2[nt][rr * 2 + 1];
    }
  }
  __syncthreads();
  for (int idx = tid; idx < G * (D / 2); idx += NT) {
    const int g = idx / (D / 2), cp = idx % (D / 2);
    float M = -INFINITY;
    int wbest = 0;
#pragma unroll
    for (int w = 0; w < 4; ++w)
      if (comb[(w * 16 + g) * CW] > M) M = comb[(w * 16 + g) * CW], wbest = w;
    const float Z0 = comb[(wbest * 16 + g) * CW + 3];  // shift of the heaviest warp
    float sd1 = 0.f, sd2 = 0.f, a0 = 0.f, a1 = 0.f, c0 = 0.f, c1 = 0.f;
    if (M != -INFINITY)
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        const float* c = comb + (w * 16 + g) * CW;
        if (c[0] == -INFINITY) continue;
        const float a = exp2f(c[0] - M), dz = c[3] - Z0;  // re-centre: sum p (z - Z0) = sum p (z - z0_w) + dz d1
        const float x0 = c[4 + 2 * cp], x1 = c[4 + 2 * cp + 1];
        sd1 += a * c[1], sd2 += a * (c[2] + dz * c[1]);
        a0 += a * x0, a1 += a * x1;
        if (PLX) c0 += a * (c[4 + D + 2 * cp] + dz * x0), c1 += a * (c[4 + D + 2 * cp + 1] + dz * x1);
      }
    decode_finish<T, D, PLX>(p, b, hk * G + g, split, M, sd1, sd2, Z0, cp, a0, a1, c0, c1);
  }
}

// The split combine of the last block of a kv head, staged: all records into shared memory with
// independent 16-byte L2 loads (one round trip instead of one per split), each split's weight
// exp2(m_c - M) and shift z0_c - Z0 once per (head, split), then one thread per (head, 4 columns)
// sums over the splits. Same docs/math.md §6.2 algebra as combine_one. Needs (nf + 2 G S + 2 G) floats.
template <class T, int D, bool PLX>
__device__ __forceinline__ void decode_mma_combine_staged(const AttnParams& p, unsigned char* smem_raw, int b, int hk, int G,
                                                          int S_, int tid) {
  constexpr int NT = 128, CWS = 4 + 2 * D;
  const int nf = G * S_ * CWS;
    // Stage all records in shared memory with independent 16-byte L2 loads (one round
    // trip instead of one per split), compute each split's weight exp2(m_c - M) and shift
    // z0_c - Z0 once per (head, split), then one thread per (head, 4 columns) sums over the
    // splits with 16-byte shared loads. Same docs/math.md §6.2 algebra as combine_one.
    float* sw = reinterpret_cast<float*>(smem_raw);  // [G][S][CWS] records
    float* wt = sw + nf;                             // [G][S][2]: a_c, dz_c (a_c = 0: skip)
    float* hd = wt + 2 * G * S_;                     // [G][2]: M, Z0
    const float4* src = reinterpret_cast<const float4*>(p.workspace + ((long long)b * p.Hq + hk * G) * S_ * CWS);
    const int n4 = nf / 4;
    for (int base = tid; base < n4; base += 8 * NT) {
      float4 r[8];
#pragma unroll
      for (int u = 0; u < 8; ++u)
        if (base + u * NT < n4) r[u] = __ldcg(src + base + u * NT);
#pragma unroll
      for (int u = 0; u < 8; ++u)
        if (base + u * NT < n4) reinterpret_cast<float4*>(sw)[base + u * NT] = r[u];
    }
    __syncthreads();
    if (tid < G) {
      float M = -INFINITY;
      int cbest = 0;
      for (int c = 0; c < S_; ++c) {
        const float mc = sw[(tid * S_ + c) * CWS];
        if (mc > M) M = mc, cbest = c;
      }
      hd[2 * tid] = M, hd[2 * tid + 1] = sw[(tid * S_ + cbest) * CWS + 3];  // shift of the heaviest split
    }
    __syncthreads();
    for (int idx = tid; idx < G * S_; idx += NT) {
      const float* w = sw + idx * CWS;
      const float M = hd[2 * (idx / S_)], mc = w[0];
      const bool skip = M == -INFINITY || mc == -INFINITY;  // empty chunk: weight 0, never -inf - -inf
      wt[2 * idx] = skip ? 0.f : exp2f(mc - M);
      wt[2 * idx + 1] = skip ? 0.f : w[3] - hd[2 * (idx / S_) + 1];
    }
    __syncthreads();
    for (int idx = tid; idx < G * (D / 4); idx += NT) {
      const int g = idx / (D / 4), q4 = idx % (D / 4);
      float d1s = 0.f, d2s = 0.f;
      float4 A = make_float4(0.f, 0.f, 0.f, 0.f), C = A;
      for (int c = 0; c < S_; ++c) {
        const float a = wt[2 * (g * S_ + c)], dz = wt[2 * (g * S_ + c) + 1];
        if (a == 0.f) continue;
        const float* w = sw + (g * S_ + c) * CWS;
        const float e1 = w[1];
        d1s += a * e1, d2s += a * (w[2] + dz * e1);
        const float4 x = *reinterpret_cast<const float4*>(w + 4 + 4 * q4);
        A.x += a * x.x, A.y += a * x.y, A.z += a * x.z, A.w += a * x.w;
        if (PLX) {
          const float4 y = *reinterpret_cast<const float4*>(w + 4 + D + 4 * q4);
          C.x += a * (y.x + dz * x.x), C.y += a * (y.y + dz * x.y), C.z += a * (y.z + dz * x.z), C.w += a * (y.w + dz * x.w);
        }
      }
      const float a4[4] = {A.x, A.y, A.z, A.w}, c4[4] = {C.x, C.y, C.z, C.w};
      finalize_row<T, PLX, 4>(p, b, hk * G + g, 4 * q4, hd[2 * g], d1s, d2s, hd[2 * g + 1], a4, c4);
    }
}

template <class T, int D, bool PLX, bool STK>
__global__ void __launch_bounds__(128) parallax_decode_mma_kernel(const AttnParams p, const int flags) {
  using S3 = DecodeMmaSmem<D>;
  constexpr int RS = S3::RS, TK = kDecMmaTile, NT = 128, CH = D / 8, NTO = D / 8, NS = kDecMmaStages;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Qs = reinterpret_cast<T*>(smem_raw);  // [16][RS]
  T* Rs = Qs + 16 * RS;                    // [16][RS]
  T* Ks = Rs + 16 * RS;                    // [NS][TK][RS]
  T* Vs = Ks + NS * TK * RS;               // [NS][TK][RS]
  float* comb = reinterpret_cast<float*>(Ks);  // [4 warps][16 rows][CW], after the loop

  const int split = blockIdx.x, hk = blockIdx.y, b = blockIdx.z;
  const int G = p.Hq / p.Hkv;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const KeyRange R = key_range(p, b, 0);
  const int n = R.hi - R.lo;
  const int S_ = p.num_splits;
  const int cs = ((n + S_ - 1) / S_ + TK - 1) / TK * TK;
  const int c_lo = min(R.hi, R.lo + split * cs), c_hi = min(R.hi, c_lo + cs);
  const int ntiles = (c_hi - c_lo + TK - 1) / TK;

  const T* kbase = static_cast<const T*>(p.k) + b * p.k_batch_stride + hk * p.k_head_stride;
  const T* vbase = static_cast<const T*>(p.v) + b * p.v_batch_stride + hk * p.v_head_stride;
  auto load_tile = [&](int t, int buf) {
    cp_async_kv_tile<TK, CH, RS, NT>(Ks + buf * TK * RS, Vs + buf * TK * RS, kbase, vbase, p.k_row_stride,
                                     p.v_row_stride, c_lo + t * TK, c_hi, c_lo, tid);
  };
  if (ntiles > 0) load_tile(0, 0);
  decode_mma_load_rows<T, D, PLX, STK>(p, Qs, Rs, b, hk, G, tid);
  cp_async_commit();
  if (ntiles > 1) load_tile(1, 1);
  cp_async_commit();
  // z0 (docs/math.md §7.1 shift), per warp and row: the p1-weighted mean of z over the first 16 keys
  // of this warp where the row has weight (a running zbar); the merges re-centre exactly.
  float z0r[2] = {0.f, 0.f};
  bool z0set[2] = {false, false};
  const float qscale = p.scale * kLog2e;

  float o1[NTO][4], o2[PLX ? NTO : 1][4];  // STK: o1 holds all 16 stacked rows, o2 unused
#pragma unroll
  for (int i = 0; i < NTO; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      o1[i][e] = 0.f;
      if (PLX && !STK) o2[i][e] = 0.f;
    }
  float m_run[2] = {-INFINITY, -INFINITY}, d1[2] = {0.f, 0.f}, d2[2] = {0.f, 0.f};
  const unsigned qs_addr = static_cast<unsigned>(__cvta_generic_to_shared(Qs));
  const unsigned rs_addr = static_cast<unsigned>(__cvta_generic_to_shared(Rs));
  const unsigned ks_addr = static_cast<unsigned>(__cvta_generic_to_shared(Ks));
  const unsigned vs_addr = static_cast<unsigned>(__cvta_generic_to_shared(Vs));
  const unsigned a_off = ((lane & 15) * RS + (lane >> 4) * 8) * 2;
  const unsigned bk_off = (((lane >> 4) * 8 + (lane & 7)) * RS + ((lane >> 3) & 1) * 8) * 2;
  const unsigned bv_off = ((((lane >> 3) & 1) * 8 + (lane & 7)) * RS + (lane >> 4) * 8) * 2;

  for (int t = 0; t < ntiles; ++t) {
    const int buf = t % NS;
    if (t + 2 < ntiles) load_tile(t + 2, (t + 2) % NS);  // that stage held tile t-1, done at the last barrier
    cp_async_commit();
    cp_async_wait<2>();
    __syncthreads();
    const int kw = c_lo + t * TK + warp * 16;  // this warp's first key
    if (STK && kw < c_hi)
      decode_mma_step_stacked<T, D, PLX>(kw, c_hi, buf, warp, lane, qscale, qs_addr, ks_addr, vs_addr, a_off, bk_off,
                                         bv_off, o1, m_run, d1, d2, z0r, z0set);
    if (!STK && kw < c_hi)  // warp-uniform
      decode_mma_step_rows<T, D, PLX>(kw, c_hi, buf, warp, lane, qscale, qs_addr, rs_addr, ks_addr, vs_addr, a_off, bk_off,
                                      bv_off, o1, o2, m_run, d1, d2, z0r, z0set);
    __syncthreads();
  }
  cp_async_wait<0>();
  __syncthreads();
  decode_mma_merge_warps<T, D, PLX, STK>(p, comb, b, hk, G, split, tid, lane, warp, o1, o2, m_run, d1, d2, z0r);
  if (S_ > 1) {
    // The last split block of this (b, kv head) to finish runs the combine (no second launch):
    // writes -> fence -> ticket; the last ticket holder fences and reads through L2, then
    // resets the counter to 0 for the next launch (CUDA-graph replays).
    __shared__ int s_last;
    __threadfence();
    __syncthreads();
    if (tid == 0) {
      int* cnt = decode_counters(p) + b * p.Hkv + hk;
      s_last = atomicAdd(cnt, 1) == S_ - 1;
      if (s_last) atomicExch(cnt, 0);
    }
    __syncthreads();
    if (s_last) {
      __threadfence();
      constexpr int CWS = 4 + 2 * D;  // one split record (floats)
      const int nf = G * S_ * CWS;    // this kv head's records: contiguous (heads hk*G .. hk*G+G-1)
      if ((flags & kDecFastCombine) && (nf + 2 * G * S_ + 2 * G) * 4 <= S3::bytes) {
        decode_mma_combine_staged<T, D, PLX>(p, smem_raw, b, hk, G, S_, tid);
      } else {
        for (int idx = tid; idx < G * (D / 2); idx += NT) combine_one<T, D, PLX>(p, b, hk * G + idx / (D / 2), idx % (D / 2));
      }
    }
  }
}

template <class T, int D, bool PLX> cudaError_t decode_mma_dispatch(const AttnParams& p, cudaStream_t st, int flags) {
  const bool stk = (flags & kDecStack) && p.Hq / p.Hkv <= 4;
  auto kern = stk ? parallax_decode_mma_kernel<T, D, PLX, true> : parallax_decode_mma_kernel<T, D, PLX, false>;
  const int smem = DecodeMmaSmem<D>::bytes;
  cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (e != cudaSuccess) return e;
  kern<<<dim3(p.num_splits, p.Hkv, p.B), 128, smem, st>>>(p, flags);  // combines in its last block per kv head
  return cudaGetLastError();
}

template <class T, int D, int GMAX, bool PLX> cudaError_t decode_core_dispatch(const AttnParams& p, cudaStream_t st) {
  auto kern = parallax_decode_kernel<T, D, GMAX, PLX>;
  const int smem = DecodeCoreSmem<D, GMAX>::bytes;
  cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (e != cudaSuccess) return e;
  kern<<<dim3(p.num_splits, p.Hkv, p.B), kDecThreads, smem, st>>>(p);
  if ((e = cudaGetLastError()) != cudaSuccess) return e;
  if (p.num_splits > 1) {
    parallax_decode_combine_kernel<T, D, PLX><<<dim3(p.Hq, p.B), D / 2, 0, st>>>(p);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
  }
  return cudaSuccess;
}

template <class T, int D, bool PLX> cudaError_t decode_core_by_group(const AttnParams& p, cudaStream_t st) {
  const int G = p.Hq / p.Hkv;
  if (G <= 1) return decode_core_dispatch<T, D, 1, PLX>(p, st);
  if (G <= 2) return decode_core_dispatch<T, D, 2, PLX>(p, st);
  if (G <= 4) return decode_core_dispatch<T, D, 4, PLX>(p, st);
  if (G <= 8) return decode_core_dispatch<T, D, 8, PLX>(p, st);
  return decode_core_dispatch<T, D, 16, PLX>(p, st);
}

template <class T> cudaError_t decode_by_dim(const AttnParams& p, cudaStream_t st, int flags) {
  const bool plx = p.mech == Mechanism::Parallax;
  if (flags < 0) flags = kDecDefaultFlags;
  // Auto (kernels/capabilities.hpp, measured in docs/gpu-results.md): for Parallax MHA (G = 1)
  // with one split and at least ~one wave of blocks, the CUDA-core kernel was 3-10% faster than
  // the mma.sync one (no padded mma rows, 3 resident blocks/SM); everything else runs mma.sync.
  DecodeKernel k = p.decode_kernel;
  if (k == DecodeKernel::Auto)
    k = (flags & kDecNoAutoV2) ? DecodeKernel::MmaSync : decode_kernel_auto(plx, p.B, p.Hq, p.Hkv, p.num_splits);
  if (k == DecodeKernel::MmaSync) {
    if (p.D == 64) return plx ? decode_mma_dispatch<T, 64, true>(p, st, flags) : decode_mma_dispatch<T, 64, false>(p, st, flags);
    return plx ? decode_mma_dispatch<T, 128, true>(p, st, flags) : decode_mma_dispatch<T, 128, false>(p, st, flags);
  }
  if (p.D == 64) return plx ? decode_core_by_group<T, 64, true>(p, st) : decode_core_by_group<T, 64, false>(p, st);
  return plx ? decode_core_by_group<T, 128, true>(p, st) : decode_core_by_group<T, 128, false>(p, st);
}

int launch_decode(const AttnParams& p, void* stream, int flags) {
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  return int(p.dtype == ElemType::BF16 ? decode_by_dim<__nv_bfloat16>(p, st, flags) : decode_by_dim<__half>(p, st, flags));
}

int decode_smem(int D, int G, DecodeKernel k) {
  if (k != DecodeKernel::CudaCore) return D == 64 ? DecodeMmaSmem<64>::bytes : DecodeMmaSmem<128>::bytes;
  auto pick = [&](auto d) {
    constexpr int DD = decltype(d)::value;
    return G <= 1 ? DecodeCoreSmem<DD, 1>::bytes : G <= 2 ? DecodeCoreSmem<DD, 2>::bytes : G <= 4 ? DecodeCoreSmem<DD, 4>::bytes
         : G <= 8 ? DecodeCoreSmem<DD, 8>::bytes : DecodeCoreSmem<DD, 16>::bytes;
  };
  return D == 64 ? pick(std::integral_constant<int, 64>{}) : pick(std::integral_constant<int, 128>{});
}

}  // namespace plx::cuda::detail
