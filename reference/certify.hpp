// reference/certify.hpp — the certified tier: proven enclosures of the reference's outputs and gradients.
//
// Charter: certify(p, in) evaluates the reference (reference/attention.hpp, reference/backward.hpp)
// in interval arithmetic (plx::Ival, reference/interval.hpp) and returns, for `out` and the
// gradients of L = sum(dO * out) (dq, dk, dv; dr for learned probes; dlambda for solver probes),
// an interval per entry that provably contains the exact real value of the function the reference
// defines on the stored inputs (docs/certified.md states that function and the proof). A pass that
// cannot decide something at its working precision (a comparison of overlapping intervals, a
// linear system it cannot verify) is retried at twice the bits, up to max_bits; a tensor that
// still fails is reported in `not_verified` with the reason, never given a wide or wrong interval.
// A pass is also retried when a tensor's enclosure is wider (normwise, relative) than target_rel.
// One certification runs at a time in a process (the working precision is process-wide).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "reference/inputs.hpp"
#include "reference/interval.hpp"
#include "reference/problem.hpp"
#include "reference/tensor.hpp"

namespace plx {

struct CertifyOptions {
  long bits = 256;           // first working precision (bits of each endpoint)
  long max_bits = 2048;      // no pass runs above this
  double target_rel = 1e-40; // retry while max width / max |value| of a tensor exceeds this
  bool backward = true;      // also the gradients (refused for decode problems)
};

struct Certificate {
  std::map<std::string, Tensor<Ival>> enclosure;    // tensor -> per-entry enclosure
  std::map<std::string, std::string> not_verified;  // tensor -> why no enclosure
  std::map<std::string, long> bits;                 // "forward" / "backward" -> working precision used
  std::vector<std::string> log;                     // one line per pass
};

// Tensors certify() encloses for problem p (out first): the same set the fixture truth carries.
std::vector<std::string> certified_tensor_names(const Problem& p, bool backward = true);

Certificate certify(const Problem& p, const Inputs& in, const CertifyOptions& opt = {});

// max (hi - lo) / max |midpoint| over a tensor's entries (0 for an exact tensor); +inf if unbounded.
double normwise_rel_width(const Tensor<Ival>& t);

}  // namespace plx
