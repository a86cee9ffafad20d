// bench/cuda/bench_lla.cu — LLA decode (Lq = 1) latency on sm_90, next to our Parallax decode.
//
// Charter: B in {1, 32}, Hq = Hkv = 8, L in {1024, 16384}, D = 128, bf16, lambda = 0.1; CUDA-graph
// timed (bench_common.cuh) over rotating KV caches that together exceed 3x L2. Times, in the same
// run: the split-KV LLA decode with the direct solve (fp32 Cholesky) and with CG (32 iterations
// max, docs/math.md defaults), the matrix-free CG kernel on the same decode (one block per query head),
// and the shipped Parallax decode (kernels/parallax_decode.cu) as the reference point. One JSON
// line per shape. Correctness is tests/kernels/test_lla_gpu.cpp's job; here only a NaN check.
//
// | version | idea                                                                 | direct decode, µs (H200, 2026-11-29) at   |
// |         |                                                                      | B/L = 1/1k, 1/16k, 32/1k, 32/16k          |
// |---------|----------------------------------------------------------------------|-------------------------------------------|
// | v1      | split-KV: pass 1 centred moments (CUDA-core fp32 rank-64 updates of   | 520, 1283, 979, 8084                      |
// |         | C per tile, Chan merge), combine + shared-memory Cholesky per row,    |                                           |
// |         | pass 2 Parallax-like output                                           |                                           |
// | v2      | Cholesky with the matrix in registers, coalesced split combine        | 228, 447, 763, 7848                       |
// | v3      | combine in its own kernel (16 blocks per row), forward substitution   | 168, 364, 656, 7700 (Parallax decode:     |
// |         | fused into the factorisation, parallel back substitution (ships)      | 10.3, 31.1, 35.7, 515)                    |
// | mf      | matrix-free CG per row (one block per row, re-reads K per matvec)     | CG: 1855, 20421, 3206, 24843              |
#include <cmath>
#include <cstring>
#include <vector>

#include "bench/cuda/bench_common.cuh"
#include "kernels/launch.hpp"
#include "kernels/lla_api.hpp"

namespace {
struct Shape { int B, H, L; };
}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  cudaDeviceProp prop{};
  BCHECK(cudaGetDeviceProperties(&prop, 0));
  const double read_bw = measure_read_bw(prop.multiProcessorCount);
  std::printf("{\"device\": \"%s\", \"sms\": %d, \"l2_bytes\": %d, \"read_bw_GBps\": %.1f}\n", prop.name,
              prop.multiProcessorCount, prop.l2CacheSize, read_bw / 1e9);
  std::vector<Shape> shapes;
  for (int B : {1, 32})
    for (int L : {1024, 16384}) shapes.push_back({B, 8, L});
  if (quick) shapes = {{1, 8, 1024}};
  const int D = 128;
  for (const Shape& s : shapes) {
    const size_t kv_elems = size_t(s.B) * s.L * s.H * D, q_elems = size_t(s.B) * s.H * D;
    const size_t set_bytes = 2 * (2 * kv_elems + 3 * q_elems);
    const int nsets = int(std::max<size_t>(2, std::min<size_t>(64, (3 * size_t(prop.l2CacheSize)) / set_bytes + 2)));
    void* pool;
    BCHECK(cudaMalloc(&pool, set_bytes * nsets + 256));
    fill_bf16(pool, set_bytes * nsets / 2, 4321 + s.L + s.B);
    auto base_of = [&](int i) { return static_cast<char*>(pool) + size_t(i % nsets) * set_bytes; };
    auto lla_params = [&](int i, plx::cuda::LlaSolver solver, int splits) {
      char* base = base_of(i);
      plx::cuda::LlaParams p;
      p.k = base, p.v = base + 2 * kv_elems, p.q = base + 4 * kv_elems, p.out = base + 4 * kv_elems + 4 * q_elems;
      p.B = s.B, p.Hq = p.Hkv = s.H, p.Lq = 1, p.Lkv = s.L, p.D = p.Dv = D;
      p.q_head_stride = p.o_head_stride = D, p.q_row_stride = p.o_row_stride = s.H * D;
      p.q_batch_stride = p.o_batch_stride = s.H * D;
      p.k_head_stride = p.v_head_stride = D, p.k_row_stride = p.v_row_stride = s.H * D;
      p.k_batch_stride = p.v_batch_stride = size_t(s.L) * s.H * D;
      p.scale = 1.f / std::sqrt(float(D));
      p.lambda_scalar = 0.1f, p.anchor = plx::cuda::LlaAnchor::KeyMean, p.solver = solver, p.num_splits = splits;
      return p;
    };
    plx::cuda::LlaParams p0 = lla_params(0, plx::cuda::LlaSolver::Direct, 1);
    const int S = plx::cuda::lla_decode_num_splits(p0, prop.multiProcessorCount);
    p0.num_splits = S;
    float* ws;
    BCHECK(cudaMalloc(&ws, plx::cuda::lla_workspace_floats(p0) * 4));
    auto time_lla = [&](plx::cuda::LlaSolver solver, plx::cuda::Op op, int iters) {
      return time_graph([&](int i, cudaStream_t st) {
        plx::cuda::LlaParams p = lla_params(i, solver, S);
        p.workspace = ws;
        plx::cuda::launch_lla(p, op, st);
      }, iters, 5);
    };
    // NaN check of one launch per path on set 0 (output poisoned first).
    auto finite_out = [&](plx::cuda::LlaSolver solver, plx::cuda::Op op) {
      plx::cuda::LlaParams p = lla_params(0, solver, S);
      p.workspace = ws;
      BCHECK(cudaMemset(p.out, 0xFF, q_elems * 2));
      plx::cuda::launch_lla(p, op, nullptr);
      std::vector<__nv_bfloat16> h(q_elems);
      BCHECK(cudaMemcpy(h.data(), p.out, q_elems * 2, cudaMemcpyDeviceToHost));
      for (auto x : h)
        if (!std::isfinite(__bfloat162float(x))) return false;
      return true;
    };
    const bool ok = finite_out(plx::cuda::LlaSolver::Direct, plx::cuda::Op::Decode) &&
                    finite_out(plx::cuda::LlaSolver::CG, plx::cuda::Op::Decode) &&
                    finite_out(plx::cuda::LlaSolver::CG, plx::cuda::Op::Forward);
    const double ms_direct = time_lla(plx::cuda::LlaSolver::Direct, plx::cuda::Op::Decode, 20);
    const double ms_cg = time_lla(plx::cuda::LlaSolver::CG, plx::cuda::Op::Decode, 20);
    const double ms_mf = time_lla(plx::cuda::LlaSolver::CG, plx::cuda::Op::Forward, s.B * s.L > 65536 ? 5 : 20);
    // Parallax decode (what kernels/parallax_decode.cu ships), same inputs, r = the q buffer's neighbour.
    plx::cuda::AttnParams a0;
    auto plx_params = [&](int i) {
      char* base = base_of(i);
      plx::cuda::AttnParams a;
      a.k = base, a.v = base + 2 * kv_elems, a.q = base + 4 * kv_elems, a.r = base + 4 * kv_elems + 2 * q_elems;
      a.out = base + 4 * kv_elems + 4 * q_elems;
      a.B = s.B, a.Hq = a.Hkv = s.H, a.Lq = 1, a.Lkv = s.L, a.D = a.Dv = D;
      a.q_head_stride = a.r_head_stride = a.o_head_stride = D;
      a.q_row_stride = a.r_row_stride = a.o_row_stride = s.H * D;
      a.q_batch_stride = a.r_batch_stride = a.o_batch_stride = s.H * D;
      a.k_head_stride = a.v_head_stride = D, a.k_row_stride = a.v_row_stride = s.H * D;
      a.k_batch_stride = a.v_batch_stride = size_t(s.L) * s.H * D;
      a.scale = 1.f / std::sqrt(float(D));
      a.mech = plx::cuda::Mechanism::Parallax;
      return a;
    };
    a0 = plx_params(0);
    a0.num_splits = plx::cuda::decode_num_splits(a0, prop.multiProcessorCount);
    float* pws = nullptr;
    if (a0.num_splits > 1) {
      BCHECK(cudaMalloc(&pws, plx::cuda::decode_workspace_floats(a0) * 4));
      BCHECK(cudaMemset(pws, 0, plx::cuda::decode_workspace_floats(a0) * 4));  // v3's counters start at 0
    }
    const double ms_plx = time_graph([&](int i, cudaStream_t st) {
      plx::cuda::AttnParams a = plx_params(i);
      a.num_splits = a0.num_splits, a.workspace = pws;
      plx::cuda::launch(a, plx::cuda::Op::Decode, st);
    });
    const double floor_ms = 2.0 * 2 * kv_elems / read_bw * 1e3;
    // Pass-1 work: B*H*L*D^2 FMAs (the C accumulation, the compute floor of the decode) over the
    // whole decode time: how close the decode is to an FMA-bound pass 1.
    const double gfma = double(s.B) * s.H * s.L * D * D / 1e9;
    std::printf("{\"bench\": \"lla_decode\", \"B\": %d, \"Hq\": %d, \"Hkv\": %d, \"L\": %d, \"D\": %d, \"splits\": %d, "
                "\"lla_direct_us\": %.2f, \"lla_cg_us\": %.2f, \"lla_matrixfree_cg_us\": %.2f, \"parallax_us\": %.2f, "
                "\"parallax_splits\": %d, \"direct_over_parallax\": %.2f, \"kv_floor_us\": %.2f, \"CxD2_TFMAps_over_total\": %.2f, "
                "\"finite\": %s}\n",
                s.B, s.H, s.H, s.L, D, S, ms_direct * 1e3, ms_cg * 1e3, ms_mf * 1e3, ms_plx * 1e3, a0.num_splits,
                ms_direct / ms_plx, floor_ms * 1e3, gfma / ms_direct, ok ? "true" : "false");
    std::fflush(stdout);
    BCHECK(cudaFree(ws));
    if (pws) BCHECK(cudaFree(pws));
    BCHECK(cudaFree(pool));
  }
  return 0;
}
