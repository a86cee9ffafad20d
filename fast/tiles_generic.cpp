// fast/tiles_generic.cpp — the flash drivers compiled with portable loops (any x86-64).
//
// Charter: instantiates fast/attention_tiles.hpp in namespace plx::fast::generic with the
// default flags; chosen at run time where the CPU lacks AVX-512 or when a test forces it
// (force_generic). Same algorithm and summation order as the AVX-512 build, plain loops.
// No logic of its own.
#define PLX_FAST_ISA generic
#include "fast/attention_tiles.hpp"
#include "fast/dispatch.hpp"

namespace plx::fast::generic {
void fwd(const FwdArgs<float, float>& a) { forward_impl(a); }
void fwd(const FwdArgs<std::uint16_t, float>& a) { forward_impl(a); }
void fwd(const FwdArgs<double, double>& a) { forward_impl(a); }
void bwd(const BwdArgs<float, float>& a) { backward_impl(a); }
void bwd(const BwdArgs<std::uint16_t, float>& a) { backward_impl(a); }
void bwd(const BwdArgs<double, double>& a) { backward_impl(a); }
}  // namespace plx::fast::generic
