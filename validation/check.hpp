// validation/check.hpp — check a candidate (file or in-process) against a fixture.
//
// Charter: reads a candidate HDF5 file (out, optionally dq, dk, dv, dr, dlambda as float64,
// float32, or uint16 bf16/fp16 bit patterns with a 'format' attribute), builds plx's own
// same-precision baseline (SPEC §7.6, below), and sends every tensor through the one
// comparison path (compare_tensor) with the fixture's recommended tolerance (overridable).
// Baseline emulated: the reference algorithm of the fixture's member and formulation run in
// the candidate's accumulation precision (float for fp32/bf16/fp16, double for float64) on
// the fixture inputs, every output rounded to the candidate dtype. Not emulated: bf16
// rounding of P / p2 / rho inside a kernel (§7.6); a kernel that does it gets no credit.
// No same-precision baseline (the fp32 reference's solve fails, SPEC §7.3/§7.4): LLA `out`
// with a direct full solve is judged by the conditioning bound of validation/conditioning.hpp
// (per-row limits from cond(C + lambda I)); any other tensor keeps the float64 fallback
// baseline, and its report's rule says it is not a same-precision rule.
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "validation/candidate_result.hpp"
#include "validation/compare.hpp"
#include "validation/fixture.hpp"

namespace plx {

struct CandidateTensor {
  Tensor<double> values;
  DType dtype = DType::F64;
};
struct Candidate {
  std::string label;                               // file path or "run:<name>"
  std::map<std::string, CandidateTensor> tensors;  // name -> values (exact) and storage dtype
};

// Read a candidate file; shapes must match the fixture's problem (plx::Error otherwise).
Candidate read_candidate(const std::string& path, const FixtureData& fx);
// Wrap an in-process result; `dtype_of(name)` gives each tensor's dtype.
Candidate candidate_from_result(const std::string& label, const CandidateResult& r, const Problem& p,
                                const std::map<std::string, DType>& dtypes);

// The same-precision baseline for the requested tensors in dtype X (see the charter).
// `note` says what was emulated (or why it fell back to double arithmetic); *fell_back (if
// given) is true when the reference could not run in X's accumulation precision and the
// baseline is the float64 reference rounded to X.
std::map<std::string, Tensor<double>> same_precision_baseline(const Problem& p, const Inputs& in, DType X,
                                                              bool gradients, std::string* note,
                                                              bool* fell_back = nullptr);

struct CheckResult {
  std::string fixture, candidate;
  Problem problem;
  std::vector<TensorReport> reports;
  std::vector<std::string> notes;
  bool passed = false;  // every report passed
  nlohmann::json to_json() const;
  std::string format() const;  // human table
};

// Overrides: tensor -> absolute limit (replaces the recommended tolerance). row_bound: judge out,
// dq, dk, dv, dr by the condition-aware per-row bound (validation/row_bound.hpp) instead of the
// same-precision baseline (an --tol override still wins).
CheckResult check_candidate(const std::string& fixture_path, const FixtureData& fx, const Candidate& c,
                            const std::map<std::string, double>& abs_override = {}, bool row_bound = false);

// Parse "--tol out=1e-3,dq=2e-3" (may be repeated). Throws plx::Error on bad syntax.
std::map<std::string, double> parse_tol_overrides(const std::vector<std::string>& specs);

}  // namespace plx
