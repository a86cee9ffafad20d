// fast/tiles_amx.cpp — the bf16 forward driver with its score tiles on Intel AMX.
//
// Charter: instantiates fast/attention_tiles.hpp in namespace plx::fast::amx with AVX-512 and
// -mamx-tile -mamx-bf16 (fast/CMakeLists.txt) and PLX_FAST_AMX, which moves the q.k / r.k
// products of bf16 storage onto TDPBF16PS (fast/amx_scores.hpp); everything else (online
// softmax, fp32 value products, split-KV, decode) is the AVX-512 code. Only the bf16 forward
// is built here. Called only after fast/fast.cpp checked CPUID (AMX-TILE, AMX-BF16, XCR0) and
// obtained the Linux XTILEDATA permission; force_bf16_widen(true) bypasses it.
#define PLX_FAST_ISA amx
#define PLX_FAST_AMX 1
#include "fast/attention_tiles.hpp"
#include "fast/dispatch.hpp"

namespace plx::fast::amx {
void fwd(const FwdArgs<std::uint16_t, float>& a) { forward_impl(a); }
}  // namespace plx::fast::amx
