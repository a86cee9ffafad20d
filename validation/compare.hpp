// validation/compare.hpp — the one comparison path every candidate goes through.
//
// Charter: compare a candidate tensor (fast CPU, CUDA, or an external backend's file)
// with the reference truth and, optionally, a same-precision baseline (docs/math.md §7.6, the
// FlashAttention rule). Reports max abs / max rel / normwise rel error, the max ULP
// distance in the candidate's dtype, the worst index with both values, the first
// mismatches, non-finite entries with their location, and pass/fail against a
// tolerance whose derivation travels with it. Printing and JSON live here too.
// It does not compute references or run candidates.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "reference/dtype.hpp"
#include "reference/tensor.hpp"

namespace plx {

// limit = max(baseline_ratio * baseline_max_abs, abs_floor + rel_floor * max|truth|)
struct Tolerance {
  double baseline_ratio = 2.0;  // FlashAttention: candidate error <= 2x same-precision baseline error
  double abs_floor = 0.0;       // absolute floor (e.g. output rounding: u(dtype) * max|truth|)
  double rel_floor = 0.0;       // relative to max|truth|
  std::string why;              // the derivation, printed in reports
};

struct TensorReport {
  std::string name;
  DType dtype = DType::F64;        // candidate dtype (for ULPs)
  std::size_t n = 0;               // compared entries
  std::size_t nonfinite = 0;       // candidate NaN/Inf where the truth is finite
  std::vector<std::size_t> first_nonfinite;
  // max_ulp: max |candidate - truth| in units of the candidate dtype's spacing at max|truth|
  // (the tensor's scale). Measured at each entry's own magnitude the figure is meaningless
  // where the truth is near zero (a cancellation result whose error scales with the tensor),
  // e.g. 1e+38 at a zero truth entry; limits are expressed in the same scale.
  double max_abs = 0, max_rel = 0, normwise_rel = 0, max_ulp = 0, truth_max_abs = 0;
  std::vector<std::size_t> worst_index;
  double worst_candidate = 0, worst_truth = 0;
  std::optional<double> baseline_max_abs;  // same-precision baseline's max abs error
  double limit = 0;                        // the tolerance actually applied (per-element limits: their maximum)
  bool passed = false;
  // Per-element limits (the conditioning rule, validation/conditioning.hpp): the largest
  // |candidate - truth| / limit_i and where it is; for a scalar limit, max_abs / limit.
  bool per_element_limit = false;
  double worst_limit_ratio = 0;
  std::vector<std::size_t> worst_ratio_index;
  std::string rule;  // which rule set the limit: one of kRule* (check_candidate fills it; "" when called directly)
  // Which term of the limit decided: kSetByBaseline (ratio x baseline error), kSetByFloor
  // (abs_floor + rel_floor x max|truth|), kSetByElement (per-element limits; the floor or the
  // element's own limit at the worst entry) or kSetByOverride (check_candidate, --tol).
  std::string limit_set_by;
  // A tensor without a sound rule (e.g. only the float64 fallback baseline exists) is measured
  // and reported but not judged: judged = false, passed = false, status "not judged", and
  // not_judged_why says why. It never counts as a failure (check.hpp: Verdict).
  bool judged = true;
  std::string not_judged_why;
  std::string tolerance_why;
  std::vector<std::string> first_mismatches;  // "index: cand vs truth", up to 5
};

// TensorReport::rule values (check_candidate, validation/check.cpp).
inline constexpr const char* kRuleBaseline = "same-precision baseline";  // 2x baseline error, or the floor
inline constexpr const char* kRuleConditioning = "conditioning bound";   // validation/conditioning.hpp
inline constexpr const char* kRuleFallback = "float64 fallback baseline (not a same-precision rule)";
inline constexpr const char* kRuleOverride = "--tol override";
// The 2x rule with the baseline's error taken as the largest over symmetric variants (check.cpp).
inline constexpr const char* kRuleBaselineVariants = "same-precision baseline, largest error over symmetric variants";

// TensorReport::limit_set_by values.
inline constexpr const char* kSetByBaseline = "baseline";
inline constexpr const char* kSetByFloor = "floor";
inline constexpr const char* kSetByElement = "per-element limit";
inline constexpr const char* kSetByOverride = "override";

// Turn a measured report into "not judged" (no sound rule for this tensor): the numbers stay.
void mark_not_judged(TensorReport& r, const std::string& why);
// "PASS", "FAIL" or "NOT JUDGED".
std::string status_str(const TensorReport& r);
inline constexpr const char* kRuleRowBound = "condition-aware row bound";  // validation/row_bound.hpp
inline constexpr const char* kRuleCg = "CG rule (direct-solve truth, per-row CG baseline distance)";  // validation/cg_rule.hpp

// Multi-index of a flat position in a row-major shape.
std::vector<std::size_t> unflatten(std::size_t flat, const std::vector<std::size_t>& shape);
std::string index_str(const std::vector<std::size_t>& idx);

// ULP of x in dtype t (spacing of t's numbers at |x|; subnormal spacing near 0).
double ulp_in(DType t, double x);

// elem_limit (optional, truth's shape): a per-element limit replacing the baseline rule:
// entry i passes when |candidate_i - truth_i| <= max(floor, elem_limit_i); the baseline, if
// given, is still reported but sets no limit. An entry with an infinite limit is not judged
// (the CG rule's capped rows) and does not count in the reported largest limit.
// baseline_err (optional): the baseline's max abs error to use instead of max|baseline - truth|
// (check.cpp: the largest over symmetric variants of the baseline run).
TensorReport compare_tensor(const std::string& name, const Tensor<double>& candidate, const Tensor<double>& truth,
                            DType cand_dtype, const Tolerance& tol, const Tensor<double>* baseline = nullptr,
                            const Tensor<double>* elem_limit = nullptr, std::optional<double> baseline_err = std::nullopt);

std::string format_report(const std::vector<TensorReport>& rs);
nlohmann::json to_json(const TensorReport& r);

}  // namespace plx
