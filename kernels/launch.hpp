// kernels/launch.hpp — params-level entry points of the CUDA kernels (no reference types).
//
// Charter: validation and launch of one AttnParams, usable from .cu files and benchmarks
// that must not include the C++20 reference headers (the .cu files are C++17). The
// Problem/Inputs-level API is kernels/cuda_api.hpp. Implemented in kernels/cuda_api.cpp.
#pragma once
#include "kernels/params.hpp"

namespace plx::cuda {

// Argument validation of a launch (no device needed). Throws plx::Error naming the field.
void check_params(const AttnParams& p, Op op);

// Validate, then launch asynchronously on `stream` (a cudaStream_t; null = default stream).
// Every CUDA call and launch is checked (plx::Error with the CUDA message).
void launch(const AttnParams& p, Op op, void* stream = nullptr);

// Launch choices outside the kernels' params: the mma_sync decode's tuning bits (kDec* in
// parallax_decode.cu, < 0 = the shipped set; benchmarks compare others) and whether the Tma
// forward may use driver tensor maps (false acts as a driver without them: Auto falls back to wgmma).
struct LaunchExtras {
  int decode_flags = -1;
  bool tensor_maps = true;
};
void launch(const AttnParams& p, Op op, void* stream, const LaunchExtras& x);

// Split count the decode heuristic picks for these shapes (>= 1), given the SM count.
int decode_num_splits(const AttnParams& p, int num_sms);

// Dynamic shared memory (bytes) and threads of each kernel, for the benchmarks.
int decode_smem_bytes(const AttnParams& p);

}  // namespace plx::cuda
