// kernels/lla.cu — Local Linear Attention (docs/math.md §3) on sm_90: split-KV decode and matrix-free CG.
//
// Charter: bf16/fp16 inputs, fp32 accumulation and fp32 solver state, D = Dv in {64, 128}.
// Output always in the covariance form (kernels/lla_api.hpp):
//   out = a vbar - b sum_j p_j (r.(k_j - kbar)) (v_j - vbar)
// (r = theta, a = b = 1 for the key-mean anchor; r = rho, a = Delta/d, b = omega/d for the query
// anchor), centred in both k and v, so it has neither the 1 - rho.e_j cancellation (docs/math.md §7.2)
// nor the O1 (1 + c) - O2 one (docs/math.md §7.1).
// Decode (Op::Decode, Lq = 1), docs/math.md §6.4, two passes over K (V in the second), five launches:
//   1 moments  (split, kv head, b): per chunk and per head of the GQA group (K read once) the
//              pivot m_c, omega_c, kbar_c and S_c = sum_j w_j (k_j - kbar_c)(k_j - kbar_c)^T, built
//              tile by tile (64 keys, two-pass centred inside a tile) and merged by the Chan rule;
//   2 combine  (slice, hq, b): exact combine of the chunks (pivots rescaled by exp2(m_c - M),
//              parallel-axis rule for S) into C, 16 blocks per row;
//   3 solve    (hq, b): C + lambda I solved by fp32 Cholesky (Direct; matrix in registers, forward
//              substitution fused) or dense CG/PCG on the formed matrix (same iterates as the
//              matrix-free CG in exact arithmetic);
//   4 output   (split, kv head, b): Parallax-like pass with the global pivot and r, centred keys;
//   5 final    (hq, b, only when split): plain sum of the chunk partials (same pivot and centring).
// Forward (Op::Forward, any Lq): one 128-thread block per query row, matrix-free CG of docs/math.md §3.7
// (matvec = weighted sums over the row's keys, Sigma never formed), K/V re-read from L2 per
// matvec and per query head (correctness first, not tuned).
// Not here: backward, block-diagonal solves, tensor cores.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/device_common.cuh"
#include "kernels/lla_api.hpp"

namespace plx::cuda::detail {

namespace {

constexpr int kTK = 64;          // keys per tile (decode passes)
constexpr int kGMax = 16;        // largest GQA group of the decode

using LRange = KeyRange;  // kernels/device_common.cuh
__device__ __forceinline__ LRange lla_range(const LlaParams& p, int b, int i) { return key_range(p, b, i); }
__device__ __forceinline__ float row_lambda(const LlaParams& p, int b, int h, int i) {
  return p.lambda ? p.lambda[((long long)b * p.Hq + h) * p.Lq + i] : p.lambda_scalar;
}
__device__ __forceinline__ long long row_index(const LlaParams& p, int b, int h, int i) {
  return ((long long)b * p.Hq + h) * p.Lq + i;
}
template <class T> __device__ __forceinline__ float ld(const void* base, long long off) {
  return Pack<T>::to_float(static_cast<const T*>(base)[off]);
}

// Block-wide sum of one float (all threads get the result). `red` holds >= 32 floats.
template <int NT> __device__ float block_sum(float x, float* red) {
  x = warp_sum(x);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) red[warp] = x;
  __syncthreads();
  float s = 0.f;
#pragma unroll
  for (int w = 0; w < NT / 32; ++w) s += red[w];
  return s;
}
template <int NT> __device__ float block_max(float x, float* red) {
  x = warp_max(x);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) red[warp] = x;
  __syncthreads();
  float s = -INFINITY;
#pragma unroll
  for (int w = 0; w < NT / 32; ++w) s = fmaxf(s, red[w]);
  return s;
}

// Query-anchor denominator d = Delta + delta_eps * sgn(Delta) (docs/math.md §3.2).
__device__ __forceinline__ float shifted_denominator(const LlaParams& p, float Delta) {
  const float s = Delta > 0.f ? 1.f : Delta < 0.f ? -1.f : (p.sgn0_zero ? 0.f : 1.f);
  return Delta + p.delta_eps * s;
}

// Workspace records (kernels/lla_params.hpp).
__device__ __forceinline__ float* rec1(const LlaParams& p, int b, int hq, int split) {
  return p.workspace + (((long long)b * p.Hq + hq) * p.num_splits + split) * lla_rec1_floats(p.D);
}
__device__ __forceinline__ float* rec_solve(const LlaParams& p, int b, int hq) {
  const long long rows = (long long)p.B * p.Hq;
  return p.workspace + rows * p.num_splits * lla_rec1_floats(p.D) + ((long long)b * p.Hq + hq) * lla_rec_solve_floats(p.D);
}
__device__ __forceinline__ float* rec2(const LlaParams& p, int b, int hq, int split) {
  const long long rows = (long long)p.B * p.Hq;
  return p.workspace + rows * (p.num_splits * lla_rec1_floats(p.D) + lla_rec_solve_floats(p.D)) +
         (((long long)b * p.Hq + hq) * p.num_splits + split) * lla_rec2_floats(p.Dv);
}
// Solve-record layout.
enum : int { kSolM = 0, kSolOmega = 1, kSolA = 2, kSolB = 3, kSolEmpty = 4, kSolR = 8 };  // then r[D], kbar[D], C[D*D]

// Chunk [c_lo, c_hi) of split `split` of the row's range: whole tiles, the same in every pass.
__device__ __forceinline__ void chunk_of(const LRange& R, int S, int split, int& c_lo, int& c_hi) {
  const int n = R.hi - R.lo;
  const int cs = ((n + S - 1) / S + kTK - 1) / kTK * kTK;
  c_lo = min(R.hi, R.lo + split * cs);
  c_hi = min(R.hi, c_lo + cs);
}

// ===================================================================================
// Decode pass 1: per-chunk moments. 256 threads; thread (ty, tx) of a 16 x 16 grid owns the
// TB x TB block (TB = D/16) of S at rows ty*TB.., columns tx*TB.. .
// ===================================================================================
constexpr int kMomThreads = 256;
template <int D> struct MomSmem {
  static constexpr int RS = D + 4;  // fp32 row stride (16-byte aligned rows)
  static constexpr int floats = 2 * kTK * RS /*Kf, U*/ + kGMax * D /*q*/ + kGMax * kTK /*scores*/ +
                                kGMax * D /*kbar state*/ + 2 * kGMax /*m, omega state*/ + kTK /*w*/ +
                                2 * D /*tile kbar, diff*/ + 32 /*red*/ + 8 /*scalars*/;
  static constexpr int bytes = 4 * floats;
};

template <class T, int D>
__global__ void __launch_bounds__(kMomThreads) lla_decode_moments(const LlaParams p) {
  using SM = MomSmem<D>;
  constexpr int RS = SM::RS, NT = kMomThreads, TB = D / 16;
  extern __shared__ __align__(16) float smf[];
  float* Kf = smf;                    // [kTK][RS]
  float* U = Kf + kTK * RS;           // [kTK][RS]  sqrt(w_j) (k_j - kbar_t)
  float* qs = U + kTK * RS;           // [G][D]     q * tau * log2(e)
  float* sc = qs + kGMax * D;         // [G][kTK]   base-2 logits (-inf: outside the chunk)
  float* st_kbar = sc + kGMax * kTK;  // [G][D]
  float* st_m = st_kbar + kGMax * D;  // [G]
  float* st_w = st_m + kGMax;         // [G]
  float* wt = st_w + kGMax;           // [kTK]
  float* kbt = wt + kTK;              // [D]
  float* dv = kbt + D;                // [D]
  float* red = dv + D;                // [32]
  float* scal = red + 32;             // [8]

  const int split = blockIdx.x, hk = blockIdx.y, b = blockIdx.z;
  const int G = p.Hq / p.Hkv, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int ty = tid / 16, tx = tid % 16;
  const LRange R = lla_range(p, b, 0);
  int c_lo, c_hi;
  chunk_of(R, p.num_splits, split, c_lo, c_hi);
  const float qscale = p.scale * kLog2e;
  for (int idx = tid; idx < G * D; idx += NT) {
    const int g = idx / D, d = idx % D;
    qs[idx] = ld<T>(p.q, (long long)b * p.q_batch_stride + (long long)(hk * G + g) * p.q_head_stride + d) * qscale;
    st_kbar[idx] = 0.f;
  }
  if (tid < G) st_m[tid] = -INFINITY, st_w[tid] = 0.f;
  float acc[TB][TB];
#pragma unroll
  for (int i = 0; i < TB; ++i)
#pragma unroll
    for (int j = 0; j < TB; ++j) acc[i][j] = 0.f;
  const T* kbase = static_cast<const T*>(p.k) + (long long)b * p.k_batch_stride + (long long)hk * p.k_head_stride;

  for (int k0 = c_lo; k0 < c_hi; k0 += kTK) {
    __syncthreads();  // previous tile fully consumed
    for (int idx = tid; idx < kTK * (D / 8); idx += NT) {  // 16-byte loads, converted to fp32
      const int row = idx / (D / 8), c = idx % (D / 8), key = k0 + row;
      float f[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      if (key < c_hi) {
        const uint4 raw = *reinterpret_cast<const uint4*>(kbase + (long long)key * p.k_row_stride + c * 8);
        const std::uint32_t w4[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 t = Pack<T>::to_float2(w4[e]);
          f[2 * e] = t.x, f[2 * e + 1] = t.y;
        }
      }
#pragma unroll
      for (int e = 0; e < 8; ++e) Kf[row * RS + c * 8 + e] = f[e];
    }
    __syncthreads();
    for (int idx = warp; idx < G * kTK; idx += NT / 32) {  // logits: one warp per (head, key)
      const int g = idx / kTK, j = idx % kTK;
      float s = 0.f;
      for (int d = lane; d < D; d += 32) s += qs[g * D + d] * Kf[j * RS + d];
      s = warp_sum(s);
      if (lane == 0) sc[idx] = k0 + j < c_hi ? s : -INFINITY;
    }
    for (int g = 0; g < G; ++g) {
      __syncthreads();  // scores ready / previous head's state written
      if (warp == 0) {  // tile pivot merged with the running one, weights, tile omega
        const float s0 = sc[g * kTK + lane], s1 = sc[g * kTK + lane + 32];
        const float mt = warp_max(fmaxf(s0, s1));
        const float mn = fmaxf(st_m[g], mt);
        const float w0 = s0 == -INFINITY ? 0.f : exp2f(s0 - mn), w1 = s1 == -INFINITY ? 0.f : exp2f(s1 - mn);
        wt[lane] = w0, wt[lane + 32] = w1;
        const float om = warp_sum(w0 + w1);
        if (lane == 0) scal[0] = mn, scal[1] = om;
      }
      __syncthreads();
      const float mn = scal[0], om_t = scal[1];
      if (!(om_t > 0.f)) continue;  // uniform: every weight of this tile underflowed
      if (tid < D) {
        float s = 0.f;
        for (int j = 0; j < kTK; ++j) s += wt[j] * Kf[j * RS + tid];
        kbt[tid] = s / om_t;
        dv[tid] = kbt[tid] - st_kbar[g * D + tid];
      }
      __syncthreads();
      for (int idx = tid; idx < kTK * D; idx += NT) {
        const int j = idx / D, d = idx % D;
        U[j * RS + d] = sqrtf(wt[j]) * (Kf[j * RS + d] - kbt[d]);
      }
      // Chan merge of (m, omega, kbar, S) with the tile: S = a S + A Bt/(A+Bt) dv dv^T + sum U U^T.
      const float m_old = st_m[g], w_old = st_w[g];
      const float a = m_old == -INFINITY ? 0.f : exp2f(m_old - mn);
      const float A = a * w_old, tot = A + om_t, cross = A * om_t / tot;
      __syncthreads();  // U, dv complete
      if (G > 1) {
        float* S = rec1(p, b, hk * G + g, split) + 4 + D;
        if (A > 0.f) {
#pragma unroll
          for (int i = 0; i < TB; ++i)
#pragma unroll
            for (int j = 0; j < TB; j += 4) {
              const float4 t = *reinterpret_cast<const float4*>(S + (ty * TB + i) * D + tx * TB + j);
              acc[i][j] = t.x, acc[i][j + 1] = t.y, acc[i][j + 2] = t.z, acc[i][j + 3] = t.w;
            }
        } else {
#pragma unroll
          for (int i = 0; i < TB; ++i)
#pragma unroll
            for (int j = 0; j < TB; ++j) acc[i][j] = 0.f;
        }
      }
      {
        float dr[TB], dc[TB];
#pragma unroll
        for (int i = 0; i < TB; ++i) dr[i] = dv[ty * TB + i], dc[i] = dv[tx * TB + i];
#pragma unroll
        for (int i = 0; i < TB; ++i)
#pragma unroll
          for (int j = 0; j < TB; ++j) acc[i][j] = A > 0.f ? a * acc[i][j] + cross * dr[i] * dc[j] : 0.f;
      }
      for (int j = 0; j < kTK; ++j) {
        float ur[TB], uc[TB];
#pragma unroll
        for (int i = 0; i < TB; i += 4) {
          const float4 r4 = *reinterpret_cast<const float4*>(U + j * RS + ty * TB + i);
          const float4 c4 = *reinterpret_cast<const float4*>(U + j * RS + tx * TB + i);
          ur[i] = r4.x, ur[i + 1] = r4.y, ur[i + 2] = r4.z, ur[i + 3] = r4.w;
          uc[i] = c4.x, uc[i + 1] = c4.y, uc[i + 2] = c4.z, uc[i + 3] = c4.w;
        }
#pragma unroll
        for (int i = 0; i < TB; ++i)
#pragma unroll
          for (int l = 0; l < TB; ++l) acc[i][l] = fmaf(ur[i], uc[l], acc[i][l]);
      }
      if (G > 1) {
        float* S = rec1(p, b, hk * G + g, split) + 4 + D;
#pragma unroll
        for (int i = 0; i < TB; ++i)
#pragma unroll
          for (int j = 0; j < TB; j += 4)
            *reinterpret_cast<float4*>(S + (ty * TB + i) * D + tx * TB + j) =
                make_float4(acc[i][j], acc[i][j + 1], acc[i][j + 2], acc[i][j + 3]);
      }
      __syncthreads();  // everyone has read st_m / st_w / dv
      if (tid < D) st_kbar[g * D + tid] += (om_t / tot) * dv[tid];
      if (tid == 0) st_m[g] = mn, st_w[g] = tot;
    }
  }
  __syncthreads();
  for (int g = 0; g < G; ++g) {
    float* r = rec1(p, b, hk * G + g, split);
    if (tid == 0) r[0] = st_m[g], r[1] = st_w[g], r[2] = 0.f, r[3] = 0.f;
    if (tid < D) r[4 + tid] = st_kbar[g * D + tid];
  }
  if (G == 1) {
    float* S = rec1(p, b, hk, split) + 4 + D;
#pragma unroll
    for (int i = 0; i < TB; ++i)
#pragma unroll
      for (int j = 0; j < TB; j += 4)
        *reinterpret_cast<float4*>(S + (ty * TB + i) * D + tx * TB + j) =
            make_float4(acc[i][j], acc[i][j + 1], acc[i][j + 2], acc[i][j + 3]);
  }
}

// ===================================================================================
// Decode pass 1b: exact combine of the chunks (docs/math.md §6.2 pivots, parallel-axis rule for S),
// grid (kCombParts, hq, b): block `part` sums one slice of the D*D entries over all splits.
//   M = max_c m_c, a_c = exp2(m_c - M), omega = sum a_c omega_c, kbar = sum a_c omega_c kbar_c / omega,
//   C = sum_c [a_c S_c + a_c omega_c (kbar_c - kbar)(kbar_c - kbar)^T] / omega.
// Part 0 also stores M, omega and kbar in the solve record.
// ===================================================================================
constexpr int kCombParts = 16, kCombThreads = 256, kMaxSplits = 1024;
template <int D> struct CombSmem {
  static constexpr int floats = 2 * kMaxSplits + 2 * D + 32;
  static constexpr int bytes = 4 * floats;
};

template <class T, int D>
__global__ void __launch_bounds__(kCombThreads) lla_decode_combine(const LlaParams p) {
  constexpr int NT = kCombThreads, NE = D * D / (kCombParts * NT);  // entries per thread
  extern __shared__ __align__(16) float smf[];
  float* cw = smf;               // [num_splits] a_c omega_c
  float* ce = cw + kMaxSplits;   // [num_splits] a_c
  float* kbar = ce + kMaxSplits; // [D]
  float* dcv = kbar + D;         // [D] kbar_c - kbar of the split being merged
  float* red = dcv + D;          // [32]
  const int part = blockIdx.x, hq = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
  const int S_ = p.num_splits;
  const LRange R = lla_range(p, b, 0);
  if (R.hi <= R.lo) return;  // empty row: the solve kernel writes its record
  float M = -INFINITY;
  for (int c = tid; c < S_; c += NT) {
    const float* r = rec1(p, b, hq, c);
    M = fmaxf(M, r[1] > 0.f ? r[0] : -INFINITY);  // never -inf - -inf
  }
  M = block_max<NT>(M, red);
  for (int c = tid; c < S_; c += NT) {
    const float* r = rec1(p, b, hq, c);
    const float a = r[1] > 0.f ? exp2f(r[0] - M) : 0.f;
    ce[c] = a, cw[c] = a * r[1];
  }
  __syncthreads();
  float om = 0.f;
  for (int c = 0; c < S_; ++c) om += cw[c];  // same order in every thread and block
  for (int d = tid; d < D; d += NT) {
    float s = 0.f;
    for (int c = 0; c < S_; ++c)
      if (cw[c] > 0.f) s += cw[c] * rec1(p, b, hq, c)[4 + d];
    kbar[d] = s / om;
  }
  float acc[NE];
#pragma unroll
  for (int r = 0; r < NE; ++r) acc[r] = 0.f;
  for (int c = 0; c < S_; ++c) {
    if (!(cw[c] > 0.f)) continue;  // uniform (shared memory)
    const float* rc = rec1(p, b, hq, c);
    __syncthreads();  // kbar ready / previous dcv consumed
    for (int d = tid; d < D; d += NT) dcv[d] = rc[4 + d] - kbar[d];
    __syncthreads();
    const float a = ce[c], w = cw[c];
#pragma unroll
    for (int r = 0; r < NE; ++r) {
      const int e = part * (NE * NT) + tid + NT * r, i = e / D, j = e % D;
      acc[r] += a * rc[4 + D + e] + w * dcv[i] * dcv[j];
    }
  }
  float* sol = rec_solve(p, b, hq);
#pragma unroll
  for (int r = 0; r < NE; ++r) {
    const int e = part * (NE * NT) + tid + NT * r;
    sol[kSolR + 2 * D + e] = acc[r] / om;
  }
  if (part == 0) {
    if (tid == 0) sol[kSolM] = M, sol[kSolOmega] = om;
    for (int d = tid; d < D; d += NT) sol[kSolR + D + d] = kbar[d];
  }
}

// ===================================================================================
// Decode pass 1c: solve (one block per (hq, b)) on C + lambda I from the combine.
// ===================================================================================
constexpr int kSolThreads = 256;
template <int D> struct SolSmem {
  static constexpr int AS = D + 1;  // odd row stride: thread-per-row access is conflict-free
  static constexpr int floats = D * AS + 9 * D + 32 + 8;
  static constexpr int bytes = 4 * floats;
};

template <class T, int D>
__global__ void __launch_bounds__(kSolThreads) lla_decode_solve(const LlaParams p) {
  using SM = SolSmem<D>;
  constexpr int AS = SM::AS, NT = kSolThreads;
  extern __shared__ __align__(16) float smf[];
  float* A = smf;            // [D][AS]
  float* kbar = A + D * AS;  // [D]
  float* delta = kbar + D;
  float* x = delta + D;
  float* res = x + D;
  float* zz = res + D;
  float* pd = zz + D;
  float* Sp = pd + D;
  float* diag = Sp + D;
  float* yv = diag + D;
  float* red = yv + D;       // [32]
  float* scal = red + 32;    // [8]
  const int hq = blockIdx.x, b = blockIdx.y, tid = threadIdx.x;
  const long long ri = row_index(p, b, hq, 0);
  float* sol = rec_solve(p, b, hq);
  const LRange R = lla_range(p, b, 0);
  if (R.hi <= R.lo) {  // empty row (docs/math.md §1.4)
    if (tid == 0) {
      sol[kSolEmpty] = 1.f, sol[kSolM] = 0.f, sol[kSolOmega] = 0.f, sol[kSolA] = 0.f, sol[kSolB] = 0.f;
      if (p.lse) p.lse[ri] = -INFINITY;
      if (p.omega) p.omega[ri] = 0.f;
      if (p.iters) p.iters[ri] = 0;
      if (p.status) p.status[ri] = kLlaOk;
    }
    for (int d = tid; d < D; d += NT) {
      sol[kSolR + d] = 0.f, sol[kSolR + D + d] = 0.f;
      if (p.probe) p.probe[((long long)b * p.Hq + hq) * D + d] = 0.f;
    }
    return;
  }
  // M, omega, kbar and C from the combine kernel (stream order: it ran before this launch).
  const float M = sol[kSolM], om = sol[kSolOmega];
  for (int d = tid; d < D; d += NT) {
    kbar[d] = sol[kSolR + D + d];
    delta[d] = kbar[d] - ld<T>(p.q, (long long)b * p.q_batch_stride + (long long)hq * p.q_head_stride + d);
  }
  constexpr int NE = D * D / NT;
  const float lam = row_lambda(p, b, hq, 0);
#pragma unroll
  for (int r = 0; r < NE; ++r) {
    const int idx = tid + NT * r, i = idx / D, j = idx % D;
    A[i * AS + j] = sol[kSolR + 2 * D + idx] + (i == j ? lam : 0.f);
  }
  __syncthreads();
  const bool cg = p.solver != LlaSolver::Direct;
  const bool query = p.anchor == LlaAnchor::Query;
  int iters = 0, status = kLlaOk;
  float ra = 1.f, rb = 1.f;  // output coefficients a, b
  if (!cg) {
    // fp32 right-looking Cholesky of C + lambda I with the matrix in registers: thread (ty, tx) of a
    // 16 x 16 grid holds the TB x TB block at rows ty*TB.., columns tx*TB.. (TB = D/16). Step k: the
    // owners of column k publish it (double-buffered, one barrier per step), every thread takes the
    // pivot, scales its rows/columns of L and updates its block; L goes to A (lower part) for the
    // substitutions. A pivot at or below n u32 dmax (fp32 analogue of reference/solvers.hpp's test)
    // -> status singular, NaN output.
    constexpr int TB = D / 16;
    const int ty = tid / 16, tx = tid % 16;
    float a[TB][TB];
#pragma unroll
    for (int i = 0; i < TB; ++i)
#pragma unroll
      for (int j = 0; j < TB; ++j) a[i][j] = A[(ty * TB + i) * AS + tx * TB + j];
    if (tid == 0) {
      float dmax = 0.f;
      for (int i = 0; i < D; ++i) dmax = fmaxf(dmax, fabsf(A[i * AS + i]));
      scal[0] = dmax;
    }
    __syncthreads();
    const float piv_min = D * 5.9604645e-8f * scal[0];
    bool sing = !(scal[0] > 0.f);
    // Forward substitution L y = delta fused into the factorisation: thread i < D keeps the
    // running rhs delta_i - sum_{k<i} L_ik y_k in yr; thread k publishes it at step k.
    float yr = tid < D ? delta[tid] : 0.f;
    float* ybuf = scal + 4;  // [2], double-buffered like the column
    for (int kb = 0; kb < 16; ++kb) {
#pragma unroll
      for (int kk = 0; kk < TB; ++kk) {
        const int k = kb * TB + kk;
        float* cb = (k & 1) ? zz : Sp;
        if (tx == kb)
#pragma unroll
          for (int i = 0; i < TB; ++i) cb[ty * TB + i] = a[i][kk];
        if (tid == k) ybuf[k & 1] = yr;
        __syncthreads();
        const float piv = cb[k];
        sing = sing || !(piv > piv_min);
        const float inv = rsqrtf(fmaxf(piv, 1e-30f));  // 1 / L_kk
        const float yk = ybuf[k & 1] * inv;             // y_k = (delta_k - ...) / L_kk
        if (tid < D) {
          A[tid * AS + k] = tid >= k ? cb[tid] * inv : 0.f;  // L[k][k] = piv * inv = sqrt(piv)
          if (tid > k) yr -= cb[tid] * inv * yk;
          if (tid == k) yv[k] = yk;
        }
        float lr[TB], lc[TB];
#pragma unroll
        for (int i = 0; i < TB; ++i) {
          const int r = ty * TB + i, c = tx * TB + i;
          lr[i] = r > k ? cb[r] * inv : 0.f;
          lc[i] = c > k ? cb[c] * inv : 0.f;
        }
#pragma unroll
        for (int i = 0; i < TB; ++i)
#pragma unroll
          for (int j = 0; j < TB; ++j) a[i][j] -= lr[i] * lc[j];
      }
    }
    __syncthreads();
    const bool singular = sing;  // uniform: every thread saw the same pivots
    // Back substitution L^T x = y, one row per thread: at step k thread k finishes x_k and every
    // thread i < k removes L_ki x_k (row k of L is contiguous in A). Double-buffered broadcast.
    yr = tid < D ? yv[tid] : 0.f;
    float* xbuf = scal + 6;  // [2]
    for (int k = D - 1; k >= 0; --k) {
      if (tid == k) {
        const float xk = yr / A[k * AS + k];
        xbuf[k & 1] = xk;
        x[k] = singular ? NAN : xk;
      }
      __syncthreads();
      if (tid < k) yr -= A[k * AS + tid] * xbuf[k & 1];
    }
    __syncthreads();
    if (singular) status = kLlaSingular;
    if (query) {  // rho = theta/(1 + alpha), Delta = omega/(1 + alpha) > 0 without cancellation (docs/math.md §3.5)
      float al = 0.f;
      for (int d = tid; d < D; d += NT) al += delta[d] * x[d];
      al = block_sum<NT>(al, red);
      const float Delta = om / (1.f + al);
      ra = rb = Delta / shifted_denominator(p, Delta);
      // saved probe in the reference's convention (rho)
      if (p.probe)
        for (int d = tid; d < D; d += NT) p.probe[((long long)b * p.Hq + hq) * D + d] = x[d] / (1.f + al);
    }
  } else {
    // The reference's systems (reference/attention.hpp solver_probe): key-mean (C + lambda I) theta =
    // delta; query Sigma rho = mu with Sigma = omega (C + delta delta^T + lambda I), mu = omega delta.
    const float sc = query ? om : 1.f;
    if (query) {
      for (int idx = tid; idx < D * D; idx += NT) {
        const int i = idx / D, j = idx % D;
        A[i * AS + j] = om * (A[i * AS + j] + delta[i] * delta[j]);
      }
      __syncthreads();
    }
    const bool jac = p.solver == LlaSolver::JacobiCG;
    for (int d = tid; d < D; d += NT) {
      const float y = sc * delta[d];
      diag[d] = jac ? A[d * AS + d] : 1.f;
      x[d] = 0.f, res[d] = y, zz[d] = y / diag[d], pd[d] = zz[d];
    }
    __syncthreads();
    float nrm = 0.f;
    for (int d = tid; d < D; d += NT) nrm += res[d] * zz[d];
    nrm = block_sum<NT>(nrm, red);
    const float nrm0 = nrm, thresh = fmaxf(nrm0, p.cg_atol) * p.cg_rtol;
    bool active = nrm0 != 0.f;
    for (int it = 0; it < p.cg_max_iters && active; ++it) {  // stopping early changes nothing (a = 0 after)
      ++iters;
      float pap = 0.f;
      for (int i = tid; i < D; i += NT) {
        float s = 0.f;
        for (int j = 0; j < D; ++j) s += A[i * AS + j] * pd[j];
        Sp[i] = s;
        pap += pd[i] * s;
      }
      pap = block_sum<NT>(pap, red);
      const float al = nrm / (pap + 1e-10f);
      float n1 = 0.f;
      for (int d = tid; d < D; d += NT) {
        x[d] += al * pd[d];
        res[d] -= al * Sp[d];
        zz[d] = res[d] / diag[d];
        n1 += res[d] * zz[d];
      }
      n1 = block_sum<NT>(n1, red);
      const bool stop = n1 <= thresh || !isfinite(n1);
      if (stop) {
        active = false;
        if (!isfinite(n1)) status = kLlaNonFinite;
      }
      const float bt = active ? n1 / nrm : 0.f;
      for (int d = tid; d < D; d += NT) pd[d] = zz[d] + bt * pd[d];
      nrm = n1;
      __syncthreads();
    }
    if (active) status = kLlaNotConverged;
    if (query) {  // Delta = omega - mu.rho (docs/math.md §3.2), out = (omega/d)((1 - rho.delta) vbar - rho^T Cov)
      float rd = 0.f;
      for (int d = tid; d < D; d += NT) rd += delta[d] * x[d];
      rd = block_sum<NT>(rd, red);
      const float Delta = om - om * rd;
      const float dd = shifted_denominator(p, Delta);
      ra = Delta / dd, rb = om / dd;
    }
    if (query && p.probe)
      for (int d = tid; d < D; d += NT) p.probe[((long long)b * p.Hq + hq) * D + d] = x[d];
  }
  if (!query && p.probe)
    for (int d = tid; d < D; d += NT) p.probe[((long long)b * p.Hq + hq) * D + d] = x[d];
  for (int d = tid; d < D; d += NT) sol[kSolR + d] = x[d], sol[kSolR + D + d] = kbar[d];
  if (tid == 0) {
    sol[kSolM] = M, sol[kSolOmega] = om, sol[kSolA] = ra, sol[kSolB] = rb, sol[kSolEmpty] = 0.f;
    if (p.lse) p.lse[ri] = M * kLn2 + logf(om);
    if (p.omega) p.omega[ri] = om;
    if (p.iters) p.iters[ri] = iters;
    if (p.status) p.status[ri] = status;
  }
}

// ===================================================================================
// Decode pass 2: O1 = sum w v, O2 = sum w t v, d1 = sum w, d2 = sum w t with the global pivot,
// t_j = r.(k_j - kbar). 128 threads; thread d owns value column d.
// ===================================================================================
constexpr int kOutThreads = 128;
template <int D> struct OutSmem {
  static constexpr int floats = 2 * kTK * D /*K, V*/ + 3 * kGMax * D /*q, r, kbar*/ + 2 * kGMax * kTK /*w, t*/ +
                                2 * kGMax * D /*O1, O2*/ + 2 * kGMax /*d1, d2*/ + 2 * kGMax /*M, empty*/;
  static constexpr int bytes = 4 * floats;
};

template <class T, int D>
__device__ void write_out(const LlaParams& p, int b, int hq, int d, float d1, float d2, float o1, float o2, const float* sol) {
  float o = 0.f;
  if (sol[kSolEmpty] == 0.f) {
    const float vb = o1 / d1;
    o = sol[kSolA] * vb - sol[kSolB] * (o2 / d1 - (d2 / d1) * vb);
  }
  static_cast<T*>(p.out)[(long long)b * p.o_batch_stride + (long long)hq * p.o_head_stride + d] = Pack<T>::from_float(o);
}

template <class T, int D>
__global__ void __launch_bounds__(kOutThreads) lla_decode_output(const LlaParams p) {
  constexpr int NT = kOutThreads;
  extern __shared__ __align__(16) float smf[];
  float* Kf = smf;               // [kTK][D]
  float* Vf = Kf + kTK * D;      // [kTK][D]
  float* qs = Vf + kTK * D;      // [G][D]
  float* rs = qs + kGMax * D;    // [G][D]
  float* kb = rs + kGMax * D;    // [G][D]
  float* wv = kb + kGMax * D;    // [G][kTK]
  float* tv = wv + kGMax * kTK;  // [G][kTK]
  float* O1 = tv + kGMax * kTK;  // [G][D]
  float* O2 = O1 + kGMax * D;    // [G][D]
  float* d1s = O2 + kGMax * D;   // [G]
  float* d2s = d1s + kGMax;      // [G]
  float* Ms = d2s + kGMax;       // [G]
  float* Es = Ms + kGMax;        // [G] empty flag
  const int split = blockIdx.x, hk = blockIdx.y, b = blockIdx.z;
  const int G = p.Hq / p.Hkv, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const LRange R = lla_range(p, b, 0);
  int c_lo, c_hi;
  chunk_of(R, p.num_splits, split, c_lo, c_hi);
  const float qscale = p.scale * kLog2e;
  for (int idx = tid; idx < G * D; idx += NT) {
    const int g = idx / D, d = idx % D, hq = hk * G + g;
    const float* sol = rec_solve(p, b, hq);
    qs[idx] = ld<T>(p.q, (long long)b * p.q_batch_stride + (long long)hq * p.q_head_stride + d) * qscale;
    rs[idx] = sol[kSolR + d], kb[idx] = sol[kSolR + D + d];
    O1[idx] = 0.f, O2[idx] = 0.f;
  }
  if (tid < G) {
    const float* sol = rec_solve(p, b, hk * G + tid);
    d1s[tid] = 0.f, d2s[tid] = 0.f, Ms[tid] = sol[kSolM], Es[tid] = sol[kSolEmpty];
  }
  const T* kbase = static_cast<const T*>(p.k) + (long long)b * p.k_batch_stride + (long long)hk * p.k_head_stride;
  const T* vbase = static_cast<const T*>(p.v) + (long long)b * p.v_batch_stride + (long long)hk * p.v_head_stride;
  for (int k0 = c_lo; k0 < c_hi; k0 += kTK) {
    __syncthreads();
    for (int idx = tid; idx < kTK * (D / 8); idx += NT) {
      const int row = idx / (D / 8), c = idx % (D / 8), key = k0 + row;
      float fk[8] = {0, 0, 0, 0, 0, 0, 0, 0}, fv[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      if (key < c_hi) {
        const uint4 rk = *reinterpret_cast<const uint4*>(kbase + (long long)key * p.k_row_stride + c * 8);
        const uint4 rv = *reinterpret_cast<const uint4*>(vbase + (long long)key * p.v_row_stride + c * 8);
        const std::uint32_t wk[4] = {rk.x, rk.y, rk.z, rk.w}, wvv[4] = {rv.x, rv.y, rv.z, rv.w};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 a = Pack<T>::to_float2(wk[e]), c2 = Pack<T>::to_float2(wvv[e]);
          fk[2 * e] = a.x, fk[2 * e + 1] = a.y, fv[2 * e] = c2.x, fv[2 * e + 1] = c2.y;
        }
      }
#pragma unroll
      for (int e = 0; e < 8; ++e) Kf[row * D + c * 8 + e] = fk[e], Vf[row * D + c * 8 + e] = fv[e];
    }
    __syncthreads();
    for (int idx = warp; idx < G * kTK; idx += NT / 32) {
      const int g = idx / kTK, j = idx % kTK;
      float s = 0.f, t = 0.f;
      for (int d = lane; d < D; d += 32) {
        const float kd = Kf[j * D + d];
        s += qs[g * D + d] * kd;
        t += rs[g * D + d] * (kd - kb[g * D + d]);
      }
      s = warp_sum(s), t = warp_sum(t);
      if (lane == 0) {
        const bool ok = k0 + j < c_hi && Es[g] == 0.f;
        wv[idx] = ok ? exp2f(s - Ms[g]) : 0.f;
        tv[idx] = ok ? t : 0.f;
      }
    }
    __syncthreads();
    if (tid < D)
      for (int g = 0; g < G; ++g) {
        float o1 = 0.f, o2 = 0.f;
        for (int j = 0; j < kTK; ++j) {
          const float w = wv[g * kTK + j], vv = Vf[j * D + tid];
          o1 = fmaf(w, vv, o1);
          o2 = fmaf(w * tv[g * kTK + j], vv, o2);
        }
        O1[g * D + tid] += o1, O2[g * D + tid] += o2;
      }
    if (tid < G) {
      float a = 0.f, c = 0.f;
      for (int j = 0; j < kTK; ++j) a += wv[tid * kTK + j], c += wv[tid * kTK + j] * tv[tid * kTK + j];
      d1s[tid] += a, d2s[tid] += c;
    }
  }
  __syncthreads();
  if (tid < D)
  for (int g = 0; g < G; ++g) {
    const int hq = hk * G + g;
    if (p.num_splits == 1) {
      write_out<T, D>(p, b, hq, tid, d1s[g], d2s[g], O1[g * D + tid], O2[g * D + tid], rec_solve(p, b, hq));
    } else {
      float* r = rec2(p, b, hq, split);
      if (tid == 0) r[0] = d1s[g], r[1] = d2s[g], r[2] = 0.f, r[3] = 0.f;
      r[4 + tid] = O1[g * D + tid], r[4 + D + tid] = O2[g * D + tid];
    }
  }
}

template <class T, int D>
__global__ void __launch_bounds__(kOutThreads) lla_decode_final(const LlaParams p) {
  const int hq = blockIdx.x, b = blockIdx.y, d = threadIdx.x;
  float d1 = 0.f, d2 = 0.f, o1 = 0.f, o2 = 0.f;
  for (int c = 0; c < p.num_splits; ++c) {  // same pivot, same centring: a plain sum, fixed order
    const float* r = rec2(p, b, hq, c);
    d1 += r[0], d2 += r[1], o1 += r[4 + d], o2 += r[4 + D + d];
  }
  write_out<T, D>(p, b, hq, d, d1, d2, o1, o2, rec_solve(p, b, hq));
}

// ===================================================================================
// Forward: matrix-free CG, one block (4 warps) per (query row, query head, batch).
// Every lane holds NC = D/32 coordinates d = lane + 32 c of every D-vector (replicated in
// the four warps, so dot products are warp reductions with no barrier); keys are split
// among the warps (j = lo + warp + 4 t) and the key sums are reduced through shared memory.
// ===================================================================================
constexpr int kFwdThreads = 128;
constexpr int kFwdWarps = kFwdThreads / 32;

template <class T, int D>
__global__ void __launch_bounds__(kFwdThreads) lla_forward_cg(const LlaParams p) {
  constexpr int NC = D / 32;
  __shared__ float part[kFwdWarps][2 * D + 2];
  __shared__ float red[32];
  const int i = blockIdx.x, hq = blockIdx.y, b = blockIdx.z;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int hk = hq / (p.Hq / p.Hkv);
  const long long ri = row_index(p, b, hq, i);
  const long long orow = (long long)b * p.o_batch_stride + (long long)i * p.o_row_stride + (long long)hq * p.o_head_stride;
  const long long prow = (((long long)b * p.Lq + i) * p.Hq + hq) * D;
  const LRange R = lla_range(p, b, i);
  if (R.hi <= R.lo) {  // empty row (docs/math.md §1.4)
    if (warp == 0)
      for (int c = 0; c < NC; ++c) {
        static_cast<T*>(p.out)[orow + lane + 32 * c] = Pack<T>::from_float(0.f);
        if (p.probe) p.probe[prow + lane + 32 * c] = 0.f;
      }
    if (tid == 0) {
      if (p.lse) p.lse[ri] = -INFINITY;
      if (p.omega) p.omega[ri] = 0.f;
      if (p.iters) p.iters[ri] = 0;
      if (p.status) p.status[ri] = kLlaOk;
    }
    return;
  }
  const T* kb = static_cast<const T*>(p.k) + (long long)b * p.k_batch_stride + (long long)hk * p.k_head_stride;
  const T* vb = static_cast<const T*>(p.v) + (long long)b * p.v_batch_stride + (long long)hk * p.v_head_stride;
  float qr[NC], qs[NC];
  const float qscale = p.scale * kLog2e;
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    qr[c] = ld<T>(p.q, (long long)b * p.q_batch_stride + (long long)i * p.q_row_stride + (long long)hq * p.q_head_stride + lane + 32 * c);
    qs[c] = qr[c] * qscale;
  }
  auto load_k = [&](int j, float* kk) {
#pragma unroll
    for (int c = 0; c < NC; ++c) kk[c] = Pack<T>::to_float(kb[(long long)j * p.k_row_stride + lane + 32 * c]);
  };
  auto logit = [&](const float* kk) {
    float s = 0.f;
#pragma unroll
    for (int c = 0; c < NC; ++c) s += qs[c] * kk[c];
    return warp_sum(s);
  };
  // Sum of per-warp partial vectors u[NC] (and one scalar) over the warps, result in every lane.
  auto reduce_vec = [&](float* u, float* sc1) {
    __syncthreads();
#pragma unroll
    for (int c = 0; c < NC; ++c) part[warp][lane + 32 * c] = u[c];
    if (lane == 0 && sc1) part[warp][2 * D] = *sc1;
    __syncthreads();
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      float s = 0.f;
      for (int w = 0; w < kFwdWarps; ++w) s += part[w][lane + 32 * c];
      u[c] = s;
    }
    if (sc1) {
      float s = 0.f;
      for (int w = 0; w < kFwdWarps; ++w) s += part[w][2 * D];
      *sc1 = s;
    }
  };
  // 1. pivot
  float m = -INFINITY;
  for (int j = R.lo + warp; j < R.hi; j += kFwdWarps) {
    float kk[NC];
    load_k(j, kk);
    m = fmaxf(m, logit(kk));
  }
  m = block_max<kFwdThreads>(m, red);
  // 2. omega, kbar, vbar
  float om = 0.f, kw[NC], vw[NC];
#pragma unroll
  for (int c = 0; c < NC; ++c) kw[c] = 0.f, vw[c] = 0.f;
  for (int j = R.lo + warp; j < R.hi; j += kFwdWarps) {
    float kk[NC];
    load_k(j, kk);
    const float w = exp2f(logit(kk) - m);
    om += w;
#pragma unroll
    for (int c = 0; c < NC; ++c) kw[c] += w * kk[c], vw[c] += w * Pack<T>::to_float(vb[(long long)j * p.v_row_stride + lane + 32 * c]);
  }
  reduce_vec(kw, &om);
  reduce_vec(vw, nullptr);
  float kbar[NC], vbar[NC], delta[NC];
#pragma unroll
  for (int c = 0; c < NC; ++c) kbar[c] = kw[c] / om, vbar[c] = vw[c] / om, delta[c] = kbar[c] - qr[c];
  // 3. the system: sum_j coef_j ((k_j - anc).x)(k_j - anc) + beta x = y (reference/attention.hpp solver_probe)
  const bool query = p.anchor == LlaAnchor::Query;
  const float lam = row_lambda(p, b, hq, i);
  const float beta = query ? lam * om : lam, cscale = query ? 1.f : 1.f / om;
  float anc[NC], y[NC];
#pragma unroll
  for (int c = 0; c < NC; ++c) anc[c] = query ? qr[c] : kbar[c], y[c] = query ? om * delta[c] : delta[c];
  auto matvec = [&](const float* x, float* out) {  // out = A x
    float u[NC];
#pragma unroll
    for (int c = 0; c < NC; ++c) u[c] = 0.f;
    for (int j = R.lo + warp; j < R.hi; j += kFwdWarps) {
      float kk[NC], e[NC];
      load_k(j, kk);
      float s = 0.f, t = 0.f;
#pragma unroll
      for (int c = 0; c < NC; ++c) e[c] = kk[c] - anc[c], s += qs[c] * kk[c], t += e[c] * x[c];
      s = warp_sum(s), t = warp_sum(t);
      const float f = exp2f(s - m) * cscale * t;
#pragma unroll
      for (int c = 0; c < NC; ++c) u[c] += f * e[c];
    }
    reduce_vec(u, nullptr);
#pragma unroll
    for (int c = 0; c < NC; ++c) out[c] = u[c] + beta * x[c];
  };
  auto dot = [&](const float* a, const float* bb) {
    float s = 0.f;
#pragma unroll
    for (int c = 0; c < NC; ++c) s += a[c] * bb[c];
    return warp_sum(s);
  };
  float diag[NC];
  const bool jac = p.solver == LlaSolver::JacobiCG;
  if (jac) {  // diag = sum_j coef_j (k_j - anc)^2 + beta (docs/math.md §3.7)
#pragma unroll
    for (int c = 0; c < NC; ++c) diag[c] = 0.f;
    for (int j = R.lo + warp; j < R.hi; j += kFwdWarps) {
      float kk[NC];
      load_k(j, kk);
      const float f = exp2f(logit(kk) - m) * cscale;
#pragma unroll
      for (int c = 0; c < NC; ++c) diag[c] += f * (kk[c] - anc[c]) * (kk[c] - anc[c]);
    }
    reduce_vec(diag, nullptr);
#pragma unroll
    for (int c = 0; c < NC; ++c) diag[c] += beta;
  } else {
#pragma unroll
    for (int c = 0; c < NC; ++c) diag[c] = 1.f;
  }
  // 4. CG, literally docs/math.md §3.7 / reference/solvers.hpp solve_cg, in fp32.
  float x[NC], res[NC], z[NC], pd[NC], Sp[NC];
#pragma unroll
  for (int c = 0; c < NC; ++c) x[c] = 0.f, res[c] = y[c], z[c] = res[c] / diag[c], pd[c] = z[c];
  float nrm = dot(res, z);
  const float thresh = fmaxf(nrm, p.cg_atol) * p.cg_rtol;
  bool active = nrm != 0.f;
  int iters = 0, status = kLlaOk;
  for (int it = 0; it < p.cg_max_iters && active; ++it) {  // `active` is uniform: every lane holds the same sums
    ++iters;
    matvec(pd, Sp);
    const float a = nrm / (dot(pd, Sp) + 1e-10f);
#pragma unroll
    for (int c = 0; c < NC; ++c) x[c] += a * pd[c], res[c] -= a * Sp[c], z[c] = res[c] / diag[c];
    const float n1 = dot(res, z);
    if (n1 <= thresh || !isfinite(n1)) {
      active = false;
      if (!isfinite(n1)) status = kLlaNonFinite;
    }
    const float bt = active ? n1 / nrm : 0.f;
#pragma unroll
    for (int c = 0; c < NC; ++c) pd[c] = z[c] + bt * pd[c];
    nrm = n1;
  }
  if (active) status = kLlaNotConverged;
  // 5. output coefficients and the centred output pass
  float ca = 1.f, cb = 1.f;
  if (query) {
    const float Delta = om - dot(y, x);  // omega - mu.rho
    const float dd = shifted_denominator(p, Delta);
    ca = Delta / dd, cb = om / dd;
  }
  float acc[NC];
#pragma unroll
  for (int c = 0; c < NC; ++c) acc[c] = 0.f;
  for (int j = R.lo + warp; j < R.hi; j += kFwdWarps) {
    float kk[NC];
    load_k(j, kk);
    float s = 0.f, t = 0.f;
#pragma unroll
    for (int c = 0; c < NC; ++c) s += qs[c] * kk[c], t += x[c] * (kk[c] - kbar[c]);
    s = warp_sum(s), t = warp_sum(t);
    const float f = exp2f(s - m) * t;
#pragma unroll
    for (int c = 0; c < NC; ++c) acc[c] += f * (Pack<T>::to_float(vb[(long long)j * p.v_row_stride + lane + 32 * c]) - vbar[c]);
  }
  reduce_vec(acc, nullptr);
  if (warp == 0) {
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      static_cast<T*>(p.out)[orow + lane + 32 * c] = Pack<T>::from_float(ca * vbar[c] - cb * (acc[c] / om));
      if (p.probe) p.probe[prow + lane + 32 * c] = x[c];
    }
  }
  if (tid == 0) {
    if (p.lse) p.lse[ri] = m * kLn2 + logf(om);
    if (p.omega) p.omega[ri] = om;
    if (p.iters) p.iters[ri] = iters;
    if (p.status) p.status[ri] = status;
  }
}

template <class K> cudaError_t set_smem(K kern, int bytes) {
  return cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}

template <class T, int D> int decode_impl(const LlaParams& p, cudaStream_t st) {
  cudaError_t e;
  const dim3 gs(p.num_splits, p.Hkv, p.B), gr(p.Hq, p.B);
  if ((e = set_smem(lla_decode_moments<T, D>, MomSmem<D>::bytes)) != cudaSuccess) return e;
  lla_decode_moments<T, D><<<gs, kMomThreads, MomSmem<D>::bytes, st>>>(p);
  if ((e = cudaGetLastError()) != cudaSuccess) return e;
  lla_decode_combine<T, D><<<dim3(kCombParts, p.Hq, p.B), kCombThreads, CombSmem<D>::bytes, st>>>(p);
  if ((e = cudaGetLastError()) != cudaSuccess) return e;
  if ((e = set_smem(lla_decode_solve<T, D>, SolSmem<D>::bytes)) != cudaSuccess) return e;
  lla_decode_solve<T, D><<<gr, kSolThreads, SolSmem<D>::bytes, st>>>(p);
  if ((e = cudaGetLastError()) != cudaSuccess) return e;
  if ((e = set_smem(lla_decode_output<T, D>, OutSmem<D>::bytes)) != cudaSuccess) return e;
  lla_decode_output<T, D><<<gs, kOutThreads, OutSmem<D>::bytes, st>>>(p);
  if ((e = cudaGetLastError()) != cudaSuccess) return e;
  if (p.num_splits > 1) {
    lla_decode_final<T, D><<<gr, D, 0, st>>>(p);  // one thread per value column
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
  }
  return cudaSuccess;
}
template <class T, int D> int forward_impl(const LlaParams& p, cudaStream_t st) {
  lla_forward_cg<T, D><<<dim3(p.Lq, p.Hq, p.B), kFwdThreads, 0, st>>>(p);
  return cudaGetLastError();
}

}  // namespace

int launch_lla_decode(const LlaParams& p, void* stream) {
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  const bool bf = p.dtype == ElemType::BF16;
  if (p.D == 128) return bf ? decode_impl<__nv_bfloat16, 128>(p, st) : decode_impl<__half, 128>(p, st);
  return bf ? decode_impl<__nv_bfloat16, 64>(p, st) : decode_impl<__half, 64>(p, st);
}
int launch_lla_forward(const LlaParams& p, void* stream) {
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  const bool bf = p.dtype == ElemType::BF16;
  if (p.D == 128) return bf ? forward_impl<__nv_bfloat16, 128>(p, st) : forward_impl<__half, 128>(p, st);
  return bf ? forward_impl<__nv_bfloat16, 64>(p, st) : forward_impl<__half, 64>(p, st);
}
int lla_decode_smem_max(int D) {
  return D == 128 ? MomSmem<128>::bytes > SolSmem<128>::bytes ? MomSmem<128>::bytes : SolSmem<128>::bytes
                  : MomSmem<64>::bytes > SolSmem<64>::bytes ? MomSmem<64>::bytes : SolSmem<64>::bytes;
}

}  // namespace plx::cuda::detail
