// bench/cuda/bench_parallax_forward.cu — Parallax / softmax prefill forward time on sm_90.
//
// Charter: causal (end-aligned) forward at B = 2, H = 8, L in {2048, 8192}, D = 128, bf16,
// CUDA-graph timed over rotating input sets (together > 3x L2); prints ms and TFLOP/s
// (causal flops: softmax 4 B H D L^2 / 2, Parallax 8 B H D L^2 / 2: S, Z, P1 V, P2 V).
// One JSON line per measurement. The cuDNN baseline is timed by torch_baselines.py in
// the same device call.
//
// | version | idea                                                                        | gain                     |
// |---------|-----------------------------------------------------------------------------|--------------------------|
// | v1      | library kernel (kernels/parallax_forward.cu): FA2 structure, 4 warps x 16   | 255 TFLOP/s at L=8192;   |
// |         | rows, mma.sync m16n8k16, K fragments shared by S and Z, cp.async 2 stages,  | 4.5x cuDNN (target 1.9x  |
// |         | BN = 32 for Parallax D=128 (registers), longest causal tiles first          | not met; needs WGMMA)    |
// | v2      | kernels/parallax_forward_wgmma.cu (default for D = 128): one warpgroup  | 1.30 ms = 424 TFLOP/s at |
// |         | (64 rows) per block, 2 blocks/SM; wgmma m64n64k16 from 128B-swizzled smem   | L=8192 (v1 2.21 ms in    |
// |         | (S, Z), m64n128k16 with P from registers and V transposed by its descriptor | the same run): 2.68x     |
// |         | (P V), P V of tile t-1 issued with S(t), Z(t); cp.async, 2 stages; no TMA   | cuDNN (target 1.9x: gap) |
// | v2.1    | descriptors as lo + constant offset, unpredicated cp.async for full tiles   | 1.16-1.21 ms: 2.4-2.5x   |
// |         | (issue-bound: 934 -> 765 instructions per warp and 64x64 tile)              | cuDNN (gap)              |
// Each run times v1 and v2 on the same inputs (AttnParams::forward_version); docs/gpu-results.md
// has the variants tried on the way.
#include <cmath>
#include <cstring>

#include "bench/cuda/bench_common.cuh"
#include "kernels/launch.hpp"

int main() {
  cudaDeviceProp prop{};
  BCHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("{\"device\": \"%s\", \"sms\": %d}\n", prop.name, prop.multiProcessorCount);
  const int B = 2, H = 8, D = 128;
  for (int L : bench_lengths({2048, 8192}))
    for (int plx : {1, 0}) {
      const size_t e = size_t(B) * L * H * D;
      const size_t set_bytes = 2 * 5 * e;  // q, r, k, v, out
      const int nsets = int(std::max<size_t>(2, (3 * size_t(prop.l2CacheSize)) / set_bytes + 2));
      void* pool;
      BCHECK(cudaMalloc(&pool, set_bytes * nsets));
      fill_bf16(pool, set_bytes * nsets / 2, 99 + L);
      auto params = [&](int i) {
        char* base = static_cast<char*>(pool) + size_t(i % nsets) * set_bytes;
        plx::cuda::AttnParams p;
        p.q = base, p.r = base + 2 * e, p.k = base + 4 * e, p.v = base + 6 * e, p.out = base + 8 * e;
        p.B = B, p.Hq = H, p.Hkv = H, p.Lq = L, p.Lkv = L, p.D = p.Dv = D;
        p.q_head_stride = p.r_head_stride = p.o_head_stride = p.k_head_stride = p.v_head_stride = D;
        p.q_row_stride = p.r_row_stride = p.o_row_stride = p.k_row_stride = p.v_row_stride = H * D;
        p.q_batch_stride = p.r_batch_stride = p.o_batch_stride = p.k_batch_stride = p.v_batch_stride = size_t(L) * H * D;
        p.scale = 1.f / std::sqrt(float(D));
        p.mech = plx ? plx::cuda::Mechanism::Parallax : plx::cuda::Mechanism::Softmax;
        return p;
      };
      const double flops = (plx ? 8.0 : 4.0) * B * H * D * double(L) * L / 2;
      double ms[3] = {0, 0, 0};
      for (int version : {1, 2})
        ms[version] = time_graph(
            [&](int i, cudaStream_t st) {
              plx::cuda::AttnParams p = params(i);
              p.forward_version = version;
              plx::cuda::launch(p, plx::cuda::Op::Forward, st);
            },
            L >= 8192 ? 10 : 20, 7);
      std::printf("{\"bench\": \"forward\", \"mech\": \"%s\", \"B\": %d, \"H\": %d, \"L\": %d, \"D\": %d, \"causal\": true, "
                  "\"v1_ms\": %.4f, \"v2_ms\": %.4f, \"v1_tflops\": %.1f, \"tflops\": %.1f}\n",
                  plx ? "parallax" : "softmax", B, H, L, D, ms[1], ms[2], flops / (ms[1] * 1e-3) / 1e12,
                  flops / (ms[2] * 1e-3) / 1e12);
      std::fflush(stdout);
      BCHECK(cudaFree(pool));
    }
  return 0;
}
