// validation/sweep.cpp — see sweep.hpp.
#include "validation/sweep.hpp"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "reference/all.hpp"
#include "validation/candidates.hpp"
#include "validation/mpi_shard.hpp"
#include "validation/progress.hpp"
#include "validation/problem_json.hpp"
#include "validation/row_bound.hpp"
#include "validation/sha256.hpp"

namespace plx {
using nlohmann::json;

namespace {

const std::vector<std::string>& tensor_names() {
  static const std::vector<std::string> n = {"out", "dq", "dk", "dv", "dr", "dlambda"};
  return n;
}
const std::vector<std::string>& stat_names() {
  static const std::vector<std::string> n = {"norm", "maxrel", "row_med", "row_p90", "row_max",
                                             "rb_n", "rb_viol", "rb_ratio_med", "rb_ratio_max", "rb_loose_med"};
  return n;
}
// Per-row diagnostic summaries (truth, non-empty query rows): column -> (diagnostic, statistic).
struct DiagCol {
  const char* col;
  const char* diag;
  char stat;  // 'n' min, 'm' median, 'x' max, 'a' min |.|
};
const std::vector<DiagCol>& diag_cols() {
  static const std::vector<DiagCol> c = {
      {"n_keys_min", "n_keys", 'n'},      {"ess_min", "ess", 'n'},
      {"ess_med", "ess", 'm'},            {"zs_med", "zbar_over_sigma", 'm'},
      {"zs_max", "zbar_over_sigma", 'x'}, {"alpha_med", "alpha", 'm'},
      {"alpha_max", "alpha", 'x'},        {"dw_min", "delta_over_omega", 'a'},
      {"eod_max", "eps_over_delta", 'x'}, {"sumS_max", "sum_S_minus_1", 'x'},
      {"condC_med", "cond_C", 'm'},       {"condC_max", "cond_C", 'x'},
      {"condS_med", "cond_Sigma", 'm'},   {"condS_max", "cond_Sigma", 'x'},
      {"cgres_max", "cg_residual", 'x'},  {"cgerr_max", "cg_error", 'x'}};
  return c;
}

std::string num(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char b[32];
  std::snprintf(b, sizeof b, "%.5g", x);
  return b;
}
// An axis value as a CSV field: strings bare, anything else as JSON; quoted when it holds a comma.
std::string value_text(const json& v) {
  std::string t = v.is_string() ? v.get<std::string>() : v.dump();
  if (t.find_first_of(",\"\n") == std::string::npos) return t;
  std::string q = "\"";
  for (char c : t) q += c == '"' ? std::string("\"\"") : std::string(1, c == '\n' ? ' ' : c);
  return q + "\"";
}

// Nearest-rank quantile of a sorted vector (q in (0, 1]).
double quantile(const std::vector<double>& s, double q) {
  if (s.empty()) return std::nan("");
  std::size_t k = std::size_t(std::ceil(q * double(s.size())));
  return s[std::min(s.size() - 1, k > 0 ? k - 1 : 0)];
}

void set_dotted(json& j, const std::string& path, const json& v) {
  json* cur = &j;
  std::size_t pos = 0;
  while (true) {
    const std::size_t dot = path.find('.', pos);
    const std::string key = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    if (key.empty()) throw Error("axis '" + path + "': empty field name");
    if (dot == std::string::npos) {
      (*cur)[key] = v;
      return;
    }
    if (!cur->contains(key) || !(*cur)[key].is_object()) (*cur)[key] = json::object();
    cur = &(*cur)[key];
    pos = dot + 1;
  }
}

std::vector<json> axis_values(const json& a, const std::string& where) {
  std::vector<json> v;
  int kinds = int(a.contains("values")) + int(a.contains("geom")) + int(a.contains("linspace"));
  if (kinds != 1) throw Error(where + ": give exactly one of 'values', 'geom' [from, to, factor], 'linspace' [from, to, n]");
  if (a.contains("values")) {
    if (!a["values"].is_array()) throw Error(where + ": 'values' must be an array");
    for (const auto& x : a["values"]) v.push_back(x);
  } else {
    const json& r = a.contains("geom") ? a["geom"] : a["linspace"];
    if (!r.is_array() || r.size() != 3 || !r[0].is_number() || !r[1].is_number() || !r[2].is_number())
      throw Error(where + ": a range is [from, to, " + std::string(a.contains("geom") ? "factor" : "n") + "] (numbers)");
    const double from = r[0].get<double>(), to = r[1].get<double>(), k = r[2].get<double>();
    if (!std::isfinite(from) || !std::isfinite(to) || !std::isfinite(k)) throw Error(where + ": range bounds must be finite");
    if (a.contains("geom")) {
      if (!(from > 0) || !(k > 1)) throw Error(where + ": 'geom' needs from > 0 and factor > 1");
      const bool ints = r[0].is_number_integer() && r[2].is_number_integer();
      for (double x = from; x <= to * (1 + 1e-12); x *= k) {
        if (ints) v.push_back(json(static_cast<long long>(std::llround(x))));
        else v.push_back(json(x));
        if (v.size() > 100000) throw Error(where + ": more than 100000 values");
      }
    } else {
      if (!(k >= 1) || k != std::floor(k)) throw Error(where + ": 'linspace' needs an integer n >= 1");
      const int n = int(k);
      for (int i = 0; i < n; ++i) v.push_back(json(n == 1 ? from : from + (to - from) * double(i) / double(n - 1)));
    }
  }
  if (v.empty()) throw Error(where + ": the range is empty");
  return v;
}

bool is_saved_kind(const std::string& c) { return c == "fp32-saved"; }

double working_u(const std::string& cand) { return cand == "fp64" ? 0x1p-53 : 0x1p-24; }

}  // namespace

std::vector<std::string> candidate_kinds() {
  std::vector<std::string> k = {"fp64", "fp32", "fp32-saved", "fp64-detached"};
  for (const auto& n : candidate_names())
    if (n == "fast") k.push_back("fast");
  return k;
}

json SweepSpec::canonical() const {
  json ax = json::array();
  for (const auto& a : axes) ax.push_back({{"name", a.name}, {"values", a.values}});
  return {{"format", kSweepFormat}, {"name", name}, {"base", base}, {"axes", ax}, {"seeds", seeds}, {"backward", backward}};
}
std::string SweepSpec::hash() const { return sha256_hex(canonical().dump()).substr(0, 16); }

SweepSpec parse_sweep(const json& j, const std::string& where) {
  if (!j.is_object()) throw Error(where + ": expected a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!std::set<std::string>{"name", "base", "axes", "seeds", "backward", "comment"}.count(it.key()))
      throw Error(where + ": unknown key '" + it.key() + "' (name, base, axes, seeds, backward, comment)");
  SweepSpec s;
  s.name = j.value("name", std::string("sweep"));
  if (j.contains("base")) {
    if (!j["base"].is_object()) throw Error(where + ": 'base' must be a problem JSON object");
    s.base = j["base"];
  }
  if (j.contains("backward")) {
    if (!j["backward"].is_boolean()) throw Error(where + ": 'backward' must be true or false");
    s.backward = j["backward"].get<bool>();
  }
  if (j.contains("seeds")) {
    const json& sd = j["seeds"];
    s.seeds.clear();
    if (sd.is_array()) {
      for (const auto& x : sd) {
        if (!x.is_number_unsigned()) throw Error(where + ": 'seeds' entries must be integers >= 0");
        s.seeds.push_back(x.get<std::uint64_t>());
      }
    } else if (sd.is_object() && sd.contains("count") && sd["count"].is_number_unsigned()) {
      const std::uint64_t first = sd.value("first", std::uint64_t(1)), n = sd["count"].get<std::uint64_t>();
      for (std::uint64_t i = 0; i < n; ++i) s.seeds.push_back(first + i);
    } else {
      throw Error(where + ": 'seeds' is a list of integers or {\"count\": N, \"first\": S}");
    }
    if (s.seeds.empty()) throw Error(where + ": 'seeds' is empty");
    std::set<std::uint64_t> uniq(s.seeds.begin(), s.seeds.end());
    if (uniq.size() != s.seeds.size()) throw Error(where + ": 'seeds' has a duplicate");
  }
  if (j.contains("axes")) {
    if (!j["axes"].is_array()) throw Error(where + ": 'axes' must be an array of {\"name\", \"values\"|\"geom\"|\"linspace\"}");
    std::set<std::string> names;
    for (std::size_t i = 0; i < j["axes"].size(); ++i) {
      const json& a = j["axes"][i];
      const std::string aw = where + ", axis " + std::to_string(i);
      if (!a.is_object() || !a.contains("name") || !a["name"].is_string()) throw Error(aw + ": expected {\"name\": ..., \"values\": [...]}");
      for (auto it = a.begin(); it != a.end(); ++it)
        if (!std::set<std::string>{"name", "values", "geom", "linspace", "comment"}.count(it.key()))
          throw Error(aw + ": unknown key '" + it.key() + "' (name, values, geom, linspace)");
      SweepAxis ax;
      ax.name = a["name"].get<std::string>();
      if (!names.insert(ax.name).second) throw Error(aw + ": axis '" + ax.name + "' appears twice");
      ax.values = axis_values(a, aw + " ('" + ax.name + "')");
      s.axes.push_back(std::move(ax));
    }
  }
  return s;
}

SweepSpec load_sweep(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw Error("cannot read sweep description '" + path + "'");
  json j;
  try {
    j = json::parse(f);
  } catch (const json::exception& e) {
    throw Error("sweep description '" + path + "' is not valid JSON: " + e.what());
  }
  return parse_sweep(j, "sweep '" + path + "'");
}

namespace {
json parse_cli_value(const std::string& t) {
  try {
    json v = json::parse(t);
    if (v.is_number() || v.is_boolean()) return v;
  } catch (const json::exception&) {
  }
  return json(t);
}
}  // namespace

void add_cli_axis(SweepSpec& s, const std::string& text) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) throw Error("--axis: expected name=v1,v2,... got '" + text + "'");
  SweepAxis a;
  a.name = text.substr(0, eq);
  for (const auto& x : s.axes)
    if (x.name == a.name) throw Error("--axis: axis '" + a.name + "' given twice");
  std::stringstream ss(text.substr(eq + 1));
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) a.values.push_back(parse_cli_value(item));
  if (a.values.empty()) throw Error("--axis " + a.name + ": the range is empty");
  s.axes.push_back(std::move(a));
}

void set_cli_base(SweepSpec& s, const std::string& text) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) throw Error("--set: expected field=value, got '" + text + "'");
  set_dotted(s.base, text.substr(0, eq), parse_cli_value(text.substr(eq + 1)));
}

std::vector<SweepPoint> expand_sweep(const SweepSpec& s) {
  std::size_t n = 1;
  for (const auto& a : s.axes) {
    if (a.values.empty()) throw Error("sweep: axis '" + a.name + "' has an empty range");
    n *= a.values.size();
    if (n > 1000000) throw Error("sweep: more than 1e6 points");
  }
  const auto kinds = candidate_kinds();
  std::vector<SweepPoint> pts;
  for (std::size_t k = 0; k < n; ++k) {
    SweepPoint pt;
    pt.index = int(k);
    json pj = s.base;
    std::string label;
    std::size_t rem = k;
    std::vector<std::size_t> idx(s.axes.size());
    for (std::size_t a = s.axes.size(); a-- > 0;) idx[a] = rem % s.axes[a].values.size(), rem /= s.axes[a].values.size();
    for (std::size_t a = 0; a < s.axes.size(); ++a) {
      const json& v = s.axes[a].values[idx[a]];
      pt.axis_values.push_back(value_text(v));
      label += (label.empty() ? "" : ", ") + s.axes[a].name + "=" + value_text(v);
    }
    const std::string where = "sweep point " + std::to_string(k) + " (" + (label.empty() ? "base problem" : label) + ")";
    try {
      for (std::size_t a = 0; a < s.axes.size(); ++a) {
        const std::string& name = s.axes[a].name;
        const json& v = s.axes[a].values[idx[a]];
        if (name == "L") {
          if (!v.is_number_integer()) throw Error("axis 'L': expected an integer, got " + v.dump());
          pj["Lq"] = v, pj["Lkv"] = v;
        } else if (name == "key_offset") {
          if (!v.is_number() || !std::isfinite(v.get<double>())) throw Error("axis 'key_offset': expected a finite number, got " + v.dump());
          pt.key_offset = v.get<double>();
        } else if (name == "candidate") {
          if (!v.is_string() || std::find(kinds.begin(), kinds.end(), v.get<std::string>()) == kinds.end()) {
            std::string all;
            for (const auto& x : kinds) all += (all.empty() ? "" : ", ") + x;
            throw Error("axis 'candidate': unknown kind " + v.dump() + " (" + all + ")");
          }
          pt.candidate = v.get<std::string>();
        } else if (name == "seed") {
          throw Error("'seed' is not an axis: list the seeds under \"seeds\"");
        } else {
          set_dotted(pj, name, v);
        }
      }
      if (pj.contains("seed")) throw Error("the base problem sets 'seed': list the seeds under \"seeds\" instead");
      pt.problem = problem_from_json(pj);
      const Problem& p = pt.problem;
      if (is_saved_kind(pt.candidate) && !(p.anchor == Anchor::KeyMean && p.probe != Probe::Solver))
        throw Error("candidate 'fp32-saved' needs softmax or Parallax (a key-mean anchor without a solver), got member '" +
                    member_name(p) + "'");
      if (pt.candidate == "fp64-detached" && !(p.probe == Probe::Solver && p.solver.ridge_grad == RidgeGrad::Exact))
        throw Error("candidate 'fp64-detached' compares the Detached ridge gradient with the Exact truth: it needs a "
                    "solver probe with solver.ridge_grad = exact, got member '" + member_name(p) + "'");
      if (pt.candidate == "fast") {
        std::string why;
        if (!candidate_supports("fast", p, &why)) throw Error("candidate 'fast' does not support this problem: " + why);
      }
    } catch (const Error& e) {
      throw Error(where + ": " + e.what());
    }
    pts.push_back(std::move(pt));
  }
  return pts;
}

std::vector<std::string> sweep_columns(const SweepSpec& s) {
  std::vector<std::string> c = {"point", "seed"};
  for (const auto& a : s.axes) c.push_back(a.name);
  for (const char* x : {"member", "dtype", "candidate", "B", "Hq", "Lq", "Lkv", "D", "Dv", "key_offset", "status"}) c.push_back(x);
  for (const auto& t : tensor_names())
    for (const auto& st : stat_names()) c.push_back(t + "_" + st);
  for (const auto& d : diag_cols()) c.push_back(d.col);
  return c;
}

namespace {

void add_key_offset(const Problem& p, Inputs& in, double c) {
  if (c == 0) return;
  // A unit vector of its own sub-stream (the generators use 1, 2, 3).
  const auto u = detail::unit_vector(p.D, p.seed, 17);
  const std::size_t D = p.D;
  for (std::size_t o = 0; o < in.k.size(); o += D)
    for (std::size_t d = 0; d < D; ++d) in.k.data[o + d] = round_to(p.dtype, in.k.data[o + d] + c * u[d]);
}

using TMap = std::map<std::string, Tensor<double>>;

template <class A> Tensor<double> widen(const Tensor<A>& t) {
  return convert<double>(t, [](const A& x) { return to_double(x); });
}
void round_all(TMap& m, DType X) {
  for (auto& [n, t] : m)
    for (auto& x : t.data) x = round_to(X, x);
}

template <class A> TMap run_ref(const Problem& p, const Inputs& in, bool grads) {
  TMap r;
  r["out"] = widen(attention_forward<A>(p, in).out);
  if (grads) {
    auto G = attention_backward<A>(p, in);
    r["dq"] = widen(G.dq), r["dk"] = widen(G.dk), r["dv"] = widen(G.dv);
    if (p.probe == Probe::Learned) r["dr"] = widen(G.dr);
    if (p.probe == Probe::Solver) r["dlambda"] = widen(G.dlambda);
  }
  round_all(r, p.dtype);
  return r;
}

// FlashAttention-style: forward in float, out (and vbar) stored in the input dtype, backward from
// the stored tensors (t = <dO, out> from the stored out).
TMap run_saved(const Problem& p, const Inputs& in, bool grads) {
  ForwardOptions o;
  o.saved = true;
  auto F = attention_forward<float>(p, in, o);
  auto store = [&](Tensor<float> t) {
    for (auto& x : t.data) x = float(round_to(p.dtype, double(x)));
    return t;
  };
  Tensor<float> out = store(F.out);
  TMap r;
  r["out"] = widen(out);
  if (grads) {
    SavedBackward<float> S = p.probe == Probe::None
                                 ? softmax_backward_from_saved<float>(p, in, out, F.saved.at("lse"))
                                 : parallax_backward_from_saved<float>(p, in, out, store(F.saved.at("vbar")),
                                                                       F.saved.at("omega"), F.saved.at("zbar"), F.saved.at("m"));
    r["dq"] = widen(S.grad.dq), r["dk"] = widen(S.grad.dk), r["dv"] = widen(S.grad.dv);
    if (p.probe == Probe::Learned) r["dr"] = widen(S.grad.dr);
    TMap g;
    for (const char* n : {"dq", "dk", "dv", "dr"})
      if (r.count(n)) g[n] = r[n];
    round_all(g, p.dtype);
    for (auto& [n, t] : g) r[n] = t;
  }
  return r;
}

TMap run_fast(const Problem& p, const Inputs& in, bool grads) {
  CandidateResult c = run_candidate("fast", p, in);
  TMap r;
  r["out"] = c.out;
  if (grads) {
    if (!c.dq.empty()) r["dq"] = c.dq;
    if (!c.dk.empty()) r["dk"] = c.dk;
    if (!c.dv.empty()) r["dv"] = c.dv;
    if (p.probe == Probe::Learned && !c.dr.empty()) r["dr"] = c.dr;
  }
  return r;
}

struct TensorStats {
  double norm = NAN, maxrel = NAN, row_med = NAN, row_p90 = NAN, row_max = NAN;
  long rb_n = -1, rb_viol = -1;
  double rb_ratio_med = NAN, rb_ratio_max = NAN, rb_loose_med = NAN;
};

TensorStats tensor_stats(const Tensor<double>& c, const Tensor<double>& t, const std::vector<double>* limit,
                         const std::vector<double>* uM) {
  TensorStats s;
  if (c.shape != t.shape) throw Error("sweep: candidate shape " + shape_str(c.shape) + " differs from truth " + shape_str(t.shape));
  const std::size_t len = t.shape.back(), rows = len ? t.size() / len : 0;
  double num = 0, den = 0, mx = 0, tmx = 0;
  std::vector<double> rel, ratio, loose;
  long viol = 0, n = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    double e2 = 0, t2 = 0;
    for (std::size_t d = 0; d < len; ++d) {
      const double a = c.data[r * len + d], b = t.data[r * len + d];
      const double e = std::isfinite(a) ? a - b : INFINITY;
      e2 += e * e, t2 += b * b;
      mx = std::max(mx, std::fabs(e)), tmx = std::max(tmx, std::fabs(b));
    }
    num += e2, den += t2;
    const double er = std::sqrt(e2), tr = std::sqrt(t2);
    if (tr > 0) rel.push_back(er / tr);
    if (limit) {
      ++n;
      const double L = (*limit)[r];
      if (!(er <= L)) ++viol;
      if ((*uM)[r] > 0) ratio.push_back(er / (*uM)[r]);
      if (er > 0) loose.push_back(L / er);
    }
  }
  s.norm = den > 0 ? std::sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
  s.maxrel = tmx > 0 ? mx / tmx : (mx > 0 ? INFINITY : 0.0);
  std::sort(rel.begin(), rel.end());
  s.row_med = quantile(rel, 0.5), s.row_p90 = quantile(rel, 0.9), s.row_max = rel.empty() ? NAN : rel.back();
  if (limit) {
    s.rb_n = n, s.rb_viol = viol;
    std::sort(ratio.begin(), ratio.end());
    std::sort(loose.begin(), loose.end());
    s.rb_ratio_med = quantile(ratio, 0.5), s.rb_ratio_max = ratio.empty() ? NAN : ratio.back();
    s.rb_loose_med = quantile(loose, 0.5);
  }
  return s;
}

}  // namespace

namespace {
// Everything one item computes.
struct Item {
  Problem p;
  std::string status = "ok";
  RowBoundTruth T;
  TMap cand;
  std::map<std::string, std::vector<double>> M;
  double u = 0, us = 0;
};

Item compute_item(const SweepSpec& s, const SweepPoint& pt, std::uint64_t seed) {
  Item it;
  Problem& p = it.p;
  p = pt.problem;
  p.seed = seed;
  Inputs in = make_inputs(p);
  add_key_offset(p, in, pt.key_offset);
  const bool grads = s.backward && !p.decode;
  RowBoundTruth& T = it.T;
  std::string& status = it.status;
  TMap& cand = it.cand;
  try {
    ForwardOptions o;
    o.saved = true, o.diagnostics = true;
    auto F = attention_forward<dd>(p, in, o);
    T.out = widen(F.out);
    for (auto& [n, t] : F.saved) T.saved[n] = widen(t);
    T.diag = F.diag;
    if (grads) {
      auto G = attention_backward<dd>(p, in);
      T.grads["dq"] = widen(G.dq), T.grads["dk"] = widen(G.dk), T.grads["dv"] = widen(G.dv);
      if (p.probe == Probe::Learned) T.grads["dr"] = widen(G.dr);
      if (p.probe == Probe::Solver) T.grads["dlambda"] = widen(G.dlambda);
    }
  } catch (const NumericalError& e) {
    status = "truth_error";
  }
  if (status == "ok") {
    try {
      if (pt.candidate == "fp64") cand = run_ref<double>(p, in, grads);
      else if (pt.candidate == "fp32") cand = run_ref<float>(p, in, grads);
      else if (pt.candidate == "fp32-saved") cand = run_saved(p, in, grads);
      else if (pt.candidate == "fast") cand = run_fast(p, in, grads);
      else if (pt.candidate == "fp64-detached") {
        Problem pd = p;
        pd.solver.ridge_grad = RidgeGrad::Detached;
        cand = run_ref<double>(pd, in, grads);
      }
    } catch (const NumericalError& e) {
      status = "candidate_error";
    }
  }
  if (status == "ok") it.M = row_sensitivities(p, in, T);
  const double uw = working_u(pt.candidate);
  it.us = unit_roundoff(p.dtype);
  it.u = is_saved_kind(pt.candidate) ? std::max(uw, it.us) : uw;
  return it;
}

const Tensor<double>* truth_of(const Item& it, const std::string& name) {
  return name == "out" ? &it.T.out : (it.T.grads.count(name) ? &it.T.grads.at(name) : nullptr);
}
}  // namespace

std::map<std::string, RowBoundRows> sweep_item_row_bound(const SweepSpec& s, const SweepPoint& pt, std::uint64_t seed) {
  const Item it = compute_item(s, pt, seed);
  std::map<std::string, RowBoundRows> R;
  if (it.status != "ok" || pt.candidate == "fp64-detached") return R;
  for (const auto& [name, M] : it.M) {
    const Tensor<double>* truth = truth_of(it, name);
    if (!truth || !it.cand.count(name)) continue;
    const Tensor<double>& c = it.cand.at(name);
    RowBoundRows& r = R[name];
    r.limit = row_limits(name, M, *truth, it.u, it.us);
    const std::size_t len = truth->shape.back();
    for (std::size_t k = 0; k < M.size(); ++k) {
      double e2 = 0;
      for (std::size_t d = 0; d < len; ++d) {
        const double a = c.data[k * len + d], b = truth->data[k * len + d];
        const double e = std::isfinite(a) ? a - b : INFINITY;
        e2 += e * e;
      }
      r.err.push_back(std::sqrt(e2));
      r.uM.push_back(it.u * M[k]);
    }
  }
  return R;
}

std::string sweep_item_row(const SweepSpec& s, const SweepPoint& pt, std::uint64_t seed) {
  const Item it = compute_item(s, pt, seed);
  const Problem& p = it.p;
  const RowBoundTruth& T = it.T;
  const std::string& status = it.status;
  const auto& M = it.M;
  const auto& cand = it.cand;
  const double u = it.u, us = it.us;
  std::ostringstream row;
  row << pt.index << "," << seed;
  for (const auto& v : pt.axis_values) row << "," << v;
  row << "," << member_name(p) << "," << to_string(p.dtype) << "," << pt.candidate << "," << p.B << "," << p.Hq << ","
      << p.Lq << "," << p.Lkv << "," << p.D << "," << p.Dv << "," << num(pt.key_offset);
  row << "," << status;
  for (const auto& name : tensor_names()) {
    TensorStats st;
    const Tensor<double>* truth = truth_of(it, name);
    if (status == "ok" && truth && cand.count(name)) {
      std::vector<double> lim, uM;
      // The row bound models rounding; the Detached comparison measures a modelling difference.
      const bool rb = M.count(name) > 0 && pt.candidate != "fp64-detached";
      if (rb) {
        lim = row_limits(name, M.at(name), *truth, u, us);
        uM.resize(M.at(name).size());
        for (std::size_t r = 0; r < uM.size(); ++r) uM[r] = u * M.at(name)[r];
      }
      st = tensor_stats(cand.at(name), *truth, rb ? &lim : nullptr, rb ? &uM : nullptr);
    }
    row << "," << num(st.norm) << "," << num(st.maxrel) << "," << num(st.row_med) << "," << num(st.row_p90) << ","
        << num(st.row_max) << "," << (st.rb_n < 0 ? "" : std::to_string(st.rb_n)) << ","
        << (st.rb_viol < 0 ? "" : std::to_string(st.rb_viol)) << "," << num(st.rb_ratio_med) << ","
        << num(st.rb_ratio_max) << "," << num(st.rb_loose_med);
  }
  // Diagnostics over the non-empty query rows of the truth.
  for (const auto& dc : diag_cols()) {
    double v = NAN;
    if (status != "truth_error" && T.diag.count(dc.diag)) {
      const auto& d = T.diag.at(dc.diag);
      const auto& empty = T.diag.at("empty");
      std::vector<double> x;
      for (std::size_t i = 0; i < d.size(); ++i)
        if (empty.data[i] == 0) x.push_back(dc.stat == 'a' || dc.stat == 'x' || dc.stat == 'm' ? std::fabs(d.data[i]) : d.data[i]);
      std::sort(x.begin(), x.end());
      if (!x.empty()) v = dc.stat == 'n' || dc.stat == 'a' ? x.front() : dc.stat == 'x' ? x.back() : quantile(x, 0.5);
    }
    row << "," << num(v);
  }
  return row.str();
}

// ---- running, resuming, sharding --------------------------------------------------------------
namespace {

std::string format_line(const SweepSpec& s) {
  return "# plx-sweep format " + std::to_string(kSweepFormat) + " spec " + s.hash();
}
std::string header_line(const SweepSpec& s) {
  std::string h;
  for (const auto& c : sweep_columns(s)) h += (h.empty() ? "" : ",") + c;
  return h;
}

// Reads an existing CSV: checks the format line and the header, returns the number of complete rows
// (truncating a partial last line), and checks that row k is item k.
long resume_count(const SweepSpec& s, const std::string& path, long n_items) {
  namespace fs = std::filesystem;
  if (!fs::exists(path)) return -1;
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot read '" + path + "'");
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  f.close();
  if (text.empty()) return -1;
  std::vector<std::string> lines;
  std::size_t pos = 0, complete_end = 0;
  while (pos < text.size()) {
    const auto nl = text.find('\n', pos);
    if (nl == std::string::npos) break;
    lines.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
    complete_end = pos;
  }
  const std::string want = format_line(s);
  const std::string first = lines.empty() ? text.substr(0, text.find('\n')) : lines[0];
  if (first.rfind("# plx-sweep format ", 0) != 0)
    throw Error("'" + path + "' exists and is not a plx sweep CSV (its first line is not '# plx-sweep format ...'); "
                "choose another --out or remove it");
  {
    std::istringstream ls(first.substr(19));
    int v = -1;
    ls >> v;
    if (v != kSweepFormat)
      throw Error("'" + path + "' was written by sweep format " + std::to_string(v) + "; this plx writes format " +
                  std::to_string(kSweepFormat) + ": rerun into a new file");
  }
  if (first != want)
    throw Error("'" + path + "' holds another sweep (" + first + ", this description is '" + want +
                "'): the description changed; choose another --out or remove the file");
  if (lines.size() < 2 || lines[1] != header_line(s))
    throw Error("'" + path + "': its column line does not match this sweep's columns");
  const long rows = long(lines.size()) - 2;
  if (rows > n_items) throw Error("'" + path + "' has more rows (" + std::to_string(rows) + ") than the sweep has items");
  const std::size_t ns = s.seeds.size();
  for (long k = 0; k < rows; ++k) {
    const std::string& l = lines[std::size_t(k) + 2];
    const std::string pref = std::to_string(k / long(ns)) + "," + std::to_string(s.seeds[std::size_t(k) % ns]) + ",";
    if (l.rfind(pref, 0) != 0) throw Error("'" + path + "': row " + std::to_string(k + 1) + " is not item " + std::to_string(k) + " of this sweep");
  }
  if (complete_end < text.size()) fs::resize_file(path, complete_end);  // drop a partial last line
  return rows;
}

constexpr int kTagRow = 1, kTagError = 2;

}  // namespace

SweepRunResult run_sweep(const SweepSpec& s, const std::string& csv_path, const SweepOptions& opt) {
  const auto& W = par::world();
  const auto pts = expand_sweep(s);  // every rank validates (same result): errors before any work
  const long ns = long(s.seeds.size()), n_items = long(pts.size()) * ns;
  SweepRunResult res;
  res.items = n_items;
  long already = 0;
  std::string err;
  if (W.rank == 0) {
    try {
      already = resume_count(s, csv_path, n_items);
      if (already < 0) {
        std::ofstream o(csv_path, std::ios::binary | std::ios::trunc);
        if (!o) throw Error("cannot write '" + csv_path + "'");
        o << format_line(s) << "\n" << header_line(s) << "\n";
        if (!o.flush()) throw Error("cannot write '" + csv_path + "'");
        already = 0;
      }
    } catch (const Error& e) {
      err = e.what();
    }
  }
  // Every rank learns where to start (or the error).
  {
    auto all = par::gather_text(W.rank == 0 ? (err.empty() ? std::to_string(already) : "E" + err) : "");
    if (W.size > 1) {
      if (W.rank == 0)
        for (int r = 1; r < W.size; ++r) par::send_text(r, 0, all[0]);
      const std::string msg = W.rank == 0 ? all[0] : par::recv_text(nullptr, nullptr);
      if (!msg.empty() && msg[0] == 'E') throw Error(msg.substr(1));
      already = std::stol(msg);
    } else if (!err.empty()) {
      throw Error(err);
    }
  }
  res.already = already;
  long todo = n_items - already;
  if (opt.max_items >= 0) todo = std::min(todo, opt.max_items);
  const long end = already + todo;
  auto item_what = [&](long k) {
    const auto& pt = pts[std::size_t(k / ns)];
    std::string l;
    for (std::size_t a = 0; a < s.axes.size(); ++a) l += (l.empty() ? "" : " ") + s.axes[a].name + "=" + pt.axis_values[a];
    return "point " + std::to_string(k / ns) + " seed " + std::to_string(s.seeds[std::size_t(k % ns)]) + (l.empty() ? "" : " (" + l + ")");
  };
  auto compute = [&](long k) { return sweep_item_row(s, pts[std::size_t(k / ns)], s.seeds[std::size_t(k % ns)]); };

  Progress prog("plx sweep", opt.progress && W.rank == 0, n_items, already);
  if (W.size > 1) {
    // Items already+t go to rank t % size; rank 0 writes in item order as rows arrive.
    if (W.rank != 0) {
      for (long k = already + W.rank; k < end; k += W.size) {
        try {
          par::send_text(0, kTagRow, std::to_string(k) + "\n" + compute(k));
        } catch (const std::exception& e) {
          par::send_text(0, kTagError, item_what(k) + ": " + e.what());
          break;
        }
      }
      res.computed = 0;
      return res;
    }
    std::ofstream o(csv_path, std::ios::binary | std::ios::app);
    std::map<long, std::string> pending;
    long next = already;
    auto drain = [&](bool block) {
      while (block ? next < end && !pending.count(next) : par::has_message()) {
        int src = 0, tag = 0;
        std::string m = par::recv_text(&src, &tag);
        if (tag == kTagError) {
          std::fprintf(stderr, "plx: error: rank %d: %s\n", src, m.c_str());
          o.flush();
          par::abort_all(2);
        }
        const auto nl = m.find('\n');
        pending[std::stol(m.substr(0, nl))] = m.substr(nl + 1);
      }
      while (pending.count(next)) {
        o << pending[next] << "\n";
        o.flush();
        pending.erase(next);
        const long done_k = next++;
      prog.update(next, item_what(done_k));
      }
    };
    for (long k = already; k < end; k += W.size) {
      std::string r;
      try {
        r = compute(k);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "plx: error: %s: %s\n", item_what(k).c_str(), e.what());
        o.flush();
        par::abort_all(2);
      }
      pending[k] = std::move(r);
      drain(false);
    }
    while (next < end) drain(true);
    res.computed = todo;
    return res;
  }

  // One process: OpenMP over items (each item's reference then runs on one thread), rows written
  // in item order by whichever thread completes the next one.
  std::ofstream o(csv_path, std::ios::binary | std::ios::app);
  if (!o) throw Error("cannot append to '" + csv_path + "'");
  std::map<long, std::string> pending;
  long next = already;
  std::mutex mu;
  std::vector<std::exception_ptr> errs;
  const int jobs = opt.jobs > 0 ? opt.jobs : omp_get_max_threads();
  omp_set_max_active_levels(jobs > 1 ? 1 : 2);
  std::atomic<bool> stop{false};
#pragma omp parallel for schedule(dynamic, 1) num_threads(jobs)
  for (long k = already; k < end; ++k) {
    if (stop) continue;
    std::string r;
    try {
      r = compute(k);
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> g(mu);
      errs.push_back(std::make_exception_ptr(Error(item_what(k) + ": " + e.what())));
      stop = true;
      continue;
    }
    std::lock_guard<std::mutex> g(mu);
    pending[k] = std::move(r);
    while (pending.count(next)) {
      o << pending[next] << "\n";
      o.flush();
      pending.erase(next);
      const long done_k = next++;
      prog.update(next, item_what(done_k));
    }
  }
  if (!errs.empty()) std::rethrow_exception(errs.front());
  res.computed = todo;
  return res;
}

}  // namespace plx
