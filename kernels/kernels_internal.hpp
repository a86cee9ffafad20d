// kernels/kernels_internal.hpp — launchers the .cu files export to the host API.
//
// Charter: plain C++ declarations (no CUDA headers) so kernels/cuda_api.cpp can be
// compiled by the host compiler. Each returns a cudaError_t as int; params are assumed
// validated (check_params) before the call.
#pragma once
#include "kernels/params.hpp"

namespace plx::cuda::detail {
int launch_decode(const AttnParams& p, void* stream);   // kernels/parallax_decode.cu
int launch_forward(const AttnParams& p, void* stream);  // kernels/parallax_forward.cu
int decode_smem(int D, int G, int version);             // dynamic smem bytes of the decode kernel
int forward_smem(int D, bool parallax);                 // dynamic smem bytes of the v1 forward kernel
int launch_forward_wgmma(const AttnParams& p, void* stream);  // kernels/parallax_forward_wgmma.cu (v2, D = 128)
int forward_wgmma_smem(bool parallax);                  // dynamic smem bytes of the v2 forward kernel
}  // namespace plx::cuda::detail
