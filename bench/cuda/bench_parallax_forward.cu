// bench/cuda/bench_parallax_forward.cu — Parallax / softmax prefill forward time on sm_90.
//
// Charter: causal (end-aligned) forward at B = 2, H = 8, L in {2048, 8192}, D = 128, bf16,
// CUDA-graph timed over rotating input sets (together > 3x L2); prints ms and TFLOP/s
// (causal flops: softmax 4 B H D L^2 / 2, Parallax 8 B H D L^2 / 2: S, Z, P1 V, P2 V).
// One JSON line per measurement. The cuDNN baseline is timed by torch_baselines.py in
// the same device call.
//
// Each run times every kernel of the capability table (kernels/capabilities.hpp: mma_sync,
// wgmma, tma) and Auto's choice on the same inputs; JSON keys mma_sync_ms, wgmma_ms, tma_ms,
// default_ms. The kernels' design notes are in their own files; their history and the variants
// tried, with timings, are in the git history of docs/gpu-results.md.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

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
      using plx::cuda::ForwardKernel;
      auto run = [&](ForwardKernel k) {
        return time_graph(
            [&](int i, cudaStream_t st) {
              plx::cuda::AttnParams p = params(i);
              p.forward_kernel = k;
              plx::cuda::launch(p, plx::cuda::Op::Forward, st);
            },
            L >= 8192 ? 10 : 20, 7);
      };
      if (const char* e = std::getenv("PLX_BENCH_FWD_DEFAULT_ONLY"); e && e[0] == '1') {
        // Only the default dispatch, timed first in a fresh process (bench/cuda/fwd_ab.sh alternates
        // this with the torch baselines, process by process, so neither side is timed later in a
        // long run than the other).
        const double dflt = run(ForwardKernel::Auto);
        std::printf("{\"bench\": \"forward_default\", \"mech\": \"%s\", \"B\": %d, \"H\": %d, \"L\": %d, \"D\": %d, "
                    "\"causal\": true, \"default_ms\": %.4f, \"tflops\": %.1f}\n",
                    plx ? "parallax" : "softmax", B, H, L, D, dflt, flops / (dflt * 1e-3) / 1e12);
        std::fflush(stdout);
        BCHECK(cudaFree(pool));
        continue;
      }
      const double dflt = run(ForwardKernel::Auto);
      const double mma = run(ForwardKernel::MmaSync), wg = run(ForwardKernel::Wgmma), tma = run(ForwardKernel::Tma);
      const double dflt2 = run(ForwardKernel::Auto);  // drift check: Auto first and last
      std::printf("{\"bench\": \"forward\", \"mech\": \"%s\", \"B\": %d, \"H\": %d, \"L\": %d, \"D\": %d, \"causal\": true, "
                  "\"mma_sync_ms\": %.4f, \"wgmma_ms\": %.4f, \"tma_ms\": %.4f, \"default_ms\": %.4f, \"default_again_ms\": %.4f, "
                  "\"tflops\": %.1f}\n",
                  plx ? "parallax" : "softmax", B, H, L, D, mma, wg, tma, dflt, dflt2, flops / (dflt * 1e-3) / 1e12);
      std::fflush(stdout);
      BCHECK(cudaFree(pool));
    }
  return 0;
}
