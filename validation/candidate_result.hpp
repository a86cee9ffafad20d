// validation/candidate_result.hpp — what every candidate (fast CPU, CUDA, external file) returns.
//
// Charter: one plain struct so the comparison path treats all candidates alike. Values
// are the candidate's outputs widened to double (a bf16 output is stored exactly).
// Tensors a candidate does not produce stay empty (shape {}), and are reported as such.
#pragma once
#include <map>
#include <string>

#include "reference/tensor.hpp"

namespace plx {
struct CandidateResult {
  Tensor<double> out;                           // [B, Lq, Hq, Dv]
  Tensor<double> dq, dk, dv, dr;                // gradients, when the candidate has a backward
  std::map<std::string, Tensor<double>> saved;  // optional intermediates (lse, m, d1/omega, zbar, ...)
};
}  // namespace plx
