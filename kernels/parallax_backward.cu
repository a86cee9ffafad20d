// kernels/parallax_backward.cu — backward of Parallax and softmax (docs/math.md §5.1, §5.2) on tensor cores.
//
// Charter: deterministic FlashAttention-2-style backward from the forward's saved tensors, bf16 or
// fp16 operands, fp32 accumulation (mma.sync m16n8k16), no atomics, three launches:
//   1. preprocess: per row lse2 = log2 of the normaliser (+inf for empty rows), t = <dO, out>,
//      b = <dO, vbar> (fp32, one warp per row) into the workspace, and per (b, kv head) the key
//      reference kref (the mean of the first allowed keys);
//   2. key-tile pass: one block per (64 keys, kv head, batch) owns dk, dv of its keys and loops
//      over every query head of the GQA group and every query tile that can see the keys,
//      recomputing S^T = K Q^T, Z^T = K R^T, A^T = V dO^T; dv += SW dO, dk += GL Q + GU R;
//   3. query-tile pass: one block per (64 queries, query head, batch) recomputes S, Z, A over
//      its key range and forms dq = GL (K - kref), dr = GU (K - kref): the products accumulate
//      GL K, GU K and the epilogue subtracts the rounded weights' row sums times kref. Keys with a
//      common offset (real models' keys share a large mean direction) then lose no accuracy: with
//      t, b from the 16-bit out, vbar the weights of a row do not sum to exactly zero, and GL K
//      would carry that sum times the offset (the probe bench/cuda/probe_key_offset measures it).
// With p = exp2(tau log2e q.k - lse2), a = dO.v, z = r.k (docs/math.md §5.2):
//   gl = tau p (a - t + (zbar - z)(a - b)),  gu = -p (a - b),  sw = p (1 + zbar - z)
// (softmax: gl = tau p (a - t), sw = p, no gu). gl, gu, sw are rounded to the input type before
// their matrix products (as FlashAttention rounds P and dS). Masks: causal end-aligned, window,
// start/used per batch; empty rows give zero gradients. Not here: LLA, decode, an atomic mode.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/backward_launch.hpp"
#include "kernels/capabilities.hpp"
#include "kernels/backward_step.cuh"
#include "kernels/device_common.cuh"

namespace plx::cuda::detail {

namespace {

template <class T> __device__ __forceinline__ const T* tptr(const void* base, long long off) {
  return static_cast<const T*>(base) + off;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// 1. Row preprocessing: one warp per row (b, h, i), rows ordered [b][h][i].
template <class T, bool PLX> __global__ void __launch_bounds__(128) bwd_preprocess_kernel(const BwdParams p) {
  const long long row = (long long)blockIdx.x * 4 + (threadIdx.x >> 5);
  const long long nrows = (long long)p.B * p.Hq * p.Lq;
  if (row >= nrows) return;
  const int lane = threadIdx.x & 31;
  const int i = int(row % p.Lq), h = int((row / p.Lq) % p.Hq), b = int(row / ((long long)p.Lq * p.Hq));
  const long long oo = b * p.o_batch_stride + (long long)i * p.o_row_stride + (long long)h * p.o_head_stride;
  const long long od = b * p.do_batch_stride + (long long)i * p.do_row_stride + (long long)h * p.do_head_stride;
  float t = 0.f, bb = 0.f;
  for (int d = lane * 2; d < p.Dv; d += 64) {
    const float2 g = Pack<T>::to_float2(*reinterpret_cast<const std::uint32_t*>(tptr<T>(p.dout, od + d)));
    const float2 o = Pack<T>::to_float2(*reinterpret_cast<const std::uint32_t*>(tptr<T>(p.out, oo + d)));
    t += g.x * o.x + g.y * o.y;
    if (PLX) {
      const float2 vb = Pack<T>::to_float2(*reinterpret_cast<const std::uint32_t*>(tptr<T>(p.vbar, oo + d)));
      bb += g.x * vb.x + g.y * vb.y;
    }
  }
  t = warp_sum(t);
  if (PLX) bb = warp_sum(bb);
  if (lane == 0) {
    float lse2;
    if (PLX) {
      const float d1 = p.d1[row];
      lse2 = d1 > 0.f ? p.m[row] * kLog2e + log2f(d1) : INFINITY;  // empty row: p = exp2(-inf) = 0
    } else {
      const float l = p.lse[row];
      lse2 = l > -INFINITY ? l * kLog2e : INFINITY;
    }
    p.workspace[row] = lse2;
    p.workspace[nrows + row] = t;
    p.workspace[2 * nrows + row] = PLX ? bb : 0.f;
  }
}

// 1b. Key reference per (b, kv head): the mean of the batch's first kBwdKeyRefRows allowed keys
// (fp32, ascending key order) into the workspace after the row arrays; one thread per feature.
template <class T> __global__ void __launch_bounds__(128) bwd_key_ref_kernel(const BwdParams p) {
  const int hk = blockIdx.x, b = blockIdx.y, d = threadIdx.x;
  if (d >= p.D) return;
  const MaskB mk = mask_of(p, b);
  const int lo = max(mk.start, 0), hi = min(mk.used, p.Lkv);
  const int n = max(0, min(hi - lo, kBwdKeyRefRows));
  const T* kc = static_cast<const T*>(p.k) + b * p.k_batch_stride + (long long)hk * p.k_head_stride + d;
  float s = 0.f;
  for (int j = 0; j < n; ++j) s += Pack<T>::to_float(kc[(long long)(lo + j) * p.k_row_stride]);
  const long long nrows = (long long)p.B * p.Hq * p.Lq;
  p.workspace[3 * nrows + ((long long)b * p.Hkv + hk) * p.D + d] = n > 0 ? s / float(n) : 0.f;
}

// ---------------------------------------------------------------------------------------------
// 2. Key-tile pass (dk, dv).
template <int D, bool PLX> struct KvCfg {
  static constexpr int BN = 64, NT = 128;        // 4 warps x 16 keys
  static constexpr int BM = D == 128 ? 32 : 64;  // queries per step (registers: S, Z, A = 3 BM/2 floats)
  static constexpr int RS = D + 8;               // smem row stride: ldmatrix conflict-free
  static constexpr int NQ = PLX ? 3 : 2;         // Q, dO (, R) tiles per stage
  static constexpr int kv_elems = 2 * BN * RS;
  static constexpr int stage_elems = NQ * BM * RS;
  static constexpr int row_floats = 4 * BM;      // lse2, t, b, zbar per stage
  static constexpr int bytes = 2 * (kv_elems + 2 * stage_elems) + 4 * 2 * row_floats;
};

template <class T, int D, bool PLX>
__global__ void __launch_bounds__(128) bwd_dkdv_kernel(const BwdParams p) {
  using C = KvCfg<D, PLX>;
  constexpr int BN = C::BN, BM = C::BM, RS = C::RS, NT = C::NT, CH = D / 8;
  constexpr int NQT = BM / 8;  // n-tiles (queries) of S^T per warp
  constexpr int NO = D / 8;    // n-tiles of dk / dv per warp
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Ks = reinterpret_cast<T*>(smem_raw);  // [BN][RS]
  T* Vs = Ks + BN * RS;                    // [BN][RS]
  T* St = Vs + BN * RS;                    // [2 stages][Q, dO, R][BM][RS]
  float* Rf = reinterpret_cast<float*>(St + 2 * C::stage_elems);  // [2][4][BM]

  const int kt = blockIdx.x, hk = blockIdx.y, b = blockIdx.z;
  const int G = p.Hq / p.Hkv;
  const int k0 = kt * BN;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const MaskB mk = mask_of(p, b);
  const long long nrows = (long long)p.B * p.Hq * p.Lq;

  // ---- K, V tile (zero rows past Lkv) ----
  {
    const T* kb = static_cast<const T*>(p.k) + b * p.k_batch_stride + (long long)hk * p.k_head_stride;
    const T* vb = static_cast<const T*>(p.v) + b * p.v_batch_stride + (long long)hk * p.v_head_stride;
    for (int idx = tid; idx < BN * CH; idx += NT) {
      const int row = idx / CH, c = idx % CH;
      const bool ok = k0 + row < p.Lkv;
      const long long j = ok ? k0 + row : 0;
      cp_async16(Ks + row * RS + c * 8, kb + j * p.k_row_stride + c * 8, ok);
      cp_async16(Vs + row * RS + c * 8, vb + j * p.v_row_stride + c * 8, ok);
    }
  }
  // ---- queries that can see a key of this tile ----
  const QuerySpan span = queries_seeing(p, mk, k0, BN, BM);
  const int i_lo = span.i_lo, nqt = span.nqt;
  const int nsteps = G * nqt;

  auto load_step = [&](int s, int buf) {
    const int h = hk * G + s / nqt, q0 = i_lo + (s % nqt) * BM;
    T* Qs = St + buf * C::stage_elems;
    T* Ds = Qs + BM * RS;
    T* Rs = Ds + BM * RS;
    const T* qb = static_cast<const T*>(p.q) + b * p.q_batch_stride + (long long)h * p.q_head_stride;
    const T* db = static_cast<const T*>(p.dout) + b * p.do_batch_stride + (long long)h * p.do_head_stride;
    const T* rb = PLX ? static_cast<const T*>(p.r) + b * p.r_batch_stride + (long long)h * p.r_head_stride : nullptr;
    for (int idx = tid; idx < BM * CH; idx += NT) {
      const int row = idx / CH, c = idx % CH;
      const bool ok = q0 + row < p.Lq;
      const long long i = ok ? q0 + row : 0;
      cp_async16(Qs + row * RS + c * 8, qb + i * p.q_row_stride + c * 8, ok);
      cp_async16(Ds + row * RS + c * 8, db + i * p.do_row_stride + c * 8, ok);
      if (PLX) cp_async16(Rs + row * RS + c * 8, rb + i * p.r_row_stride + c * 8, ok);
    }
    // Per-row lse2, t, b, zbar (4-byte cp.async; rows past Lq are zero-filled and masked below).
    float* rf = Rf + buf * C::row_floats;
    for (int idx = tid; idx < 4 * BM; idx += NT) {
      const int arr = idx / BM, row = idx % BM, i = q0 + row;
      const bool ok = i < p.Lq && (PLX || arr < 3);
      const long long ri = ((long long)b * p.Hq + h) * p.Lq + (i < p.Lq ? i : 0);
      const float* src = arr < 3 ? p.workspace + arr * nrows + ri : (PLX ? p.zbar + ri : p.workspace);
      cp_async4(rf + idx, src, ok);
    }
  };
  if (nsteps > 0) load_step(0, 0);
  cp_async_commit();

  float dk[NO][4], dv[NO][4];
#pragma unroll
  for (int n = 0; n < NO; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[n][e] = 0.f, dv[n][e] = 0.f;

  const float qscale = p.scale * kLog2e;
  const unsigned ks_addr = static_cast<unsigned>(__cvta_generic_to_shared(Ks));
  const unsigned vs_addr = static_cast<unsigned>(__cvta_generic_to_shared(Vs));
  const unsigned st_addr = static_cast<unsigned>(__cvta_generic_to_shared(St));
  // ldmatrix lane offsets (bytes): A rows 16w + lane%16; B non-trans rows (lane/16)*8 + lane%8,
  // col ((lane/8)%2)*8; B trans rows ((lane/8)%2)*8 + lane%8, col (lane/16)*8.
  const unsigned a_off = ((16 * warp + (lane & 15)) * RS + (lane >> 4) * 8) * 2;
  const unsigned bn_off = (((lane >> 4) * 8 + (lane & 7)) * RS + ((lane >> 3) & 1) * 8) * 2;
  const unsigned bt_off = ((((lane >> 3) & 1) * 8 + (lane & 7)) * RS + (lane >> 4) * 8) * 2;
  const int key_r0 = k0 + 16 * warp + (lane >> 2);  // this thread's keys: key_r0, key_r0 + 8

  for (int s = 0; s < nsteps; ++s) {
    const int buf = s & 1;
    if (s + 1 < nsteps) load_step(s + 1, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const int q0 = i_lo + (s % nqt) * BM;
    const unsigned qs = st_addr + buf * C::stage_elems * 2, ds = qs + BM * RS * 2, rs = ds + BM * RS * 2;
    const float* rf = Rf + buf * C::row_floats;

    float sT[NQT][4], zT[PLX ? NQT : 1][4], aT[NQT][4];
#pragma unroll
    for (int n = 0; n < NQT; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        sT[n][e] = 0.f, aT[n][e] = 0.f;
        if (PLX) zT[n][e] = 0.f;
      }
#pragma unroll
    for (int kc = 0; kc < D / 16; ++kc) {
      std::uint32_t ak[4], av[4];
      ldsm_x4(ks_addr + a_off + kc * 32, ak[0], ak[1], ak[2], ak[3]);
      ldsm_x4(vs_addr + a_off + kc * 32, av[0], av[1], av[2], av[3]);
#pragma unroll
      for (int np = 0; np < BM / 16; ++np) {
        const unsigned o = bn_off + (np * 16 * RS + kc * 16) * 2;
        std::uint32_t b0, b1, b2, b3;
        ldsm_x4(qs + o, b0, b1, b2, b3);
        mma16816<T>(sT[2 * np], ak, b0, b1);
        mma16816<T>(sT[2 * np + 1], ak, b2, b3);
        ldsm_x4(ds + o, b0, b1, b2, b3);
        mma16816<T>(aT[2 * np], av, b0, b1);
        mma16816<T>(aT[2 * np + 1], av, b2, b3);
        if (PLX) {
          ldsm_x4(rs + o, b0, b1, b2, b3);
          mma16816<T>(zT[2 * np], ak, b0, b1);
          mma16816<T>(zT[2 * np + 1], ak, b2, b3);
        }
      }
    }
    // ---- elementwise: sT <- sw, aT <- gl (tau folded in), zT <- gu ----
    key_step_weights<PLX, NQT, BM>(sT, zT, aT, rf, p, mk, q0, k0, BN, key_r0, lane, qscale);
    // ---- dv += SW dO, dk += GL Q (+ GU R) ----
#pragma unroll
    for (int kq = 0; kq < BM / 16; ++kq) {
      std::uint32_t asw[4], agl[4], agu[4];
      asw[0] = Pack<T>::from_float2(sT[2 * kq][0], sT[2 * kq][1]);
      asw[1] = Pack<T>::from_float2(sT[2 * kq][2], sT[2 * kq][3]);
      asw[2] = Pack<T>::from_float2(sT[2 * kq + 1][0], sT[2 * kq + 1][1]);
      asw[3] = Pack<T>::from_float2(sT[2 * kq + 1][2], sT[2 * kq + 1][3]);
      agl[0] = Pack<T>::from_float2(aT[2 * kq][0], aT[2 * kq][1]);
      agl[1] = Pack<T>::from_float2(aT[2 * kq][2], aT[2 * kq][3]);
      agl[2] = Pack<T>::from_float2(aT[2 * kq + 1][0], aT[2 * kq + 1][1]);
      agl[3] = Pack<T>::from_float2(aT[2 * kq + 1][2], aT[2 * kq + 1][3]);
      if (PLX) {
        agu[0] = Pack<T>::from_float2(zT[2 * kq][0], zT[2 * kq][1]);
        agu[1] = Pack<T>::from_float2(zT[2 * kq][2], zT[2 * kq][3]);
        agu[2] = Pack<T>::from_float2(zT[2 * kq + 1][0], zT[2 * kq + 1][1]);
        agu[3] = Pack<T>::from_float2(zT[2 * kq + 1][2], zT[2 * kq + 1][3]);
      }
#pragma unroll
      for (int np = 0; np < D / 16; ++np) {
        const unsigned o = bt_off + (kq * 16 * RS + np * 16) * 2;
        std::uint32_t b0, b1, b2, b3;
        ldsm_x4_t(ds + o, b0, b1, b2, b3);
        mma16816<T>(dv[2 * np], asw, b0, b1);
        mma16816<T>(dv[2 * np + 1], asw, b2, b3);
        ldsm_x4_t(qs + o, b0, b1, b2, b3);
        mma16816<T>(dk[2 * np], agl, b0, b1);
        mma16816<T>(dk[2 * np + 1], agl, b2, b3);
        if (PLX) {
          ldsm_x4_t(rs + o, b0, b1, b2, b3);
          mma16816<T>(dk[2 * np], agu, b0, b1);
          mma16816<T>(dk[2 * np + 1], agu, b2, b3);
        }
      }
    }
    __syncthreads();
  }
  cp_async_wait<0>();

  // ---- epilogue: every key row < Lkv of the tile is written (zeros where no query sees it) ----
  store_dkdv_rows<T, NO>(p, b, hk, key_r0, lane, dk, dv);
}

// ---------------------------------------------------------------------------------------------
// 3. Query-tile pass (dq, dr).
template <int D, bool PLX> struct QCfg {
  static constexpr int BM = 64, NT = 128;                  // 4 warps x 16 query rows
  static constexpr int BN = (PLX && D == 128) ? 32 : 64;   // keys per tile (registers)
  static constexpr int RS = D + 8;
  static constexpr int q_elems = BM * RS * (PLX ? 3 : 2);  // Q, dO (, R)
  static constexpr int kv_elems = 2 /*K,V*/ * 2 /*stages*/ * BN * RS;
  static constexpr int bytes = 2 * (q_elems + kv_elems);
};

template <class T, int D, bool PLX>
__global__ void __launch_bounds__(128) bwd_dqdr_kernel(const BwdParams p) {
  using C = QCfg<D, PLX>;
  constexpr int BM = C::BM, BN = C::BN, RS = C::RS, NT = C::NT, CH = D / 8;
  constexpr int NTS = BN / 8, NO = D / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Qs = reinterpret_cast<T*>(smem_raw);  // [BM][RS]
  T* Ds = Qs + BM * RS;                    // [BM][RS]
  T* Rs = Ds + BM * RS;                    // [BM][RS] (PLX)
  T* Ks = Qs + C::q_elems;                 // [2][BN][RS]
  T* Vs = Ks + 2 * BN * RS;                // [2][BN][RS]

  const int mt = gridDim.x - 1 - blockIdx.x;  // longest causal tiles first
  const int hq = blockIdx.y, b = blockIdx.z;
  const int hk = hq / (p.Hq / p.Hkv);
  const int m0 = mt * BM;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const MaskB mk = mask_of(p, b);
  const long long nrows = (long long)p.B * p.Hq * p.Lq;
  int lo_first, hi_first, lo_last, hi_last;
  bwd_range(p, mk, m0, lo_first, hi_first);
  bwd_range(p, mk, min(m0 + BM, p.Lq) - 1, lo_last, hi_last);
  const int kv_lo = lo_first, kv_hi = hi_last;
  const int ntiles = kv_hi > kv_lo ? (kv_hi - kv_lo + BN - 1) / BN : 0;

  {
    const T* qb = static_cast<const T*>(p.q) + b * p.q_batch_stride + (long long)hq * p.q_head_stride;
    const T* db = static_cast<const T*>(p.dout) + b * p.do_batch_stride + (long long)hq * p.do_head_stride;
    const T* rb = PLX ? static_cast<const T*>(p.r) + b * p.r_batch_stride + (long long)hq * p.r_head_stride : nullptr;
    for (int idx = tid; idx < BM * CH; idx += NT) {
      const int row = idx / CH, c = idx % CH;
      const bool ok = m0 + row < p.Lq;
      const long long i = ok ? m0 + row : 0;
      cp_async16(Qs + row * RS + c * 8, qb + i * p.q_row_stride + c * 8, ok);
      cp_async16(Ds + row * RS + c * 8, db + i * p.do_row_stride + c * 8, ok);
      if (PLX) cp_async16(Rs + row * RS + c * 8, rb + i * p.r_row_stride + c * 8, ok);
    }
  }
  const T* kbase = static_cast<const T*>(p.k) + b * p.k_batch_stride + (long long)hk * p.k_head_stride;
  const T* vbase = static_cast<const T*>(p.v) + b * p.v_batch_stride + (long long)hk * p.v_head_stride;
  auto load_tile = [&](int t, int buf) {
    cp_async_kv_tile<BN, CH, RS, NT>(Ks + buf * BN * RS, Vs + buf * BN * RS, kbase, vbase, p.k_row_stride,
                                     p.v_row_stride, kv_lo + t * BN, kv_hi, kv_lo, tid);
  };
  if (ntiles > 0) load_tile(0, 0);
  cp_async_commit();

  // Per-thread rows r0 = 16 warp + lane/4 and r0 + 8.
  const int r0 = 16 * warp + (lane >> 2);
  QueryRows qrow;
  query_rows<PLX>(p, mk, b, hq, m0 + r0, nrows, qrow);
  const float qscale = p.scale * kLog2e;

  float dq[NO][4], dr[PLX ? NO : 1][4];
  float gsum[2] = {0.f, 0.f}, usum[2] = {0.f, 0.f};  // row sums of the rounded GL, GU (store_dqdr_rows)
#pragma unroll
  for (int n = 0; n < NO; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      dq[n][e] = 0.f;
      if (PLX) dr[n][e] = 0.f;
    }

  const unsigned qs_addr = static_cast<unsigned>(__cvta_generic_to_shared(Qs));
  const unsigned ds_addr = static_cast<unsigned>(__cvta_generic_to_shared(Ds));
  const unsigned rs_addr = static_cast<unsigned>(__cvta_generic_to_shared(Rs));
  const unsigned ks_addr = static_cast<unsigned>(__cvta_generic_to_shared(Ks));
  const unsigned vs_addr = static_cast<unsigned>(__cvta_generic_to_shared(Vs));
  const unsigned a_off = ((16 * warp + (lane & 15)) * RS + (lane >> 4) * 8) * 2;
  const unsigned bn_off = (((lane >> 4) * 8 + (lane & 7)) * RS + ((lane >> 3) & 1) * 8) * 2;
  const unsigned bt_off = ((((lane >> 3) & 1) * 8 + (lane & 7)) * RS + (lane >> 4) * 8) * 2;

  for (int t = 0; t < ntiles; ++t) {
    const int buf = t & 1;
    if (t + 1 < ntiles) load_tile(t + 1, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const int k0 = kv_lo + t * BN;
    float s[NTS][4], z[PLX ? NTS : 1][4], a[NTS][4];
#pragma unroll
    for (int n = 0; n < NTS; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[n][e] = 0.f, a[n][e] = 0.f;
        if (PLX) z[n][e] = 0.f;
      }
    const unsigned kb = ks_addr + buf * BN * RS * 2, vb = vs_addr + buf * BN * RS * 2;
#pragma unroll
    for (int kc = 0; kc < D / 16; ++kc) {
      std::uint32_t aq[4], ad[4], ar[4];
      ldsm_x4(qs_addr + a_off + kc * 32, aq[0], aq[1], aq[2], aq[3]);
      ldsm_x4(ds_addr + a_off + kc * 32, ad[0], ad[1], ad[2], ad[3]);
      if (PLX) ldsm_x4(rs_addr + a_off + kc * 32, ar[0], ar[1], ar[2], ar[3]);
#pragma unroll
      for (int np = 0; np < BN / 16; ++np) {
        const unsigned o = bn_off + (np * 16 * RS + kc * 16) * 2;
        std::uint32_t b0, b1, b2, b3;
        ldsm_x4(kb + o, b0, b1, b2, b3);
        mma16816<T>(s[2 * np], aq, b0, b1);
        mma16816<T>(s[2 * np + 1], aq, b2, b3);
        if (PLX) {
          mma16816<T>(z[2 * np], ar, b0, b1);
          mma16816<T>(z[2 * np + 1], ar, b2, b3);
        }
        ldsm_x4(vb + o, b0, b1, b2, b3);
        mma16816<T>(a[2 * np], ad, b0, b1);
        mma16816<T>(a[2 * np + 1], ad, b2, b3);
      }
    }
    // ---- elementwise: s <- gl (tau folded in), z <- gu ----
    const bool full = k0 >= lo_last && k0 + BN <= hi_first;
    query_tile_weights<PLX, NTS>(s, z, a, qrow, k0, full, lane, qscale, p.scale);
    // ---- dq += GL K, dr += GU K ----
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      std::uint32_t ag[4], au[4];
      ag[0] = Pack<T>::from_float2(s[2 * kk][0], s[2 * kk][1]);
      ag[1] = Pack<T>::from_float2(s[2 * kk][2], s[2 * kk][3]);
      ag[2] = Pack<T>::from_float2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      ag[3] = Pack<T>::from_float2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
      add_packed_row_sums<T>(ag, gsum);
      if (PLX) {
        au[0] = Pack<T>::from_float2(z[2 * kk][0], z[2 * kk][1]);
        au[1] = Pack<T>::from_float2(z[2 * kk][2], z[2 * kk][3]);
        au[2] = Pack<T>::from_float2(z[2 * kk + 1][0], z[2 * kk + 1][1]);
        au[3] = Pack<T>::from_float2(z[2 * kk + 1][2], z[2 * kk + 1][3]);
        add_packed_row_sums<T>(au, usum);
      }
#pragma unroll
      for (int np = 0; np < D / 16; ++np) {
        std::uint32_t b0, b1, b2, b3;
        ldsm_x4_t(kb + bt_off + (kk * 16 * RS + np * 16) * 2, b0, b1, b2, b3);
        mma16816<T>(dq[2 * np], ag, b0, b1);
        mma16816<T>(dq[2 * np + 1], ag, b2, b3);
        if (PLX) {
          mma16816<T>(dr[2 * np], au, b0, b1);
          mma16816<T>(dr[2 * np + 1], au, b2, b3);
        }
      }
    }
    __syncthreads();
  }
  cp_async_wait<0>();

  store_dqdr_rows<T, NO, PLX>(p, b, hq, hk, m0 + r0, lane, dq, dr, gsum, usum);
}

// ---------------------------------------------------------------------------------------------
template <class T, int D, bool PLX> cudaError_t backward_dispatch(const BwdParams& p, cudaStream_t st, int which) {
  const long long nrows = (long long)p.B * p.Hq * p.Lq;
  cudaError_t e = cudaSuccess;
  if (which == 0 || which == 1) {
    bwd_preprocess_kernel<T, PLX><<<unsigned((nrows + 3) / 4), 128, 0, st>>>(p);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    bwd_key_ref_kernel<T><<<dim3(p.Hkv, p.B), D, 0, st>>>(p);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  const BackwardKernel k = p.kernel != BackwardKernel::Auto ? p.kernel : backward_kernel_auto(D);
  const bool wg = k == BackwardKernel::Wgmma;
  if (wg && (which == 0 || which == 2)) {
    e = cudaError_t(launch_backward_wgmma_pass(p, st, 2));
    if (e != cudaSuccess || which == 2) return e;
  } else if (which == 0 || which == 2) {
    using C = KvCfg<D, PLX>;
    auto kern = bwd_dkdv_kernel<T, D, PLX>;
    e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, C::bytes);
    if (e != cudaSuccess) return e;
    kern<<<dim3((p.Lkv + C::BN - 1) / C::BN, p.Hkv, p.B), C::NT, C::bytes, st>>>(p);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  if (wg && (which == 0 || which == 3)) return cudaError_t(launch_backward_wgmma_pass(p, st, 3));
  if (which == 0 || which == 3) {
    using C = QCfg<D, PLX>;
    auto kern = bwd_dqdr_kernel<T, D, PLX>;
    e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, C::bytes);
    if (e != cudaSuccess) return e;
    kern<<<dim3((p.Lq + C::BM - 1) / C::BM, p.Hq, p.B), C::NT, C::bytes, st>>>(p);
    e = cudaGetLastError();
  }
  return e;
}

template <class T> cudaError_t backward_by_dim(const BwdParams& p, cudaStream_t st, int which) {
  const bool plx = p.mech == Mechanism::Parallax;
  if (p.D == 64) return plx ? backward_dispatch<T, 64, true>(p, st, which) : backward_dispatch<T, 64, false>(p, st, which);
  return plx ? backward_dispatch<T, 128, true>(p, st, which) : backward_dispatch<T, 128, false>(p, st, which);
}

int launch_backward_kernels(const BwdParams& p, void* stream, int which) {
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  return int(p.dtype == ElemType::BF16 ? backward_by_dim<__nv_bfloat16>(p, st, which) : backward_by_dim<__half>(p, st, which));
}

}  // namespace plx::cuda::detail
