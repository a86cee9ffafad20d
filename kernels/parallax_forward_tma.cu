// kernels/parallax_forward_tma.cu — the tma prefill forward: warp-specialized, TMA-fed Parallax
// and softmax on Hopper wgmma (sm_90a), D = Dv = 128. Auto's choice for D = 128 (kernels/capabilities.hpp).
//
// Charter: the wgmma kernel's algorithm (parallax_forward_wgmma.cu, kernels/forward_step.cuh: online max in
// base 2, P1 = exp2(s - m), P2 = P1 (z - z0) with the shift z0 re-centred online, the same
// saved tensors), reorganised the way FlashAttention-3 organises softmax. One block per SM of
// one producer and NC = 2 (or 3) consumer warpgroups:
// - The producer gives its registers away (setmaxnreg 24) and one of its warps streams the
//   block's K and V tiles through NS shared-memory stages with TMA (cp.async.bulk.tensor into
//   the 128-byte-swizzled layout wgmma reads; kernels/tma.cuh), signalled by mbarriers. A tile
//   reaching past the block's last allowed key is copied by that warp itself with the rows
//   beyond it zeroed (memory past `used` may hold anything, and 0 x NaN is NaN in a product).
// - Each consumer (240 registers with two, 160 with three) owns 32 Parallax queries (64 for
//   softmax). For Parallax, q and r are STACKED in one 64-row A operand (tile row 16 w + j =
//   q of query 8 w + j, row 16 w + 8 + j = its r): one S | Z product per tile yields a thread's
//   s and z for the same keys, and the weights P1 | P2 packed from it make one P V product
//   yield O1 | O2. That halves the accumulator and operand registers (112 instead of 224 at
//   64-key tiles), which is what lets two consumers run 128-key tiles at all, and one product
//   chain per tile instead of two halves the wgmma issue and descriptor work.
// - A consumer runs the wgmma kernel's software pipeline (S(t) and P V(t - 1) issued together; the weights
//   of tile t, including the whole re-centring of z0 and P2, are computed while P V(t - 1)
//   runs; only the O update waits for it), releases a stage's K after S(t) and its V after
//   P V(t), one mbarrier arrival per warp, and skips (waits for, releases) the tiles outside
//   its queries' key range, so the stage phases stay in step.
// The library instantiates one configuration: three consumers on 64-key tiles, three stages, the
// heads-fastest grid (every head's longest query tile first) and, for Parallax, d2 from the
// reduced sums (kernels_internal.hpp's flag bits; forward_tma_default_flags). It was the fastest in
// interleaved same-run timings against the other variants (two consumers on 128-key tiles,
// ping-pong product issue, a look-ahead pipeline), which were then deleted; their code and
// measurements are in the git history of this file and docs/gpu-results.md.
#include <cuda.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "kernels/device_common.cuh"
#include "kernels/forward_step.cuh"
#include "kernels/kernels_internal.hpp"
#include "kernels/tma.cuh"
#include "kernels/wgmma.cuh"

namespace plx::cuda::detail {

template <bool PLX, int NC, int NS, bool LA> struct TmaCfg {
  // 128-key tiles for two consumers; 64 for three (160 registers) and for the look-ahead
  // pipeline (two S | Z tiles in registers at once).
  static constexpr int D = 128, BN = NC == 2 && !LA ? 128 : 64, NT = 128 * (NC + 1);
  static constexpr int QW = PLX ? 32 : 64;                 // queries per consumer warpgroup
  static constexpr int QB = NC * QW;                       // queries per block
  static constexpr int a_bytes = 64 * D * 2;               // one [2][64][64] swizzled A tile per consumer
  static constexpr int kv_bytes = BN * D * 2;              // one [2][BN][64] swizzled K or V tile
  static constexpr int bar_bytes = 4 * NS * 8;             // full K, full V, empty K, empty V
  static constexpr int bytes = 1024 /*alignment slack*/ + NC * a_bytes + 2 * NS * kv_bytes + bar_bytes;
};

// Rows [r0, r0 + BN) of a [., 128] tensor into the swizzled tile at dst by one warp, rows at or
// past n zero-filled; plain loads and stores, then the fence that hands them to the async proxy.
template <int BN>
__device__ __forceinline__ void warp_copy_tile(unsigned dst, const void* src, long long rs, int r0, int n, int lane) {
  const unsigned short* s16 = static_cast<const unsigned short*>(src);
#pragma unroll 4
  for (int j = 0; j < BN * 16 / 32; ++j) {
    const int c = lane + 32 * j, row = c >> 4, ch = c & 15;
    uint4 x = make_uint4(0u, 0u, 0u, 0u);
    if (r0 + row < n) x = __ldg(reinterpret_cast<const uint4*>(s16 + (long long)(r0 + row) * rs + ch * 8));
    const unsigned a = dst + swz_offset(row, ch, BN);
    asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};\n" ::"r"(a), "r"(x.x), "r"(x.y), "r"(x.z), "r"(x.w) : "memory");
  }
  fence_proxy_async();
  __syncwarp();
}

// ---- Parallax with q and r stacked in one 64-row A operand -------------------------------
// Tile row 16 w + j (j < 8) holds q of query 8 w + j, row 16 w + 8 + j holds r of the same
// query. In the m64nN accumulator layout a thread then owns, for its query 8 w + lane / 4,
// s = q.k in elements e = 0, 1 and z = r.k in e = 2, 3 of every n8 tile, for the same keys; the
// weights packed as the P V operand are P1 (rows 16 w + j) stacked on P2 (rows + 8), so one
// m64n128 product yields O1 (e = 0, 1) and O2 (e = 2, 3) of the thread's query. One product
// chain per tile instead of two, 112 accumulator and operand registers instead of 224.
// The arithmetic is the wgmma kernel's (forward_step.cuh) for one row per thread.
struct StackRow {
  float m = -INFINITY, d1 = 0.f, d2 = 0.f, z0 = 0.f;
};
struct StackFactors {
  float alpha, ls1;
  bool rescale;
};

// Q rows [q0, q0 + 32) and R rows into the stacked [2][64][64] tile (rows past Lq zero-filled).
template <class T>
__device__ __forceinline__ void load_qr_stacked(unsigned dst, const T* qb, long long qrs, const T* rb, long long rrs, int q0,
                                                int Lq, int tid) {
  const int lrow = tid >> 4, lc = tid & 15;
#pragma unroll
  for (int j = 0; j < 8; ++j) {  // tile row lrow + 8 j: query q0 + 8 (j / 2) + lrow, q if j is even, r if odd
    const int qi = q0 + 8 * (j >> 1) + lrow;
    const bool ok = qi < Lq;
    const T* src = (j & 1) ? rb + (long long)qi * rrs : qb + (long long)qi * qrs;
    cp_async16_shared(dst + swz_offset(lrow + 8 * j, lc, 64), ok ? src + lc * 8 : qb + lc * 8, ok);
  }
}

template <int NTS>
__device__ __forceinline__ StackFactors stacked_p1(float (&w)[NTS][4], StackRow& st, int key0, bool full, int rlo, int rhi,
                                                   float qscale) {
  if (!full) {
#pragma unroll
    for (int i = 0; i < NTS; ++i)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int key = key0 + i * 8 + e;
        if (!(key >= rlo && key < rhi)) w[i][e] = -INFINITY;
      }
  }
  float acc[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
#pragma unroll
  for (int i = 0; i < NTS; ++i)
#pragma unroll
    for (int e = 0; e < 2; ++e) acc[(i & 1) * 2 + e] = fmaxf(acc[(i & 1) * 2 + e], w[i][e]);
  float mx = fmaxf(fmaxf(acc[0], acc[1]), fmaxf(acc[2], acc[3]));
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
  const float m_new = fmaxf(st.m, mx * qscale);
  const float m_use = m_new == -INFINITY ? 0.f : m_new;  // safe pivot (docs/math.md §1.4)
  const float alpha = exp2_ftz(st.m - m_use);
  st.m = m_new;
  float ls[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
  for (int i = 0; i < NTS; ++i)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      w[i][e] = exp2_ftz(fmaf(w[i][e], qscale, -m_use));
      ls[(i & 1) * 2 + e] += w[i][e];
    }
  return {alpha, (ls[0] + ls[1]) + (ls[2] + ls[3]), __any_sync(0xffffffffu, alpha != 1.f) != 0};
}

// The weights half of the step: the new centre z0, P2 = P1 (z - z0) in place, d1, d2. Touches
// no accumulator, so it runs while P V(t - 1) is still in flight; returns the shift dz that
// stacked_o_update applies to O once that product has retired.
// d2_by_sums (flag 32): the tile's sum of P2 taken as wz - z0' w from the two sums already
// reduced (their exact difference; one shuffle round and NTS * 2 additions fewer); its rounding
// is u |z0'| w instead of u |z - z0'| w, i.e. zbar to a relative 2^-24 either way.
template <int NTS>
__device__ __forceinline__ float stacked_p2(float (&w)[NTS][4], StackRow& st, const StackFactors& f, bool d2_by_sums = false) {
  // Online re-centring of the shift z0 (forward_step.cuh online_p2, one row).
  float wsum = f.ls1, wz;
  {
    float a[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int i = 0; i < NTS; ++i)
#pragma unroll
      for (int e = 0; e < 2; ++e) a[(i & 1) * 2 + e] += w[i][e] * w[i][e + 2];
    wz = (a[0] + a[1]) + (a[2] + a[3]);
  }
  wsum += __shfl_xor_sync(0xffffffffu, wsum, 1);
  wsum += __shfl_xor_sync(0xffffffffu, wsum, 2);
  wz += __shfl_xor_sync(0xffffffffu, wz, 1);
  wz += __shfl_xor_sync(0xffffffffu, wz, 2);
  const float alpha = f.alpha, d1o = st.d1, d1n = alpha * d1o + wsum;
  const float zn = d1n > 0.f ? __fdividef(alpha * (d1o * st.z0 + st.d2) + wz, d1n) : st.z0;
  const float dz = zn - st.z0;
  st.d2 = alpha * (st.d2 - dz * d1o);
  st.d1 = d1n;
  st.z0 = zn;
  if (d2_by_sums) {
#pragma unroll
    for (int i = 0; i < NTS; ++i)
#pragma unroll
      for (int e = 0; e < 2; ++e) w[i][e + 2] = w[i][e] * (w[i][e + 2] - zn);  // p2 (masked: p1 = 0)
    st.d2 += fmaf(-zn, wsum, wz);
    return dz;
  }
  float l2[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
  for (int i = 0; i < NTS; ++i)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      w[i][e + 2] = w[i][e] * (w[i][e + 2] - zn);  // p2 (masked: p1 = 0)
      l2[(i & 1) * 2 + e] += w[i][e + 2];
    }
  float ls2 = (l2[0] + l2[1]) + (l2[2] + l2[3]);
  ls2 += __shfl_xor_sync(0xffffffffu, ls2, 1);
  ls2 += __shfl_xor_sync(0xffffffffu, ls2, 2);
  st.d2 += ls2;
  return dz;
}
// O2 <- alpha (O2 - dz O1), O1 <- alpha O1 (the exact update for the moved centre and the new max).
template <int NTO>
__device__ __forceinline__ void stacked_o_update(float (&o)[NTO][4], float dz, const StackFactors& f) {
  const float alpha = f.alpha;
  if (f.rescale) {
#pragma unroll
    for (int i = 0; i < NTO; ++i)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        o[i][e + 2] = alpha * fmaf(-dz, o[i][e], o[i][e + 2]);
        o[i][e] *= alpha;
      }
  } else {
#pragma unroll
    for (int i = 0; i < NTO; ++i)
#pragma unroll
      for (int e = 0; e < 2; ++e) o[i][e + 2] = fmaf(-dz, o[i][e], o[i][e + 2]);
  }
}

// Epilogue of the stacked layout (forward_step.cuh store_rows for one row per thread).
template <class T, int NTO>
__device__ __forceinline__ void store_stacked(const AttnParams& p, int b, int hq, int i, int lane, const float (&o)[NTO][4],
                                              const StackRow& st) {
  if (i >= p.Lq) return;
  const bool e = !(st.d1 > 0.f);
  const float inv = e ? 0.f : 1.f / st.d1, zb = st.d2 * inv;
  T* orow = static_cast<T*>(p.out) + b * p.o_batch_stride + (long long)i * p.o_row_stride + hq * p.o_head_stride;
  T* vrow = p.vbar ? static_cast<T*>(p.vbar) + b * p.o_batch_stride + (long long)i * p.o_row_stride + hq * p.o_head_stride
                   : nullptr;
#pragma unroll
  for (int nt = 0; nt < NTO; ++nt) {
    const int col = nt * 8 + (lane & 3) * 2;
    const float vb0 = o[nt][0] * inv, vb1 = o[nt][1] * inv;
    const float out0 = vb0 + (zb * vb0 - o[nt][2] * inv), out1 = vb1 + (zb * vb1 - o[nt][3] * inv);
    *reinterpret_cast<std::uint32_t*>(orow + col) = Pack<T>::from_float2(out0, out1);
    if (vrow) *reinterpret_cast<std::uint32_t*>(vrow + col) = Pack<T>::from_float2(vb0, vb1);
  }
  if ((lane & 3) == 0) {
    const long long row = ((long long)b * p.Hq + hq) * p.Lq + i;
    if (p.lse) p.lse[row] = e ? -INFINITY : (st.m + log2f(st.d1)) * kLn2;
    if (p.m) p.m[row] = e ? 0.f : st.m * kLn2;
    if (p.d1) p.d1[row] = st.d1;
    if (p.zbar) p.zbar[row] = e ? 0.f : zb + st.z0;
  }
}

template <class T, bool PLX, int NC, int NS, bool LA>
__global__ void __launch_bounds__(128 * (NC + 1), 1)
    parallax_forward_tma_kernel(const AttnParams p, const __grid_constant__ CUtensorMap kmap,
                                const __grid_constant__ CUtensorMap vmap, int flags) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = TmaCfg<PLX, NC, NS, LA>;
  constexpr int BN = C::BN, QW = C::QW;
  constexpr int NTS = BN / 8, NTO = C::D / 8;
  extern __shared__ unsigned char smem_raw[];
  const unsigned raw = static_cast<unsigned>(__cvta_generic_to_shared(smem_raw));
  const unsigned base = (raw + 1023u) & ~1023u;  // swizzle atoms are 1024-byte aligned
  const unsigned ks0 = base + NC * C::a_bytes, vs0 = ks0 + NS * C::kv_bytes;
  const unsigned bars = vs0 + NS * C::kv_bytes;
  auto full_k = [&](int s) { return bars + 8u * s; };
  auto full_v = [&](int s) { return bars + 8u * (NS + s); };
  auto empty_k = [&](int s) { return bars + 8u * (2 * NS + s); };
  auto empty_v = [&](int s) { return bars + 8u * (3 * NS + s); };

  int mt, hq, b;
  if (flags & kFwdTmaHeadsFastest) {  // grid (B * Hq, tiles): every head's longest tile first
    mt = gridDim.y - 1 - blockIdx.y, hq = blockIdx.x % p.Hq, b = blockIdx.x / p.Hq;
  } else {
    mt = gridDim.x - 1 - blockIdx.x, hq = blockIdx.y, b = blockIdx.z;
  }
  const int hk = hq / (p.Hq / p.Hkv);
  const int m0 = mt * C::QB;
  int kv_lo, kv_hi;
  {
    int l2, h1;
    raw_range(p, b, m0, kv_lo, h1);
    raw_range(p, b, min(m0 + C::QB, p.Lq) - 1, l2, kv_hi);
  }
  const int ntiles = kv_hi > kv_lo ? (kv_hi - kv_lo + BN - 1) / BN : 0;
  const int wg = threadIdx.x >> 7;

  if (threadIdx.x == 0) {
    for (int s = 0; s < NS; ++s) {
      mbar_init(full_k(s), 1), mbar_init(full_v(s), 1);
      mbar_init(empty_k(s), 4 * NC), mbar_init(empty_v(s), 4 * NC);  // one arrival per consumer warp
    }
    mbar_init_fence();
  }
  __syncthreads();

  if (wg == 0) {  // producer
    regs_dec<24>();
    if (threadIdx.x >= 32) return;
    const int lane = threadIdx.x;
    if (lane == 0) tma_prefetch_map(&kmap), tma_prefetch_map(&vmap);
    const T* kbase = static_cast<const T*>(p.k) + b * p.k_batch_stride + hk * p.k_head_stride;
    const T* vbase = static_cast<const T*>(p.v) + b * p.v_batch_stride + hk * p.v_head_stride;
    int s = 0, round = 0;
    for (int t = 0; t < ntiles; ++t) {
      const int row0 = kv_lo + t * BN;
      const bool partial = row0 + BN > kv_hi;
      // One operand (K, then V) into stage s: two 64-column TMA boxes, or, for the tile that
      // reaches past kv_hi, a copy by this warp with the rows past kv_hi zeroed.
      auto fill = [&](unsigned full, unsigned empty, unsigned dst, const CUtensorMap* map, const T* src, long long row_stride) {
        mbar_wait(empty, (round & 1) ^ 1);
        if (!partial) {
          if (lane == 0) {
            mbar_arrive_expect_tx(full, C::kv_bytes);
            tma_load_4d(dst, map, 0, row0, hk, b, full);
            tma_load_4d(dst + BN * 128, map, 64, row0, hk, b, full);
          }
        } else {
          warp_copy_tile<BN>(dst, src, row_stride, row0, kv_hi, lane);
          if (lane == 0) mbar_arrive(full);
        }
      };
      fill(full_k(s), empty_k(s), ks0 + s * C::kv_bytes, &kmap, kbase, p.k_row_stride);
      fill(full_v(s), empty_v(s), vs0 + s * C::kv_bytes, &vmap, vbase, p.v_row_stride);
      if (++s == NS) s = 0, ++round;
    }
    return;
  }

  // ---- consumers ----
  regs_inc<(NC == 2 ? 240 : 160)>();
  // The warpgroup index through a shuffle: ptxas then treats it (and the descriptors built from
  // it) as warp-uniform.
  const int c = __shfl_sync(0xffffffffu, wg, 0) - 1, tid = threadIdx.x - 128 * wg, lane = tid & 31, warp = tid >> 5;
  const bool pp = !LA && (flags & kFwdTmaPingPong) != 0;  // the look-ahead pipeline does not take turns
  const bool d2s = (flags & kFwdTmaD2BySums) != 0;
  const unsigned as = base + c * C::a_bytes;  // Q (softmax) or stacked Q/R (Parallax)
  const int m0c = m0 + c * QW;
  int tb = 0, te = 0, lo_last = 0, hi_first = 0;
  if (m0c < p.Lq) {
    const T* qb = static_cast<const T*>(p.q) + b * p.q_batch_stride + hq * p.q_head_stride;
    if constexpr (PLX) {
      const T* rb = static_cast<const T*>(p.r) + b * p.r_batch_stride + hq * p.r_head_stride;
      load_qr_stacked<T>(as, qb, p.q_row_stride, rb, p.r_row_stride, m0c, p.Lq, tid);
    } else {
      load_tile_sw<T, 64>(as, qb, p.q_row_stride, m0c, p.Lq, tid);
    }
    int lo_first, hi_last;
    raw_range(p, b, m0c, lo_first, hi_first);
    raw_range(p, b, min(m0c + QW, p.Lq) - 1, lo_last, hi_last);
    if (hi_last > lo_first) {  // the warpgroup's rows need keys [lo_first, hi_last) of the block's range
      tb = (lo_first - kv_lo) / BN;
      te = min(ntiles, (hi_last - kv_lo + BN - 1) / BN);
    }
  }
  cp_async_commit();
  cp_async_wait<0>();
  fence_proxy_async();  // cp.async (generic proxy) -> wgmma (async proxy)
  named_sync(1 + c, 128);

  const float qscale = p.scale * kLog2e;
  // Parallax: one query per thread (stacked layout); softmax: rows r0 and r0 + 8 (the wgmma kernel's layout).
  const int qrow = PLX ? m0c + 8 * warp + (lane >> 2) : m0c + 16 * warp + (lane >> 2);
  int rlo[2], rhi[2];
  thread_row_ranges(p, b, qrow, rlo, rhi);
  float o[NTO][4];
  float o_unused[1][4];
  zero_accumulators<NTO, false>(o, o_unused);
  StackRow sr;
  RowState st;
  std::uint32_t ap[BN / 16][4];  // the previous tile's weights as the P V operand

  // Ping-pong (round robin over the consumers): consumer c issues its products after barrier
  // 8 + c and then opens 8 + (c + 1) % NC; the last consumer opens consumer 0's first turn and
  // consumer 0 takes the last opening at the end.
  if (pp && c == NC - 1) named_arrive(8, 256);
  auto release = [&](unsigned bar) {
    __syncwarp();
    if (lane == 0) mbar_arrive(bar);
  };
  // A tile the warpgroup's rows do not need: wait for it and release it (stage phases in step).
  auto skip = [&](int t) {
    const int s = t % NS;
    const unsigned ph = (t / NS) & 1;
    mbar_wait(full_k(s), ph);
    release(empty_k(s));
    mbar_wait(full_v(s), ph);
    release(empty_v(s));
    if (pp) named_sync(8 + c, 256), named_arrive(8 + (c + 1) % NC, 256);
  };
  auto step = [&](int t, auto first) {
    constexpr bool FIRST = decltype(first)::value;
    const int s = t % NS, sp = (t + NS - 1) % NS;  // stage of tile t and of tile t - 1
    const int k0 = kv_lo + t * BN;
    mbar_wait(full_k(s), (t / NS) & 1);
    if constexpr (!FIRST) mbar_wait(full_v(sp), ((t - 1) / NS) & 1);
    if (pp) named_sync(8 + c, 256);
    float w[NTS][4];  // S (softmax) or S | Z (Parallax); written by the first wgmma (scale-d = 0)
    wgmma_fence();
    wgmma_ss_k128<T, BN>(&w[0][0], as, 64, ks0 + s * C::kv_bytes, BN);
    wgmma_commit();
    if constexpr (!FIRST) {
      wgmma_rs_n128<T, BN>(&o[0][0], ap, vs0 + sp * C::kv_bytes);
      wgmma_commit();
    }
    if (pp) named_arrive(8 + (c + 1) % NC, 256);
    wgmma_wait<FIRST ? 0 : 1>();  // S(t) landed; P V(t - 1) may still run
    fence_regs<NTS * 4>(&w[0][0]);
    const bool full = k0 >= lo_last && k0 + BN <= hi_first;  // every row of the warpgroup allows every key
    if constexpr (PLX) {
      release(empty_k(s));  // S | Z (t) has read its K tile
      // Everything that does not touch O runs while P V(t - 1) is in flight; then O's update.
      const StackFactors f = stacked_p1<NTS>(w, sr, k0 + (lane & 3) * 2, full, rlo[0], rhi[0], qscale);
      const float dz = stacked_p2<NTS>(w, sr, f, d2s);
      wgmma_wait<0>();
      fence_regs<NTO * 4>(&o[0][0]);
      if constexpr (!FIRST) release(empty_v(sp));
      stacked_o_update<NTO>(o, dz, f);
    } else {
      release(empty_k(s));
      const TileFactors f = online_p1<NTS>(w, st, k0 + (lane & 3) * 2, full, rlo, rhi, qscale);
      wgmma_wait<0>();
      fence_regs<NTO * 4>(&o[0][0]);
      if constexpr (!FIRST) release(empty_v(sp));
      float z_unused[1][4];
      online_p2<NTS, NTO, false>(w, z_unused, o, o_unused, st, f);
    }
#pragma unroll
    for (int kt = 0; kt < BN / 16; ++kt) pack_a<T>(w, kt, ap[kt]);
  };
  for (int t = 0; t < tb; ++t) skip(t);
  if (LA && te > tb) {
    // Look-ahead pipeline (flag 16): S | Z (t + 1) is issued before tile t's weights are
    // computed, so the exponentials and the re-centring of tile t run while the tensor cores do
    // S | Z (t + 1) and P V(t - 1), this warpgroup's own next products. O is updated only once
    // both have retired (wait 0): ptxas serializes every wgmma (C7513) if a wgmma's input
    // registers are redefined while any wgmma is in flight. Commit order per tile t: S(t + 1),
    // then P V(t). The two score tiles alternate between wa and wb (no register copies).
    float wa[NTS][4], wb[NTS][4];
    auto issue_s = [&](int t, float (&w)[NTS][4]) {
      const int s = t % NS;
      mbar_wait(full_k(s), (t / NS) & 1);
      wgmma_fence();
      wgmma_ss_k128_fresh<T, BN>(&w[0][0], as, 64, ks0 + s * C::kv_bytes, BN);
      wgmma_commit();
    };
    auto iter = [&](int t, float (&wc)[NTS][4], float (&wn)[NTS][4], bool first) {
      const int s = t % NS, sp = (t + NS - 1) % NS;
      const int k0 = kv_lo + t * BN;
      release(empty_k(s));  // S(t) retired at the previous wait 0
      if (t + 1 < te) issue_s(t + 1, wn);
      const bool full = k0 >= lo_last && k0 + BN <= hi_first;
      StackFactors fs{};
      TileFactors ft{};
      float dz = 0.f;
      // The weights are computed in a copy: redefining wc, the accumulator registers of a
      // wgmma chain, while S(t + 1) is in flight makes ptxas serialize every wgmma (C7515).
      float w[NTS][4];
#pragma unroll
      for (int i = 0; i < NTS; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) w[i][e] = wc[i][e];
      if constexpr (PLX) {
        fs = stacked_p1<NTS>(w, sr, k0 + (lane & 3) * 2, full, rlo[0], rhi[0], qscale);
        dz = stacked_p2<NTS>(w, sr, fs, d2s);
      } else {
        ft = online_p1<NTS>(w, st, k0 + (lane & 3) * 2, full, rlo, rhi, qscale);
      }
      wgmma_wait<0>();  // P V(t - 1) and S(t + 1)
      fence_regs<NTO * 4>(&o[0][0]);
      fence_regs<BN / 16 * 4>(&ap[0][0]);
      fence_regs<NTS * 4>(&wn[0][0]);
      if (!first) release(empty_v(sp));
      if constexpr (PLX) {
        stacked_o_update<NTO>(o, dz, fs);
      } else {
        float z_unused[1][4];
        online_p2<NTS, NTO, false>(w, z_unused, o, o_unused, st, ft);
      }
#pragma unroll
      for (int kt = 0; kt < BN / 16; ++kt) pack_a<T>(w, kt, ap[kt]);
      fence_regs<BN / 16 * 4>(&ap[0][0]);  // the packing stays before the products
      mbar_wait(full_v(s), (t / NS) & 1);
      wgmma_fence();
      wgmma_rs_n128<T, BN>(&o[0][0], ap, vs0 + s * C::kv_bytes);
      wgmma_commit();
    };
    issue_s(tb, wa);
    wgmma_wait<0>();
    fence_regs<NTS * 4>(&wa[0][0]);
    iter(tb, wa, wb, true);
    for (int t = tb + 1; t < te; t += 2) {
      iter(t, wb, wa, false);
      if (t + 1 < te) iter(t + 1, wa, wb, false);
    }
    wgmma_wait<0>();  // P V of the last tile
    fence_regs<NTO * 4>(&o[0][0]);
    release(empty_v((te - 1) % NS));
  } else if (te > tb) {
    step(tb, std::true_type{});
    for (int t = tb + 1; t < te; ++t) step(t, std::false_type{});
    const int sl = (te - 1) % NS;  // P V of the last tile
    mbar_wait(full_v(sl), ((te - 1) / NS) & 1);
    fence_regs<NTO * 4>(&o[0][0]);
    wgmma_fence();
    wgmma_rs_n128<T, BN>(&o[0][0], ap, vs0 + sl * C::kv_bytes);
    wgmma_commit();
    wgmma_wait<0>();
    fence_regs<NTO * 4>(&o[0][0]);
    release(empty_v(sl));
  }
  for (int t = max(te, tb); t < ntiles; ++t) skip(t);
  if (pp && c == 0) named_sync(8, 256);
  if constexpr (PLX) store_stacked<T, NTO>(p, b, hq, qrow, lane, o, sr);
  else store_rows<T, NTO, false>(p, b, hq, qrow, lane, o, o_unused, st);
#endif
}

cudaError_t encode_map_bhl128(CUtensorMap* map, const void* base, bool bf16, long long L, long long H, long long B,
                              long long row_stride, long long head_stride, long long batch_stride, int box_rows) {
  using Encode = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*, const cuuint64_t*,
                              const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave, CUtensorMapSwizzle,
                              CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
  static const Encode encode = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      return Encode(nullptr);
    }
    return reinterpret_cast<Encode>(f);
  }();
  if (!encode) return cudaErrorNotSupported;
  // A dimension of extent 1 is never stepped over; give it a stride TMA accepts (a multiple of
  // 16 bytes, non-zero) when the caller's is 0.
  const long long rsb = row_stride * 2;
  const long long hsb = H == 1 && head_stride == 0 ? rsb * L : head_stride * 2;
  const long long bsb = B == 1 && batch_stride == 0 ? hsb * H : batch_stride * 2;
  const cuuint64_t dims[4] = {128, cuuint64_t(L), cuuint64_t(H), cuuint64_t(B)};
  const cuuint64_t strides[3] = {cuuint64_t(rsb), cuuint64_t(hsb), cuuint64_t(bsb)};
  const cuuint32_t box[4] = {64, cuuint32_t(box_rows), 1, 1}, estr[4] = {1, 1, 1, 1};
  const CUresult r = encode(map, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4,
                            const_cast<void*>(base), dims, strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
                            CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

template <class T, bool PLX, int NC, int NS, bool LA = false>
int forward_tma_dispatch(const AttnParams& p, int flags, cudaStream_t st) {
  using C = TmaCfg<PLX, NC, NS, LA>;
  const bool bf16 = std::is_same<T, __nv_bfloat16>::value;
  CUtensorMap km, vm;
  cudaError_t e = encode_map_bhl128(&km, p.k, bf16, p.Lkv, p.Hkv, p.B, p.k_row_stride, p.k_head_stride, p.k_batch_stride, C::BN);
  if (e == cudaSuccess)
    e = encode_map_bhl128(&vm, p.v, bf16, p.Lkv, p.Hkv, p.B, p.v_row_stride, p.v_head_stride, p.v_batch_stride, C::BN);
  if (e != cudaSuccess) return kForwardNoTensorMaps;  // cudaErrorNotSupported / InvalidValue: nothing launched
  auto kern = parallax_forward_tma_kernel<T, PLX, NC, NS, LA>;
  e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, C::bytes);
  if (e != cudaSuccess) return e;
  const int nmt = (p.Lq + C::QB - 1) / C::QB;
  if (nmt > 65535) flags &= ~kFwdTmaHeadsFastest;  // gridDim.y limit: the tile-major grid takes any Lq
  const dim3 grid = (flags & kFwdTmaHeadsFastest) ? dim3(p.B * p.Hq, nmt, 1) : dim3(nmt, p.Hq, p.B);
  kern<<<grid, C::NT, C::bytes, st>>>(p, km, vm, flags);
  return cudaGetLastError();
}

template <class T> struct Tag { using type = T; };

// The shipped variant set (see the charter): heads-fastest grid, three consumers, d2 from the sums.
int forward_tma_default_flags(const AttnParams&) { return kFwdTmaHeadsFastest | kFwdTmaThreeConsumers | kFwdTmaD2BySums; }

int launch_forward_tma(const AttnParams& p, void* stream) {
  const int flags = forward_tma_default_flags(p);
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  const bool plx = p.mech == Mechanism::Parallax;
  if (p.dtype == ElemType::BF16)
    return plx ? forward_tma_dispatch<__nv_bfloat16, true, 3, 3>(p, flags, st) : forward_tma_dispatch<__nv_bfloat16, false, 3, 3>(p, flags, st);
  return plx ? forward_tma_dispatch<__half, true, 3, 3>(p, flags, st) : forward_tma_dispatch<__half, false, 3, 3>(p, flags, st);
}

}  // namespace plx::cuda::detail
