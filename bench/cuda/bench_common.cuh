// bench/cuda/bench_common.cuh — timing helpers shared by the CUDA benchmarks.
//
// Charter: checked CUDA calls, a device pool of rotating input sets (together > 3x L2, so
// each launch reads HBM, not cache), random bf16 fill on the device (our own counter hash,
// never zeros), graph-captured timing (median over replays of a graph of `iters` launches),
// and a measured copy bandwidth for the floor. No correctness checks here: the kernels
// are validated by tests/kernels before they are timed.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#define BCHECK(x)                                                                                   \
  do {                                                                                              \
    cudaError_t e_ = (x);                                                                           \
    if (e_ != cudaSuccess) {                                                                        \
      std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorName(e_), __FILE__, __LINE__, \
                   cudaGetErrorString(e_));                                                         \
      std::exit(1);                                                                                 \
    }                                                                                               \
  } while (0)

__global__ void bench_fill_bf16(__nv_bfloat16* x, size_t n, unsigned long long seed, float scale) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    unsigned long long h = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
    h ^= h >> 31, h *= 0xBF58476D1CE4E5B9ull, h ^= h >> 27, h *= 0x94D049BB133111EBull, h ^= h >> 33;
    const float u = float(h >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    x[i] = __float2bfloat16((2.f * u - 1.f) * 1.7320508f * scale);  // unit variance uniform
  }
}
inline void fill_bf16(void* p, size_t n, unsigned long long seed, float scale = 1.f) {
  bench_fill_bf16<<<1024, 256>>>(static_cast<__nv_bfloat16*>(p), n, seed, scale);
  BCHECK(cudaGetLastError());
}

// The sequence lengths to run: `dflt`, or only PLX_BENCH_L (one length, e.g. to profile one
// shape with ncu).
inline std::vector<int> bench_lengths(std::vector<int> dflt) {
  if (const char* e = std::getenv("PLX_BENCH_L")) return {std::atoi(e)};
  return dflt;
}

// Median milliseconds per launch: `launch(i)` is captured `iters` times into one graph
// (i = 0..iters-1, so it can rotate input sets), the graph is replayed `reps` times.
inline double time_graph(const std::function<void(int, cudaStream_t)>& launch, int iters = 50, int reps = 9) {
  cudaStream_t st;
  BCHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  for (int i = 0; i < 3; ++i) launch(i, st);  // warm-up (module load, smem attributes)
  BCHECK(cudaStreamSynchronize(st));
  cudaGraph_t g;
  cudaGraphExec_t ge;
  BCHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < iters; ++i) launch(i, st);
  BCHECK(cudaStreamEndCapture(st, &g));
  BCHECK(cudaGraphInstantiate(&ge, g, 0));
  BCHECK(cudaGraphLaunch(ge, st));
  BCHECK(cudaStreamSynchronize(st));
  cudaEvent_t a, b;
  BCHECK(cudaEventCreate(&a));
  BCHECK(cudaEventCreate(&b));
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    BCHECK(cudaEventRecord(a, st));
    BCHECK(cudaGraphLaunch(ge, st));
    BCHECK(cudaEventRecord(b, st));
    BCHECK(cudaEventSynchronize(b));
    float ms = 0;
    BCHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms / iters);
  }
  std::sort(t.begin(), t.end());
  BCHECK(cudaGraphExecDestroy(ge));
  BCHECK(cudaGraphDestroy(g));
  BCHECK(cudaEventDestroy(a));
  BCHECK(cudaEventDestroy(b));
  BCHECK(cudaStreamDestroy(st));
  return t[t.size() / 2];
}

__global__ void bench_read_kernel(const uint4* x, size_t n, unsigned* sink) {
  unsigned acc = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const uint4 v = x[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678u) sink[0] = acc;  // keeps the loads; practically never stores
}
// Read-only bandwidth (bytes read per second) of a 4 GiB buffer: the floor for decode,
// which reads K and V once and writes almost nothing.
inline double measure_read_bw(int sms) {
  const size_t n = size_t(4) << 30;
  void* a;
  unsigned* sink;
  BCHECK(cudaMalloc(&a, n));
  BCHECK(cudaMalloc(&sink, 4));
  BCHECK(cudaMemset(a, 1, n));
  const double ms = time_graph([&](int, cudaStream_t st) {
    bench_read_kernel<<<sms * 8, 512, 0, st>>>(static_cast<const uint4*>(a), n / 16, sink);
    BCHECK(cudaGetLastError());
  }, 5, 5);
  BCHECK(cudaFree(a));
  BCHECK(cudaFree(sink));
  return n / (ms * 1e-3);
}

// Device-to-device copy bandwidth (bytes read + written per second), 2 GiB each way.
inline double measure_copy_bw() {
  const size_t n = size_t(2) << 30;
  void *a, *b;
  BCHECK(cudaMalloc(&a, n));
  BCHECK(cudaMalloc(&b, n));
  BCHECK(cudaMemset(a, 1, n));
  const double ms = time_graph([&](int, cudaStream_t st) { BCHECK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, st)); }, 5, 5);
  BCHECK(cudaFree(a));
  BCHECK(cudaFree(b));
  return 2.0 * n / (ms * 1e-3);
}
