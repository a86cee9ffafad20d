// fast/tiles_amx.cpp — the bf16 forward driver with all four products on Intel AMX.
//
// Charter: instantiates fast/attention_tiles.hpp in namespace plx::fast::amx with AVX-512 and
// -mamx-tile -mamx-bf16 (fast/CMakeLists.txt) and PLX_FAST_AMX, which moves q.k, r.k, P1 V and
// P2 V of bf16 storage onto TDPBF16PS, with exact bf16 pieces of the fp32 probe and weights
// (fast/amx_tiles.hpp); the online softmax, split-KV and decode are the AVX-512 code. Only the
// bf16 forward is built here. Called only after fast/fast.cpp checked CPUID (AMX-TILE,
// AMX-BF16, XCR0) and obtained the Linux XTILEDATA permission; force_fma(true) bypasses it.
#define PLX_FAST_ISA amx
#define PLX_FAST_AMX 1
#include "fast/attention_tiles.hpp"
#include "fast/dispatch.hpp"

namespace plx::fast::amx {
void fwd(const FwdArgs<std::uint16_t, float>& a) { forward_impl(a); }
}  // namespace plx::fast::amx
