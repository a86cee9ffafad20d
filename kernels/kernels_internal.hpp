// kernels/kernels_internal.hpp — launchers the .cu files export to the host API.
//
// Charter: plain C++ declarations (no CUDA headers) so kernels/cuda_api.cpp can be
// compiled by the host compiler. Each returns a cudaError_t as int; params are assumed
// validated (check_params) before the call.
#pragma once
#include "kernels/params.hpp"
#include "kernels/capabilities.hpp"

namespace plx::cuda::detail {
// decode_flags: the mma_sync decode's tuning bits (kDec* in parallax_decode.cu), < 0 = the shipped set.
int launch_decode(const AttnParams& p, void* stream, int decode_flags = -1);  // kernels/parallax_decode.cu
// tensor_maps = false acts as a driver without cuTensorMapEncodeTiled (the Tma kernel's fallback test).
int launch_forward(const AttnParams& p, void* stream, bool tensor_maps = true);  // kernels/parallax_forward.cu
int decode_smem(int D, int G, DecodeKernel k);           // dynamic smem bytes of the decode kernel
int forward_smem(int D, bool parallax);                 // dynamic smem bytes of the mma_sync forward kernel
int launch_forward_wgmma(const AttnParams& p, void* stream);  // kernels/parallax_forward_wgmma.cu (D = 128)
int forward_wgmma_smem(bool parallax);                  // dynamic smem bytes of the wgmma forward kernel
int launch_forward_tma(const AttnParams& p, void* stream);  // kernels/parallax_forward_tma.cu (D = 128)
// launch_forward_tma's result when the K/V tensor maps could not be made (the driver has no
// cuTensorMapEncodeTiled, or it rejects the tensors). Nothing was launched: launch_forward then
// runs the wgmma kernel for Auto and reports cudaErrorNotSupported for an explicit Tma.
constexpr int kForwardNoTensorMaps = -1;
// The tma kernel's variant bits (a run-time kernel argument): ping-pong of the consumers' product
// issue, a heads-fastest grid, three consumer warpgroups (64-key tiles) instead of two (128-key
// tiles), three K/V stages, the look-ahead pipeline, Parallax's d2 from the reduced sums. The
// library launches forward_tma_default_flags only (see parallax_forward_tma.cu).
constexpr int kFwdTmaPingPong = 1, kFwdTmaHeadsFastest = 2, kFwdTmaThreeConsumers = 4, kFwdTmaThreeStages = 8,
              kFwdTmaLookAhead = 16, kFwdTmaD2BySums = 32;
int forward_tma_default_flags(const AttnParams& p);
}  // namespace plx::cuda::detail
