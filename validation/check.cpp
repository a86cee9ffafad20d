// validation/check.cpp — candidate files, the same-precision baseline, and the check itself.
#include "validation/check.hpp"
#include "validation/certify_fixture.hpp"

#include <cmath>
#include <cstdio>
#include <sstream>

#include "reference/all.hpp"
#include "validation/cg_rule.hpp"
#include "validation/conditioning.hpp"
#include "validation/emulate.hpp"
#include "validation/h5io.hpp"
#include "validation/problem_json.hpp"
#include "validation/symmetry.hpp"
#include "validation/row_bound.hpp"
#include "validation/row_sample.hpp"

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

namespace {
// The baseline on the fixture's rows: the whole problem, or for a row-sampled fixture each run's
// sub-problem (validation/row_sample.hpp), assembled over the listed rows like the truth. A
// fallback on any run counts as a fallback for the whole tensor.
std::map<std::string, Tensor<double>> fixture_baseline(const FixtureData& fx, const Inputs& in, DType X, bool grads,
                                                       const std::string& profile, std::string* note, bool* fell_back) {
  if (fx.rows.empty()) return profile_baseline(fx.p, in, X, grads, profile, note, fell_back);
  bool any = false;
  std::string first;
  auto m = over_rows(fx.p, in, fx.rows, [&](const Problem& sp, const Inputs& si) {
    bool fb = false;
    std::string n;
    auto r = profile_baseline(sp, si, X, grads, profile, &n, &fb);
    any = any || fb;
    if (first.empty() || fb) first = n;
    return r;
  });
  if (note) *note = first + " (computed on the sub-problems of the fixture's " + std::to_string(fx.rows.size()) + " sampled rows)";
  if (fell_back) *fell_back = any;
  return m;
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

Candidate read_candidate(const std::string& path, const FixtureData& fx, bool ignore_extra,
                         std::vector<std::string>* ignored) {
  h5::Handle file = h5::open_file(path);
  Candidate c;
  c.label = path;
  const auto shapes = tensor_shapes(fx.p);
  // Strictness: every object in the file is a tensor the fixture has truth for, or "extra".
  std::vector<std::string> extra;
  for (const auto& name : h5::list(file, "."))
    if (!fx.truth.count(name) && !(!fx.rows.empty() && (name == "dk" || name == "dv"))) extra.push_back(name);
  if (!extra.empty()) {
    std::string names, why;
    for (const auto& n : extra) {
      names += (names.empty() ? "'" : ", '") + n + "'";
      bool known = false;
      for (const auto& k : checked_tensor_names()) known = known || k == n;
      if (known) why += " '" + n + "': this fixture has no truth for it (" + member_name(fx.p) +
                        (fx.p.decode ? ", decode" : "") + ");";
    }
    std::string have;
    for (const auto& [n, t] : fx.truth) have += (have.empty() ? "" : ", ") + n;
    if (!ignore_extra)
      throw Error("candidate '" + path + "' has dataset(s) or group(s) " + names + " that this fixture does not check;" +
                  why + " the fixture checks " + have + " (names are case-sensitive); pass --ignore-extra to skip them");
    if (ignored) *ignored = extra;
  }
  std::string file_dtype = h5::has_attr(file, ".", "dtype") ? h5::get_attr_string(file, ".", "dtype") : "";
  for (const auto& name : checked_tensor_names()) {
    if (!fx.truth.count(name) || !h5::exists(file, name)) continue;
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
    // A row-sampled fixture judges the candidate's rows it lists (validation/row_sample.hpp).
    if (!fx.rows.empty()) c.tensors[name].values = take_rows(c.tensors[name].values, fx.rows);
  }
  if (!c.tensors.count("out")) throw Error("candidate '" + path + "' has no dataset 'out'");
  return c;
}


Candidate candidate_from_result(const std::string& label, const CandidateResult& r, const Problem& p,
                                const std::map<std::string, DType>& dtypes) {
  Candidate c;
  c.label = label;
  c.in_process = true;
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

int exit_code(Verdict v) { return v == Verdict::Pass ? 0 : v == Verdict::Fail ? 1 : 3; }
std::string to_string(Verdict v) { return v == Verdict::Pass ? "pass" : v == Verdict::Fail ? "fail" : "not judged"; }

int default_baseline_variants(const Problem& p) { return p.probe == Probe::Solver ? 4 : 1; }

DType natural_dtype(const Problem& p, const std::string& tensor) {
  if (tensor == "out") return p.dtype;
  return p.dtype == DType::F64 ? DType::F64 : DType::F32;  // gradients accumulate in fp32 (fp64 for fp64 problems)
}

namespace {
int width_rank(DType t) { return t == DType::F64 ? 3 : t == DType::F32 ? 2 : 1; }
bool representable_in(DType t, const Tensor<double>& x) {
  for (double v : x.data)
    if (std::isfinite(v) && round_to(t, v) != v) return false;
  return true;
}
}  // namespace

CheckResult check_candidate(const std::string& fixture_path, const FixtureData& fx, const Candidate& c_in,
                            const CheckOptions& opt) {
  CheckResult res;
  res.fixture = fixture_path, res.candidate = c_in.label, res.problem = fx.p;
  res.purpose = fx.purpose, res.hint = fx.hint;
  const std::string& baseline = opt.baseline;
  res.baseline = baseline.empty() ? "default" : profile_by_name(baseline).name;
  const auto& abs_override = opt.abs_override;
  const bool row_bound = opt.row_bound;
  if (row_bound && !fx.rows.empty())
    throw Error("--row-bound is not available for a row-sampled fixture (its per-row bound needs every row's diagnostics)");
  if (!fx.rows.empty()) {
    res.notes.push_back("row-sampled fixture: judged on the " + std::to_string(fx.rows.size()) + " of " +
                        std::to_string(fx.p.Lq) + " query rows listed in its dataset 'rows' (" +
                        std::to_string(row_runs(fx.p, fx.rows).size()) + " runs over " + std::to_string(fx.p.B) +
                        " batches); dk, dv have no truth there");
    if (cg_rule_applies(fx.p))
      res.notes.push_back("the CG rule is not computed for row-sampled fixtures: the same-precision rule applies");
  }
  for (const auto& [name, t] : abs_override)
    if (!c_in.tensors.count(name))
      throw Error("--tol names tensor '" + name + "', which the candidate does not provide");
  bool want_grads = false;
  for (const auto& [name, t] : c_in.tensors) {
    if (!fx.truth.count(name))
      throw Error("candidate provides '" + name + "' but fixture '" + fixture_path +
                  "' has no truth for it (" +
                  (fx.reference_error.is_object() ? fx.reference_error.value("notes", json::object()).dump() : "{}") + ")");
    if (name != "out") want_grads = true;
  }
  // A tensor stored wider than its natural dtype: warn (naming the likely cause), and with
  // as_problem_dtype judge it at the natural dtype.
  Candidate c = c_in;
  for (auto& [name, ct] : c.tensors) {
    const DType nat = natural_dtype(fx.p, name);
    if (c.in_process || width_rank(ct.dtype) <= width_rank(nat)) continue;
    const bool exact = representable_in(nat, ct.values);
    std::string w = "'" + name + "' is stored as " + to_string(ct.dtype) + ", wider than its natural dtype " +
                    to_string(nat) + " for a " + to_string(fx.p.dtype) + " problem; ";
    w += exact ? "every value is exactly a " + to_string(nat) + " number, so it is most likely a " + to_string(nat) +
                     " result converted to " + to_string(ct.dtype) + " before writing (e.g. numpy astype or torch .double())"
               : "its values are not all " + to_string(nat) + " numbers (computed in " + to_string(ct.dtype) + "?)";
    if (opt.as_problem_dtype) {
      w += "; judged at " + to_string(nat) + " as --as-problem-dtype asks";
      ct.dtype = nat;
    } else {
      w += "; it is judged as a " + to_string(ct.dtype) + " candidate (against the " + to_string(ct.dtype) +
           " baseline); pass --as-problem-dtype to judge it at " + to_string(nat);
    }
    res.warnings.push_back(w);
  }
  for (const auto& [name, t] : fx.truth)
    if (!c.tensors.count(name)) res.not_checked.push_back(name);

  std::map<DType, std::map<std::string, Tensor<double>>> baselines;
  std::map<DType, bool> fell_back;
  std::map<DType, std::optional<ConditioningLimit>> cond;  // computed only where the baseline fell back
  std::map<DType, std::map<std::string, double>> variant_err;  // tensor -> largest baseline error over variants
  const int K = opt.baseline_variants > 0 ? opt.baseline_variants : default_baseline_variants(fx.p);
  auto recommended = [&](const std::string& name, DType X) {
    const std::string dn = to_string(X);
    if (!fx.tolerances.contains(name) || !fx.tolerances[name].contains(dn))
      throw Error("fixture '" + fixture_path + "' has no recommended tolerance for " + name + " in " + dn);
    return tolerance_from_json(fx.tolerances[name][dn]);
  };
  std::map<DType, std::optional<CgRule>> cg_rules;  // validation/cg_rule.hpp, per candidate dtype
  for (const auto& name : checked_tensor_names()) {
    auto it = c.tensors.find(name);
    if (it == c.tensors.end()) continue;
    const CandidateTensor& ct = it->second;
    if (cg_rule_applies(fx.p) && !abs_override.count(name) && !row_bound && fx.rows.empty()) {
      if (!cg_rules.count(ct.dtype)) {
        try {
          cg_rules[ct.dtype] = cg_rule(fx.p, fx.in, ct.dtype, want_grads, baseline, K);
          res.notes.push_back("CG rule for " + to_string(ct.dtype) + " candidates: " + cg_rules[ct.dtype]->baseline_note);
        } catch (const Error& e) {
          cg_rules[ct.dtype] = std::nullopt;
          res.notes.push_back(std::string("no CG rule for ") + to_string(ct.dtype) + " candidates (" + e.what() +
                              "); the same-precision rule against the fixture's CG iterate applies");
        }
      }
      const auto& rule = cg_rules.at(ct.dtype);
      if (rule && rule->tensors.count(name)) {
        const CgRuleTensor& T = rule->tensors.at(name);
        Tolerance tol = recommended(name, ct.dtype);
        tol.why = rule->why + "; floor: " + tol.why;
        TensorReport rep = compare_tensor(name, ct.values, T.direct, ct.dtype, tol, nullptr, &T.limit);
        rep.rule = kRuleCg;
        char buf[480];
        std::snprintf(buf, sizeof buf,
                      "%s: %zu of %zu rows not judged (%zu: the iteration cap, not the stopping test, ends their CG "
                      "(a float CG's iterate there is not determined to better than its truncation error); %zu: the %s "
                      "CG baseline lands farther than 1/4 of the row from the converged solution)",
                      name.c_str(), T.rows_not_judged(), T.rows, T.rows_at_cap, T.rows_far, to_string(ct.dtype).c_str());
        if (!T.not_judged_why.empty()) mark_not_judged(rep, T.not_judged_why);
        else if (T.rows_not_judged() == T.rows) mark_not_judged(rep, buf);
        else if (T.rows_not_judged()) res.notes.push_back(buf);
        res.reports.push_back(std::move(rep));
        continue;
      }
    }
    if (!baselines.count(ct.dtype)) {
      std::string note;
      bool fb = false;
      baselines[ct.dtype] = fixture_baseline(fx, fx.in, ct.dtype, want_grads, baseline, &note, &fb);
      res.notes.push_back(note);
      fell_back[ct.dtype] = fb;
      if (!fb && K > 1) {  // the baseline's error over symmetric variants (symmetry.hpp)
        auto& ve = variant_err[ct.dtype];
        auto upd = [&](const std::map<std::string, Tensor<double>>& b) {
          for (const auto& [n, t] : b) {
            if (!fx.truth.count(n) || t.shape != fx.truth.at(n).hi.shape) continue;
            double e = 0;
            for (std::size_t i = 0; i < t.size(); ++i) e = std::max(e, std::fabs(t.data[i] - fx.truth.at(n).hi.data[i]));
            ve[n] = std::max(ve.count(n) ? ve[n] : 0.0, e);
          }
        };
        upd(baselines[ct.dtype]);
        int used = 1;
        for (int v = 1; v < K; ++v) {
          const FeaturePerm f = feature_permutation(fx.p, unsigned(v));
          bool fbv = false;
          std::string vnote;
          auto b = fixture_baseline(fx, permute_inputs(fx.in, f), ct.dtype, want_grads, baseline, &vnote, &fbv);
          if (fbv) continue;  // this ordering's fp32 solve failed: no sample
          upd(unpermute_outputs(std::move(b), f));
          ++used;
        }
        res.notes.push_back("baseline error for " + to_string(ct.dtype) + " candidates: the largest of " +
                            std::to_string(used) + " runs of the baseline with the feature axes permuted (exact "
                            "symmetries: only rounding differs; one run's error is too noisy a limit for this member)");
      }
      if (fb) {
        std::string why_not;
        cond[ct.dtype] = fx.rows.empty() ? lla_conditioning_limit(fx.p, fx.in, ct.dtype, &why_not) : std::nullopt;
        if (!fx.rows.empty()) why_not = "not computed for row-sampled fixtures";
        if (!cond[ct.dtype])
          res.notes.push_back("no conditioning bound for " + to_string(ct.dtype) + " candidates: " + why_not);
      }
    }
    Tolerance tol;
    if (abs_override.count(name)) {
      tol = Tolerance{0.0, abs_override.at(name), 0.0, "--tol override: absolute limit"};
    } else {
      tol = recommended(name, ct.dtype);
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
    std::optional<double> berr;
    if (variant_err.count(ct.dtype) && variant_err.at(ct.dtype).count(name)) berr = variant_err.at(ct.dtype).at(name);
    TensorReport rep = compare_tensor(name, ct.values, fx.truth.at(name).hi, ct.dtype, tol, b, nullptr, berr);
    rep.rule = overridden ? kRuleOverride : fell_back.at(ct.dtype) ? kRuleFallback : berr ? kRuleBaselineVariants : kRuleBaseline;
    if (overridden) rep.limit_set_by = kSetByOverride;
    if (rep.rule == kRuleFallback)  // a float64 computation rounded to X bounds nothing an X computation can reach
      mark_not_judged(rep, "no same-precision baseline (the " + to_string(ct.dtype) +
                               " reference cannot run on this fixture) and no other sound rule for '" + name +
                               "'; its error against the float64 fallback baseline is shown for information "
                               "(--tol " + name + "=LIMIT judges it against an absolute limit of your choosing)");
    res.reports.push_back(std::move(rep));
  }
  if (fx.reference_error.contains("max_rel"))
    res.notes.push_back("truth: reference in " + fx.scalar + ", its own error " +
                        fx.reference_error.value("method", std::string("?")) + ": " + fx.reference_error["max_rel"].dump());
  if (const std::string cs = certified_summary(fx); !cs.empty()) res.notes.push_back(cs);
  bool failed = res.reports.empty(), unjudged = false;
  for (const auto& r : res.reports) failed = failed || (r.judged && !r.passed), unjudged = unjudged || !r.judged;
  if (opt.require_all && !res.not_checked.empty()) failed = true;
  res.verdict = failed ? Verdict::Fail : unjudged ? Verdict::NotJudged : Verdict::Pass;
  res.passed = res.verdict == Verdict::Pass;
  return res;
}

json CheckResult::to_json() const {
  json t = json::array();
  for (const auto& r : reports) t.push_back(plx::to_json(r));
  return {{"fixture", fixture},       {"candidate", candidate},        {"problem", problem_to_json(problem)},
          {"passed", passed},         {"verdict", to_string(verdict)}, {"exit_code", exit_code(verdict)},
          {"tensors", t},             {"not_checked", not_checked},    {"warnings", warnings},
          {"notes", notes},           {"baseline", baseline},          {"purpose", purpose},
          {"hint", hint}};
}

std::string CheckResult::format() const {
  std::ostringstream o;
  const Problem& p = problem;
  o << "== " << p.name << "  [" << member_name(p) << ", " << to_string(p.dtype) << " inputs, B=" << p.B << " Hq=" << p.Hq
    << " Hkv=" << p.Hkv << " Lq=" << p.Lq << " Lkv=" << p.Lkv << " D=" << p.D << " Dv=" << p.Dv
    << (p.causal ? " causal" : "") << (p.window >= 0 ? " window=" + std::to_string(p.window) : "")
    << (p.decode ? " decode" : "") << "]\n";
  o << "   fixture " << fixture << "\n   candidate " << candidate << "\n   baseline " << baseline << "\n";
  o << format_report(reports);
  for (const auto& n : not_checked)
    o << "   not checked: " << n << " (the fixture has truth for it; the candidate does not provide it)\n";
  for (const auto& w : warnings) o << "   warning: " << w << "\n";
  for (const auto& n : notes) o << "   note: " << n << "\n";
  if (verdict == Verdict::Fail && !purpose.empty()) o << "   the case tests: " << purpose << "\n";
  if (verdict == Verdict::Fail && !hint.empty()) o << "   hint: " << hint << "\n";
  o << "   result: "
    << (verdict == Verdict::Pass   ? "PASS"
        : verdict == Verdict::Fail ? "FAIL"
                                   : "NOT JUDGED (nothing failed, but a tensor has no sound rule: exit 3)");
  if (!not_checked.empty()) o << " (" << not_checked.size() << " tensor(s) not checked)";
  o << "\n";
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
