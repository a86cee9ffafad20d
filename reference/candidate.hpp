// reference/candidate.hpp — the seam every backend plugs into: its result type and its face.
//
// Charter: the core below every backend. A backend (the reference in double, the fast CPU path,
// the CUDA kernels, a candidate HDF5 file, later the Python module) is one `Backend` value: a
// name, what it supports (forward and, separately, gradients, each with the reason when not),
// how it runs a Problem on its Inputs, and what dtype each returned tensor is rounded to. The
// comparison path (validation/) sees only this struct; it never names a backend. Backends
// register themselves at build time (plx_register_backend in the top CMakeLists.txt), so adding
// one touches no existing code. Results are the backend's outputs widened to double (a bf16
// output is stored exactly); tensors a backend does not produce stay empty (shape {}).
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "reference/dtype.hpp"
#include "reference/inputs.hpp"
#include "reference/problem.hpp"
#include "reference/tensor.hpp"

namespace plx {

struct CandidateResult {
  Tensor<double> out;                           // [B, Lq, Hq, Dv]
  Tensor<double> dq, dk, dv, dr;                // gradients of L = sum(dO * out), when run backward
  std::map<std::string, Tensor<double>> saved;  // optional intermediates (lse, m, omega, zbar, ...)
};

// A yes/no with the reason for no (why_not may be null; it is set only on false).
using SupportsFn = std::function<bool(const Problem&, std::string* why_not)>;
using RunFn = std::function<CandidateResult(const Problem&, const Inputs&)>;

// A run-time choice a backend offers at the tool's edge: an environment variable, read and
// applied in one place (validation/environment.cpp) and listed in `plx --help`.
struct BackendSetting {
  std::string env;   // variable name, e.g. PLX_CUDA_FORWARD
  std::string help;  // its values and what they do
  std::function<void(const std::string& value)> apply;  // plx::Error on a bad value
};

struct Backend {
  std::string name;     // what `plx check --run NAME` takes
  std::string summary;  // one line for --help
  int preference = 0;   // the best available backend for a problem is the supporting one with the lowest value
  SupportsFn supports;            // run_forward handles p
  SupportsFn supports_backward;   // run_backward handles p (empty function: no gradients at all)
  RunFn run_forward;              // out (+ saved); throws plx::Error on bad input or an unsupported p
  RunFn run_backward;             // out and dq, dk, dv (dr for a learned probe) for the upstream in.dO
  std::function<std::map<std::string, DType>(const Problem&)> dtypes;  // tensor -> dtype its values are rounded to
  std::vector<BackendSetting> settings;  // optional knobs (kernel choices), defaults = what ships

  bool can_backward(const Problem& p, std::string* why_not) const {
    if (!supports_backward || !run_backward) {
      if (why_not) *why_not = "backend '" + name + "' computes no gradients";
      return false;
    }
    return supports_backward(p, why_not);
  }
};

// The dtype map of a kernel-like backend: out rounded to the input dtype, gradients in the
// accumulation precision (fp32, or fp64 for fp64 inputs).
inline std::map<std::string, DType> kernel_like_dtypes(const Problem& p) {
  const DType acc = p.dtype == DType::F64 ? DType::F64 : DType::F32;
  std::map<std::string, DType> d{{"out", p.dtype}};
  for (const char* n : {"dq", "dk", "dv", "dr"}) d[n] = acc;
  return d;
}

}  // namespace plx
