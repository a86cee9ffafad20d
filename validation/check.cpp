// validation/check.cpp — candidate files, the same-precision baseline, and the check itself.
#include "validation/check.hpp"

#include <cmath>
#include <cstdio>
#include <sstream>

#include "reference/all.hpp"
#include "validation/conditioning.hpp"
#include "validation/h5io.hpp"
#include "validation/problem_json.hpp"
#include "validation/row_bound.hpp"

namespace plx {
using nlohmann::json;

namespace {
std::map<std::string, std::vector<std::size_t>> tensor_shapes(const Problem& p) {
  const std::size_t B = p.B, Lq = p.Lq, Hq = p.Hq, D = p.D, Dv = p.Dv, Lkv = p.Lkv, Hkv = p.Hkv;
  return {{"out", {B, Lq, Hq, Dv}}, {"dq", {B, Lq, Hq, D}},   {"dk", {B, Lkv, Hkv, D}},
          {"dv", {B, Lkv, Hkv, Dv}}, {"dr", {B, Lq, Hq, D}}, {"dlambda", {B, Hq, Lq}}};
}

// The reference in accumulation precision A, every result widened to double.
template <class A> std::map<std::string, Tensor<double>> run_reference(const Problem& p, const Inputs& in, bool grads) {
  std::map<std::string, Tensor<double>> r;
  auto widen = [](const Tensor<A>& t) { return convert<double>(t, [](const A& x) { return to_double(x); }); };
  r["out"] = widen(attention_forward<A>(p, in).out);
#ifdef PLX_BACKWARD_TEMPLATES
  if (grads && !p.decode) {
    auto G = attention_backward<A>(p, in);
    r["dq"] = widen(G.dq), r["dk"] = widen(G.dk), r["dv"] = widen(G.dv), r["dr"] = widen(G.dr);
    r["dlambda"] = widen(G.dlambda);
  }
#else
  (void)grads;
#endif
  return r;
}
}  // namespace

std::map<std::string, Tensor<double>> same_precision_baseline(const Problem& p, const Inputs& in, DType X,
                                                              bool gradients, std::string* note, bool* fell_back) {
  std::map<std::string, Tensor<double>> r;
  std::string how;
  if (fell_back) *fell_back = false;
  if (X == DType::F64) {
    r = run_reference<double>(p, in, gradients);
    how = "reference in float64 arithmetic (compensated key sums)";
  } else {
    try {
      r = run_reference<float>(p, in, gradients);
      how = "reference in float32 arithmetic (fp32 accumulation, compensated across 64-key tiles), outputs rounded to " +
            to_string(X);
    } catch (const NumericalError& e) {  // e.g. Cholesky of C + lambda I fails in fp32
      r = run_reference<double>(p, in, gradients);
      how = "reference in float64 arithmetic, outputs rounded to " + to_string(X) +
            " (the float32 reference failed: " + e.what() + ")";
      if (fell_back) *fell_back = true;
    }
    for (auto& [n, t] : r)
      for (auto& x : t.data) x = round_to(X, x);
  }
  if (note) *note = "baseline for " + to_string(X) + " candidates: " + how;
  return r;
}

Candidate read_candidate(const std::string& path, const FixtureData& fx) {
  h5::Handle file = h5::open_file(path);
  Candidate c;
  c.label = path;
  const auto shapes = tensor_shapes(fx.p);
  std::string file_dtype = h5::has_attr(file, ".", "dtype") ? h5::get_attr_string(file, ".", "dtype") : "";
  for (const auto& name : checked_tensor_names()) {
    if (!h5::exists(file, name)) continue;
    h5::Raw r = h5::read(file, name);
    DType dt;
    std::string fmt;
    if (r.type == h5::Raw::F64) dt = DType::F64;
    else if (r.type == h5::Raw::F32) dt = DType::F32;
    else if (r.type == h5::Raw::U16) {
      fmt = h5::has_attr(file, name, "format") ? h5::get_attr_string(file, name, "format") : "";
      if (fmt != "bfloat16" && fmt != "float16")
        throw Error("candidate '" + path + "', dataset '" + name + "': uint16 data needs a 'format' attribute "
                    "'bfloat16' or 'float16' (got '" + fmt + "')");
      dt = dtype_from_string(fmt);
    } else {
      throw Error("candidate '" + path + "', dataset '" + name + "': dtype mismatch: stored as " + r.type_desc +
                  " (expected float64, float32, or uint16 bf16/fp16 bit patterns with a 'format' attribute)");
    }
    if (!file_dtype.empty() && dtype_from_string(file_dtype) != dt)
      throw Error("candidate '" + path + "', dataset '" + name + "': dtype mismatch: the file's 'dtype' attribute says " +
                  file_dtype + " but the dataset is stored as " + to_string(dt));
    if (r.shape != shapes.at(name))
      throw Error("candidate '" + path + "', dataset '" + name + "': shape " + shape_str(r.shape) +
                  " but the fixture's problem needs " + shape_str(shapes.at(name)));
    c.tensors[name] = {h5::to_tensor(r, fmt), dt};
  }
  if (!c.tensors.count("out")) throw Error("candidate '" + path + "' has no dataset 'out'");
  return c;
}

Candidate candidate_from_result(const std::string& label, const CandidateResult& r, const Problem& p,
                                const std::map<std::string, DType>& dtypes) {
  Candidate c;
  c.label = label;
  const auto shapes = tensor_shapes(p);
  auto add = [&](const std::string& name, const Tensor<double>& t) {
    if (t.empty()) return;
    if (t.shape != shapes.at(name))
      throw Error("candidate " + label + ": tensor '" + name + "' has shape " + shape_str(t.shape) + ", expected " +
                  shape_str(shapes.at(name)));
    c.tensors[name] = {t, dtypes.count(name) ? dtypes.at(name) : DType::F64};
  };
  add("out", r.out), add("dq", r.dq), add("dk", r.dk), add("dv", r.dv);
  if (p.probe == Probe::Learned) add("dr", r.dr);
  if (!c.tensors.count("out")) throw Error("candidate " + label + " returned no 'out'");
  return c;
}

CheckResult check_candidate(const std::string& fixture_path, const FixtureData& fx, const Candidate& c,
                            const std::map<std::string, double>& abs_override, bool row_bound) {
  CheckResult res;
  res.fixture = fixture_path, res.candidate = c.label, res.problem = fx.p;
  for (const auto& [name, t] : abs_override)
    if (!c.tensors.count(name))
      throw Error("--tol names tensor '" + name + "', which the candidate does not provide");
  bool want_grads = false;
  for (const auto& [name, t] : c.tensors) {
    if (!fx.truth.count(name))
      throw Error("candidate provides '" + name + "' but fixture '" + fixture_path +
                  "' has no truth for it (" + fx.reference_error.value("notes", json::object()).dump() + ")");
    if (name != "out") want_grads = true;
  }
  std::map<DType, std::map<std::string, Tensor<double>>> baselines;
  std::map<DType, bool> fell_back;
  std::map<DType, std::optional<ConditioningLimit>> cond;  // computed only where the baseline fell back
  for (const auto& name : checked_tensor_names()) {
    auto it = c.tensors.find(name);
    if (it == c.tensors.end()) continue;
    const CandidateTensor& ct = it->second;
    if (!baselines.count(ct.dtype)) {
      std::string note;
      bool fb = false;
      baselines[ct.dtype] = same_precision_baseline(fx.p, fx.in, ct.dtype, want_grads, &note, &fb);
      res.notes.push_back(note);
      fell_back[ct.dtype] = fb;
      if (fb) {
        std::string why_not;
        cond[ct.dtype] = lla_conditioning_limit(fx.p, fx.in, ct.dtype, &why_not);
        if (!cond[ct.dtype])
          res.notes.push_back("no conditioning bound for " + to_string(ct.dtype) + " candidates: " + why_not);
      }
    }
    Tolerance tol;
    if (abs_override.count(name)) {
      tol = Tolerance{0.0, abs_override.at(name), 0.0, "--tol override: absolute limit"};
    } else {
      const std::string dn = to_string(ct.dtype);
      if (!fx.tolerances.contains(name) || !fx.tolerances[name].contains(dn))
        throw Error("fixture '" + fixture_path + "' has no recommended tolerance for " + name + " in " + dn);
      tol = tolerance_from_json(fx.tolerances[name][dn]);
    }
    const auto& base = baselines.at(ct.dtype);
    const Tensor<double>* b = base.count(name) ? &base.at(name) : nullptr;
    const bool overridden = abs_override.count(name) > 0;
    if (row_bound && !overridden) {  // validation/row_bound.hpp
      std::string note;
      auto lim = fixture_row_limits(fx, ct.dtype, name, &note);
      if (lim) {
        TensorReport rep = compare_tensor(name, ct.values, fx.truth.at(name).hi, ct.dtype,
                                          Tolerance{0.0, 0.0, 0.0, note}, b, &*lim);
        rep.rule = kRuleRowBound;
        res.reports.push_back(std::move(rep));
        continue;
      }
      res.notes.push_back("--row-bound: " + note + "; " + name + " keeps the same-precision rule");
    }
    const std::optional<ConditioningLimit>* cl = cond.count(ct.dtype) ? &cond.at(ct.dtype) : nullptr;
    if (!overridden && name == "out" && cl && *cl) {  // no same-precision baseline: the conditioning bound
      tol.why = (*cl)->why + "; floor: " + tol.why;
      TensorReport rep = compare_tensor(name, ct.values, fx.truth.at(name).hi, ct.dtype, tol, b, &(*cl)->limit);
      rep.rule = kRuleConditioning;
      char buf[512];
      std::snprintf(buf, sizeof buf,
                    "out (%s) judged by the conditioning rule (the float32 same-precision baseline cannot run): "
                    "max kappa(C + lambda I) = %.3g, largest per-row limit %.3g, worst error/limit %.3g",
                    to_string(ct.dtype).c_str(), (*cl)->max_kappa, rep.limit, rep.worst_limit_ratio);
      res.notes.push_back(buf);
      res.reports.push_back(std::move(rep));
      continue;
    }
    TensorReport rep = compare_tensor(name, ct.values, fx.truth.at(name).hi, ct.dtype, tol, b);
    rep.rule = overridden ? kRuleOverride : fell_back.at(ct.dtype) ? kRuleFallback : kRuleBaseline;
    res.reports.push_back(std::move(rep));
  }
  if (fx.reference_error.contains("max_rel"))
    res.notes.push_back("truth: reference in " + fx.scalar + ", its own error " +
                        fx.reference_error.value("method", std::string("?")) + ": " + fx.reference_error["max_rel"].dump());
  res.passed = !res.reports.empty();
  for (const auto& r : res.reports) res.passed = res.passed && r.passed;
  return res;
}

json CheckResult::to_json() const {
  json t = json::array();
  for (const auto& r : reports) t.push_back(plx::to_json(r));
  return {{"fixture", fixture}, {"candidate", candidate}, {"problem", problem_to_json(problem)},
          {"passed", passed}, {"tensors", t}, {"notes", notes}};
}

std::string CheckResult::format() const {
  std::ostringstream o;
  const Problem& p = problem;
  o << "== " << p.name << "  [" << member_name(p) << ", " << to_string(p.dtype) << " inputs, B=" << p.B << " Hq=" << p.Hq
    << " Hkv=" << p.Hkv << " Lq=" << p.Lq << " Lkv=" << p.Lkv << " D=" << p.D << " Dv=" << p.Dv
    << (p.causal ? " causal" : "") << (p.window >= 0 ? " window=" + std::to_string(p.window) : "")
    << (p.decode ? " decode" : "") << "]\n";
  o << "   fixture " << fixture << "\n   candidate " << candidate << "\n";
  o << format_report(reports);
  for (const auto& n : notes) o << "   note: " << n << "\n";
  o << "   result: " << (passed ? "PASS" : "FAIL") << "\n";
  return o.str();
}

std::map<std::string, double> parse_tol_overrides(const std::vector<std::string>& specs) {
  std::map<std::string, double> r;
  for (const auto& spec : specs) {
    std::stringstream ss(spec);
    std::string item;
    while (std::getline(ss, item, ',')) {
      auto eq = item.find('=');
      if (eq == std::string::npos) throw Error("--tol: expected tensor=abs_limit, got '" + item + "'");
      const std::string name = item.substr(0, eq), val = item.substr(eq + 1);
      bool known = false;
      for (const auto& n : checked_tensor_names()) known = known || n == name;
      if (!known) throw Error("--tol: unknown tensor '" + name + "' (out, dq, dk, dv, dr, dlambda)");
      std::size_t used = 0;
      double v = 0;
      try {
        v = std::stod(val, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != val.size() || !std::isfinite(v) || v < 0)
        throw Error("--tol: limit for '" + name + "' must be a finite number >= 0, got '" + val + "'");
      r[name] = v;
    }
  }
  return r;
}

}  // namespace plx
