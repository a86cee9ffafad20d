// fast/backend.cpp — the fast CPU path as a backend ("fast").
//
// Charter: plx::fast behind the Backend face: forward for what fast::supports takes, forward +
// backward for what fast::supports_backward takes (softmax and Parallax, not decode steps).
// out is rounded to the input dtype like a kernel's output; gradients are fp32 (fp64 in the
// fp64 debug mode), as fast/fast.hpp says.
#include "fast/fast.hpp"
#include "reference/candidate.hpp"

namespace plx {

Backend plx_backend_fast() {
  Backend b;
  b.name = "fast";
  b.summary = "the optimised CPU path (OpenMP, AVX-512 / AMX where present)";
  b.preference = 20;
  b.supports = fast::supports;
  b.supports_backward = fast::supports_backward;
  b.run_forward = fast::forward;
  b.run_backward = fast::backward;
  b.dtypes = kernel_like_dtypes;
  return b;
}

}  // namespace plx
