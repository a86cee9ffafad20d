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
// | v3      | kernels/parallax_forward_tma.cu (default for D = 128): producer warpgroup  | 1.01-1.03 ms at L=8192:  |
// |         | with TMA + mbarriers, 2 consumer warpgroups x 32 queries, q and r stacked   | 2.13x cuDNN (target 1.9x |
// |         | in one A operand (one S|Z and one P V product per 128-key tile), setmaxnreg | not met), 1.05x FA2;     |
// |         | 240; variants: ping-pong, heads-fastest grid, 3 consumers, 3 stages         | softmax 0.47 ms ~ cuDNN  |
// Each run times v1, v2 and every v3 variant on the same inputs (AttnParams::forward_version,
// forward_flags) plus the default dispatch; docs/gpu-results.md has the variants tried.
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
      auto run = [&](int version, int flags) {
        return time_graph(
            [&](int i, cudaStream_t st) {
              plx::cuda::AttnParams p = params(i);
              p.forward_version = version, p.forward_flags = flags;
              plx::cuda::launch(p, plx::cuda::Op::Forward, st);
            },
            L >= 8192 ? 10 : 20, 7);
      };
      // v3 variants (kernels_internal.hpp): 0 plain, 1 ping-pong, 2 heads-fastest grid, 4 three
      // consumers, 8 three stages (two consumers), 16 look-ahead pipeline (two consumers), 32 Parallax d2
      // from the reduced sums. 0 and 32 are timed twice (first and last) to see the drift.
      std::vector<int> v3_flags = {0, 32, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 16, 24, 38, 0, 32};
      if (const char* e = std::getenv("PLX_BENCH_FWD_FLAGS")) {  // e.g. "0,38,0,38": an interleaved A/B
        v3_flags.clear();
        for (const char* c = e; *c;) {
          v3_flags.push_back(std::atoi(c));
          while (*c && *c != ',') ++c;
          if (*c) ++c;
        }
      }
      if (const char* e = std::getenv("PLX_BENCH_FWD_DEFAULT_ONLY"); e && e[0] == '1') {
        // Only the default dispatch, timed first in a fresh process (bench/cuda/fwd_ab.sh alternates
        // this with the torch baselines, process by process, so neither side is timed later in a
        // long run than the other).
        const double dflt = run(0, -1);
        std::printf("{\"bench\": \"forward_default\", \"mech\": \"%s\", \"B\": %d, \"H\": %d, \"L\": %d, \"D\": %d, "
                    "\"causal\": true, \"default_ms\": %.4f, \"tflops\": %.1f}\n",
                    plx ? "parallax" : "softmax", B, H, L, D, dflt, flops / (dflt * 1e-3) / 1e12);
        std::fflush(stdout);
        BCHECK(cudaFree(pool));
        continue;
      }
      std::string v3_json;
      const double v1 = run(1, -1), v2 = run(2, -1);
      std::string seen = ",";
      for (int f : v3_flags) {
        int n = 0;
        for (std::size_t pos = seen.find("," + std::to_string(f) + ","); pos != std::string::npos;
             pos = seen.find("," + std::to_string(f) + ",", pos + 1))
          ++n;
        const std::string key = std::to_string(f) + (n ? "_" + std::to_string(n + 1) : "");
        seen += std::to_string(f) + ",";
        char buf[80];
        std::snprintf(buf, sizeof buf, "%s\"%s\": %.4f", v3_json.empty() ? "" : ", ", key.c_str(), run(3, f));
        v3_json += buf;
      }
      const double v2b = run(2, -1), dflt = run(0, -1);  // v2 again (drift check) and the default dispatch
      std::printf("{\"bench\": \"forward\", \"mech\": \"%s\", \"B\": %d, \"H\": %d, \"L\": %d, \"D\": %d, \"causal\": true, "
                  "\"v1_ms\": %.4f, \"v2_ms\": %.4f, \"v2_again_ms\": %.4f, \"default_ms\": %.4f, \"v3_ms\": {%s}, "
                  "\"v1_tflops\": %.1f, \"tflops\": %.1f}\n",
                  plx ? "parallax" : "softmax", B, H, L, D, v1, v2, v2b, dflt, v3_json.c_str(),
                  flops / (v1 * 1e-3) / 1e12, flops / (dflt * 1e-3) / 1e12);
      std::fflush(stdout);
      BCHECK(cudaFree(pool));
    }
  return 0;
}
