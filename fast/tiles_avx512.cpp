// fast/tiles_avx512.cpp — the flash drivers compiled for AVX-512 (fp32 intrinsics micro-kernels).
//
// Charter: instantiates fast/attention_tiles.hpp in namespace plx::fast::avx512 with
// -mavx512f/bw/dq/vl -mfma (set in fast/CMakeLists.txt). Only called after a run-time
// check (__builtin_cpu_supports) in fast/fast.cpp. No logic of its own.
#define PLX_FAST_ISA avx512
#include "fast/attention_tiles.hpp"
#include "fast/dispatch.hpp"

namespace plx::fast::avx512 {
void fwd(const FwdArgs<float, float>& a) { forward_impl(a); }
void fwd(const FwdArgs<std::uint16_t, float>& a) { forward_impl(a); }
void fwd(const FwdArgs<double, double>& a) { forward_impl(a); }
void bwd(const BwdArgs<float, float>& a) { backward_impl(a); }
void bwd(const BwdArgs<std::uint16_t, float>& a) { backward_impl(a); }
void bwd(const BwdArgs<double, double>& a) { backward_impl(a); }
}  // namespace plx::fast::avx512
