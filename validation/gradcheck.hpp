// validation/gradcheck.hpp — check ANY backward's gradients against an independent oracle.
//
// Charter: a candidate (the reference backward, fast CPU, CUDA, an external file) hands its
// dq/dk/dv/dr as doubles in a CandidateResult (dlambda, if any, in saved["dlambda"]); this
// compares them, tensor by tensor through compare.hpp, with an oracle that differentiates the
// reference forward: FD-Richardson or forward-mode AD per element in bf100 (small problems), or
// the adjoint identity <grad, e> = d/dt L(x + t e) over random directions (AD in double-double; any
// size). Tolerances follow the FlashAttention rule against the reference backward run in double.
// Oracle templates are instantiated once here (bf100, bf50, dd) and declared extern.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "reference/all.hpp"
#include "reference/gradcheck.hpp"
#include "reference/candidate.hpp"
#include "validation/compare.hpp"

namespace plx {
PLX_GRADCHECK_TEMPLATES(bf100, extern template)
PLX_GRADCHECK_TEMPLATES(bf50, extern template)
PLX_GRADCHECK_TEMPLATES(dd, extern template)

enum class GradOracle {
  FiniteDifference,  // central differences + Richardson, per element, bf100 (4 forwards per element)
  ForwardAD,         // Dual<bf100> forward, per element (1 forward per element)
  Adjoint            // <grad, e> vs Dual<dd> directional derivative, random directions per tensor
};
std::string to_string(GradOracle);

struct GradCheckOptions {
  GradOracle oracle = GradOracle::ForwardAD;
  int directions = 6;            // Adjoint: random directions per input tensor
  std::uint64_t seed = 1;        // Adjoint: direction seed (portable RNG, Stream::Aux)
  DType cand_dtype = DType::F64; // for ULPs and the default floor
  // Default (when unset): max(2 x error of the reference backward in double, u(cand_dtype) * max|truth|)
  // — the FlashAttention same-precision baseline rule plus the rounding of the result to its dtype.
  std::optional<Tolerance> tol;
};

struct GradCheckReport {
  std::string oracle;
  std::vector<TensorReport> tensors;  // dq, dk, dv [, dr] [, dlambda]; Adjoint: one entry per tensor over directions
  bool passed = false;
};

// Gradients as a CandidateResult (dlambda goes to saved["dlambda"]).
template <class T> CandidateResult to_candidate(const Gradients<T>& g) {
  auto d = [](const Tensor<T>& t) { return convert<double>(t, [](const T& x) { return to_double(x); }); };
  CandidateResult c;
  c.dq = d(g.dq), c.dk = d(g.dk), c.dv = d(g.dv), c.dr = d(g.dr);
  c.saved["dlambda"] = d(g.dlambda);
  return c;
}

// The oracle's own gradient (ForwardAD or FiniteDifference), computed in bf100, rounded to double.
CandidateResult oracle_gradients(const Problem& p, const Inputs& in, GradOracle oracle);

GradCheckReport check_gradients(const Problem& p, const Inputs& in, const CandidateResult& cand,
                                const GradCheckOptions& opt = {});
std::string format_report(const GradCheckReport& r);

}  // namespace plx
