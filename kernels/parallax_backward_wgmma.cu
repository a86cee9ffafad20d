// kernels/parallax_backward_wgmma.cu — the wgmma backward: the two tile passes on Hopper wgmma (D = 128).
//
// Charter: the same deterministic algorithm as the mma_sync passes (parallax_backward.cu: the row preprocessing
// stays there; no atomics; the weights of kernels/backward_step.cuh, rounded to the input type
// before their products), with every product on warpgroup MMA (sm_90a). One warpgroup (128
// threads) per block, two blocks per SM; operand tiles in 128-byte-swizzled shared memory
// (kernels/wgmma.cuh), one layout serving as the K-major operand of one product and the
// MN-major (transposed) operand of another.
//   key-tile pass: a block owns 64 keys of one kv head. K and V stay in shared memory; query
//     tiles of 32 rows (softmax: 64; Q, dO, R and their lse2, t, b, zbar) stream through two
//     cp.async stages.
//     S^T = K Q^T, Z^T = K R^T, A^T = V dO^T (both operands in shared memory, N = 32 / 64), then
//     dV += SW^T dO, dK += GL^T Q + GU^T R (weights from registers, N = 128).
//   query-tile pass: a block owns 64 queries of one head. Q, dO, R stay in shared memory; key
//     tiles of 64 rows (softmax: 32; K, V) stream through two stages. S = Q K^T, Z = R K^T, A = dO V^T, then
//     dQ += GL K, dR += GU K.
// Registers bound the tile widths: the two 64 x 128 fp32 accumulators take 128 of 255 (a
// 64-query step of the Parallax key pass spills; 32 does not). Shared memory allows two blocks per SM.
// Not here: D = 64 (the mma_sync passes serve it), software pipelining across tiles, TMA.
#include <cuda_runtime.h>

#include "kernels/backward_launch.hpp"
#include "kernels/backward_step.cuh"
#include "kernels/device_common.cuh"
#include "kernels/wgmma.cuh"

namespace plx::cuda::detail {

namespace {

constexpr int kD = 128, kNT = 128;

}  // namespace

// ---------------------------------------------------------------------------------------------
// Key-tile pass (dk, dv).
template <bool PLX> struct KvCfg2 {
  static constexpr int BN = 64, BM = PLX ? 32 : 64;  // keys per block, queries per step (Parallax: registers)
  static constexpr int kv_bytes = BN * kD * 2, q_bytes = BM * kD * 2;
  static constexpr int NQ = PLX ? 3 : 2;  // Q, dO (, R) per stage
  static constexpr int stage_bytes = NQ * q_bytes;
  static constexpr int row_floats = 4 * BM;  // lse2, t, b, zbar per stage
  static constexpr int bytes = 1024 + 2 * kv_bytes + 2 * stage_bytes + 2 * row_floats * 4;
};

template <class T, bool PLX>
__global__ void __launch_bounds__(128, 2) bwd_dkdv_wgmma_kernel(const BwdParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = KvCfg2<PLX>;
  constexpr int BN = C::BN, BM = C::BM, NQT = BM / 8, NO = kD / 8;
  extern __shared__ unsigned char smem_raw[];
  const unsigned raw = static_cast<unsigned>(__cvta_generic_to_shared(smem_raw));
  const unsigned base = (raw + 1023u) & ~1023u;
  unsigned char* gbase = smem_raw + (base - raw);
  const unsigned ks = base, vs = ks + C::kv_bytes, st = vs + C::kv_bytes;
  const unsigned rf_s = st + 2 * C::stage_bytes;  // [2][4][BM] floats
  const float* rf_g = reinterpret_cast<const float*>(gbase + (rf_s - base));

  const int kt = blockIdx.x, hk = blockIdx.y, b = blockIdx.z;
  const int G = p.Hq / p.Hkv;
  const int k0 = kt * BN;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const long long nrows = (long long)p.B * p.Hq * p.Lq;
  const MaskB mk = mask_of(p, b);

  load_tile_sw<T, BN>(ks, static_cast<const T*>(p.k) + b * p.k_batch_stride + (long long)hk * p.k_head_stride,
                      p.k_row_stride, k0, p.Lkv, tid);
  load_tile_sw<T, BN>(vs, static_cast<const T*>(p.v) + b * p.v_batch_stride + (long long)hk * p.v_head_stride,
                      p.v_row_stride, k0, p.Lkv, tid);
  // Queries that can see a key of this tile.
  const QuerySpan span = queries_seeing(p, mk, k0, BN, BM);
  const int i_lo = span.i_lo, nqt = span.nqt;
  const int nsteps = G * nqt;

  // Step s = (query head hk G + s / nqt, query tile s % nqt), walked with counters: the two
  // run-time divisions per step cost ~40 instructions (Nsight Compute, 29 Nov).
  auto load_step = [&](int hh, int qt, int buf) {
    const int h = hk * G + hh, q0 = i_lo + qt * BM;
    const unsigned qs = st + buf * C::stage_bytes;
    load_tile_sw<T, BM>(qs, static_cast<const T*>(p.q) + b * p.q_batch_stride + (long long)h * p.q_head_stride,
                        p.q_row_stride, q0, p.Lq, tid);
    load_tile_sw<T, BM>(qs + C::q_bytes,
                        static_cast<const T*>(p.dout) + b * p.do_batch_stride + (long long)h * p.do_head_stride,
                        p.do_row_stride, q0, p.Lq, tid);
    if (PLX)
      load_tile_sw<T, BM>(qs + 2 * C::q_bytes,
                          static_cast<const T*>(p.r) + b * p.r_batch_stride + (long long)h * p.r_head_stride,
                          p.r_row_stride, q0, p.Lq, tid);
    // lse2, t, b, zbar of the step's rows (rows past Lq zero-filled and masked below).
    const unsigned rf = rf_s + buf * C::row_floats * 4;
    for (int idx = tid; idx < 4 * BM; idx += kNT) {
      const int arr = idx / BM, row = idx % BM, i = q0 + row;
      const bool ok = i < p.Lq && (PLX || arr < 3);
      const long long ri = ((long long)b * p.Hq + h) * p.Lq + (i < p.Lq ? i : 0);
      const float* src = arr < 3 ? p.workspace + arr * nrows + ri : (PLX ? p.zbar + ri : p.workspace);
      cp_async4(gbase + (rf - base) + idx * 4, src, ok);
    }
  };
  if (nsteps > 0) load_step(0, 0, 0);
  cp_async_commit();

  float dk[NO][4], dv[NO][4];
#pragma unroll
  for (int n = 0; n < NO; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[n][e] = 0.f, dv[n][e] = 0.f;
  const float qscale = p.scale * kLog2e;
  const int key_r0 = k0 + 16 * warp + (lane >> 2);  // this thread's keys: key_r0, key_r0 + 8

  // Step s issues S^T, A^T, Z^T and waits for them, which also retires the dV, dK products of
  // step s - 1: those run on the tensor cores while every warp crosses the barrier and issues
  // step s (before, a wait right after them left the tensor cores idle until the next step's
  // products; Nsight Compute put 17 % of the warp samples on that wait). Their A operands stay
  // in registers until then, and step s + 1 is prefetched only after the wait, into the buffer
  // they read.
  std::uint32_t asw[BM / 16][4], agl[BM / 16][4], agu[PLX ? BM / 16 : 1][4];
  int hh = 0, qt = 0;  // this step's head offset and query tile
  for (int s = 0; s < nsteps; ++s) {
    const int buf = s & 1;
    const bool wrap = qt + 1 == nqt;
    const int nh = wrap ? hh + 1 : hh, nq = wrap ? 0 : qt + 1;  // step s + 1
    cp_async_wait<0>();  // step s's tiles: the only group in flight
    fence_proxy_async();
    __syncthreads();
    const int q0 = i_lo + qt * BM;
    hh = nh, qt = nq;
    const unsigned qs = st + buf * C::stage_bytes, ds = qs + C::q_bytes, rs = ds + C::q_bytes;
    const float* rf = rf_g + buf * C::row_floats;

    float sT[NQT][4], zT[PLX ? NQT : 1][4], aT[NQT][4];
    wgmma_fence();
    wgmma_ss_k128<T, BM>(&sT[0][0], ks, BN, qs, BM);
    wgmma_ss_k128<T, BM>(&aT[0][0], vs, BN, ds, BM);
    if constexpr (PLX) wgmma_ss_k128<T, BM>(&zT[0][0], ks, BN, rs, BM);
    wgmma_commit();
    wgmma_wait<0>();
    fence_regs<NQT * 4>(&sT[0][0]);
    fence_regs<NQT * 4>(&aT[0][0]);
    if constexpr (PLX) fence_regs<NQT * 4>(&zT[0][0]);
    fence_regs<NO * 4>(&dv[0][0]);
    fence_regs<NO * 4>(&dk[0][0]);
    fence_regs<BM / 4>(&asw[0][0]);
    fence_regs<BM / 4>(&agl[0][0]);
    if constexpr (PLX) fence_regs<BM / 4>(&agu[0][0]);
    __syncthreads();  // every warp's dV, dK of step s - 1 are done with buffer buf ^ 1
    if (s + 1 < nsteps) load_step(nh, nq, buf ^ 1);
    cp_async_commit();

    // ---- elementwise: sT <- sw, aT <- gl, zT <- gu (thread rows = keys, columns = queries) ----
    key_step_weights<PLX, NQT, BM>(sT, zT, aT, rf, p, mk, q0, k0, BN, key_r0, lane, qscale);
    // ---- dv += SW^T dO, dk += GL^T Q (+ GU^T R): the query tiles read MN-major ----
    pack_tile<T, BM>(sT, asw);
    pack_tile<T, BM>(aT, agl);
    if constexpr (PLX) pack_tile<T, BM>(zT, agu);
    fence_regs<NO * 4>(&dv[0][0]);
    fence_regs<NO * 4>(&dk[0][0]);
    wgmma_fence();
    wgmma_rs_n128<T, BM>(&dv[0][0], asw, ds);
    wgmma_rs_n128<T, BM>(&dk[0][0], agl, qs);
    if constexpr (PLX) wgmma_rs_n128<T, BM>(&dk[0][0], agu, rs);
    wgmma_commit();
  }
  wgmma_wait<0>();
  fence_regs<NO * 4>(&dv[0][0]);
  fence_regs<NO * 4>(&dk[0][0]);
  fence_regs<BM / 4>(&asw[0][0]);
  fence_regs<BM / 4>(&agl[0][0]);
  if constexpr (PLX) fence_regs<BM / 4>(&agu[0][0]);
  cp_async_wait<0>();

  // ---- epilogue: every key row < Lkv of the tile is written (zeros where no query sees it) ----
  store_dkdv_rows<T, NO>(p, b, hk, key_r0, lane, dk, dv);
#endif
}

// ---------------------------------------------------------------------------------------------
// Query-tile pass (dq, dr).
template <bool PLX> struct QCfg2 {
  static constexpr int BM = 64, BN = PLX ? 64 : 32;  // queries per block, keys per tile
  static constexpr int q_bytes = BM * kD * 2, kv_bytes = BN * kD * 2;
  static constexpr int bytes = 1024 + (PLX ? 3 : 2) * q_bytes + 4 * kv_bytes;  // Q, dO (, R); K, V x 2 stages
};

template <class T, bool PLX>
__global__ void __launch_bounds__(128, 2) bwd_dqdr_wgmma_kernel(const BwdParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = QCfg2<PLX>;
  constexpr int BM = C::BM, BN = C::BN, NTS = BN / 8, NO = kD / 8;
  extern __shared__ unsigned char smem_raw[];
  const unsigned raw = static_cast<unsigned>(__cvta_generic_to_shared(smem_raw));
  const unsigned base = (raw + 1023u) & ~1023u;
  const unsigned qs = base, ds = qs + C::q_bytes, rs = ds + C::q_bytes;
  const unsigned ks = base + (PLX ? 3 : 2) * C::q_bytes, vs = ks + 2 * C::kv_bytes;

  const int mt = gridDim.x - 1 - blockIdx.x;  // longest causal tiles first
  const int hq = blockIdx.y, b = blockIdx.z;
  const int hk = hq / (p.Hq / p.Hkv);
  const int m0 = mt * BM;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const long long nrows = (long long)p.B * p.Hq * p.Lq;
  const MaskB mk = mask_of(p, b);
  int lo_first, hi_first, lo_last, hi_last;
  bwd_range(p, mk, m0, lo_first, hi_first);
  bwd_range(p, mk, min(m0 + BM, p.Lq) - 1, lo_last, hi_last);
  const int kv_lo = lo_first, kv_hi = hi_last;
  const int ntiles = kv_hi > kv_lo ? (kv_hi - kv_lo + BN - 1) / BN : 0;

  load_tile_sw<T, BM>(qs, static_cast<const T*>(p.q) + b * p.q_batch_stride + (long long)hq * p.q_head_stride,
                      p.q_row_stride, m0, p.Lq, tid);
  load_tile_sw<T, BM>(ds,
                      static_cast<const T*>(p.dout) + b * p.do_batch_stride + (long long)hq * p.do_head_stride,
                      p.do_row_stride, m0, p.Lq, tid);
  if (PLX)
    load_tile_sw<T, BM>(rs, static_cast<const T*>(p.r) + b * p.r_batch_stride + (long long)hq * p.r_head_stride,
                        p.r_row_stride, m0, p.Lq, tid);
  const T* kbase = static_cast<const T*>(p.k) + b * p.k_batch_stride + (long long)hk * p.k_head_stride;
  const T* vbase = static_cast<const T*>(p.v) + b * p.v_batch_stride + (long long)hk * p.v_head_stride;
  auto load_kv = [&](int t) {  // keys [kv_lo + t BN, +BN) (past kv_hi zero-filled) into buffer t & 1
    const unsigned o = (t & 1) * C::kv_bytes;
    load_tile_sw<T, BN>(ks + o, kbase, p.k_row_stride, kv_lo + t * BN, kv_hi, tid);
    load_tile_sw<T, BN>(vs + o, vbase, p.v_row_stride, kv_lo + t * BN, kv_hi, tid);
  };
  if (ntiles > 0) load_kv(0);
  cp_async_commit();

  const int r0 = 16 * warp + (lane >> 2);  // the thread's rows r0, r0 + 8 of the block
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

  for (int t = 0; t < ntiles; ++t) {
    if (t + 1 < ntiles) load_kv(t + 1);  // its buffer was last read by tile t - 1
    cp_async_commit();
    cp_async_wait<1>();
    fence_proxy_async();
    __syncthreads();
    const int k0 = kv_lo + t * BN;
    const unsigned kb = ks + (t & 1) * C::kv_bytes, vb = vs + (t & 1) * C::kv_bytes;
    float s[NTS][4], z[PLX ? NTS : 1][4], a[NTS][4];
    wgmma_fence();
    wgmma_ss_k128<T, BN>(&s[0][0], qs, BM, kb, BN);
    wgmma_ss_k128<T, BN>(&a[0][0], ds, BM, vb, BN);
    if constexpr (PLX) wgmma_ss_k128<T, BN>(&z[0][0], rs, BM, kb, BN);
    wgmma_commit();
    wgmma_wait<0>();
    fence_regs<NTS * 4>(&s[0][0]);
    fence_regs<NTS * 4>(&a[0][0]);
    if constexpr (PLX) fence_regs<NTS * 4>(&z[0][0]);
    // ---- elementwise: s <- gl, z <- gu ----
    const bool full = k0 >= lo_last && k0 + BN <= hi_first;
    query_tile_weights<PLX, NTS>(s, z, a, qrow, k0, full, lane, qscale, p.scale);
    // ---- dq += GL K, dr += GU K: the key tile read MN-major ----
    std::uint32_t ag[BN / 16][4], au[PLX ? BN / 16 : 1][4];
    pack_tile<T, BN>(s, ag);
    if constexpr (PLX) pack_tile<T, BN>(z, au);
#pragma unroll
    for (int kt = 0; kt < BN / 16; ++kt) {
      add_packed_row_sums<T>(ag[kt], gsum);
      if constexpr (PLX) add_packed_row_sums<T>(au[kt], usum);
    }
    fence_regs<NO * 4>(&dq[0][0]);
    if constexpr (PLX) fence_regs<NO * 4>(&dr[0][0]);
    wgmma_fence();
    wgmma_rs_n128<T, BN>(&dq[0][0], ag, kb);
    if constexpr (PLX) wgmma_rs_n128<T, BN>(&dr[0][0], au, kb);
    wgmma_commit();
    wgmma_wait<0>();
    fence_regs<NO * 4>(&dq[0][0]);
    if constexpr (PLX) fence_regs<NO * 4>(&dr[0][0]);
    __syncthreads();  // every warp is done with buffer t & 1 before tile t + 2 overwrites it
  }
  cp_async_wait<0>();

  store_dqdr_rows<T, NO, PLX>(p, b, hq, hk, m0 + r0, lane, dq, dr, gsum, usum);
#endif
}

// ---------------------------------------------------------------------------------------------
template <class T, bool PLX> cudaError_t backward_wgmma_pass(const BwdParams& p, cudaStream_t st, int which) {
  cudaError_t e = cudaSuccess;
  if (which == 2) {
    using C = KvCfg2<PLX>;
    auto kern = bwd_dkdv_wgmma_kernel<T, PLX>;
    e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, C::bytes);
    if (e != cudaSuccess) return e;
    kern<<<dim3((p.Lkv + C::BN - 1) / C::BN, p.Hkv, p.B), kNT, C::bytes, st>>>(p);
  } else {
    using C = QCfg2<PLX>;
    auto kern = bwd_dqdr_wgmma_kernel<T, PLX>;
    e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, C::bytes);
    if (e != cudaSuccess) return e;
    kern<<<dim3((p.Lq + C::BM - 1) / C::BM, p.Hq, p.B), kNT, C::bytes, st>>>(p);
  }
  return cudaGetLastError();
}

int launch_backward_wgmma_pass(const BwdParams& p, void* stream, int which) {
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  const bool plx = p.mech == Mechanism::Parallax;
  if (p.dtype == ElemType::BF16)
    return int(plx ? backward_wgmma_pass<__nv_bfloat16, true>(p, st, which) : backward_wgmma_pass<__nv_bfloat16, false>(p, st, which));
  return int(plx ? backward_wgmma_pass<__half, true>(p, st, which) : backward_wgmma_pass<__half, false>(p, st, which));
}

}  // namespace plx::cuda::detail
