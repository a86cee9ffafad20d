// kernels/backend.cpp — the CUDA kernels as a backend ("cuda").
//
// Charter: plx::cuda behind the Backend face. Forward: softmax and Parallax prefill, the split-KV
// decode (Lq = 1) and LLA (routed to kernels/lla_api.hpp), as cuda::supports says. Backward:
// softmax and Parallax prefill (cuda::supports_backward). Without a usable device every problem
// is unsupported, with the reason. Every tensor the kernels write is 16-bit: out and the
// gradients are rounded to the input dtype. The kernel choices are a RunOptions value that the
// settings below fill at the tool's edge (PLX_CUDA_* environment variables).
#include <memory>

#include "kernels/backward_api.hpp"
#include "kernels/cuda_api.hpp"
#include "reference/candidate.hpp"

namespace plx {

namespace {
template <class E> E parse_choice(const std::string& var, const std::string& v, std::initializer_list<std::pair<const char*, E>> opts) {
  std::string known;
  for (const auto& [n, e] : opts) {
    if (v == n) return e;
    known += (known.empty() ? "" : ", ") + std::string(n);
  }
  throw Error(var + "='" + v + "': expected one of " + known);
}
int parse_count(const std::string& var, const std::string& v, int lo, int hi) {
  std::size_t used = 0;
  int n = 0;
  try {
    n = std::stoi(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || v.empty() || n < lo || n > hi)
    throw Error(var + "='" + v + "': expected a whole number in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return n;
}
}  // namespace

Backend plx_backend_cuda() {
  using namespace cuda;
  auto opt = std::make_shared<RunOptions>();
  Backend b;
  b.name = "cuda";
  b.summary = "the CUDA kernels (sm_90: H100/H200; bf16 and fp16)";
  b.preference = 10;
  b.supports = [](const Problem& p, std::string* why) { return available(why) && supports(p, why); };
  b.supports_backward = [](const Problem& p, std::string* why) { return available(why) && supports_backward(p, why); };
  b.run_forward = [opt](const Problem& p, const Inputs& in) { return forward(p, in, *opt); };
  b.run_backward = [opt](const Problem& p, const Inputs& in) { return backward(p, in, *opt); };
  b.dtypes = [](const Problem& p) {
    std::map<std::string, DType> d;
    for (const char* n : {"out", "dq", "dk", "dv", "dr"}) d[n] = p.dtype;
    return d;
  };
  b.settings = {
      {"PLX_CUDA_FORWARD", "prefill forward kernel: auto (default), mma_sync, wgmma (D=128), tma (D=128)",
       [opt](const std::string& v) {
         opt->forward = parse_choice<ForwardKernel>("PLX_CUDA_FORWARD", v,
                                                    {{"auto", ForwardKernel::Auto}, {"mma_sync", ForwardKernel::MmaSync},
                                                     {"wgmma", ForwardKernel::Wgmma}, {"tma", ForwardKernel::Tma}});
       }},
      {"PLX_CUDA_DECODE", "decode kernel: auto (default), cuda_core, mma_sync",
       [opt](const std::string& v) {
         opt->decode = parse_choice<DecodeKernel>("PLX_CUDA_DECODE", v,
                                                  {{"auto", DecodeKernel::Auto}, {"cuda_core", DecodeKernel::CudaCore},
                                                   {"mma_sync", DecodeKernel::MmaSync}});
       }},
      {"PLX_CUDA_BACKWARD", "backward tile passes: auto (default), mma_sync, wgmma (D=128)",
       [opt](const std::string& v) {
         opt->backward = parse_choice<BackwardKernel>("PLX_CUDA_BACKWARD", v,
                                                      {{"auto", BackwardKernel::Auto}, {"mma_sync", BackwardKernel::MmaSync},
                                                       {"wgmma", BackwardKernel::Wgmma}});
       }},
      {"PLX_CUDA_SPLITS", "decode and LLA split-KV chunks per row: 0 = heuristic (default), 1..1024",
       [opt](const std::string& v) { opt->num_splits = opt->lla.num_splits = parse_count("PLX_CUDA_SPLITS", v, 0, 1024); }},
      {"PLX_CUDA_TENSOR_MAPS", "1 (default): the tma forward uses driver tensor maps; 0: act as a driver without them",
       [opt](const std::string& v) { opt->tensor_maps = parse_count("PLX_CUDA_TENSOR_MAPS", v, 0, 1) == 1; }},
  };
  return b;
}

}  // namespace plx
