// kernels/options.hpp — every kernel choice of a Problem-level CUDA run, as plain structs.
//
// Charter: the options cuda::forward, cuda::backward and cuda::lla_forward take; the defaults
// are what ships (kernels/capabilities.hpp picks for Auto). Nothing reads the environment here:
// the `plx` tool maps PLX_CUDA_* variables onto these fields (kernels/backend.cpp lists them), and
// tests and benchmarks set the fields. Plain C++17: the .cu benchmarks include it.
#pragma once
#include "kernels/capabilities.hpp"

namespace plx::cuda {

enum class LlaPath { Auto = 0, SplitKV = 1, MatrixFree = 2 };
struct LlaRunOptions {
  LlaPath path = LlaPath::Auto;  // Auto: Lq = 1 -> SplitKV, else MatrixFree
  int num_splits = 0;            // SplitKV: 0 = heuristic
  bool throw_on_singular = true; // false: singular rows come back as status kLlaSingular with NaN
                                 //   output instead of a plx::NumericalError (the kernels' raw behaviour)
};

struct RunOptions {
  ForwardKernel forward = ForwardKernel::Auto;
  DecodeKernel decode = DecodeKernel::Auto;
  BackwardKernel backward = BackwardKernel::Auto;
  int num_splits = 0;       // decode: key chunks per row; 0 = decode_num_splits' heuristic
  bool tensor_maps = true;  // false: behave as a driver without tensor maps (tests the Tma fallback)
  LlaRunOptions lla;        // LLA problems
};

}  // namespace plx::cuda
