// kernels/parallax_forward_wgmma.cu — prefill forward v2: Parallax and softmax on Hopper wgmma.
//
// Charter: the v1 algorithm (parallax_forward.cu: online max in base 2, P1 = exp2(s - m) and
// P2 = P1 (z - z0) rounded to the input type, the shift z0 re-centred online, the same saved
// tensors) with the products on warpgroup MMA (sm_90a), D = Dv = 128 only. One block of WGS
// warpgroups (128 WGS threads) per (64 WGS-query tile, query head, batch); each warpgroup owns
// 64 rows; WGS = 1 (two blocks per SM) is the one launched. Q and R stay in shared memory for the whole block; K/V tiles of BN keys stream through
// two cp.async stages into 128-byte-swizzled tiles (kernels/wgmma.cuh) that wgmma reads
// directly: S = Q K^T and Z = R K^T with both operands in shared memory, then O1 += P1 V and
// O2 += P2 V with P in registers (the accumulator-to-A-fragment identity of FlashAttention-2)
// and V read transposed from the same swizzled tile. A warpgroup skips a key tile its 64 rows
// cannot see (WGS = 2: the diagonal tile of the causal mask for the upper half). Warpgroups of
// different blocks interleave on the SM: one's exponentials run while the other's wgmma executes. Not here:
// TMA, warp specialisation with producer warps, intra-warpgroup overlap of softmax and MMA.
#include <cuda_runtime.h>

#include "kernels/device_common.cuh"
#include "kernels/forward_step.cuh"
#include "kernels/kernels_internal.hpp"
#include "kernels/wgmma.cuh"

namespace plx::cuda::detail {

template <bool PLX, int WGS> struct WgCfg {
  static constexpr int D = 128, BM = 64 * WGS, NT = 128 * WGS;
  static constexpr int BN = (PLX || WGS == 1) ? 64 : 128;  // S (and Z) of 64 rows x BN in registers next to O1 (and O2)
  static constexpr int q_bytes = BM * D * 2;          // one [2][BM][64] swizzled tile
  static constexpr int kv_bytes = BN * D * 2;         // one [2][BN][64] swizzled tile
  static constexpr int bytes = 1024 /*alignment slack*/ + q_bytes * (PLX ? 2 : 1) + 4 * kv_bytes;  // K, V x 2 stages
};

template <class T, bool PLX, int WGS>
__global__ void __launch_bounds__(128 * WGS, 2 / WGS) parallax_forward_wgmma_kernel(const AttnParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = WgCfg<PLX, WGS>;
  constexpr int D = C::D, BM = C::BM, BN = C::BN, NT = C::NT, CH = D / 8;
  constexpr int NTS = BN / 8, NTO = D / 8;
  extern __shared__ unsigned char smem_raw[];
  const unsigned raw = static_cast<unsigned>(__cvta_generic_to_shared(smem_raw));
  const unsigned base = (raw + 1023u) & ~1023u;  // swizzle atoms are 1024-byte aligned
  unsigned char* gbase = smem_raw + (base - raw);
  const unsigned qs = base, rs = base + C::q_bytes;
  const unsigned ks = base + C::q_bytes * (PLX ? 2 : 1), vs = ks + 2 * C::kv_bytes;
  auto gptr = [&](unsigned a) { return gbase + (a - base); };

  const int mt = gridDim.x - 1 - blockIdx.x;  // longest causal tiles first
  const int hq = blockIdx.y, b = blockIdx.z;
  const int hk = hq / (p.Hq / p.Hkv);
  const int m0 = mt * BM;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2;
  int lo_first, hi_first, lo_last, hi_last;
  raw_range(p, b, m0, lo_first, hi_first);
  raw_range(p, b, min(m0 + BM, p.Lq) - 1, lo_last, hi_last);
  const int kv_lo = lo_first, kv_hi = hi_last;  // union of the block's rows
  const int ntiles = kv_hi > kv_lo ? (kv_hi - kv_lo + BN - 1) / BN : 0;
  // This warpgroup's rows [m0 + 64 wg, +64): their key union, and the keys all of them allow.
  int wlo_first, whi_first, wlo_last, whi_last;
  raw_range(p, b, min(m0 + 64 * wg, p.Lq - 1), wlo_first, whi_first);
  raw_range(p, b, min(m0 + 64 * wg + 63, p.Lq - 1), wlo_last, whi_last);
  const bool wg_rows = m0 + 64 * wg < p.Lq;

  {  // Q, R (zero rows past Lq)
    const T* qb = static_cast<const T*>(p.q) + b * p.q_batch_stride + hq * p.q_head_stride;
    const T* rb = PLX ? static_cast<const T*>(p.r) + b * p.r_batch_stride + hq * p.r_head_stride : nullptr;
    for (int idx = tid; idx < BM * CH; idx += NT) {
      const int row = idx / CH, c = idx % CH;
      const bool ok = m0 + row < p.Lq;
      const long long i = ok ? m0 + row : 0;
      cp_async16(gptr(qs + swz_offset(row, c, BM)), qb + i * p.q_row_stride + c * 8, ok);
      if (PLX) cp_async16(gptr(rs + swz_offset(row, c, BM)), rb + i * p.r_row_stride + c * 8, ok);
    }
  }
  const T* kbase = static_cast<const T*>(p.k) + b * p.k_batch_stride + hk * p.k_head_stride;
  const T* vbase = static_cast<const T*>(p.v) + b * p.v_batch_stride + hk * p.v_head_stride;
  auto load_tile = [&](int t, int buf) {
    const int k0 = kv_lo + t * BN;
    for (int idx = tid; idx < BN * CH; idx += NT) {
      const int row = idx / CH, c = idx % CH;
      const int key = k0 + row;
      const bool ok = key < kv_hi;
      const long long kk = ok ? key : kv_lo;
      const unsigned off = buf * C::kv_bytes + swz_offset(row, c, BN);
      cp_async16(gptr(ks + off), kbase + kk * p.k_row_stride + c * 8, ok);
      cp_async16(gptr(vs + off), vbase + kk * p.v_row_stride + c * 8, ok);
    }
  };
  if (ntiles > 0) load_tile(0, 0);
  cp_async_commit();

  const int r0 = 64 * wg + 16 * (warp & 3) + (lane >> 2);  // the thread's first row in the block
  int rlo[2], rhi[2];
  raw_range(p, b, min(m0 + r0, p.Lq - 1), rlo[0], rhi[0]);
  raw_range(p, b, min(m0 + r0 + 8, p.Lq - 1), rlo[1], rhi[1]);
  const float qscale = p.scale * kLog2e;

  float o1[NTO][4], o2[PLX ? NTO : 1][4];
#pragma unroll
  for (int i = 0; i < NTO; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      o1[i][e] = 0.f;
      if (PLX) o2[i][e] = 0.f;
    }
  RowState st;
  const unsigned qw = qs + 64 * wg * 128, rw = rs + 64 * wg * 128;  // this warpgroup's 64 rows

  for (int t = 0; t < ntiles; ++t) {
    const int buf = t & 1;
    if (t + 1 < ntiles) load_tile(t + 1, buf ^ 1);  // its buffer was last read by tile t - 1
    cp_async_commit();
    cp_async_wait<1>();
    fence_proxy_async();  // cp.async (generic proxy) -> wgmma (async proxy)
    __syncthreads();
    const int k0 = kv_lo + t * BN;
    if (wg_rows && k0 < whi_last && k0 + BN > wlo_first) {
      float s[NTS][4], z[PLX ? NTS : 1][4];  // written by the first wgmma (scale-d = 0: no zeroing)
      const unsigned kb = ks + buf * C::kv_bytes, vb = vs + buf * C::kv_bytes;
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        const unsigned koff = (kk & 3) * 32;  // 16-element step inside the 128-byte row
        const std::uint64_t dk = smem_desc(kb + (kk >> 2) * (BN * 128) + koff, 16, 1024);
        wgmma_ss<T, BN>(&s[0][0], smem_desc(qw + (kk >> 2) * (BM * 128) + koff, 16, 1024), dk, kk > 0);
        if constexpr (PLX) wgmma_ss<T, BN>(&z[0][0], smem_desc(rw + (kk >> 2) * (BM * 128) + koff, 16, 1024), dk, kk > 0);
      }
      wgmma_commit();
      wgmma_wait<0>();
      fence_regs<NTS * 4>(&s[0][0]);
      if constexpr (PLX) fence_regs<NTS * 4>(&z[0][0]);

      const bool full = k0 >= wlo_last && k0 + BN <= whi_first;  // every row of the warpgroup allows every key
      online_step<NTS, NTO, PLX>(s, z, o1, o2, st, k0 + (lane & 3) * 2, full, rlo, rhi, qscale);

      std::uint32_t ap[BN / 16][4], az[PLX ? BN / 16 : 1][4];
#pragma unroll
      for (int kt = 0; kt < BN / 16; ++kt) {
        pack_a<T>(s, kt, ap[kt]);
        if constexpr (PLX) pack_a<T>(z, kt, az[kt]);
      }
      fence_regs<NTO * 4>(&o1[0][0]);
      if constexpr (PLX) fence_regs<NTO * 4>(&o2[0][0]);
      wgmma_fence();
#pragma unroll
      for (int kt = 0; kt < BN / 16; ++kt) {
        const std::uint64_t dv = smem_desc(vb + kt * 16 * 128, BN * 128, 1024);  // MN-major V: LBO = the half stride
        wgmma_rs_tb<T, 128>(&o1[0][0], ap[kt], dv);
        if constexpr (PLX) wgmma_rs_tb<T, 128>(&o2[0][0], az[kt], dv);
      }
      wgmma_commit();
      wgmma_wait<0>();
      fence_regs<NTO * 4>(&o1[0][0]);
      if constexpr (PLX) fence_regs<NTO * 4>(&o2[0][0]);
    }
    __syncthreads();  // every warpgroup is done with buf before tile t + 2 overwrites it
  }
  cp_async_wait<0>();
  if (wg_rows) store_rows<T, NTO, PLX>(p, b, hq, m0 + r0, lane, o1, o2, st);
#endif
}

template <class T, bool PLX, int WGS> cudaError_t forward_wgmma_dispatch(const AttnParams& p, cudaStream_t st) {
  using C = WgCfg<PLX, WGS>;
  auto kern = parallax_forward_wgmma_kernel<T, PLX, WGS>;
  cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, C::bytes);
  if (e != cudaSuccess) return e;
  kern<<<dim3((p.Lq + C::BM - 1) / C::BM, p.Hq, p.B), C::NT, C::bytes, st>>>(p);
  return cudaGetLastError();
}

int launch_forward_wgmma(const AttnParams& p, void* stream) {
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  const bool plx = p.mech == Mechanism::Parallax;
  // One warpgroup per block, two blocks per SM (measured against two warpgroups sharing K/V
  // tiles in one block, docs/gpu-results.md): the blocks drift apart, so one's exponentials
  // overlap the other's wgmma, where the shared-tile block keeps its warpgroups in lockstep.
  if (p.dtype == ElemType::BF16)
    return int(plx ? forward_wgmma_dispatch<__nv_bfloat16, true, 1>(p, st) : forward_wgmma_dispatch<__nv_bfloat16, false, 1>(p, st));
  return int(plx ? forward_wgmma_dispatch<__half, true, 1>(p, st) : forward_wgmma_dispatch<__half, false, 1>(p, st));
}

int forward_wgmma_smem(bool parallax) { return parallax ? WgCfg<true, 1>::bytes : WgCfg<false, 1>::bytes; }

}  // namespace plx::cuda::detail
