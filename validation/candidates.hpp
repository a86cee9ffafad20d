// validation/candidates.hpp — the registry of backends the `plx` tool can run by name.
//
// Charter: the list of every Backend (reference/candidate.hpp) compiled into this build, in
// order of preference, and the generic ways to use one: look it up by name, ask whether it
// runs a problem (and why not), run it forward or forward + backward. Nothing here names a
// backend: each registers itself through plx_register_backend (top CMakeLists.txt), which
// generates the list (validation/CMakeLists.txt). An unknown name, or a problem the backend
// does not support, is a plx::Error saying why.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "reference/candidate.hpp"

namespace plx {

const std::vector<Backend>& backends();         // compiled in, best first
const Backend& find_backend(const std::string& name);  // plx::Error naming the known ones otherwise

std::vector<std::string> candidate_names();  // names of backends(), best first
bool candidate_supports(const std::string& name, const Problem& p, std::string* why_not);

// What to run: the forward only, or forward + backward where the backend can differentiate p.
enum class RunWhat { Forward, ForwardAndBackward };
// Runs the backend; ForwardAndBackward on a problem without gradients support runs the forward
// and, if `why_no_grads` is given, says why (never silently: the caller reports it).
CandidateResult run_candidate(const std::string& name, const Problem& p, const Inputs& in,
                              RunWhat what = RunWhat::ForwardAndBackward, std::string* why_no_grads = nullptr);
std::map<std::string, DType> candidate_dtypes(const std::string& name, const Problem& p);

}  // namespace plx
