// validation/problem_json.cpp — see problem_json.hpp. Field names follow reference/problem.hpp.
#include "validation/problem_json.hpp"

#include <cstdint>
#include <set>

namespace plx {
namespace {
using nlohmann::json;

std::string sgn0_name(Sgn0 s) { return s == Sgn0::Plus ? "plus" : "zero"; }

// Look a name up among every value of an enum; unknown names name the field and the choices.
template <class E> E enum_from(const json& j, const std::string& field, std::initializer_list<E> all,
                               std::string (*name)(E)) {
  if (!j.is_string()) throw Error("problem field '" + field + "': expected a string, got " + j.dump());
  const std::string s = j.get<std::string>();
  std::string choices;
  for (E e : all) {
    if (name(e) == s) return e;
    choices += (choices.empty() ? "" : ", ") + name(e);
  }
  throw Error("problem field '" + field + "': unknown name '" + s + "' (expected one of: " + choices + ")");
}
std::string probe_n(Probe x) { return to_string(x); }
std::string anchor_n(Anchor x) { return to_string(x); }
std::string form_n(Formulation x) { return to_string(x); }
std::string method_n(SolverMethod x) { return to_string(x); }
std::string grad_n(RidgeGrad x) { return to_string(x); }
std::string gen_n(InputGen x) { return to_string(x); }

void check_keys(const json& j, const std::string& where, const std::set<std::string>& allowed) {
  if (!j.is_object()) throw Error("problem field '" + where + "': expected a JSON object, got " + j.dump());
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!allowed.count(it.key()))
      throw Error("problem field '" + (where.empty() ? "" : where + ".") + it.key() + "': unknown field");
}

template <class T> T get(const json& j, const std::string& field) {
  try {
    if constexpr (std::is_same_v<T, bool>) {
      if (!j.is_boolean()) throw Error("");
    } else if constexpr (std::is_unsigned_v<T>) {
      if (!j.is_number_unsigned()) throw Error("");
    } else if constexpr (std::is_integral_v<T>) {
      if (!j.is_number_integer()) throw Error("");
      if (j.get<long long>() < INT32_MIN || j.get<long long>() > INT32_MAX) throw Error("");
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!j.is_number()) throw Error("");
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (!j.is_string()) throw Error("");
    }
    return j.get<T>();
  } catch (const std::exception&) {
    throw Error("problem field '" + field + "': wrong JSON type or range (" + j.dump() + ")");
  }
}
}  // namespace

json problem_to_json(const Problem& p) {
  const auto& s = p.solver;
  return json{
      {"name", p.name}, {"member", member_name(p)},
      {"B", p.B}, {"Hq", p.Hq}, {"Hkv", p.Hkv}, {"Lq", p.Lq}, {"Lkv", p.Lkv}, {"D", p.D}, {"Dv", p.Dv},
      {"qk_scale", p.qk_scale}, {"tau", p.tau()}, {"decode", p.decode},
      {"causal", p.causal}, {"window", p.window}, {"start", p.start}, {"used", p.used},
      {"probe", to_string(p.probe)}, {"anchor", to_string(p.anchor)}, {"form", to_string(p.form)},
      {"solver", {{"lambda", s.lambda}, {"lambda_per_row", s.lambda_per_row}, {"block", s.block},
                  {"method", to_string(s.method)}, {"cg_atol", s.cg_atol}, {"cg_rtol", s.cg_rtol},
                  {"cg_max_iters", s.cg_max_iters}, {"ridge_grad", to_string(s.ridge_grad)}}},
      {"anchor_knobs", {{"delta_eps", p.anchor_knobs.delta_eps}, {"sgn0", sgn0_name(p.anchor_knobs.sgn0)}}},
      {"dtype", to_string(p.dtype)}, {"gen", to_string(p.gen)}, {"gen_param", p.gen_param},
      {"r_scale", p.r_scale}, {"seed", p.seed}};
}

Problem problem_from_json(const json& j) {
  check_keys(j, "", {"name", "member", "B", "Hq", "Hkv", "Lq", "Lkv", "D", "Dv", "qk_scale", "tau", "decode",
                     "causal", "window", "start", "used", "probe", "anchor", "form", "solver", "anchor_knobs",
                     "dtype", "gen", "gen_param", "r_scale", "seed"});
  Problem p;
  if (j.contains("member")) set_member(p, get<std::string>(j["member"], "member"));
  if (j.contains("name")) p.name = get<std::string>(j["name"], "name");
  for (auto [key, dst] : {std::pair{"B", &p.B}, {"Hq", &p.Hq}, {"Hkv", &p.Hkv}, {"Lq", &p.Lq}, {"Lkv", &p.Lkv},
                          {"D", &p.D}, {"Dv", &p.Dv}, {"window", &p.window}})
    if (j.contains(key)) *dst = get<int>(j[key], key);
  if (j.contains("qk_scale")) p.qk_scale = get<double>(j["qk_scale"], "qk_scale");
  if (j.contains("decode")) p.decode = get<bool>(j["decode"], "decode");
  if (j.contains("causal")) p.causal = get<bool>(j["causal"], "causal");
  for (auto [key, dst] : {std::pair{"start", &p.start}, {"used", &p.used}})
    if (j.contains(key)) {
      if (!j[key].is_array()) throw Error(std::string("problem field '") + key + "': expected an array of integers");
      dst->clear();
      for (const auto& e : j[key]) dst->push_back(get<int>(e, key));
    }
  if (j.contains("probe")) p.probe = enum_from(j["probe"], "probe", {Probe::None, Probe::Learned, Probe::Solver}, probe_n);
  if (j.contains("anchor")) p.anchor = enum_from(j["anchor"], "anchor", {Anchor::KeyMean, Anchor::Query}, anchor_n);
  if (j.contains("form"))
    p.form = enum_from(j["form"], "form", {Formulation::Accumulator, Formulation::Centred}, form_n);
  if (j.contains("solver")) {
    const json& s = j["solver"];
    check_keys(s, "solver", {"lambda", "lambda_per_row", "block", "method", "cg_atol", "cg_rtol", "cg_max_iters",
                             "ridge_grad"});
    auto& k = p.solver;
    if (s.contains("lambda")) k.lambda = get<double>(s["lambda"], "solver.lambda");
    if (s.contains("lambda_per_row")) k.lambda_per_row = get<bool>(s["lambda_per_row"], "solver.lambda_per_row");
    if (s.contains("block")) k.block = get<int>(s["block"], "solver.block");
    if (s.contains("method"))
      k.method = enum_from(s["method"], "solver.method",
                           {SolverMethod::Direct, SolverMethod::CG, SolverMethod::JacobiCG}, method_n);
    if (s.contains("cg_atol")) k.cg_atol = get<double>(s["cg_atol"], "solver.cg_atol");
    if (s.contains("cg_rtol")) k.cg_rtol = get<double>(s["cg_rtol"], "solver.cg_rtol");
    if (s.contains("cg_max_iters")) k.cg_max_iters = get<int>(s["cg_max_iters"], "solver.cg_max_iters");
    if (s.contains("ridge_grad"))
      k.ridge_grad = enum_from(s["ridge_grad"], "solver.ridge_grad", {RidgeGrad::Exact, RidgeGrad::Detached}, grad_n);
  }
  if (j.contains("anchor_knobs")) {
    const json& a = j["anchor_knobs"];
    check_keys(a, "anchor_knobs", {"delta_eps", "sgn0"});
    if (a.contains("delta_eps")) p.anchor_knobs.delta_eps = get<double>(a["delta_eps"], "anchor_knobs.delta_eps");
    if (a.contains("sgn0")) p.anchor_knobs.sgn0 = enum_from(a["sgn0"], "anchor_knobs.sgn0", {Sgn0::Plus, Sgn0::Zero}, sgn0_name);
  }
  if (j.contains("dtype")) {
    const std::string d = get<std::string>(j["dtype"], "dtype");
    try {
      p.dtype = dtype_from_string(d);
    } catch (const Error& e) {
      throw Error(std::string("problem field 'dtype': ") + e.what());
    }
  }
  if (j.contains("gen"))
    p.gen = enum_from(j["gen"], "gen",
                      {InputGen::Normal, InputGen::RmsNorm, InputGen::Anisotropic, InputGen::Outliers, InputGen::Sink,
                       InputGen::NearDuplicate, InputGen::LargeScale, InputGen::LargeR, InputGen::ZCancel},
                      gen_n);
  if (j.contains("gen_param")) p.gen_param = get<double>(j["gen_param"], "gen_param");
  if (j.contains("r_scale")) p.r_scale = get<double>(j["r_scale"], "r_scale");
  if (j.contains("seed")) p.seed = get<std::uint64_t>(j["seed"], "seed");
  // `member` and `tau` are derived; if given they must agree with the explicit fields.
  if (j.contains("tau") && get<double>(j["tau"], "tau") != p.tau())
    throw Error("problem field 'tau': " + j["tau"].dump() + " disagrees with qk_scale/D (tau = " +
                std::to_string(p.tau()) + ")");
  validate(p);
  return p;
}

Problem problem_from_json_text(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) throw Error("problem: not valid JSON");
  try {
    return problem_from_json(j);
  } catch (const nlohmann::json::exception& e) {  // defensive: every field is type-checked first
    throw Error(std::string("problem: ") + e.what());
  }
}

std::string problem_json_text(const Problem& p) { return problem_to_json(p).dump(); }

}  // namespace plx
