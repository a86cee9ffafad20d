// kernels/parallax_forward_wgmma.cu — the wgmma prefill forward: Parallax and softmax on Hopper wgmma.
//
// Charter: the mma_sync kernel's algorithm (parallax_forward.cu: online max in base 2, P1 = exp2(s - m) and
// P2 = P1 (z - z0) rounded to the input type, the shift z0 re-centred online, the same saved
// tensors; the per-tile step and the epilogue are the shared kernels/forward_step.cuh) with the
// products on warpgroup MMA (sm_90a), D = Dv = 128 only. One warpgroup (128 threads) per
// (64-query tile, query head, batch), two blocks per SM. Q and R stay in shared memory for the
// whole block; K and V tiles of 64 keys stream through two cp.async stages into 128-byte-
// swizzled tiles (kernels/wgmma.cuh) that wgmma reads directly: S = Q K^T and Z = R K^T with
// both operands in shared memory, O1 += P1 V and O2 += P2 V with P in registers (the
// accumulator-to-A-fragment identity of FlashAttention-2) and V read transposed through its
// descriptor. Software-pipelined: the P V product of tile t - 1 is issued with S(t), Z(t).
// Measured on the H200 and rejected (docs/gpu-results.md): two warpgroups sharing K/V tiles in
// one block (slower: 1.45 vs 1.25 ms at L = 8192), no pipelining (1.38 ms), forcing the
// exponentials between the two waits (no gain: the co-resident block already overlaps them).
// Not here: TMA, producer warps, D = 64 (the mma_sync kernel serves it).
#include <cuda_runtime.h>

#include <type_traits>

#include "kernels/device_common.cuh"
#include "kernels/forward_step.cuh"
#include "kernels/kernels_internal.hpp"
#include "kernels/wgmma.cuh"

namespace plx::cuda::detail {

template <bool PLX> struct WgCfg {
  static constexpr int D = 128, BM = 64, NT = 128, BN = 64;
  static constexpr int q_bytes = BM * D * 2;   // one [2][BM][64] swizzled tile
  static constexpr int kv_bytes = BN * D * 2;  // one [2][BN][64] swizzled tile
  static constexpr int bytes = 1024 /*alignment slack*/ + q_bytes * (PLX ? 2 : 1) + 4 * kv_bytes;  // K, V x 2 stages
};

// S or Z (64 x BN) = A (Q or R, [2][64][64] at a) K^T (K tile at kb), one commit group.
template <class T, int BN>
__device__ __forceinline__ void qk_product(float* d, unsigned a, unsigned kb) {
  wgmma_ss_k128<T, BN>(d, a, 64, kb, BN);
  wgmma_commit();
}
// O1 += P1 V and O2 += P2 V (P in registers, V tile at vb), one commit group.
template <class T, int BN, bool PLX>
__device__ __forceinline__ void pv_product(float* o1, float* o2, const std::uint32_t (&ap)[BN / 16][4],
                                           const std::uint32_t (&az)[PLX ? BN / 16 : 1][4], unsigned vb) {
  wgmma_rs_n128<T, BN>(o1, ap, vb);
  if constexpr (PLX) wgmma_rs_n128<T, BN>(o2, az, vb);
  wgmma_commit();
}

template <class T, bool PLX>
__global__ void __launch_bounds__(128, 2) parallax_forward_wgmma_kernel(const AttnParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = WgCfg<PLX>;
  constexpr int BM = C::BM, BN = C::BN;
  constexpr int NTS = BN / 8, NTO = C::D / 8;
  extern __shared__ unsigned char smem_raw[];
  const unsigned raw = static_cast<unsigned>(__cvta_generic_to_shared(smem_raw));
  const unsigned base = (raw + 1023u) & ~1023u;  // swizzle atoms are 1024-byte aligned
  const unsigned qs = base, rs = base + C::q_bytes;
  const unsigned ks = base + C::q_bytes * (PLX ? 2 : 1), vs = ks + 2 * C::kv_bytes;

  const int mt = gridDim.x - 1 - blockIdx.x;  // longest causal tiles first
  const int hq = blockIdx.y, b = blockIdx.z;
  const int hk = hq / (p.Hq / p.Hkv);
  const int m0 = mt * BM;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  int lo_first, hi_first, lo_last, hi_last;
  raw_range(p, b, m0, lo_first, hi_first);
  raw_range(p, b, min(m0 + BM, p.Lq) - 1, lo_last, hi_last);
  const int kv_lo = lo_first, kv_hi = hi_last;  // union of the block's rows (contiguous: lo, hi monotone)
  const int ntiles = kv_hi > kv_lo ? (kv_hi - kv_lo + BN - 1) / BN : 0;

  {  // Q, R (zero rows past Lq)
    const T* qb = static_cast<const T*>(p.q) + b * p.q_batch_stride + hq * p.q_head_stride;
    load_tile_sw<T, BM>(qs, qb, p.q_row_stride, m0, p.Lq, tid);
    if (PLX) {
      const T* rb = static_cast<const T*>(p.r) + b * p.r_batch_stride + hq * p.r_head_stride;
      load_tile_sw<T, BM>(rs, rb, p.r_row_stride, m0, p.Lq, tid);
    }
  }
  const T* kbase = static_cast<const T*>(p.k) + b * p.k_batch_stride + hk * p.k_head_stride;
  const T* vbase = static_cast<const T*>(p.v) + b * p.v_batch_stride + hk * p.v_head_stride;
  // K or V tile t -> buffer t & 1 (keys past the block's range zero-filled)
  auto load_k = [&](int t) { load_tile_sw<T, BN>(ks + (t & 1) * C::kv_bytes, kbase, p.k_row_stride, kv_lo + t * BN, kv_hi, tid); };
  auto load_v = [&](int t) { load_tile_sw<T, BN>(vs + (t & 1) * C::kv_bytes, vbase, p.v_row_stride, kv_lo + t * BN, kv_hi, tid); };

  const int r0 = 16 * warp + (lane >> 2);  // the thread's first row in the block
  int rlo[2], rhi[2];
  thread_row_ranges(p, b, m0 + r0, rlo, rhi);
  const float qscale = p.scale * kLog2e;
  float o1[NTO][4], o2[PLX ? NTO : 1][4];
  zero_accumulators<NTO, PLX>(o1, o2);
  RowState st;
  std::uint32_t ap[BN / 16][4], az[PLX ? BN / 16 : 1][4];  // P1, P2 of the previous tile

  // Software pipeline (FlashAttention-3's intra-warpgroup overlap): S(t), Z(t) and the P V
  // product of tile t - 1 are issued together; the exponentials of S(t) run while the tensor
  // cores finish Z(t) and P V(t - 1); V(t + 1) is fetched once P V(t - 1) has released its
  // buffer. cp.async groups: K(0) and V(0) in the prologue, then per tile t: K(t + 1), V(t + 1).
  // At the top of tile t everything but the newest group (V(t)) has landed: Q, R, K(t), V(t - 1).
  if (ntiles > 0) load_k(0);
  cp_async_commit();
  if (ntiles > 0) load_v(0);
  cp_async_commit();
  // One tile; FIRST (t = 0) has no P V to issue. The first tile is peeled so that every
  // wgmma.wait_group in the loop has a fixed count: with the count chosen at run time ptxas
  // cannot tell which group S belongs to and hoists the final wait above the exponentials.
  auto step = [&](int t, auto first) {
    constexpr bool FIRST = decltype(first)::value;
    const int k0 = kv_lo + t * BN;
    const unsigned kb = ks + (t & 1) * C::kv_bytes;
    cp_async_wait<1>();
    fence_proxy_async();  // cp.async (generic proxy) -> wgmma (async proxy)
    __syncthreads();
    if (t + 1 < ntiles) load_k(t + 1);  // K buffer of tile t - 1: S(t - 1) completed before the barrier
    cp_async_commit();
    float s[NTS][4], z[PLX ? NTS : 1][4];  // written by the first wgmma (scale-d = 0: no zeroing)
    wgmma_fence();
    qk_product<T, BN>(&s[0][0], qs, kb);
    if constexpr (PLX) qk_product<T, BN>(&z[0][0], rs, kb);
    if constexpr (!FIRST) pv_product<T, BN, PLX>(&o1[0][0], &o2[0][0], ap, az, vs + ((t - 1) & 1) * C::kv_bytes);
    // Groups still in flight once S(t) has landed: Z(t) (Parallax) and P V(t - 1) (not FIRST).
    wgmma_wait<(PLX ? 1 : 0) + (FIRST ? 0 : 1)>();
    fence_regs<NTS * 4>(&s[0][0]);
    const bool full = k0 >= lo_last && k0 + BN <= hi_first;  // every row of the block allows every key
    const TileFactors f = online_p1<NTS>(s, st, k0 + (lane & 3) * 2, full, rlo, rhi, qscale);
    wgmma_wait<0>();
    if constexpr (PLX) fence_regs<NTS * 4>(&z[0][0]);
    fence_regs<NTO * 4>(&o1[0][0]);
    if constexpr (PLX) fence_regs<NTO * 4>(&o2[0][0]);
    __syncthreads();  // every warp is done with P V(t - 1): its V buffer takes V(t + 1)
    if (t + 1 < ntiles) load_v(t + 1);
    cp_async_commit();
    online_p2<NTS, NTO, PLX>(s, z, o1, o2, st, f);
#pragma unroll
    for (int kt = 0; kt < BN / 16; ++kt) {
      pack_a<T>(s, kt, ap[kt]);
      if constexpr (PLX) pack_a<T>(z, kt, az[kt]);
    }
  };
  if (ntiles > 0) step(0, std::true_type{});
  for (int t = 1; t < ntiles; ++t) step(t, std::false_type{});
  if (ntiles > 0) {  // P V of the last tile
    cp_async_wait<0>();
    fence_proxy_async();
    __syncthreads();
    fence_regs<NTO * 4>(&o1[0][0]);
    if constexpr (PLX) fence_regs<NTO * 4>(&o2[0][0]);
    wgmma_fence();
    pv_product<T, BN, PLX>(&o1[0][0], &o2[0][0], ap, az, vs + ((ntiles - 1) & 1) * C::kv_bytes);
    wgmma_wait<0>();
    fence_regs<NTO * 4>(&o1[0][0]);
    if constexpr (PLX) fence_regs<NTO * 4>(&o2[0][0]);
  }
  cp_async_wait<0>();
  store_rows<T, NTO, PLX>(p, b, hq, m0 + r0, lane, o1, o2, st);
#endif
}

template <class T, bool PLX> cudaError_t forward_wgmma_dispatch(const AttnParams& p, cudaStream_t st) {
  using C = WgCfg<PLX>;
  auto kern = parallax_forward_wgmma_kernel<T, PLX>;
  cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, C::bytes);
  if (e != cudaSuccess) return e;
  kern<<<dim3((p.Lq + C::BM - 1) / C::BM, p.Hq, p.B), C::NT, C::bytes, st>>>(p);
  return cudaGetLastError();
}

int launch_forward_wgmma(const AttnParams& p, void* stream) {
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  const bool plx = p.mech == Mechanism::Parallax;
  if (p.dtype == ElemType::BF16)
    return int(plx ? forward_wgmma_dispatch<__nv_bfloat16, true>(p, st) : forward_wgmma_dispatch<__nv_bfloat16, false>(p, st));
  return int(plx ? forward_wgmma_dispatch<__half, true>(p, st) : forward_wgmma_dispatch<__half, false>(p, st));
}

int forward_wgmma_smem(bool parallax) { return parallax ? WgCfg<true>::bytes : WgCfg<false>::bytes; }

}  // namespace plx::cuda::detail
