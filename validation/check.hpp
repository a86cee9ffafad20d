// validation/check.hpp — check a candidate (file or in-process) against a fixture.
//
// Charter: reads a candidate HDF5 file (out, optionally dq, dk, dv, dr, dlambda as float64,
// float32, or uint16 bf16/fp16 bit patterns with a 'format' attribute), builds plx's own
// same-precision baseline (docs/math.md §7.6, below), and sends every tensor through the one
// comparison path (compare_tensor) with the fixture's recommended tolerance (overridable).
// Baseline emulated: the reference algorithm of the fixture's member and formulation run in
// the candidate's accumulation precision (float for fp32/bf16/fp16, double for float64) on
// the fixture inputs, every output rounded to the candidate dtype. Not emulated: bf16
// rounding of P / p2 / rho inside a kernel (§7.6); a kernel that does it gets no credit.
// No same-precision baseline (the fp32 reference's solve fails, docs/math.md §7.3/§7.4): LLA `out`
// with a direct full solve is judged by the conditioning bound of validation/conditioning.hpp
// (per-row limits from cond(C + lambda I)); any other tensor keeps the float64 fallback
// baseline, and its report's rule says it is not a same-precision rule.
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "reference/candidate.hpp"
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
  bool in_process = false;  // dtypes declared by plx (candidate_from_result): no wider-storage warning
};

// Read a candidate file; shapes must match the fixture's problem (plx::Error otherwise).
// Strict by default: any dataset or group other than the tensors the fixture has truth for
// (an unknown name such as `dQ`, or `dr` on a fixture without a learned probe) is an error
// naming every such object, unless ignore_extra (then they are skipped and listed in
// `ignored`).
Candidate read_candidate(const std::string& path, const FixtureData& fx, bool ignore_extra = false,
                         std::vector<std::string>* ignored = nullptr);
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

// The verdict of a check, and the `plx check` exit code of each:
//   Pass      0  every tensor the candidate provided was judged and is within its limit
//   Fail      1  a judged tensor exceeds its limit or is non-finite, or (require_all) a tensor
//                the fixture has truth for is missing
//   NotJudged 3  nothing failed, but at least one tensor has no sound rule (e.g. only the
//                float64 fallback baseline exists) and was measured without a verdict
// (Exit 2 is bad input: an Error thrown before any verdict.)
enum class Verdict { Pass, Fail, NotJudged };
int exit_code(Verdict v);
std::string to_string(Verdict v);  // "pass", "fail", "not judged"

struct CheckOptions {
  std::map<std::string, double> abs_override;  // tensor -> absolute limit (replaces the recommended tolerance)
  bool require_all = false;                    // a tensor with truth but no candidate value fails the check
  // Judge a tensor stored wider than its natural dtype (out: the problem dtype; gradients:
  // float32, or float64 for float64 problems) at the natural dtype: a float32 result stored
  // as float64 is then held to the float32 baseline, not the float64 one.
  bool as_problem_dtype = false;
  // Symmetric variants of the same-precision baseline (validation/symmetry.hpp): the
  // baseline's error is the largest over this many runs (variant 0 = the inputs as given,
  // the others with the feature axes permuted). 0 = default_baseline_variants(p).
  int baseline_variants = 0;
  std::string baseline;  // "" = the default same-precision baseline, else an emulation profile (--baseline)
  // Judge out, dq, dk, dv, dr by the condition-aware per-row bound (validation/row_bound.hpp)
  // instead of the same-precision baseline (--row-bound; a --tol override still wins).
  bool row_bound = false;
};

// 4 for solver-probe members (LLA: the fp32 solve's error is one noisy sample of a
// conditioned problem and varies 3x between exactly equivalent orderings), else 1.
int default_baseline_variants(const Problem& p);

struct CheckResult {
  std::string fixture, candidate;
  Problem problem;
  std::vector<TensorReport> reports;       // judged and not-judged tensors, in report order
  std::vector<std::string> not_checked;    // tensors the fixture has truth for but the candidate lacks
  std::vector<std::string> warnings;       // e.g. a tensor stored wider than its natural dtype
  std::vector<std::string> notes;
  std::string purpose, hint;  // the fixture's (what the case tests; the usual fix), printed on failure
  std::string baseline = "default";  // the same-precision baseline: "default" or an emulation profile name
  Verdict verdict = Verdict::Fail;
  bool passed = false;  // verdict == Pass
  nlohmann::json to_json() const;
  std::string format() const;  // human table
};

// The natural dtype of a candidate tensor of problem p (see CheckOptions::as_problem_dtype).
DType natural_dtype(const Problem& p, const std::string& tensor);

CheckResult check_candidate(const std::string& fixture_path, const FixtureData& fx, const Candidate& c,
                            const CheckOptions& opt);
// Overrides: tensor -> absolute limit (replaces the recommended tolerance).
// `baseline`: empty = the historical same-precision baseline; else an emulation profile name
// (validation/emulate.hpp, `plx check --baseline`), whose results rounded to the candidate dtype
// are the baseline.
inline CheckResult check_candidate(const std::string& fixture_path, const FixtureData& fx, const Candidate& c,
                                   const std::map<std::string, double>& abs_override = {},
                                   const std::string& baseline = "") {
  CheckOptions o;
  o.abs_override = abs_override, o.baseline = baseline;
  return check_candidate(fixture_path, fx, c, o);
}

// Parse "--tol out=1e-3,dq=2e-3" (may be repeated). Throws plx::Error on bad syntax.
std::map<std::string, double> parse_tol_overrides(const std::vector<std::string>& specs);

}  // namespace plx
