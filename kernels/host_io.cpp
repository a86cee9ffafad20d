// kernels/host_io.cpp — host <-> device plumbing of the kernels' host APIs (see host_io.hpp).
//
// Charter: the CUDA runtime calls behind kernels/host_io.hpp, each checked; the bf16/fp16 round
// trip uses the reference's own bit conversions (reference/dtype.hpp), so a candidate sees
// exactly the numbers the reference saw. Host compiler only; no kernels, no launches.
#include "kernels/host_io.hpp"

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <utility>

namespace plx::cuda::io {

namespace {
std::uint16_t to_bits(double x, DType t) {
  return t == DType::BF16 ? bf16_bits(static_cast<float>(x)) : f16_bits(static_cast<float>(x));
}
double from_bits(std::uint16_t b, DType t) {
  return t == DType::BF16 ? double(bf16_to_float(b)) : double(f16_to_float(b));
}
// prod(shape) elements of type H from the device, each widened to double by `widen`.
template <class H, class F> Tensor<double> download(const void* src, std::vector<std::size_t> shape, F widen) {
  Tensor<double> t(std::move(shape));
  std::vector<H> h(t.size());
  check(cudaMemcpy(h.data(), src, h.size() * sizeof(H), cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
  for (std::size_t i = 0; i < h.size(); ++i) t.data[i] = widen(h[i]);
  return t;
}
}  // namespace

void check(int err, const char* what) {
  const auto e = static_cast<cudaError_t>(err);
  if (e != cudaSuccess)
    throw Error(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

void require_shapes(const Problem& p, const Inputs& in, bool with_dO) {
  const std::size_t B = p.B, Lq = p.Lq, Lkv = p.Lkv, Hq = p.Hq, Hkv = p.Hkv, D = p.D, Dv = p.Dv;
  in.q.require_shape({B, Lq, Hq, D}, "q");
  in.k.require_shape({B, Lkv, Hkv, D}, "k");
  in.v.require_shape({B, Lkv, Hkv, Dv}, "v");
  if (with_dO) in.dO.require_shape({B, Lq, Hq, Dv}, "dO");
  if (p.probe == Probe::Learned) in.r.require_shape({B, Lq, Hq, D}, "r");
}

void require_inputs(const Problem& p, const Inputs& in, bool with_dO, const std::string& who) {
  try {
    check_inputs(p, in);
    if (with_dO) {
      in.dO.require_shape({std::size_t(p.B), std::size_t(p.Lq), std::size_t(p.Hq), std::size_t(p.Dv)}, "dO");
      for (std::size_t i = 0; i < in.dO.size(); ++i)
        if (!std::isfinite(in.dO.data[i]))
          throw Error("tensor 'dO' has a non-finite value at flat index " + std::to_string(i));
    }
  } catch (const Error& e) {
    throw Error(who + ": " + e.what());
  }
}

DevBuf::DevBuf(std::size_t bytes) : bytes_(bytes) {
  if (bytes) check(cudaMalloc(&p_, bytes), "cudaMalloc");
}
DevBuf::DevBuf(DevBuf&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
DevBuf& DevBuf::operator=(DevBuf&& o) noexcept {
  if (this != &o) {
    if (p_) cudaFree(p_);
    p_ = std::exchange(o.p_, nullptr), bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}
DevBuf::~DevBuf() {
  if (p_) cudaFree(p_);
}
void DevBuf::poison() {
  if (p_) fill(p_, 0xFF, bytes_, "cudaMemset (poison)");
}

DevBuf poisoned(std::size_t bytes) {
  DevBuf b(bytes);
  b.poison();
  return b;
}

void fill(void* dst, int byte, std::size_t bytes, const char* what) { check(cudaMemset(dst, byte, bytes), what); }

DevBuf upload_exact(const Tensor<double>& t, DType dt, const std::string& who, const char* name) {
  std::vector<std::uint16_t> h(t.size());
  for (std::size_t i = 0; i < t.size(); ++i) {
    h[i] = to_bits(t.data[i], dt);
    if (from_bits(h[i], dt) != t.data[i] && std::isfinite(t.data[i]))
      throw Error(who + ": input '" + name + "' is not exactly representable in " + to_string(dt));
  }
  DevBuf d(h.size() * 2);
  check(cudaMemcpy(d.get(), h.data(), h.size() * 2, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
  return d;
}

DevBuf upload_floats(const Tensor<double>& t, const char* what) {
  std::vector<float> h(t.size());
  for (std::size_t i = 0; i < t.size(); ++i) h[i] = static_cast<float>(t.data[i]);
  DevBuf d(h.size() * 4);
  check(cudaMemcpy(d.get(), h.data(), h.size() * 4, cudaMemcpyHostToDevice), what);
  return d;
}

DevBuf upload_ints(const std::vector<int>& v, const char* what) {
  DevBuf d(v.size() * 4);
  if (!v.empty()) check(cudaMemcpy(d.get(), v.data(), v.size() * 4, cudaMemcpyHostToDevice), what);
  return d;
}

void synchronize(const char* what) { check(cudaDeviceSynchronize(), what); }

bool device_available(std::string* why_not) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    if (why_not) *why_not = e != cudaSuccess ? std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e) : "no CUDA device";
    cudaGetLastError();  // clear the sticky error of a failed init
    return false;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess || prop.major < 9) {
    if (why_not) *why_not = "device 0 is not sm_90 or newer (kernels are built for sm_90)";
    return false;
  }
  return true;
}

int multiprocessor_count() {
  int sms = 0;
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "cudaDeviceGetAttribute");
  return sms;
}

Tensor<double> download_16(const void* src, DType dt, std::vector<std::size_t> shape) {
  return download<std::uint16_t>(src, std::move(shape), [dt](std::uint16_t b) { return from_bits(b, dt); });
}
Tensor<double> download_f32(const void* src, std::vector<std::size_t> shape) {
  return download<float>(src, std::move(shape), [](float x) { return double(x); });
}
Tensor<double> download_i32(const void* src, std::vector<std::size_t> shape) {
  return download<int>(src, std::move(shape), [](int x) { return double(x); });
}

}  // namespace plx::cuda::io
