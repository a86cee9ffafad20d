// kernels/device_common.cuh — small device helpers shared by the plx kernels.
//
// Charter: 16-byte cp.async with zero fill, bf16/fp16 <-> float conversions of packed
// pairs, 2^x on the special-function unit, warp reductions, the row range of docs/math.md §1.2 (the
// device twin of reference/problem.hpp row_range), and the tensor-core fragments (ldmatrix,
// mma.sync m16n8k16, accumulator tiles packed as A operands). Nothing here launches or allocates.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

#include "kernels/params.hpp"

namespace plx::cuda::detail {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Copy 16 bytes global -> shared; when !pred nothing is read and the 16 bytes are zeroed.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool pred) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int n = pred ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
// The same with the destination as a shared-space address; without `pred`, always 16 bytes.
__device__ __forceinline__ void cp_async16_shared(unsigned s, const void* gmem, bool pred) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(pred ? 16 : 0));
}
__device__ __forceinline__ void cp_async16_shared(unsigned s, const void* gmem) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// One key tile of K and V by the NT threads of a block: rows k0 .. k0 + ROWS - 1 of each head
// (element row strides k_rs, v_rs; CH 16-byte chunks per row) into Kd / Vd (row pitch RS
// elements). Rows at or past `hi` are zero-filled; their source address is row `safe` (in
// bounds, not read), so no pointer ever points outside the tensors.
template <int ROWS, int CH, int RS, int NT, class T>
__device__ __forceinline__ void cp_async_kv_tile(T* Kd, T* Vd, const T* kbase, const T* vbase, long long k_rs,
                                                 long long v_rs, int k0, int hi, int safe, int tid) {
  for (int idx = tid; idx < ROWS * CH; idx += NT) {
    const int row = idx / CH, c = idx % CH, key = k0 + row;
    const bool ok = key < hi;
    const long long kk = ok ? key : safe;
    cp_async16(Kd + row * RS + c * 8, kbase + kk * k_rs + c * 8, ok);
    cp_async16(Vd + row * RS + c * 8, vbase + kk * v_rs + c * 8, ok);
  }
}

template <class T> struct Pack;
template <> struct Pack<__nv_bfloat16> {
  static __device__ __forceinline__ float2 to_float2(std::uint32_t u) {
    __nv_bfloat162 h = *reinterpret_cast<__nv_bfloat162*>(&u);
    return __bfloat1622float2(h);
  }
  static __device__ __forceinline__ std::uint32_t from_float2(float a, float b) {
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<std::uint32_t*>(&h);
  }
  static __device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __device__ __forceinline__ __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
};
template <> struct Pack<__half> {
  static __device__ __forceinline__ float2 to_float2(std::uint32_t u) {
    __half2 h = *reinterpret_cast<__half2*>(&u);
    return __half22float2(h);
  }
  static __device__ __forceinline__ std::uint32_t from_float2(float a, float b) {
    __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<std::uint32_t*>(&h);
  }
  static __device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
  static __device__ __forceinline__ __half from_float(float x) { return __float2half_rn(x); }
};

// 2^x on the special-function unit (ex2.approx.ftz: relative error ~2^-22, results below
// 2^-126 flush to 0, which only drops weights far below the tile's rounding to bf16/fp16).
__device__ __forceinline__ float exp2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Scores outside their row's allowed keys [lo, hi) set to -inf, for a tile in accumulator
// layout (n8 tile i, element e: key key0 + 8 i + (e & 1), row e >> 1 of the thread's two rows;
// key0 = the tile's first key + 2 (lane % 4)). Shared by the forward step and the backward's
// query pass; callers skip it for tiles that every row allows whole.
template <int NT>
__device__ __forceinline__ void mask_outside(float (&s)[NT][4], int key0, const int (&lo)[2], const int (&hi)[2]) {
#pragma unroll
  for (int i = 0; i < NT; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int rr = e >> 1;
      const int key = key0 + i * 8 + (e & 1);
      if (!(key >= lo[rr] && key < hi[rr])) s[i][e] = -INFINITY;
    }
}

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// Allowed keys [lo, hi) of query row i of batch b (docs/math.md §1.2 with the §6.1 `used`
// convention, exactly reference/problem.hpp row_range). Empty: hi <= lo. Any params struct
// with used, start, Lq, Lkv, causal, window (AttnParams, LlaParams).
struct KeyRange { int lo, hi; };
template <class Params>
__device__ __forceinline__ KeyRange key_range(const Params& p, int b, int i) {
  const int used = p.used ? p.used[b] : p.Lkv;
  const int start = p.start ? p.start[b] : 0;
  const long long P = (long long)used - p.Lq + i;
  long long lo = start, hi = used;
  if (p.causal) hi = hi < P + 1 ? hi : P + 1;
  if (p.window >= 0) lo = lo > P - p.window + 1 ? lo : P - p.window + 1;
  if (lo < 0) lo = 0;
  if (hi > p.Lkv) hi = p.Lkv;
  if (hi <= lo) return {0, 0};
  return {int(lo), int(hi)};
}

// ---- tensor-core helpers (ldmatrix, mma.sync m16n8k16 with fp32 accumulators) ----
__device__ __forceinline__ void ldsm_x4(unsigned addr, std::uint32_t& a, std::uint32_t& b, std::uint32_t& c,
                                        std::uint32_t& d) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(a), "=r"(b), "=r"(c), "=r"(d)
               : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(unsigned addr, std::uint32_t& a, std::uint32_t& b, std::uint32_t& c,
                                          std::uint32_t& d) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(a), "=r"(b), "=r"(c), "=r"(d)
               : "r"(addr));
}
template <class T> __device__ __forceinline__ void mma16816(float* c, const std::uint32_t* a, std::uint32_t b0,
                                                             std::uint32_t b1);
template <> __device__ __forceinline__ void mma16816<__nv_bfloat16>(float* c, const std::uint32_t* a, std::uint32_t b0,
                                                                     std::uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <> __device__ __forceinline__ void mma16816<__half>(float* c, const std::uint32_t* a, std::uint32_t b0,
                                                              std::uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// The A operand (m16n8k16 layout) of k16 step kt from a tile of weights in accumulator layout.
template <class T, int N>
__device__ __forceinline__ void pack_a(const float (&w)[N][4], int kt, std::uint32_t (&a)[4]) {
  a[0] = Pack<T>::from_float2(w[2 * kt][0], w[2 * kt][1]);
  a[1] = Pack<T>::from_float2(w[2 * kt][2], w[2 * kt][3]);
  a[2] = Pack<T>::from_float2(w[2 * kt + 1][0], w[2 * kt + 1][1]);
  a[3] = Pack<T>::from_float2(w[2 * kt + 1][2], w[2 * kt + 1][3]);
}

// Every k16 step of a tile of weights with N columns (N / 8 n8 tiles) as A operands.
template <class T, int N>
__device__ __forceinline__ void pack_tile(const float (&w)[N / 8][4], std::uint32_t (&a)[N / 16][4]) {
#pragma unroll
  for (int kt = 0; kt < N / 16; ++kt) pack_a<T>(w, kt, a[kt]);
}

}  // namespace plx::cuda::detail
