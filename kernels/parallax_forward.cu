// kernels/parallax_forward.cu — prefill forward of Parallax and softmax on tensor cores.
//
// Charter: FlashAttention-2 structure: one block of 4 warps per (64-query tile, query head,
// batch), each warp 16 query rows; K/V tiles stream through two shared-memory stages
// (cp.async); S = Q K^T and Z = R K^T by mma.sync m16n8k16 (bf16 or fp16 operands, fp32
// accumulators, sharing the K fragments), online softmax in base 2, O1 += P1 V and
// O2 += P2 V by mma with P1 = exp2(s - m) and P2 = P1 (z - z0) rounded to the input type
// (as FlashAttention rounds P). Stable formulation: the per-row shift of docs/math.md §7.1 with
// z0 = the running p1-weighted mean of z, re-centred after every tile (d2 -= dz d1,
// O2 -= dz O1), so out = (O1/d1)(1 + d2/d1) - O2/d1 does not cancel when |zbar| >> sigma_z
// and P2 stays small when later tiles bring dominant keys with a different z (outlier tokens). Causal (end-aligned), windows, start/used per batch, GQA (head h
// reads kv head h / G). Saves out, vbar (input type) and fp32 lse, m (natural units),
// d1 (= omega), zbar for the backward. Not here: the backward, LLA, WGMMA/TMA.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/device_common.cuh"
#include "kernels/forward_step.cuh"
#include "kernels/capabilities.hpp"
#include "kernels/kernels_internal.hpp"

namespace plx::cuda::detail {

template <int D, bool PLX> struct FwdCfg {
  static constexpr int BM = 64, NT = 128;
  static constexpr int BN = (PLX && D == 128) ? 32 : 64;  // keeps S, Z, O1, O2 in registers
  static constexpr int RS = D + 8;                        // smem row stride: ldmatrix conflict-free
  static constexpr int q_elems = BM * RS * (PLX ? 2 : 1);
  static constexpr int kv_elems = 2 /*K,V*/ * 2 /*stages*/ * BN * RS;
  static constexpr int bytes = 2 * (q_elems + kv_elems);
};

template <class T, int D, bool PLX>
__global__ void __launch_bounds__(128) parallax_forward_kernel(const AttnParams p) {
  using C = FwdCfg<D, PLX>;
  constexpr int BM = C::BM, BN = C::BN, RS = C::RS, NT = C::NT, CH = D / 8;
  constexpr int NTS = BN / 8;   // n-tiles of S per warp
  constexpr int NTO = D / 8;    // n-tiles of O per warp (Dv = D)
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Qs = reinterpret_cast<T*>(smem_raw);  // [BM][RS]
  T* Rs = Qs + BM * RS;                    // [BM][RS] (PLX)
  T* Ks = Qs + BM * RS * (PLX ? 2 : 1);    // [2][BN][RS]
  T* Vs = Ks + 2 * BN * RS;                // [2][BN][RS]

  const int mt = gridDim.x - 1 - blockIdx.x;  // longest causal tiles first
  const int hq = blockIdx.y, b = blockIdx.z;
  const int hk = hq / (p.Hq / p.Hkv);
  const int m0 = mt * BM;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int last_row = min(m0 + BM, p.Lq) - 1;
  int lo_first, hi_first, lo_last, hi_last;
  raw_range(p, b, m0, lo_first, hi_first);
  raw_range(p, b, last_row, lo_last, hi_last);
  const int kv_lo = lo_first, kv_hi = hi_last;  // union of the block's rows
  const int ntiles = kv_hi > kv_lo ? (kv_hi - kv_lo + BN - 1) / BN : 0;

  // ---- Q, R tile (zero rows past Lq) ----
  {
    const T* qb = static_cast<const T*>(p.q) + b * p.q_batch_stride + hq * p.q_head_stride;
    const T* rb = PLX ? static_cast<const T*>(p.r) + b * p.r_batch_stride + hq * p.r_head_stride : nullptr;
    for (int idx = tid; idx < BM * CH; idx += NT) {
      const int row = idx / CH, c = idx % CH;
      const bool ok = m0 + row < p.Lq;
      const long long i = ok ? m0 + row : 0;
      cp_async16(Qs + row * RS + c * 8, qb + i * p.q_row_stride + c * 8, ok);
      if (PLX) cp_async16(Rs + row * RS + c * 8, rb + i * p.r_row_stride + c * 8, ok);
    }
  }
  const T* kbase = static_cast<const T*>(p.k) + b * p.k_batch_stride + hk * p.k_head_stride;
  const T* vbase = static_cast<const T*>(p.v) + b * p.v_batch_stride + hk * p.v_head_stride;
  auto load_tile = [&](int t, int buf) {
    cp_async_kv_tile<BN, CH, RS, NT>(Ks + buf * BN * RS, Vs + buf * BN * RS, kbase, vbase, p.k_row_stride,
                                     p.v_row_stride, kv_lo + t * BN, kv_hi, kv_lo, tid);
  };
  if (ntiles > 0) load_tile(0, 0);
  cp_async_commit();

  // Per-thread rows: r0 = 16*warp + lane/4 and r0 + 8 (accumulator layout of m16n8).
  const int r0 = 16 * warp + (lane >> 2);
  int rlo[2], rhi[2];
  thread_row_ranges(p, b, m0 + r0, rlo, rhi);
  const float qscale = p.scale * kLog2e;
  float o1[NTO][4], o2[PLX ? NTO : 1][4];
  zero_accumulators<NTO, PLX>(o1, o2);
  RowState st;

  const unsigned qs_addr = static_cast<unsigned>(__cvta_generic_to_shared(Qs));
  const unsigned rs_addr = static_cast<unsigned>(__cvta_generic_to_shared(Rs));
  const unsigned ks_addr = static_cast<unsigned>(__cvta_generic_to_shared(Ks));
  const unsigned vs_addr = static_cast<unsigned>(__cvta_generic_to_shared(Vs));
  // ldmatrix lane addresses (bytes): A rows 16w + lane%16, col (lane/16)*8;
  // B (K, non-trans) key (lane/16)*8 + lane%8, col ((lane/8)%2)*8;
  // B (V, trans) key ((lane/8)%2)*8 + lane%8, col (lane/16)*8.
  const unsigned a_off = ((16 * warp + (lane & 15)) * RS + (lane >> 4) * 8) * 2;
  const unsigned bk_off = (((lane >> 4) * 8 + (lane & 7)) * RS + ((lane >> 3) & 1) * 8) * 2;
  const unsigned bv_off = ((((lane >> 3) & 1) * 8 + (lane & 7)) * RS + (lane >> 4) * 8) * 2;

  for (int t = 0; t < ntiles; ++t) {
    const int buf = t & 1;
    if (t + 1 < ntiles) load_tile(t + 1, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const int k0 = kv_lo + t * BN;
    float s[NTS][4], z[PLX ? NTS : 1][4];
#pragma unroll
    for (int i = 0; i < NTS; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[i][e] = 0.f;
        if (PLX) z[i][e] = 0.f;
      }
    const unsigned kb = ks_addr + buf * BN * RS * 2;
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
      std::uint32_t aq[4], ar[4];
      ldsm_x4(qs_addr + a_off + ks * 32, aq[0], aq[1], aq[2], aq[3]);
      if (PLX) ldsm_x4(rs_addr + a_off + ks * 32, ar[0], ar[1], ar[2], ar[3]);
#pragma unroll
      for (int np = 0; np < BN / 16; ++np) {
        std::uint32_t b0, b1, b2, b3;
        ldsm_x4(kb + bk_off + (np * 16 * RS + ks * 16) * 2, b0, b1, b2, b3);
        mma16816<T>(s[2 * np], aq, b0, b1);
        mma16816<T>(s[2 * np + 1], aq, b2, b3);
        if (PLX) {
          mma16816<T>(z[2 * np], ar, b0, b1);
          mma16816<T>(z[2 * np + 1], ar, b2, b3);
        }
      }
    }
    const bool full = k0 >= lo_last && k0 + BN <= hi_first;  // every row allows every key of the tile
    online_step<NTS, NTO, PLX>(s, z, o1, o2, st, k0 + (lane & 3) * 2, full, rlo, rhi, qscale);
    // ---- O1 += P1 V, O2 += P2 V ----
    const unsigned vb = vs_addr + buf * BN * RS * 2;
#pragma unroll
    for (int kt = 0; kt < BN / 16; ++kt) {
      std::uint32_t ap[4], az[4];
      pack_a<T>(s, kt, ap);
      if constexpr (PLX) pack_a<T>(z, kt, az);
#pragma unroll
      for (int np = 0; np < D / 16; ++np) {
        std::uint32_t b0, b1, b2, b3;
        ldsm_x4_t(vb + bv_off + (kt * 16 * RS + np * 16) * 2, b0, b1, b2, b3);
        mma16816<T>(o1[2 * np], ap, b0, b1);
        mma16816<T>(o1[2 * np + 1], ap, b2, b3);
        if (PLX) {
          mma16816<T>(o2[2 * np], az, b0, b1);
          mma16816<T>(o2[2 * np + 1], az, b2, b3);
        }
      }
    }
    __syncthreads();
  }
  cp_async_wait<0>();

  store_rows<T, NTO, PLX>(p, b, hq, m0 + r0, lane, o1, o2, st);
}

template <class T, int D, bool PLX> cudaError_t forward_dispatch(const AttnParams& p, cudaStream_t st) {
  using C = FwdCfg<D, PLX>;
  auto kern = parallax_forward_kernel<T, D, PLX>;
  cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, C::bytes);
  if (e != cudaSuccess) return e;
  kern<<<dim3((p.Lq + C::BM - 1) / C::BM, p.Hq, p.B), C::NT, C::bytes, st>>>(p);
  return cudaGetLastError();
}

template <class T> cudaError_t forward_by_dim(const AttnParams& p, cudaStream_t st) {
  const bool plx = p.mech == Mechanism::Parallax;
  if (p.D == 64) return plx ? forward_dispatch<T, 64, true>(p, st) : forward_dispatch<T, 64, false>(p, st);
  return plx ? forward_dispatch<T, 128, true>(p, st) : forward_dispatch<T, 128, false>(p, st);
}

int launch_forward(const AttnParams& p, void* stream, bool tensor_maps) {
  const ForwardKernel k = p.forward_kernel != ForwardKernel::Auto ? p.forward_kernel : forward_kernel_auto(p.D);
  if (k == ForwardKernel::Wgmma) return launch_forward_wgmma(p, stream);  // parallax_forward_wgmma.cu
  if (k == ForwardKernel::Tma) {  // parallax_forward_tma.cu
    const int e = tensor_maps ? launch_forward_tma(p, stream) : kForwardNoTensorMaps;
    if (e != kForwardNoTensorMaps) return e;
    // No tensor maps, nothing launched: Auto takes the wgmma kernel (the same products and online
    // re-centring, with cp.async loads instead of TMA); an explicit request for Tma fails.
    return p.forward_kernel == ForwardKernel::Auto ? launch_forward_wgmma(p, stream) : int(cudaErrorNotSupported);
  }
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  return int(p.dtype == ElemType::BF16 ? forward_by_dim<__nv_bfloat16>(p, st) : forward_by_dim<__half>(p, st));
}

int forward_smem(int D, bool parallax) {
  if (D == 64) return parallax ? FwdCfg<64, true>::bytes : FwdCfg<64, false>::bytes;
  return parallax ? FwdCfg<128, true>::bytes : FwdCfg<128, false>::bytes;
}

}  // namespace plx::cuda::detail
