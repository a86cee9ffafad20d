// kernels/backward_launch.hpp — params-level entry points of the CUDA backward (no reference types).
//
// Charter: validation and launch of one BwdParams, usable from .cu benchmarks that must not
// include the C++20 reference headers. The Problem/Inputs-level API is kernels/backward_api.hpp.
// Implemented in kernels/backward_api.cpp (host) and kernels/parallax_backward.cu (device).
#pragma once
#include "kernels/backward_params.hpp"

namespace plx::cuda {

// Argument validation of a backward launch (no device needed). Throws plx::Error naming the field.
void check_backward_params(const BwdParams& p);

// Validate, then launch the three kernels (row preprocessing, dk/dv key-tile pass, dq/dr
// query-tile pass) asynchronously on `stream` (a cudaStream_t; null = default stream).
// Every CUDA call and launch is checked (plx::Error with the CUDA message).
void launch_backward(const BwdParams& p, void* stream = nullptr);

namespace detail {
// kernels/parallax_backward.cu (cudaError_t as int). which: 0 = all three kernels in order;
// 1 = row preprocessing, 2 = dk/dv pass, 3 = dq/dr pass alone (the benchmark's time split; a
// pass alone is valid only after the preprocessing has filled the workspace). No validation here.
int launch_backward_kernels(const BwdParams& p, void* stream, int which = 0);
// kernels/parallax_backward_wgmma.cu: the wgmma pass `which` (2 = dk/dv, 3 = dq/dr), D = 128.
int launch_backward_wgmma_pass(const BwdParams& p, void* stream, int which);
}  // namespace detail

}  // namespace plx::cuda
