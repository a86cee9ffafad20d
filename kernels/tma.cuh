// kernels/tma.cuh — Hopper tensor-memory-accelerator loads, shared-memory mbarriers, named
// barriers and register reallocation, for the warp-specialized prefill forward (parallax_forward_tma.cu).
//
// Charter: thin wrappers over the PTX of sm_90a (cp.async.bulk.tensor, mbarrier.*, bar.sync /
// bar.arrive with a thread count, setmaxnreg) and the host-side encoding of a 4-D tiled tensor
// map ([B][L][H][128] 16-bit elements, 64-column boxes, 128-byte swizzle: the tile layout of
// kernels/wgmma.cuh). The driver's cuTensorMapEncodeTiled is fetched through the runtime's
// entry-point query, so nothing links against libcuda; where the driver lacks it the default
// forward falls back to the wgmma kernel (kernels_internal.hpp, kForwardNoTensorMaps). Nothing here launches.
#pragma once
#include <cuda.h>  // CUtensorMap and its enums (types only)
#include <cuda_runtime.h>

#include <cstdint>

namespace plx::cuda::detail {

// ---- device side ----
__device__ __forceinline__ void mbar_init(unsigned bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
// Makes the initialisations visible to the other threads and to the async proxy (TMA).
__device__ __forceinline__ void mbar_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
// One arrival that also announces `bytes` of transactions (the TMA loads complete them).
__device__ __forceinline__ void mbar_arrive_expect_tx(unsigned bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(unsigned bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Blocks until the phase with parity `parity` of the barrier has completed. A freshly
// initialised barrier is in phase 0, so waiting for parity 1 returns at once (the "previous"
// phase counts as complete): producers wait for parity (round & 1) ^ 1 on the empty barriers.
__device__ __forceinline__ void mbar_wait(unsigned bar, unsigned parity) {
  unsigned done;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}
// One box of a 4-D tensor map (coordinates innermost first) into shared memory at dst; the
// bytes complete a transaction count on `bar`.
__device__ __forceinline__ void tma_load_4d(unsigned dst, const void* map, int c0, int c1, int c2, int c3, unsigned bar) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::"r"(dst),
      "l"(reinterpret_cast<std::uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
      : "memory");
}
__device__ __forceinline__ void tma_prefetch_map(const void* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<std::uint64_t>(map)) : "memory");
}
// Named barriers (id 1..15; 0 is __syncthreads): `threads` counts every thread that syncs or
// arrives on it, a multiple of 32.
__device__ __forceinline__ void named_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
// Register reallocation between warpgroups (every thread of the warpgroup executes it).
template <int N> __device__ __forceinline__ void regs_dec() { asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N)); }
template <int N> __device__ __forceinline__ void regs_inc() { asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N)); }

// ---- host side ----
// Encodes the map of a [B][L][H][128] tensor of 16-bit elements (element strides row, head,
// batch; the feature axis contiguous) with boxes of 64 columns x box_rows rows x 1 head x 1
// batch, 128-byte swizzle. Returns cudaErrorNotSupported when the driver has no
// cuTensorMapEncodeTiled (or env PLX_CUDA_NO_TENSOR_MAPS=1), cudaErrorInvalidValue when it rejects the tensor (TMA needs a 16-byte aligned base and strides
// that are multiples of 16 bytes below 2^40; check_params already demands the alignment).
cudaError_t encode_map_bhl128(CUtensorMap* map, const void* base, bool bf16, long long L, long long H, long long B,
                              long long row_stride, long long head_stride, long long batch_stride, int box_rows);

}  // namespace plx::cuda::detail
