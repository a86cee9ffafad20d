// bench/cuda/bench_parallax_backward.cu — Parallax / softmax backward (and forward + backward) time on sm_90.
//
// Charter: causal (end-aligned) B = 2, H = 8, L in {2048, 8192}, D = 128, bf16: the prefill forward
// with its saves (out, vbar, lse, m, d1, zbar), the deterministic backward (kernels/parallax_backward.cu)
// and the two back to back, each CUDA-graph timed over rotating input sets (together > 3x L2).
// The saved tensors are produced by one untimed forward per set first, so the backward reads real
// data. Prints ms and executed TFLOP/s (causal pairs B H L^2 / 2, 2 D flops per pair and matmul:
// forward Parallax 4 matmuls / softmax 2; backward Parallax 11 (key pass S, Z, A, dV, dK(Q), dK(R);
// query pass S, Z, A, dQ, dR) / softmax 7 (S, A, dV, dK; S, A, dQ)). One JSON line per measurement;
// after timing, the gradients of set 0 are checked to be finite (poison left = NaN). cuDNN / FA2
// softmax forward + backward are timed by torch_baselines.py in the same device call.
//
// | version | idea                                                                            | gain                      |
// |---------|---------------------------------------------------------------------------------|---------------------------|
// | v1      | library kernels: preprocess (t, b, lse2) + key-tile pass (dk, dv; GQA group in  | first version: L=8192     |
// |         | registers) + query-tile pass (dq, dr), mma.sync m16n8k16, recompute S/Z/A in    | Parallax bwd 7.19 ms (210 |
// |         | both passes, no atomics (deterministic), cp.async double buffers                | TFLOP/s executed); fwd+bwd|
// |         |                                                                                 | 4.8x cuDNN (target 2.4x)  |
// | v2      | kernels/parallax_backward_wgmma.cu (default for D = 128): both tile passes on   | in docs/gpu-results.md's  |
// |         | wgmma (one warpgroup per block, 2 blocks/SM, 128B-swizzled cp.async tiles, 32-  | git history; v1 is timed  |
// |         | row query / key tiles), same deterministic structure and weights                | in the same run           |
// | v2.1    | instruction diet from Nsight Compute profiles: descriptors as lo + offset,      | L=8192 Parallax bwd 4.84  |
// |         | unpredicated tile loads, ex2.approx.ftz(-inf) masks, no divisions in the key    | -> 3.32 ms; fwd+bwd 2.34x |
// |         | pass; its dV/dK retire at the next step's wait; query-pass masks as one -inf    | cuDNN (2.24x with the     |
// |         | pass per partial tile (profiles in docs/gpu-results.md's git history)             | query-pass masks; met)    |
#include <cmath>
#include <cstring>
#include <vector>

#include "bench/cuda/bench_common.cuh"
#include "kernels/backward_launch.hpp"
#include "kernels/launch.hpp"

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  cudaDeviceProp prop{};
  BCHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("{\"device\": \"%s\", \"sms\": %d}\n", prop.name, prop.multiProcessorCount);
  const int B = 2, H = 8, D = 128;
  std::vector<int> Ls = bench_lengths({2048, 8192});
  if (quick) Ls = {2048};
  for (int L : Ls)
    for (int plx : {1, 0}) {
      const size_t e = size_t(B) * L * H * D, rows = size_t(B) * H * L;
      // q r k v dO | out vbar | dq dr dk dv (bf16) ; lse m d1 zbar | workspace (3 rows + kref) (fp32)
      const size_t set_bytes = 2 * 11 * e + 4 * (7 * rows + size_t(B) * H * D);
      const int nsets = int(std::max<size_t>(2, (3 * size_t(prop.l2CacheSize)) / set_bytes + 2));
      char* pool;
      BCHECK(cudaMalloc(&pool, set_bytes * nsets));
      fill_bf16(pool, set_bytes * nsets / 2, 77 + L);  // everything random first (never zeros)
      auto fparams = [&](int i) {
        char* base = pool + size_t(i % nsets) * set_bytes;
        plx::cuda::AttnParams p;
        p.q = base, p.r = base + 2 * e, p.k = base + 4 * e, p.v = base + 6 * e;
        p.out = base + 10 * e, p.vbar = base + 12 * e;
        float* f = reinterpret_cast<float*>(base + 22 * e);
        p.lse = f, p.m = f + rows, p.d1 = f + 2 * rows, p.zbar = f + 3 * rows;
        p.B = B, p.Hq = H, p.Hkv = H, p.Lq = L, p.Lkv = L, p.D = p.Dv = D;
        p.q_head_stride = p.r_head_stride = p.o_head_stride = p.k_head_stride = p.v_head_stride = D;
        p.q_row_stride = p.r_row_stride = p.o_row_stride = p.k_row_stride = p.v_row_stride = H * D;
        p.q_batch_stride = p.r_batch_stride = p.o_batch_stride = p.k_batch_stride = p.v_batch_stride = size_t(L) * H * D;
        p.scale = 1.f / std::sqrt(float(D));
        p.mech = plx ? plx::cuda::Mechanism::Parallax : plx::cuda::Mechanism::Softmax;
        return p;
      };
      auto bparams = [&](int i) {
        const plx::cuda::AttnParams f = fparams(i);
        char* base = pool + size_t(i % nsets) * set_bytes;
        plx::cuda::BwdParams p;
        p.q = f.q, p.r = f.r, p.k = f.k, p.v = f.v, p.out = f.out, p.vbar = f.vbar, p.dout = base + 8 * e;
        p.lse = f.lse, p.m = f.m, p.d1 = f.d1, p.zbar = f.zbar;
        p.dq = base + 14 * e, p.dr = base + 16 * e, p.dk = base + 18 * e, p.dv = base + 20 * e;
        p.workspace = reinterpret_cast<float*>(base + 22 * e) + 4 * rows;
        const std::int64_t hs = D, rs = H * D, bs = std::int64_t(L) * H * D;
        p.q_head_stride = p.r_head_stride = p.k_head_stride = p.v_head_stride = p.o_head_stride = hs;
        p.do_head_stride = p.dq_head_stride = p.dk_head_stride = hs;
        p.q_row_stride = p.r_row_stride = p.k_row_stride = p.v_row_stride = p.o_row_stride = rs;
        p.do_row_stride = p.dq_row_stride = p.dk_row_stride = rs;
        p.q_batch_stride = p.r_batch_stride = p.k_batch_stride = p.v_batch_stride = p.o_batch_stride = bs;
        p.do_batch_stride = p.dq_batch_stride = p.dk_batch_stride = bs;
        p.B = B, p.Hq = H, p.Hkv = H, p.Lq = L, p.Lkv = L, p.D = p.Dv = D, p.scale = f.scale, p.mech = f.mech;
        return p;
      };
      for (int i = 0; i < nsets; ++i) plx::cuda::launch(fparams(i), plx::cuda::Op::Forward, nullptr);  // real saves
      BCHECK(cudaDeviceSynchronize());
      const int iters = L >= 8192 ? 10 : 20;
      const double ms_f = time_graph([&](int i, cudaStream_t st) { plx::cuda::launch(fparams(i), plx::cuda::Op::Forward, st); }, iters, 7);
      const double ms_b = time_graph([&](int i, cudaStream_t st) { plx::cuda::launch_backward(bparams(i), st); }, iters, 7);
      const double ms_b1 = time_graph([&](int i, cudaStream_t st) {  // the v1 (mma.sync) passes, same run
        plx::cuda::BwdParams p = bparams(i);
        p.kernel = plx::cuda::BackwardKernel::MmaSync;
        plx::cuda::launch_backward(p, st);
      }, iters, 7);
      const double ms_fb = time_graph([&](int i, cudaStream_t st) {
        plx::cuda::launch(fparams(i), plx::cuda::Op::Forward, st);
        plx::cuda::launch_backward(bparams(i), st);
      }, iters, 7);
      // Where the backward's time goes: each of its three kernels alone (validated params; the
      // workspace of every set was filled by the runs above).
      double ms_pass[3];
      for (int w = 1; w <= 3; ++w)
        ms_pass[w - 1] = time_graph([&](int i, cudaStream_t st) {
          const plx::cuda::BwdParams p = bparams(i);
          plx::cuda::check_backward_params(p);
          BCHECK(static_cast<cudaError_t>(plx::cuda::detail::launch_backward_kernels(p, st, w)));
        }, iters, 7);
      // Set 0's gradients after all that: every element finite (a poisoned / unwritten one is NaN).
      size_t bad = 0;
      {
        plx::cuda::BwdParams p = bparams(0);
        for (void* g : {p.dq, p.dk, p.dv, plx ? p.dr : p.dq}) {
          std::vector<__nv_bfloat16> h(e);
          BCHECK(cudaMemcpy(h.data(), g, e * 2, cudaMemcpyDeviceToHost));
          for (size_t i = 0; i < e; ++i) bad += !std::isfinite(__bfloat162float(h[i]));
        }
      }
      const double pairs = double(B) * H * double(L) * L / 2, fl = 2.0 * D * pairs;
      const double fwd_mm = plx ? 4 : 2, bwd_mm = plx ? 11 : 7;
      std::printf("{\"bench\": \"backward\", \"mech\": \"%s\", \"B\": %d, \"H\": %d, \"L\": %d, \"D\": %d, \"causal\": true, "
                  "\"fwd_ms\": %.4f, \"bwd_ms\": %.4f, \"fwdbwd_ms\": %.4f, \"fwd_tflops\": %.1f, \"bwd_tflops\": %.1f, "
                  "\"pre_ms\": %.4f, \"kv_pass_ms\": %.4f, \"q_pass_ms\": %.4f, \"bwd_v1_ms\": %.4f, \"nonfinite_grads\": %zu, \"nsets\": %d}\n",
                  plx ? "parallax" : "softmax", B, H, L, D, ms_f, ms_b, ms_fb, fwd_mm * fl / (ms_f * 1e-3) / 1e12,
                  bwd_mm * fl / (ms_b * 1e-3) / 1e12, ms_pass[0], ms_pass[1], ms_pass[2], ms_b1, bad, nsets);
      std::fflush(stdout);
      BCHECK(cudaFree(pool));
    }
  return 0;
}
