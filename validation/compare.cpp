// validation/compare.cpp — implementation of the comparison path (see compare.hpp).
#include "validation/compare.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

namespace plx {

std::vector<std::size_t> unflatten(std::size_t flat, const std::vector<std::size_t>& shape) {
  std::vector<std::size_t> idx(shape.size());
  for (std::size_t a = shape.size(); a-- > 0;) {
    idx[a] = shape[a] ? flat % shape[a] : 0;
    flat = shape[a] ? flat / shape[a] : 0;
  }
  return idx;
}

std::string index_str(const std::vector<std::size_t>& idx) { return shape_str(idx); }

double ulp_in(DType t, double x) {
  int digits = 53, emin = -1022;
  switch (t) {
    case DType::F64: digits = 53, emin = -1022; break;
    case DType::F32: digits = 24, emin = -126; break;
    case DType::BF16: digits = 8, emin = -126; break;
    case DType::F16: digits = 11, emin = -14; break;
  }
  double a = std::fabs(x);
  int e = a > 0 ? std::ilogb(a) : emin;
  if (e < emin) e = emin;
  return std::ldexp(1.0, e - (digits - 1));
}

TensorReport compare_tensor(const std::string& name, const Tensor<double>& cand, const Tensor<double>& truth,
                            DType dt, const Tolerance& tol, const Tensor<double>* baseline,
                            const Tensor<double>* elem_limit, std::optional<double> baseline_err) {
  if (cand.shape != truth.shape)
    throw Error("compare '" + name + "': candidate shape " + shape_str(cand.shape) + " differs from truth " +
                shape_str(truth.shape));
  if (elem_limit && elem_limit->shape != truth.shape)
    throw Error("compare '" + name + "': per-element limit shape " + shape_str(elem_limit->shape) +
                " differs from truth " + shape_str(truth.shape));
  if (baseline && baseline->shape != truth.shape)
    throw Error("compare '" + name + "': baseline shape " + shape_str(baseline->shape) + " differs from truth " +
                shape_str(truth.shape));
  TensorReport r;
  r.name = name, r.dtype = dt, r.n = truth.size(), r.tolerance_why = tol.why;
  double num = 0, den = 0;
  std::size_t worst = 0;
  bool have_worst = false;
  for (std::size_t i = 0; i < truth.size(); ++i) {
    const double c = cand.data[i], t = truth.data[i];
    r.truth_max_abs = std::max(r.truth_max_abs, std::fabs(t));
    if (!std::isfinite(c)) {
      if (r.nonfinite++ == 0) r.first_nonfinite = unflatten(i, truth.shape);
      continue;
    }
    const double e = std::fabs(c - t);
    num += e * e, den += t * t;
    if (!have_worst || e > r.max_abs) r.max_abs = e, worst = i, have_worst = true;
    if (t != 0) r.max_rel = std::max(r.max_rel, e / std::fabs(t));
  }
  if (have_worst) r.max_ulp = r.max_abs / ulp_in(dt, r.truth_max_abs);
  r.normwise_rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  if (have_worst) {
    r.worst_index = unflatten(worst, truth.shape);
    r.worst_candidate = cand.data[worst], r.worst_truth = truth.data[worst];
  }
  if (baseline) {
    double b = 0;
    for (std::size_t i = 0; i < truth.size(); ++i) b = std::max(b, std::fabs(baseline->data[i] - truth.data[i]));
    r.baseline_max_abs = b;
  }
  if (baseline_err) r.baseline_max_abs = std::max(r.baseline_max_abs.value_or(0.0), *baseline_err);
  const double floor = tol.abs_floor + tol.rel_floor * r.truth_max_abs;
  auto limit_at = [&](std::size_t i) { return std::max(floor, elem_limit->data[i]); };
  if (elem_limit) {  // per-element limits: pass iff every entry is within its own limit
    r.per_element_limit = true;
    r.limit = floor;
    bool ok = true, have = false;
    std::size_t wr = 0;
    for (std::size_t i = 0; i < truth.size(); ++i) {
      const double li = limit_at(i);
      if (std::isfinite(li)) r.limit = std::max(r.limit, li);  // +inf marks an entry the rule does not judge
      const double c = cand.data[i];
      if (!std::isfinite(c)) continue;
      const double e = std::fabs(c - truth.data[i]);
      ok = ok && e <= li;
      const double ratio = li > 0 ? e / li : (e > 0 ? std::numeric_limits<double>::infinity() : 0.0);
      if (!have || ratio > r.worst_limit_ratio) r.worst_limit_ratio = ratio, wr = i, have = true;
    }
    if (have) r.worst_ratio_index = unflatten(wr, truth.shape);
    r.passed = r.nonfinite == 0 && ok;
    r.limit_set_by = have && elem_limit->data[wr] <= floor ? kSetByFloor : kSetByElement;
  } else {
    const double by_base = r.baseline_max_abs ? tol.baseline_ratio * *r.baseline_max_abs : 0.0;
    r.limit = std::max(floor, by_base);
    r.limit_set_by = r.baseline_max_abs && by_base > floor ? kSetByBaseline : kSetByFloor;
    r.passed = r.nonfinite == 0 && r.max_abs <= r.limit;
    r.worst_limit_ratio = r.limit > 0 ? r.max_abs / r.limit : (r.max_abs > 0 ? std::numeric_limits<double>::infinity() : 0.0);
    r.worst_ratio_index = r.worst_index;
  }
  for (std::size_t i = 0; i < truth.size() && r.first_mismatches.size() < 5; ++i) {
    const double c = cand.data[i], t = truth.data[i];
    if (!std::isfinite(c) || std::fabs(c - t) > (elem_limit ? limit_at(i) : r.limit)) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "%s: candidate %.9g vs truth %.17g", index_str(unflatten(i, truth.shape)).c_str(), c, t);
      r.first_mismatches.push_back(buf);
    }
  }
  return r;
}

void mark_not_judged(TensorReport& r, const std::string& why) {
  r.judged = false, r.passed = false, r.not_judged_why = why;
}

std::string status_str(const TensorReport& r) { return !r.judged ? "NOT JUDGED" : r.passed ? "PASS" : "FAIL"; }

std::string format_report(const std::vector<TensorReport>& rs) {
  std::ostringstream o;
  char buf[512];
  // err/limit decides the verdict (<= 1 passes); "set by" names the term of the limit that
  // decided it; err/base is the error over the same-precision baseline's error.
  std::snprintf(buf, sizeof buf, "%-8s %-8s %10s %10s %10s %9s %10s %10s %-9s %9s %8s  %s\n", "tensor", "dtype",
                "max_abs", "max_rel", "norm_rel", "ulp@max", "baseline", "limit", "set by", "err/limit", "err/base",
                "result");
  o << buf;
  for (const auto& r : rs) {
    auto num = [](const char* f, double x) { char b[32]; std::snprintf(b, sizeof b, f, x); return std::string(b); };
    const std::string base = r.baseline_max_abs ? num("%.3g", *r.baseline_max_abs) : "-";
    const std::string err_base =
        r.baseline_max_abs && *r.baseline_max_abs > 0 ? num("%.2f", r.max_abs / *r.baseline_max_abs) : "-";
    const std::string set_by = r.limit_set_by == kSetByElement ? "per-elem" : r.limit_set_by;
    std::snprintf(buf, sizeof buf, "%-8s %-8s %10.3g %10.3g %10.3g %9.3g %10s %10.3g %-9s %9.3g %8s  %s\n",
                  r.name.c_str(), to_string(r.dtype).c_str(), r.max_abs, r.max_rel, r.normwise_rel, r.max_ulp,
                  base.c_str(), r.limit, set_by.c_str(), r.worst_limit_ratio, err_base.c_str(), status_str(r).c_str());
    o << buf;
    if (!r.rule.empty() && r.rule != kRuleBaseline) o << "    rule: " << r.rule << "\n";  // the usual rule is not repeated
    if (!r.judged) o << "    not judged: " << r.not_judged_why << "\n";
    if (r.per_element_limit) {
      std::snprintf(buf, sizeof buf, "    per-element limits (largest printed above): worst error/limit %.3g at %s\n",
                    r.worst_limit_ratio, index_str(r.worst_ratio_index).c_str());
      o << buf;
    }
    if (r.judged && !r.passed) {
      if (r.nonfinite)
        o << "    " << r.nonfinite << " non-finite candidate entries, first at " << index_str(r.first_nonfinite) << "\n";
      if (!r.worst_index.empty()) {
        std::snprintf(buf, sizeof buf, "    worst at %s: candidate %.9g vs truth %.17g\n", index_str(r.worst_index).c_str(),
                      r.worst_candidate, r.worst_truth);
        o << buf;
      }
      for (const auto& m : r.first_mismatches) o << "    mismatch " << m << "\n";
      if (!r.tolerance_why.empty()) o << "    tolerance: " << r.tolerance_why << "\n";
    }
  }
  return o.str();
}

nlohmann::json to_json(const TensorReport& r) {
  nlohmann::json j = {{"tensor", r.name}, {"dtype", to_string(r.dtype)}, {"n", r.n}, {"nonfinite", r.nonfinite},
                      {"max_abs", r.max_abs}, {"max_rel", r.max_rel}, {"normwise_rel", r.normwise_rel},
                      {"max_ulp", r.max_ulp}, {"truth_max_abs", r.truth_max_abs}, {"worst_index", r.worst_index},
                      {"worst_candidate", r.worst_candidate}, {"worst_truth", r.worst_truth}, {"limit", r.limit},
                      {"passed", r.passed}, {"tolerance", r.tolerance_why}, {"first_mismatches", r.first_mismatches}};
  j["worst_limit_ratio"] = r.worst_limit_ratio;  // error / limit: > 1 fails
  j["limit_set_by"] = r.limit_set_by;
  j["status"] = !r.judged ? "not judged" : r.passed ? "pass" : "fail";
  j["max_ulp_unit"] = "spacing of the candidate dtype at max|truth|";
  if (!r.judged) j["not_judged_why"] = r.not_judged_why;
  j["per_element_limit"] = r.per_element_limit;
  if (!r.rule.empty()) j["rule"] = r.rule;
  if (r.nonfinite) j["first_nonfinite"] = r.first_nonfinite;
  if (r.baseline_max_abs) j["baseline_max_abs"] = *r.baseline_max_abs;
  return j;
}

}  // namespace plx
