// reference/all.hpp — the whole reference, with every heavy template declared extern.
//
// Charter: project code includes this. Each module header defines
// PLX_<MODULE>_TEMPLATES(T, PREFIX); plx_reference_inst compiles those once per scalar
// (reference/CMakeLists.txt), and here they are declared `extern template` so that test
// and tool units do not re-instantiate multiprecision code (about a minute per scalar
// per unit). Header-only users may include the module headers directly instead.
#pragma once
#include "reference/attention.hpp"
#include "reference/split_kv.hpp"
#if __has_include("reference/backward.hpp")
#include "reference/backward.hpp"
#endif

#define PLX_ALL_TEMPLATES(T) \
  PLX_ATTENTION_TEMPLATES(T, extern template) \
  PLX_BACKWARD_TEMPLATES_IF(T)

#ifdef PLX_BACKWARD_TEMPLATES
#define PLX_BACKWARD_TEMPLATES_IF(T) PLX_BACKWARD_TEMPLATES(T, extern template)
#else
#define PLX_BACKWARD_TEMPLATES_IF(T)
#endif

namespace plx {
PLX_ALL_TEMPLATES(double)
PLX_ALL_TEMPLATES(long double)
PLX_ALL_TEMPLATES(dd)
PLX_ALL_TEMPLATES(qd4)
PLX_ALL_TEMPLATES(f128)
PLX_ALL_TEMPLATES(bf50)
PLX_ALL_TEMPLATES(bf100)
PLX_ALL_TEMPLATES(mpfr)
}  // namespace plx
