// kernels/host_io.hpp — host <-> device plumbing shared by the kernels' host APIs.
//
// Charter: the one copy of what kernels/cuda_api.cpp, backward_api.cpp and lla_api.cpp do around
// a launch: check the input shapes against the Problem, turn a CUDA error code into a plx::Error
// ("CUDA error in <what>: <name> (<text>)"), own device buffers, check that host doubles are
// exactly representable in the kernel dtype (bf16/fp16) and upload their bits, upload fp32 /
// int32 arrays, poison outputs with 0xFF bytes (NaN in bf16/fp16/fp32, -1 in int32), wait for
// the device, and download results widened to double. Host compiler only; no CUDA header here
// (host_io.cpp includes cuda_runtime.h). Not here: launch validation (check_params & co.),
// launches, strides.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "reference/dtype.hpp"
#include "reference/inputs.hpp"
#include "reference/problem.hpp"
#include "reference/tensor.hpp"

namespace plx::cuda::io {

// Throws plx::Error("CUDA error in <what>: <name> (<description>)") unless `err` (a cudaError_t
// as int, what the launchers in kernels_internal.hpp return) is cudaSuccess.
void check(int err, const char* what);

// q [B,Lq,Hq,D], k [B,Lkv,Hkv,D], v [B,Lkv,Hkv,Dv], then dO [B,Lq,Hq,Dv] if `with_dO`, then
// r [B,Lq,Hq,D] for learned probes; plx::Error naming the first tensor with the wrong shape.
void require_shapes(const Problem& p, const Inputs& in, bool with_dO);

// The bad-input contract before any device work: plx::check_inputs (shapes, finite q, k, v, r,
// lambda) plus, if `with_dO`, the shape and finiteness of dO; plx::Error("<who>: ...") naming
// the tensor and the index. Host only: callable (and tested) where no GPU exists.
void require_inputs(const Problem& p, const Inputs& in, bool with_dO, const std::string& who);

// One device allocation (cudaMalloc / cudaFree); none for 0 bytes. Move-only.
class DevBuf {
 public:
  DevBuf() = default;
  explicit DevBuf(std::size_t bytes);
  DevBuf(DevBuf&& o) noexcept;
  DevBuf& operator=(DevBuf&& o) noexcept;
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf();
  void* get() const { return p_; }
  template <class T> T* as() const { return static_cast<T*>(p_); }
  std::size_t bytes() const { return bytes_; }
  void poison();  // every byte 0xFF: NaN (bf16, fp16, fp32), -1 (int32)

 private:
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};

// A fresh buffer of `bytes`, poisoned: whatever a kernel fails to write reads back as NaN / -1.
DevBuf poisoned(std::size_t bytes);

// cudaMemset of `bytes` bytes at device address `dst` to `byte`.
void fill(void* dst, int byte, std::size_t bytes, const char* what);

// Host doubles -> bf16/fp16 bits (dt must be BF16 or F16) -> a new device buffer. A finite value
// that does not survive the round trip throws plx::Error("<who>: input '<name>' is not exactly
// representable in <dtype>") before anything of `t` is copied; non-finite values pass unchanged
// (the host APIs reject them first with require_inputs).
DevBuf upload_exact(const Tensor<double>& t, DType dt, const std::string& who, const char* name);

// Host doubles narrowed to fp32 (the per-row lambda), and int32 arrays (Problem::start / used:
// an empty vector gives an empty buffer, i.e. a null pointer, which the kernels read as the default).
DevBuf upload_floats(const Tensor<double>& t, const char* what);
DevBuf upload_ints(const std::vector<int>& v, const char* what);

// cudaDeviceSynchronize, checked (a kernel's asynchronous fault surfaces here as plx::Error).
void synchronize(const char* what);

// A usable CUDA device (sm_90 or newer) is present; false with the reason otherwise, never throws.
bool device_available(std::string* why_not);

// Number of SMs of device 0 (the split heuristics take it).
int multiprocessor_count();

// Device -> host, widened to double: bf16/fp16 bits of dtype dt, fp32, int32. `src` may point
// into a larger buffer (e.g. a workspace); exactly prod(shape) elements are read.
Tensor<double> download_16(const void* src, DType dt, std::vector<std::size_t> shape);
Tensor<double> download_f32(const void* src, std::vector<std::size_t> shape);
Tensor<double> download_i32(const void* src, std::vector<std::size_t> shape);

}  // namespace plx::cuda::io
