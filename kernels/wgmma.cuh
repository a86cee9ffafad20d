// kernels/wgmma.cuh — Hopper warpgroup MMA (wgmma.mma_async) helpers for sm_90a.
//
// Charter: shared-memory matrix descriptors for the 128-byte-swizzled layouts the kernels
// write with cp.async, the fence / commit / wait primitives, the instruction shapes
// the prefill forward and the backward use (m64nNk16, N = 32, 64, 128, with both operands in
// shared memory; m64n128k16 with A in registers and B transposed: P V, dQ, dK, dV), and the
// K = 128 / N = 128 product chains built from them. Compiled only where the
// target has the sm_90a features (__CUDA_ARCH_FEAT_SM90_ALL); nothing here launches.
//
// Layout (both K-major and MN-major operands): a tile of R rows x 64 16-bit elements is R rows
// of 128 bytes; the 16-byte chunk c of row r sits at chunk position c ^ (r % 8) (Swizzle<3,4,3>
// on byte addresses, so every tile base is 1024-byte aligned). A 128-wide row is stored as two
// such tiles, "halves" [half][row][64].
//   K-major (A = Q, R; B = K for S = Q K^T): SBO = 1024 (8-row groups), LBO unused; the k-th
//   16-element step starts at half (k / 4), byte (k % 4) * 32 of the row.
//   MN-major (B = V for P V, rows = keys): LBO = bytes between the two 64-column halves,
//   SBO = 1024 (8-key groups); the k-th 16-key step starts 16 rows (2048 bytes) further.
// Accumulator fragment of m64nN (f32): warp w of the warpgroup holds rows 16 w + lane / 4
// (+ 8); register 4 j + e is column 8 j + 2 (lane % 4) + (e & 1), row + 8 (e >> 1): the
// mma.sync m16n8 layout repeated along N. The register A operand is the m16n8k16 A layout.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

#include "kernels/device_common.cuh"

namespace plx::cuda::detail {

// Matrix descriptor: start address, leading / stride byte offsets (16-byte units), 128B swizzle.
// Kept as two 32-bit words: lo = start / 16 | LBO / 16 << 16, hi = SBO / 16 | swizzle mode. A
// shared address is below 2^18, so the start field cannot carry into LBO: the descriptor of
// `addr + off` is lo + off / 16 with the same hi. The product chains below build lo once and
// add constant offsets (one uniform add per wgmma operand instead of the mask, shift and or of
// a fresh descriptor; the Nsight Compute profile of 29 Nov counted ~5 uniform instructions per
// operand, 150-470 per warp and 64x64 tile, in kernels that are issue-bound).
__device__ __forceinline__ unsigned desc_lo(unsigned addr, unsigned lbo) {
  return ((addr & 0x3FFFF) >> 4) | (((lbo >> 4) & 0x3FFF) << 16);
}
__host__ __device__ constexpr unsigned desc_hi(unsigned sbo) { return ((sbo >> 4) & 0x3FFF) | (1u << 30); }
__device__ __forceinline__ std::uint64_t desc_pack(unsigned lo, unsigned hi) {
  std::uint64_t r;
  asm("mov.b64 %0, {%1, %2};" : "=l"(r) : "r"(lo), "r"(hi));
  return r;
}
__device__ __forceinline__ std::uint64_t smem_desc(unsigned addr, unsigned lbo, unsigned sbo) {
  return desc_pack(desc_lo(addr, lbo), desc_hi(sbo));
}
// Byte offset of 16-byte chunk c (0..15 for 128 columns) of row `row` in a [2][rows][64] tile.
__device__ __forceinline__ unsigned swz_offset(int row, int c, int rows) {
  return unsigned((c >> 3) * rows * 128 + row * 128 + (((c & 7) ^ (row & 7)) << 4));
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Generic-proxy writes (cp.async, st.shared) made visible to the async proxy that wgmma reads.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Keep the compiler from moving register accesses across an in-flight wgmma.
template <int N> __device__ __forceinline__ void fence_regs(float* d) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
// The same for register A operands: an RS wgmma reads them until its wait, so they stay live.
template <int N> __device__ __forceinline__ void fence_regs(std::uint32_t* d) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(d[i])::"memory");
}

// D (64 x N, f32) = A B + (acc ? D : 0); A from descriptor da (K-major), B from db (K-major).
template <class T, int N> __device__ void wgmma_ss(float* d, std::uint64_t da, std::uint64_t db, int acc);
// D (64 x N, f32) = A B, D written without being read ("=f": the first step of a chain whose
// accumulator registers held other values before; with "+f" ptxas counts those earlier
// definitions as inputs and serializes the chain, warning C7513).
template <class T, int N> __device__ void wgmma_ss_fresh(float* d, std::uint64_t da, std::uint64_t db);
// D (64 x 128, f32) += A B; A = 4 registers (m16n8k16 A layout), B from db (MN-major, transposed).
template <class T, int N> __device__ void wgmma_rs_tb(float* d, const std::uint32_t* a, std::uint64_t db);

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
template <> __device__ __forceinline__ void wgmma_ss<__nv_bfloat16, 32>(float* d, std::uint64_t da, std::uint64_t db, int acc) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
      : "l"(da), "l"(db), "r"(acc));
}

template <> __device__ __forceinline__ void wgmma_ss<__half, 32>(float* d, std::uint64_t da, std::uint64_t db, int acc) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
      : "l"(da), "l"(db), "r"(acc));
}

template <> __device__ __forceinline__ void wgmma_ss<__nv_bfloat16, 64>(float* d, std::uint64_t da, std::uint64_t db, int acc) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(da), "l"(db), "r"(acc));
}

template <> __device__ __forceinline__ void wgmma_ss<__nv_bfloat16, 128>(float* d, std::uint64_t da, std::uint64_t db, int acc) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(da), "l"(db), "r"(acc));
}

template <> __device__ __forceinline__ void wgmma_rs_tb<__nv_bfloat16, 128>(float* d, const std::uint32_t* a, std::uint64_t db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

template <> __device__ __forceinline__ void wgmma_ss<__half, 64>(float* d, std::uint64_t da, std::uint64_t db, int acc) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(da), "l"(db), "r"(acc));
}

template <> __device__ __forceinline__ void wgmma_ss<__half, 128>(float* d, std::uint64_t da, std::uint64_t db, int acc) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(da), "l"(db), "r"(acc));
}

template <> __device__ __forceinline__ void wgmma_rs_tb<__half, 128>(float* d, const std::uint32_t* a, std::uint64_t db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}
template <> __device__ __forceinline__ void wgmma_ss_fresh<__nv_bfloat16, 64>(float* d, std::uint64_t da, std::uint64_t db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3]), "=f"(d[4]), "=f"(d[5]), "=f"(d[6]), "=f"(d[7]), "=f"(d[8]), "=f"(d[9]), "=f"(d[10]), "=f"(d[11]), "=f"(d[12]), "=f"(d[13]), "=f"(d[14]), "=f"(d[15]), "=f"(d[16]), "=f"(d[17]), "=f"(d[18]), "=f"(d[19]), "=f"(d[20]), "=f"(d[21]), "=f"(d[22]), "=f"(d[23]), "=f"(d[24]), "=f"(d[25]), "=f"(d[26]), "=f"(d[27]), "=f"(d[28]), "=f"(d[29]), "=f"(d[30]), "=f"(d[31])
      : "l"(da), "l"(db), "r"(0));
}

template <> __device__ __forceinline__ void wgmma_ss_fresh<__half, 64>(float* d, std::uint64_t da, std::uint64_t db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3]), "=f"(d[4]), "=f"(d[5]), "=f"(d[6]), "=f"(d[7]), "=f"(d[8]), "=f"(d[9]), "=f"(d[10]), "=f"(d[11]), "=f"(d[12]), "=f"(d[13]), "=f"(d[14]), "=f"(d[15]), "=f"(d[16]), "=f"(d[17]), "=f"(d[18]), "=f"(d[19]), "=f"(d[20]), "=f"(d[21]), "=f"(d[22]), "=f"(d[23]), "=f"(d[24]), "=f"(d[25]), "=f"(d[26]), "=f"(d[27]), "=f"(d[28]), "=f"(d[29]), "=f"(d[30]), "=f"(d[31])
      : "l"(da), "l"(db), "r"(0));
}
#endif  // __CUDA_ARCH_FEAT_SM90_ALL

// One product with K = 128 (D) from shared memory: D (64 x N) = A B^T (+ nothing: the first step
// overwrites D), A = 64 rows at `a` of a [2][a_rows][64] tile, B = N rows at `b` of a
// [2][b_rows][64] tile, both K-major. Issues 8 wgmma; the caller fences and commits.
template <class T, int N>
__device__ __forceinline__ void wgmma_ss_k128(float* d, unsigned a, int a_rows, unsigned b, int b_rows) {
  const unsigned la = desc_lo(a, 16), lb = desc_lo(b, 16);
  constexpr unsigned hi = desc_hi(1024);
#pragma unroll
  for (int kk = 0; kk < 8; ++kk) {
    const unsigned koff = (kk & 3) * 32;  // 16-element step inside the 128-byte row
    wgmma_ss<T, N>(d, desc_pack(la + (((kk >> 2) * a_rows * 128 + koff) >> 4), hi),
                   desc_pack(lb + (((kk >> 2) * b_rows * 128 + koff) >> 4), hi), kk > 0);
  }
}
// wgmma_ss_k128 with the first step's accumulator write-only (wgmma_ss_fresh); N = 64.
template <class T, int N>
__device__ __forceinline__ void wgmma_ss_k128_fresh(float* d, unsigned a, int a_rows, unsigned b, int b_rows) {
  const unsigned la = desc_lo(a, 16), lb = desc_lo(b, 16);
  constexpr unsigned hi = desc_hi(1024);
  wgmma_ss_fresh<T, N>(d, desc_pack(la, hi), desc_pack(lb, hi));
#pragma unroll
  for (int kk = 1; kk < 8; ++kk) {
    const unsigned koff = (kk & 3) * 32;
    wgmma_ss<T, N>(d, desc_pack(la + (((kk >> 2) * a_rows * 128 + koff) >> 4), hi),
                   desc_pack(lb + (((kk >> 2) * b_rows * 128 + koff) >> 4), hi), 1);
  }
}
// D (64 x 128) += A B with A = K / 16 register fragments (64 x K) and B = the [2][K][64] tile at
// `b` read MN-major (rows = the K index, 128 columns): LBO = the half stride K * 128 bytes.
template <class T, int K>
__device__ __forceinline__ void wgmma_rs_n128(float* d, const std::uint32_t (&a)[K / 16][4], unsigned b) {
  const unsigned lb = desc_lo(b, K * 128);
  constexpr unsigned hi = desc_hi(1024);
#pragma unroll
  for (int kt = 0; kt < K / 16; ++kt) wgmma_rs_tb<T, 128>(d, a[kt], desc_pack(lb + ((kt * 16 * 128) >> 4), hi));
}

// Rows [r0, r0 + ROWS) of a row-major [., 128] tensor (16-bit elements, row stride rs elements;
// rows >= n are zero-filled) into the [2][ROWS][64] swizzled tile at shared address dst, with
// cp.async (one commit group is the caller's). Thread tid (of 128) copies 16-byte chunk tid % 16
// of rows tid / 16 + 8 j: the same swizzled column for every j. A tile with every row below n
// (all but a block's last) takes the path without predicates or per-row index arithmetic.
template <class T, int ROWS>
__device__ __forceinline__ void load_tile_sw(unsigned dst, const T* src, long long rs, int r0, int n, int tid) {
  const int lrow = tid >> 4, lc = tid & 15;
  const unsigned d0 = dst + swz_offset(lrow, lc, ROWS);
  const T* s0 = src + (long long)(r0 + lrow) * rs + lc * 8;
  const long long step = 8 * rs;
  if (r0 + ROWS <= n) {
#pragma unroll
    for (int j = 0; j < ROWS / 8; ++j) cp_async16_shared(d0 + j * 8 * 128, s0 + j * step);
  } else {
#pragma unroll
    for (int j = 0; j < ROWS / 8; ++j) {
      const bool ok = r0 + lrow + 8 * j < n;
      cp_async16_shared(d0 + j * 8 * 128, ok ? s0 + j * step : src + lc * 8, ok);
    }
  }
}

}  // namespace plx::cuda::detail
