// bench/cuda/bench_parallax_decode.cu — Parallax / softmax decode (Lq = 1) latency on sm_90.
//
// Charter: times the numbered versions of the decode kernel at the issue-6 shapes
// (B in {1, 32}; Hq/Hkv in {8/8, 32/8}; L in {512, 1024, 4096, 16384}; D = 128; bf16),
// CUDA-graph timed over rotating KV caches that together exceed 3x L2, and prints the
// fraction of the HBM floor bytes(K, V) / copy bandwidth (bandwidth measured in the same
// run). One JSON line per measurement on stdout. Baselines (cuDNN, FlashAttention-2 via
// torch SDPA) are timed by torch_baselines.py in the same device call.
//
// | version | idea                                                                  | gain (H200, 2026-11-29, docs/gpu-results.md) |
// |---------|-----------------------------------------------------------------------|-----------------------------------------------|
// | v1      | naive: one block per (b, query head), no split, K/V read once per     | baseline: 77 us (B=1, L=512) .. 4.1 ms (16k)  |
// |         | query head, thread-per-key scores straight from global memory         |                                               |
// | v2      | split-KV flash-decoding, one block per (split, kv head, b) serving    | 8-110x over v1; 0.95 of the HBM floor for     |
// |         | the whole GQA group, 16-byte cp.async double buffer, CUDA-core fp32   | MHA at B=32; compute-bound for G=4            |
// |         | scores and PV (P never rounded), exact docs/math.md §6.2 combine kernel        | (1139 us at B=32, 32/8, 16k)                  |
// | v3      | scores and PV on mma.sync m16n8k16 (heads = rows, padded to 16), 4     | 1.8-2.2x over v2 for G=4; 8-25% over v2 at    |
// |         | warps x 16 keys merged at the end, 3 stages, per-warp running-zbar     | B=1; 3-10% slower than v2 for MHA at B=32     |
// |         | shift, P as hi+lo bf16 pairs, combine fused into the last split block  | (so the library dispatches v2 there)          |
// | v4      | v3 with stacked mma rows for G <= 4 (q/r rows share the score mma,     | B=1: 1.2-1.7x over v3 (e.g. 32/8 L=4096 22.3  |
// |         | p1/p2 hi/lo rows share one PV mma: 32 instead of 96 mma per 16 keys)   | -> 13.1 us); B=32: 0-9% over v3, = v2 for MHA |
// |         | + last-block combine from smem-staged records, per-split weights once  | (auto-v2 kept); flags 1/2/8 time the parts    |
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "bench/cuda/bench_common.cuh"
#include "kernels/launch.hpp"

namespace {

using plx::cuda::AttnParams;

// ---- v1: naive (kept for the table; validated against v2 in main before timing) ----
template <bool PLX>
__global__ void __launch_bounds__(128) decode_v1(const AttnParams p) {
  constexpr int D = 128, TK = 128;
  __shared__ float qs[D], rs[D], ps1[TK], ps2[TK], red[4];
  const int hq = blockIdx.x, b = blockIdx.y, t = threadIdx.x;
  const int hk = hq / (p.Hq / p.Hkv);
  const auto* q = static_cast<const __nv_bfloat16*>(p.q) + b * p.q_batch_stride + hq * p.q_head_stride;
  const auto* r = static_cast<const __nv_bfloat16*>(p.r) + b * p.r_batch_stride + hq * p.r_head_stride;
  const auto* k = static_cast<const __nv_bfloat16*>(p.k) + b * p.k_batch_stride + hk * p.k_head_stride;
  const auto* v = static_cast<const __nv_bfloat16*>(p.v) + b * p.v_batch_stride + hk * p.v_head_stride;
  qs[t] = __bfloat162float(q[t]) * p.scale * 1.4426950408889634f;
  rs[t] = PLX ? __bfloat162float(r[t]) : 0.f;
  __syncthreads();
  const float z0 = 0.f;  // v1: no shift
  float m = -INFINITY, d1 = 0, d2 = 0, o1 = 0, o2 = 0;
  for (int k0 = 0; k0 < p.Lkv; k0 += TK) {
    const int j = k0 + t;
    float s = -INFINITY, z = 0;
    if (j < p.Lkv) {
      float a = 0, c = 0;
      for (int d = 0; d < D; ++d) {
        const float kd = __bfloat162float(k[(long long)j * p.k_row_stride + d]);
        a += qs[d] * kd, c += rs[d] * kd;
      }
      s = a, z = c;
    }
    float mx = s;
    for (int o = 16; o; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(~0u, mx, o));
    if ((t & 31) == 0) red[t >> 5] = mx;
    __syncthreads();
    const float mn = fmaxf(m, fmaxf(fmaxf(red[0], red[1]), fmaxf(red[2], red[3])));
    const float al = exp2f(m - mn);
    m = mn;
    const float p1 = exp2f(s - mn);
    ps1[t] = p1, ps2[t] = p1 * (z - z0);
    __syncthreads();
    o1 *= al, o2 *= al, d1 *= al, d2 *= al;
    for (int jj = 0; jj < TK && k0 + jj < p.Lkv; ++jj) {
      const float vv = __bfloat162float(v[(long long)(k0 + jj) * p.v_row_stride + t]);
      o1 += ps1[jj] * vv, o2 += ps2[jj] * vv, d1 += ps1[jj], d2 += ps2[jj];
    }
    __syncthreads();
  }
  const float vb = o1 / d1, out = PLX ? vb * (1 + d2 / d1) - o2 / d1 : vb;
  static_cast<__nv_bfloat16*>(p.out)[b * p.o_batch_stride + hq * p.o_head_stride + t] = __float2bfloat16(out);
}

struct Shape { int B, Hq, Hkv, L; };

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  cudaDeviceProp prop{};
  BCHECK(cudaGetDeviceProperties(&prop, 0));
  const double copy_bw = measure_copy_bw(), read_bw = measure_read_bw(prop.multiProcessorCount);
  const double bw = std::max(copy_bw, read_bw);  // the floor uses the better of the two
  std::printf("{\"device\": \"%s\", \"sms\": %d, \"l2_bytes\": %d, \"copy_bw_GBps\": %.1f, \"read_bw_GBps\": %.1f}\n",
              prop.name, prop.multiProcessorCount, prop.l2CacheSize, copy_bw / 1e9, read_bw / 1e9);
  std::vector<Shape> shapes;
  for (int B : {1, 32})
    for (auto hh : {std::pair{8, 8}, std::pair{32, 8}})
      for (int L : {512, 1024, 4096, 16384}) shapes.push_back({B, hh.first, hh.second, L});
  if (quick) shapes = {{1, 8, 8, 512}, {32, 32, 8, 16384}};
  const int D = 128;
  for (const Shape& s : shapes)
    for (int plx : {1, 0}) {
      const size_t kv_elems = size_t(s.B) * s.L * s.Hkv * D;       // per tensor
      const size_t q_elems = size_t(s.B) * s.Hq * D;
      const size_t set_bytes = 2 * (2 * kv_elems + 3 * q_elems);
      const int nsets = int(std::max<size_t>(2, std::min<size_t>(64, (3 * size_t(prop.l2CacheSize)) / set_bytes + 2)));
      void* pool;
      BCHECK(cudaMalloc(&pool, set_bytes * nsets + 256));
      fill_bf16(pool, set_bytes * nsets / 2, 1234 + s.L + s.B);
      auto set_params = [&](int i) {
        char* base = static_cast<char*>(pool) + size_t(i % nsets) * set_bytes;
        AttnParams p;
        p.k = base, p.v = base + 2 * kv_elems, p.q = base + 4 * kv_elems, p.r = base + 4 * kv_elems + 2 * q_elems;
        p.out = base + 4 * kv_elems + 4 * q_elems;
        p.B = s.B, p.Hq = s.Hq, p.Hkv = s.Hkv, p.Lq = 1, p.Lkv = s.L, p.D = p.Dv = D;
        p.q_head_stride = p.r_head_stride = p.o_head_stride = D;
        p.q_row_stride = p.r_row_stride = p.o_row_stride = s.Hq * D;
        p.q_batch_stride = p.r_batch_stride = p.o_batch_stride = s.Hq * D;
        p.k_head_stride = p.v_head_stride = D;
        p.k_row_stride = p.v_row_stride = s.Hkv * D;
        p.k_batch_stride = p.v_batch_stride = size_t(s.L) * s.Hkv * D;
        p.scale = 1.f / std::sqrt(float(D));
        p.mech = plx ? plx::cuda::Mechanism::Parallax : plx::cuda::Mechanism::Softmax;
        return p;
      };
      AttnParams p0 = set_params(0);
      p0.num_splits = plx::cuda::decode_num_splits(p0, prop.multiProcessorCount);
      float* ws = nullptr;
      {
        AttnParams pm = p0;
        pm.num_splits = 256;
        BCHECK(cudaMalloc(&ws, plx::cuda::decode_workspace_floats(pm) * 4));
        BCHECK(cudaMemset(ws, 0, plx::cuda::decode_workspace_floats(pm) * 4));  // counters must start at 0
      }
      const double floor_ms = 2.0 * 2 * kv_elems / bw * 1e3;  // bytes(K,V) / copy bandwidth
      // flags: the mma_sync decode's tuning bits of kernels/parallax_decode.cu (1 stacked rows,
      // 2 staged combine, 4 never the cuda_core kernel under Auto); -1 = the library default.
      using plx::cuda::DecodeKernel;
      auto time_splits = [&](int S, DecodeKernel kernel = DecodeKernel::MmaSync, int flags = -1) {
        plx::cuda::LaunchExtras x;
        x.decode_flags = flags;
        AttnParams pc = p0;
        pc.num_splits = S;
        if (S > 1)  // v3's arrival counters for this split count start at zero
          BCHECK(cudaMemset(ws + plx::cuda::decode_counters_offset(pc), 0, size_t(s.B) * s.Hkv * 4));
        return time_graph([&](int i, cudaStream_t st) {
          AttnParams p = set_params(i);
          p.num_splits = S, p.workspace = ws, p.decode_kernel = kernel;
          plx::cuda::launch(p, plx::cuda::Op::Decode, st, x);
        });
      };
      const double ms_def = time_splits(p0.num_splits, DecodeKernel::Auto);  // what the library ships (dispatch)
      const double ms_v3 = time_splits(p0.num_splits, DecodeKernel::MmaSync, 0);  // mma_sync, no tuning bits
      const double ms_stk = time_splits(p0.num_splits, DecodeKernel::MmaSync, 1);  // stacked mma rows only
      const double ms_v4 = time_splits(p0.num_splits, DecodeKernel::MmaSync, 3);  // stacked rows + staged combine
      const double ms_v2 = time_splits(p0.num_splits, DecodeKernel::CudaCore);
      const double ms_def2 = time_splits(p0.num_splits, DecodeKernel::Auto);  // the default again: run-to-run spread
      // Sweep of split counts for v3 (tuning data for the heuristic; the v3 number above is what ships).
      int best_s = p0.num_splits;
      double best_ms = ms_v4;
      std::string sweep;
      if (!quick)
        for (int S : {1, 2, 4, 8, 16, 32, 64, 128, 256}) {
          if (S == p0.num_splits || S > std::max(1, s.L / 64)) continue;
          const double ms = time_splits(S, DecodeKernel::MmaSync, 3);
          sweep += (sweep.empty() ? "" : ", ") + std::string("\"") + std::to_string(S) + "\": " + std::to_string(ms * 1e3);
          if (ms < best_ms) best_ms = ms, best_s = S;
        }
      double ms_v1 = -1, v1_diff = -1;
      if (!quick && s.B * s.L <= 32 * 4096) {
        // v1 must agree with the shipped kernel (v3) on set 0 before its time means anything.
        AttnParams p = set_params(0);
        p.num_splits = p0.num_splits, p.workspace = ws;
        std::vector<__nv_bfloat16> a(q_elems), c(q_elems);
        if (p.num_splits > 1) BCHECK(cudaMemset(ws + plx::cuda::decode_counters_offset(p), 0, size_t(s.B) * s.Hkv * 4));
        BCHECK(cudaMemset(p.out, 0xFF, q_elems * 2));  // poison: an unwritten output shows as NaN
        plx::cuda::launch(p, plx::cuda::Op::Decode, nullptr);
        BCHECK(cudaMemcpy(a.data(), p.out, q_elems * 2, cudaMemcpyDeviceToHost));
        if (plx) decode_v1<true><<<dim3(p.Hq, p.B), 128>>>(p);
        else decode_v1<false><<<dim3(p.Hq, p.B), 128>>>(p);
        BCHECK(cudaGetLastError());
        BCHECK(cudaMemcpy(c.data(), p.out, q_elems * 2, cudaMemcpyDeviceToHost));
        v1_diff = 0;
        for (size_t i = 0; i < q_elems; ++i)
          v1_diff = std::max(v1_diff, double(std::fabs(__bfloat162float(a[i]) - __bfloat162float(c[i]))));
        for (size_t i = 0; i < q_elems; ++i)
          if (!std::isfinite(__bfloat162float(a[i]))) v1_diff = INFINITY;  // NaN/poison left: report it
        ms_v1 = time_graph([&](int i, cudaStream_t st) {
          AttnParams p = set_params(i);
          if (plx) decode_v1<true><<<dim3(p.Hq, p.B), 128, 0, st>>>(p);
          else decode_v1<false><<<dim3(p.Hq, p.B), 128, 0, st>>>(p);
          BCHECK(cudaGetLastError());
        }, 10, 5);
      }
      std::printf("{\"bench\": \"decode\", \"mech\": \"%s\", \"B\": %d, \"Hq\": %d, \"Hkv\": %d, \"L\": %d, \"D\": %d, "
                  "\"splits\": %d, \"default_us\": %.2f, \"default2_us\": %.2f, \"mma_sync_plain_us\": %.2f, \"mma_sync_stack_us\": %.2f, \"mma_sync_us\": %.2f, \"cuda_core_us\": %.2f, \"v1_us\": %.2f, \"floor_us\": %.2f, \"floor_frac\": %.3f, \"v1_v3_maxdiff\": %.3g, \"best_splits\": %d, \"best_us\": %.2f, \"sweep_us\": {%s}}\n",
                  plx ? "parallax" : "softmax", s.B, s.Hq, s.Hkv, s.L, D, p0.num_splits, ms_def * 1e3, ms_def2 * 1e3, ms_v3 * 1e3, ms_stk * 1e3, ms_v4 * 1e3, ms_v2 * 1e3, ms_v1 * 1e3,
                  floor_ms * 1e3, floor_ms / ms_def, v1_diff, best_s, best_ms * 1e3, sweep.c_str());
      std::fflush(stdout);
      if (ws) BCHECK(cudaFree(ws));
      BCHECK(cudaFree(pool));
    }
  return 0;
}
