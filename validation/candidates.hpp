// validation/candidates.hpp — the in-process candidates the `plx` tool can run by name.
//
// Charter: "ref-double" (the reference in double: forward, plus backward when compiled in
// and the problem is not a decode step), "fast" (plx_fast, when linked) and "cuda"
// (plx_kernels, when linked and a GPU is present). An unknown or unavailable name, or a
// problem the candidate does not support, is a plx::Error saying why. Each tensor's
// dtype (what its values are rounded to) is reported by candidate_dtypes().
#pragma once
#include <map>
#include <string>
#include <vector>

#include "reference/inputs.hpp"
#include "reference/problem.hpp"
#include "validation/candidate_result.hpp"

namespace plx {

std::vector<std::string> candidate_names();  // compiled in, in order of preference (best first)
bool candidate_supports(const std::string& name, const Problem& p, std::string* why_not);
CandidateResult run_candidate(const std::string& name, const Problem& p, const Inputs& in);
std::map<std::string, DType> candidate_dtypes(const std::string& name, const Problem& p);

}  // namespace plx
