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
int launch_forward_tma(const AttnParams& p, void* stream, int flags);  // kernels/parallax_forward_tma.cu (v3, D = 128; flags < 0: default)
// launch_forward_tma's result when the K/V tensor maps could not be made (the driver has no
// cuTensorMapEncodeTiled, or it rejects the tensors; test hook: env PLX_CUDA_NO_TENSOR_MAPS=1
// acts as the former). Nothing was launched: launch_forward then runs v2 for the default
// version and reports cudaErrorNotSupported for an explicit forward_version = 3.
constexpr int kForwardNoTensorMaps = -1;
// v3 variants (AttnParams::forward_flags): ping-pong of the consumers' product issue, a heads-fastest
// grid, three consumer warpgroups (64-key tiles) instead of two (128-key tiles), three K/V stages
// instead of two (two consumers), the look-ahead pipeline (two consumers, 64-key tiles, S(t + 1) in
// flight during tile t's weights; overrides 1 and 4), Parallax's d2 from the reduced sums (32).
constexpr int kFwdTmaPingPong = 1, kFwdTmaHeadsFastest = 2, kFwdTmaThreeConsumers = 4, kFwdTmaThreeStages = 8,
              kFwdTmaLookAhead = 16, kFwdTmaD2BySums = 32;
int forward_tma_default_flags(const AttnParams& p);     // the variant set used when forward_flags = -1
}  // namespace plx::cuda::detail
