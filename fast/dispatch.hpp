// fast/dispatch.hpp — the per-ISA entry points behind plx::fast::attention_*_tiles.
//
// Charter: declares the driver instantiations of each instruction-set build (avx512,
// generic, and amx for the bf16 forward only) for the three (storage, accumulation) pairs: (float, float), (bf16 bits, float),
// (double, double). fast/fast.cpp picks one set at run time. Nothing is computed here.
#pragma once
#include <cstdint>

#include "fast/fast.hpp"

namespace plx::fast {
#define PLX_FAST_DECLARE(NS)                            \
  namespace NS {                                        \
  void fwd(const FwdArgs<float, float>&);               \
  void fwd(const FwdArgs<std::uint16_t, float>&);       \
  void fwd(const FwdArgs<double, double>&);             \
  void bwd(const BwdArgs<float, float>&);               \
  void bwd(const BwdArgs<std::uint16_t, float>&);       \
  void bwd(const BwdArgs<double, double>&);             \
  }
PLX_FAST_DECLARE(avx512)
PLX_FAST_DECLARE(generic)
#undef PLX_FAST_DECLARE
// bf16 forward with AMX tile products (fast/tiles_amx.cpp); fast.cpp checks CPUID and the OS first.
namespace amx {
void fwd(const FwdArgs<std::uint16_t, float>&);
}
}  // namespace plx::fast
