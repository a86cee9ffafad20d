// validation/fixture.cpp — schema v1 writer/reader and the per-case generator (see fixture.hpp).
//
// Charter: truth in dd (or bf50), split into hi/lo float64; inputs in the problem dtype
// (bf16/fp16 as uint16 bit patterns + a float32 view); a SHA-256 attribute on every dataset.
// The bytes of every dataset are a pure function of (problem, scalar): no time, commit or
// thread count enters them (only root attributes `created` and `git_commit` vary).
#include "validation/fixture.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "reference/all.hpp"
#include "validation/h5io.hpp"
#include "validation/limits.hpp"
#include "validation/mpi_shard.hpp"
#include "validation/problem_json.hpp"
#include "validation/row_sample.hpp"
#include "validation/sha256.hpp"

#ifndef PLX_GIT_COMMIT
#define PLX_GIT_COMMIT "unknown"
#endif
#ifndef PLX_VERSION
#define PLX_VERSION "0"
#endif

namespace plx {
using nlohmann::json;

const std::vector<std::string>& checked_tensor_names() {
  static const std::vector<std::string> n = {"out", "dq", "dk", "dv", "dr", "dlambda"};
  return n;
}

bool have_reference_backward() {
#ifdef PLX_BACKWARD_TEMPLATES
  return true;
#else
  return false;
#endif
}

// ---- tolerances -------------------------------------------------------------------
// limit = max(2 * baseline error, (2 u(X) + k u_acc) * max|truth|):
//  * 2 x baseline: the FlashAttention rule; the baseline is plx's own same-precision run
//    (reference in the candidate's accumulation precision, outputs rounded to X; check.cpp).
//  * 2 u(X): the candidate's own rounding of its output to X, and the baseline's (FA's fwd_atol).
//  * k u_acc: worst-case forward error of the sums the tensor is made of (Higham: a sum of k
//    terms in precision u errs by <= k u sum|terms|), k = n + D + Dv with n the longest key
//    (out, dq, dr, dlambda: Lkv) or query (dk, dv: Lq * G) reduction; u_acc = 2^-24 (fp32
//    accumulation) for fp32/bf16/fp16 candidates, 2^-53 for float64 ones.
Tolerance recommended_tolerance(const Problem& p, const std::string& name, DType X) {
  const double u_out = unit_roundoff(X), u_acc = X == DType::F64 ? 0x1p-53 : 0x1p-24;
  const bool over_queries = name == "dk" || name == "dv";
  const double n = over_queries ? double(p.Lq) * p.group() : double(p.Lkv);
  const double k = n + p.D + p.Dv;
  Tolerance t;
  t.baseline_ratio = 2.0;
  t.abs_floor = 0.0;
  t.rel_floor = 2 * u_out + k * u_acc;
  char buf[600];
  std::snprintf(buf, sizeof buf,
                "max(2 x same-precision baseline error, (2 u(%s) + k u_acc) max|truth|) with u(%s) = %.3g, "
                "u_acc = %.3g (%s accumulation), k = n + D + Dv = %.0f (n = %s = %.0f): FlashAttention ratio rule; "
                "floor = two output roundings + worst-case error of k-term sums",
                to_string(X).c_str(), to_string(X).c_str(), u_out, u_acc, X == DType::F64 ? "fp64" : "fp32", k,
                over_queries ? "Lq*G" : "Lkv", n);
  t.why = buf;
  return t;
}

Tolerance tolerance_from_json(const json& j) {
  try {
    Tolerance t;
    t.baseline_ratio = j.at("baseline_ratio").get<double>();
    t.abs_floor = j.at("abs_floor").get<double>();
    t.rel_floor = j.at("rel_floor").get<double>();
    t.why = j.at("why").get<std::string>();
    return t;
  } catch (const std::exception& e) {
    throw Error(std::string("fixture tolerance entry is malformed: ") + e.what() + " in " + j.dump());
  }
}

// ---- generation ---------------------------------------------------------------------
namespace {

template <class T> Truth split(const Tensor<T>& t) {
  Truth r{Tensor<double>(t.shape), Tensor<double>(t.shape)};
  for (std::size_t i = 0; i < t.size(); ++i) {
    auto [hi, lo] = split_hi_lo(t.data[i]);
    r.hi.data[i] = hi, r.lo.data[i] = lo;
  }
  return r;
}

double max_abs(const Tensor<double>& t) {
  double m = 0;
  for (double x : t.data) m = std::max(m, std::fabs(x));
  return m;
}

// Work estimate for a forward: B Hq Lq Lkv (D + Dv) multiply-adds.
double work(const Problem& p) { return double(p.B) * p.Hq * p.Lq * p.Lkv * (p.D + p.Dv); }

template <class T> void compute_truth(FixtureData& f, json& notes) {
  {  // the forward's T tensors are freed before the backward allocates its own (peak memory)
    ForwardOptions o;
    o.saved = true, o.diagnostics = true;
    auto F = attention_forward<T>(f.p, f.in, o);
    f.truth["out"] = split(F.out);
    for (auto& [n, t] : F.saved) f.saved[n] = split(t);
    f.diag = std::move(F.diag);
  }
#ifdef PLX_BACKWARD_TEMPLATES
  if (f.p.decode) {
    notes["gradients"] = "none: decode is forward only (docs/math.md §6.1)";
    return;
  }
  try {
    auto G = attention_backward<T>(f.p, f.in);
    // Each T tensor is released once split, so the T gradients and their hi/lo copies do not
    // all coexist (peak memory).
    auto take = [](Tensor<T>& t) {
      Truth r = split(t);
      std::vector<T>().swap(t.data);
      return r;
    };
    if (f.p.probe != Probe::Learned) std::vector<T>().swap(G.dr.data);  // zeros: truth only for a learned probe
    f.truth["dq"] = take(G.dq);
    f.truth["dk"] = take(G.dk);
    f.truth["dv"] = take(G.dv);
    if (f.p.probe == Probe::Learned) f.truth["dr"] = take(G.dr);
    if (f.p.probe == Probe::Solver) f.truth["dlambda"] = take(G.dlambda);
    notes["gradients"] = "dq, dk, dv" + std::string(f.p.probe == Probe::Learned ? ", dr" : "") +
                         (f.p.probe == Probe::Solver ? ", dlambda" : "") + " of L = sum(dO * out), ridge_grad = " +
                         to_string(f.p.solver.ridge_grad);
  } catch (const NumericalError& e) {
    notes["gradients"] = std::string("none: the reference backward refused: ") + e.what();
  }
#else
  notes["gradients"] = "none: this plx build has no reference backward";
#endif
}

// Max |a - b| / max|b| per tensor between the truth and a second scalar's run.
template <class T> json cross_check(const FixtureData& f, bool grads) {
  json r;
  auto F = attention_forward<T>(f.p, f.in);
  auto rel = [](const Truth& a, const Tensor<T>& b) {
    double num = 0, den = 0;
    for (std::size_t i = 0; i < b.size(); ++i) {
      T d = (from_double<T>(a.hi.data[i]) + from_double<T>(a.lo.data[i])) - b.data[i];
      num = std::max(num, std::fabs(to_double(d)));
      den = std::max(den, std::fabs(to_double(b.data[i])));
    }
    return den > 0 ? num / den : num;
  };
  r["out"] = rel(f.truth.at("out"), F.out);
#ifdef PLX_BACKWARD_TEMPLATES
  if (grads && f.truth.count("dq")) {
    auto G = attention_backward<T>(f.p, f.in);
    r["dq"] = rel(f.truth.at("dq"), G.dq), r["dk"] = rel(f.truth.at("dk"), G.dk), r["dv"] = rel(f.truth.at("dv"), G.dv);
    if (f.truth.count("dr")) r["dr"] = rel(f.truth.at("dr"), G.dr);
    if (f.truth.count("dlambda")) r["dlambda"] = rel(f.truth.at("dlambda"), G.dlambda);
  }
#else
  (void)grads;
#endif
  return r;
}

// Work limits for the measured cross-check (bf50 is ~100x slower than dd).
constexpr double kCrossCheckForwardWork = 4e5, kCrossCheckBackwardWork = 1.5e5;

// An iterative (CG / Jacobi-CG) ridge solve: its truncated iterate amplifies the rounding of
// the scalar it is computed in by up to ~1e10..1e16 (docs/cg.md), so no a-priori estimate of
// the form c u kappa covers it and its reference error is always measured.
bool iterative_solve(const Problem& p) {
  return p.probe == Probe::Solver && p.solver.method != SolverMethod::Direct;
}

// Rows (b, h, i) whose per-row solver work the iterative cross-check may spend: each row forms
// its D x D system (n D^2) and runs the CG (k D^2), in dd and in quad-double (and the backward's
// second solve). The budget (3e4 rows of D = 64 with L = 128) is a work count, not yet
// calibrated against measured quad-double times.
constexpr double kIterativeCrossCheckWork = 3e4 * 64.0 * 64.0 * 160.0;
double iterative_work(const Problem& p, int B, int Lq) {
  return double(B) * p.Hq * Lq * double(p.D) * p.D * (p.Lkv + p.solver.cg_max_iters);
}

// The sub-problem of batch 0's last `lq` query rows, all heads: with the causal mask aligned to
// the end of the used keys (and the window counted from each query's position), query i' of the
// sub-problem sits where query Lq - lq + i' of the full problem sits, so every kept row sees the
// same keys, weights, ridge system and CG as in the full problem.
FixtureData last_rows(const FixtureData& f, int lq) {
  FixtureData s;
  s.p = f.p;
  s.scalar = f.scalar;
  const Problem& p = f.p;
  s.p.B = 1, s.p.Lq = lq;
  if (!p.start.empty()) s.p.start = {p.start[0]};
  if (!p.used.empty()) s.p.used = {p.used[0]};
  const int i0 = p.Lq - lq;
  auto rows4 = [&](const Tensor<double>& t) {  // [B, Lq, H, X] -> [1, lq, H, X]
    const std::size_t H = t.shape[2], X = t.shape[3];
    Tensor<double> r({1, std::size_t(lq), H, X});
    for (int i = 0; i < lq; ++i)
      for (std::size_t h = 0; h < H; ++h)
        for (std::size_t x = 0; x < X; ++x) r(0, i, h, x) = t(0, i0 + i, h, x);
    return r;
  };
  auto batch4 = [&](const Tensor<double>& t) {  // [B, L, H, X] -> [1, L, H, X]
    Tensor<double> r({1, t.shape[1], t.shape[2], t.shape[3]});
    std::copy(t.data.begin(), t.data.begin() + long(r.size()), r.data.begin());
    return r;
  };
  s.in.q = rows4(f.in.q), s.in.r = rows4(f.in.r), s.in.dO = rows4(f.in.dO);
  s.in.k = batch4(f.in.k), s.in.v = batch4(f.in.v);
  s.in.lambda = Tensor<double>({1, std::size_t(p.Hq), std::size_t(lq)});
  for (int h = 0; h < p.Hq; ++h)
    for (int i = 0; i < lq; ++i) s.in.lambda(0, h, i) = f.in.lambda(0, h, i0 + i);
  return s;
}

// The iterative solve's reference error: the truth's scalar against quad-double (u = 2^-209,
// ~1e-63: deeper than dd and bf50, and libqd's fixed four-double arithmetic rather than
// cpp_bin_float's), on the whole case when its
// solver work fits kIterativeCrossCheckWork, else on the last rows of batch 0 (all heads).
// The stated value is the measured difference times (1 + 1e-12): the quad-double run's own error
// is the same amplification of a 1e-31 (vs dd) or 1e-13 (vs bf50) times smaller rounding, and the
// ratio itself is rounded to double (a few ulps).
json iterative_reference_error(const FixtureData& f, json& method) {
  const Problem& p = f.p;
  const bool grads = f.truth.count("dq") > 0;
  json m;
  std::string where = "the whole case";
  if (f.rows.empty() && iterative_work(p, p.B, p.Lq) <= kIterativeCrossCheckWork) {
    m = cross_check<qd4>(f, grads);
  } else {
    int lq = p.Lq;
    while (lq > 1 && iterative_work(p, 1, lq) > kIterativeCrossCheckWork) lq = (lq + 1) / 2;
    FixtureData s = last_rows(f, lq);
    json notes;
    if (f.scalar == "dd") compute_truth<dd>(s, notes);
    else compute_truth<bf50>(s, notes);
    m = cross_check<qd4>(s, grads && s.truth.count("dq") > 0);
    where = "batch 0, all " + std::to_string(p.Hq) + " heads, query rows " + std::to_string(p.Lq - lq) + ".." +
            std::to_string(p.Lq - 1) + " (the sub-problem of those rows: dk, dv are their partial sums)";
  }
  for (auto it = m.begin(); it != m.end();) it = f.truth.count(it.key()) ? std::next(it) : m.erase(it);  // row-sampled: no dk, dv
  for (auto& [n, v] : m.items()) v = v.get<double>() * (1 + 1e-12);
  method = "measured (iterative solve): max|truth - qd| / max|qd| per tensor over " + where +
           ", times (1 + 1e-12) for the quad-double run's own error; never the direct-solve estimate (docs/cg.md)";
  return m;
}

// ---- one case in units of (batch, kv head) (GenSplit::Units, fixture.hpp) ----------------

// Tensors of a case come in three layouts: [B, Lq, Hq, X] (q, r, dO, out, dq, dr, saved/probe,
// saved/vbar), [B, Lkv, Hkv, X] (k, v, dk, dv) and per row [B, Hq, Lq] (lambda, dlambda, the other
// saved/ tensors, diag/*). A unit's tensors hold one batch and a run of heads of the same layout.
bool kv_layout(const std::string& name) { return name == "dk" || name == "dv"; }

// Heads h0 .. h0 + nh - 1 of batch b (an empty tensor stays empty).
Tensor<double> take_heads(const Tensor<double>& t, int b, int h0, int nh) {
  if (t.empty()) return {};
  const std::size_t n = std::size_t(nh);
  if (t.shape.size() == 3) {  // [B, H, L]
    const std::size_t L = t.shape[2];
    Tensor<double> r({1, n, L});
    std::copy_n(&t(b, h0, 0), n * L, r.ptr());
    return r;
  }
  const std::size_t L = t.shape[1], X = t.shape[3];
  Tensor<double> r({1, L, n, X});
  for (std::size_t i = 0; i < L; ++i) std::copy_n(&t(b, i, h0, 0), n * X, &r(0, i, 0, 0));
  return r;
}

// Inverse of take_heads: the unit's tensor `u` into heads h0.. of batch b of `t`, which is
// allocated on first use with `B` batches and `H` heads.
void put_heads(Tensor<double>& t, const Tensor<double>& u, int b, int h0, int B, int H) {
  if (u.empty()) return;
  if (t.empty()) {
    t = u.shape.size() == 3 ? Tensor<double>({std::size_t(B), std::size_t(H), u.shape[2]})
                            : Tensor<double>({std::size_t(B), u.shape[1], std::size_t(H), u.shape[3]});
  }
  if (u.shape.size() == 3) {
    std::copy_n(u.ptr(), u.size(), &t(b, h0, 0));
    return;
  }
  const std::size_t L = u.shape[1], nX = u.shape[2] * u.shape[3];
  for (std::size_t i = 0; i < L; ++i) std::copy_n(&u(0, i, 0, 0), nX, &t(b, i, h0, 0));
}

// Unit u = b Hkv + g: batch b, kv head g and its query heads g G .. g G + G - 1.
FixtureData unit_case(const FixtureData& f, int u) {
  const Problem& p = f.p;
  const int b = u / p.Hkv, g = u % p.Hkv, G = p.group();
  FixtureData s;
  s.p = p;
  s.scalar = f.scalar;
  s.p.B = 1, s.p.Hkv = 1, s.p.Hq = G;
  if (!p.start.empty()) s.p.start = {p.start[std::size_t(b)]};
  if (!p.used.empty()) s.p.used = {p.used[std::size_t(b)]};
  s.in.q = take_heads(f.in.q, b, g * G, G), s.in.r = take_heads(f.in.r, b, g * G, G);
  s.in.dO = take_heads(f.in.dO, b, g * G, G), s.in.lambda = take_heads(f.in.lambda, b, g * G, G);
  s.in.k = take_heads(f.in.k, b, g, 1), s.in.v = take_heads(f.in.v, b, g, 1);
  return s;
}

void put_unit(FixtureData& f, const FixtureData& s, int u) {
  const Problem& p = f.p;
  const int b = u / p.Hkv, g = u % p.Hkv, G = p.group();
  auto put = [&](Tensor<double>& t, const Tensor<double>& x, bool kv) {
    put_heads(t, x, b, kv ? g : g * G, p.B, kv ? p.Hkv : p.Hq);
  };
  for (const auto& [n, t] : s.truth) put(f.truth[n].hi, t.hi, kv_layout(n)), put(f.truth[n].lo, t.lo, kv_layout(n));
  for (const auto& [n, t] : s.saved) put(f.saved[n].hi, t.hi, false), put(f.saved[n].lo, t.lo, false);
  for (const auto& [n, t] : s.diag) put(f.diag[n], t, false);
}

// A unit's results as bytes for MPI: the notes, then (key, shape, doubles) per tensor.
void pack_bytes(std::string& o, const void* p, std::size_t n) { o.append(static_cast<const char*>(p), n); }
void pack_u64(std::string& o, std::uint64_t x) { pack_bytes(o, &x, 8); }
void pack_str(std::string& o, const std::string& s) { pack_u64(o, s.size()), pack_bytes(o, s.data(), s.size()); }
std::string pack_unit(const FixtureData& s, const json& notes) {
  std::string o;
  pack_str(o, notes.dump());
  auto tensor = [&](const std::string& key, const Tensor<double>& t) {
    pack_str(o, key);
    pack_u64(o, t.shape.size());
    for (auto d : t.shape) pack_u64(o, d);
    pack_bytes(o, t.ptr(), t.size() * 8);
  };
  for (const auto& [n, t] : s.truth) tensor("t/" + n, t.hi), tensor("T/" + n, t.lo);
  for (const auto& [n, t] : s.saved) tensor("s/" + n, t.hi), tensor("S/" + n, t.lo);
  for (const auto& [n, t] : s.diag) tensor("d/" + n, t);
  return o;
}
FixtureData unpack_unit(const std::string& m, json& notes) {
  std::size_t at = 0;
  auto bytes = [&](void* p, std::size_t n) {
    if (at + n > m.size()) throw Error("MPI unit message is truncated");
    std::memcpy(p, m.data() + at, n);
    at += n;
  };
  auto u64 = [&] {
    std::uint64_t x;
    bytes(&x, 8);
    return x;
  };
  auto str = [&] {
    std::string r(u64(), '\0');
    bytes(r.data(), r.size());
    return r;
  };
  notes = json::parse(str());
  FixtureData s;
  while (at < m.size()) {
    const std::string key = str();
    std::vector<std::size_t> shape(u64());
    for (auto& d : shape) d = u64();
    Tensor<double> t(shape);
    bytes(t.ptr(), t.size() * 8);
    const std::string n = key.substr(2);
    switch (key[0]) {
      case 't': s.truth[n].hi = std::move(t); break;
      case 'T': s.truth[n].lo = std::move(t); break;
      case 's': s.saved[n].hi = std::move(t); break;
      case 'S': s.saved[n].lo = std::move(t); break;
      default: s.diag[n] = std::move(t);
    }
  }
  return s;
}

constexpr int kTagUnit = 11;

void finish_fixture(FixtureData& f, json& notes);  // below generate_fixture

// The truth of f in units, shared over the MPI ranks when `shared`. Returns false on a rank
// other than 0 (it sent its units; f holds nothing).
// `concurrent`: the units run in parallel over OpenMP threads (each unit's own reference call then
// runs on one thread), for sub-problems of a few rows whose row blocks cannot fill the threads;
// every unit's results are kept until all are done. Results do not depend on it.
bool compute_truth_units(FixtureData& f, json& notes, const GenerateOptions& o, bool concurrent = false) {
  const auto& W = par::world();
  const int size = o.shared && W.active ? W.size : 1, rank = o.shared && W.active ? W.rank : 0;
  const int n = f.p.B * f.p.Hkv;
  auto compute = [&](int u, json& un) {
    FixtureData s = unit_case(f, u);
    if (f.scalar == "dd") compute_truth<dd>(s, un);
    else compute_truth<bf50>(s, un);
    return s;
  };
  // This rank's units u = rank, rank + size, ...; computed up front, in parallel, when concurrent.
  std::vector<FixtureData> ready(static_cast<std::size_t>(n));
  std::vector<json> ready_notes(static_cast<std::size_t>(n));
  if (concurrent) {
    std::vector<std::exception_ptr> errs(static_cast<std::size_t>(n));
#pragma omp parallel for schedule(dynamic, 1)
    for (int u = rank; u < n; u += size) {
      try {
        ready[std::size_t(u)] = compute(u, ready_notes[std::size_t(u)]);
      } catch (...) {
        errs[std::size_t(u)] = std::current_exception();
      }
    }
    for (auto& e : errs)
      if (e) std::rethrow_exception(e);
  }
  auto own = [&](int u, json& un) {
    if (!concurrent) return compute(u, un);
    un = std::move(ready_notes[std::size_t(u)]);
    return std::move(ready[std::size_t(u)]);
  };
  if (rank != 0) {
    for (int u = rank; u < n; u += size) {
      json un;
      FixtureData s = own(u, un);
      par::send_text(0, kTagUnit, pack_unit(s, un));
    }
    return false;
  }
  // Gradients exist only if every unit's backward ran; otherwise none, with the first refusal's note.
  json refused;
  for (int u = 0; u < n; ++u) {
    json un;
    FixtureData s = u % size == 0 ? own(u, un) : unpack_unit(par::recv_text_from(u % size, kTagUnit), un);
    const bool has = s.truth.size() > 1;
    if (u == 0) notes = un;
    if (!has && refused.is_null()) refused = un;
    put_unit(f, s, u);
    if (o.progress) o.progress(u + 1, n);
  }
  if (!refused.is_null()) {
    notes = refused;
    for (auto it = f.truth.begin(); it != f.truth.end();) it = it->first == "out" ? std::next(it) : f.truth.erase(it);
  }
  return true;
}

// Row-sampled truth (validation/row_sample.hpp): each run of consecutive listed rows of a batch is
// a sub-problem, computed in units of kv heads (its extended-precision intermediates then span one
// head's keys at a time); its per-row tensors go to the run's rows, its partial dK/dV are dropped.
// Under MPI with o.shared, each run's kv-head units are shared over the ranks (as for a whole
// case); ranks other than 0 return false.
bool compute_truth_rows(FixtureData& f, json& notes, const GenerateOptions& o) {
  const std::vector<RowRun> runs = row_runs(f.p, f.rows);
  const std::size_t R = f.rows.size();
  const bool root = !(o.shared && par::world().active) || par::world().rank == 0;
  json refused;
  int done = 0;
  for (const RowRun& r : runs) {
    FixtureData s;
    s.p = row_problem(f.p, r);
    s.scalar = f.scalar;
    s.in = row_inputs(f.p, f.in, r);
    json un;
    GenerateOptions local;
    local.shared = o.shared;
    // A run of a few rows cannot fill the threads with its row blocks: its heads run in parallel.
    if (!compute_truth_units(s, un, local, /*concurrent=*/s.p.Lq <= 64)) continue;
    if (done == 0) notes = un;
    if (!s.truth.count("dq") && refused.is_null()) refused = un;
    for (auto& [n, t] : s.truth) {
      if (n == "dk" || n == "dv") continue;  // sums over every query row: no truth in a sampled fixture
      put_run(f.truth[n].hi, t.hi, r, f.p.B, R), put_run(f.truth[n].lo, t.lo, r, f.p.B, R);
    }
    for (auto& [n, t] : s.saved) put_run(f.saved[n].hi, t.hi, r, f.p.B, R), put_run(f.saved[n].lo, t.lo, r, f.p.B, R);
    for (auto& [n, t] : s.diag) put_run(f.diag[n], t, r, f.p.B, R);
    if (o.progress) o.progress(++done, int(runs.size()));
  }
  if (!refused.is_null()) {
    notes = refused;
    for (auto it = f.truth.begin(); it != f.truth.end();) it = it->first == "out" ? std::next(it) : f.truth.erase(it);
  } else if (notes.contains("gradients")) {
    notes["gradients"] = notes["gradients"].get<std::string>() + " (dk, dv: none, they sum over every query row)";
  }
  if (!root) return false;
  notes["rows"] = std::to_string(R) + " of " + std::to_string(f.p.Lq) + " query rows (dataset 'rows'), " +
                  std::to_string(runs.size()) + " runs of consecutive rows over " + std::to_string(f.p.B) + " batches";
  return true;
}

}  // namespace

namespace {
std::string gen_what(const Problem& p, const GenerateOptions& o) {
  return "generating fixture '" + p.name + "'" +
         (o.rows.empty() ? " (truth for a sample of query rows needs far less: a case's \"rows\": {\"sample\": N}; "
                           "docs/fixtures.md)"
                         : "");
}
}  // namespace

bool gen_in_units(const Problem& p, GenSplit split) {
  if (split == GenSplit::Whole || p.B * p.Hkv == 1) return false;
  return split == GenSplit::Units || work(p) >= kUnitsWork;
}

FixtureData generate_fixture(const Problem& p, const std::string& scalar, const GenerateOptions& o) {
  if (scalar != "dd" && scalar != "bf50") throw Error("scalar: unknown name '" + scalar + "' (expected dd or bf50)");
  validate(p);
  require_memory(estimate_gen_memory(p, scalar, o.rows.size()), gen_what(p, o));
  GenerateOptions local = o;
  local.shared = false;
  return generate_fixture(p, make_inputs(p), scalar, local);
}

std::optional<FixtureData> generate_fixture_shared(const Problem& p, const std::string& scalar, GenerateOptions o) {
  if (scalar != "dd" && scalar != "bf50") throw Error("scalar: unknown name '" + scalar + "' (expected dd or bf50)");
  validate(p);  // every rank: the same error before any work
  require_memory(estimate_gen_memory(p, scalar, o.rows.size()), gen_what(p, o));
  o.shared = true;
  FixtureData f;
  if (!o.rows.empty()) {  // row-sampled: every run's heads shared over the ranks
    check_row_set(p, o.rows);
    f.p = p, f.scalar = scalar, f.in = make_inputs(p), f.rows = o.rows, f.rows_spec = o.rows_spec;
    json notes;
    if (!compute_truth_rows(f, notes, o)) return std::nullopt;
    finish_fixture(f, notes);
    return f;
  }
  f.p = p;
  f.scalar = scalar;
  f.in = make_inputs(p);
  json notes;
  if (par::world().size > 1 && p.B * p.Hkv > 1) {
    if (!compute_truth_units(f, notes, o)) return std::nullopt;
  } else if (par::world().rank != 0) {
    return std::nullopt;  // one unit: rank 0 alone
  } else if (gen_in_units(p, o.split)) {
    compute_truth_units(f, notes, o);
  } else if (scalar == "dd") {
    compute_truth<dd>(f, notes);
  } else {
    compute_truth<bf50>(f, notes);
  }
  finish_fixture(f, notes);
  return f;
}

std::map<std::string, Tensor<double>> reference_truth_dd(const Problem& p, const Inputs& in, bool gradients) {
  validate(p);
  check_inputs(p, in);
  std::map<std::string, Tensor<double>> r;
  auto hi = [](const auto& t) { return split(t).hi; };
  r["out"] = hi(attention_forward<dd>(p, in).out);
#ifdef PLX_BACKWARD_TEMPLATES
  if (gradients && !p.decode) {
    auto G = attention_backward<dd>(p, in);
    r["dq"] = hi(G.dq), r["dk"] = hi(G.dk), r["dv"] = hi(G.dv);
    if (p.probe == Probe::Learned) r["dr"] = hi(G.dr);
    if (p.probe == Probe::Solver) r["dlambda"] = hi(G.dlambda);
  }
#else
  (void)gradients;
#endif
  return r;
}

FixtureData generate_fixture(const Problem& p, Inputs in, const std::string& scalar, const GenerateOptions& o) {
  if (scalar != "dd" && scalar != "bf50") throw Error("scalar: unknown name '" + scalar + "' (expected dd or bf50)");
  require_memory(estimate_gen_memory(p, scalar, o.rows.size()), gen_what(p, o));
  check_inputs(p, in);
  FixtureData f;
  f.p = p;
  f.scalar = scalar;
  f.in = std::move(in);
  json notes;
  GenerateOptions local = o;
  local.shared = false;
  f.rows = o.rows, f.rows_spec = o.rows_spec;
  if (!f.rows.empty()) {
    check_row_set(p, f.rows);
    compute_truth_rows(f, notes, local);
  } else if (gen_in_units(p, o.split)) compute_truth_units(f, notes, local);
  else if (scalar == "dd") compute_truth<dd>(f, notes);
  else compute_truth<bf50>(f, notes);
  finish_fixture(f, notes);
  return f;
}

namespace {

// After the truth: the reference's own error, the notes and the recommended tolerances.
void finish_fixture(FixtureData& f, json& notes) {
  const Problem& p = f.p;
  const std::string& scalar = f.scalar;
  // The reference's own error: measured against the other extended scalar on small cases.
  json& re = f.reference_error;
  if (iterative_solve(p)) {
    json method;
    re["max_rel"] = iterative_reference_error(f, method);
    re["method"] = method;
  } else if (f.rows.empty() && work(p) <= kCrossCheckForwardWork) {
    const bool grads = work(p) <= kCrossCheckBackwardWork;
    re["method"] = std::string("measured: max|truth - ") + (scalar == "dd" ? "bf50" : "dd") +
                   "| / max|" + (scalar == "dd" ? "bf50" : "dd") + "| per tensor" + (grads ? "" : " (forward only)");
    re["max_rel"] = scalar == "dd" ? cross_check<bf50>(f, grads) : cross_check<dd>(f, grads);
  } else {
    double kappa = 1;
    for (const char* d : {"cond_Sigma", "zbar_over_sigma"})
      if (f.diag.count(d)) kappa = std::max(kappa, max_abs(f.diag.at(d)));
    const double u = scalar == "dd" ? 0x1p-104 : 1e-50;
    const double est = 64.0 * (p.Lkv + p.D + p.Dv) * u * kappa;
    re["method"] = "estimate: 64 (Lkv + D + Dv) u_scalar kappa, kappa = max(1, max cond_Sigma, max zbar/sigma_z)";
    json m;
    for (auto& [n, t] : f.truth) m[n] = est;
    re["max_rel"] = m;
  }
  re["notes"] = notes;

  for (auto& [n, t] : f.truth) {
    (void)t;
    for (DType X : {DType::F64, DType::F32, DType::BF16, DType::F16}) {
      Tolerance tol = recommended_tolerance(p, n, X);
      f.tolerances[n][to_string(X)] = {{"baseline_ratio", tol.baseline_ratio}, {"abs_floor", tol.abs_floor},
                                       {"rel_floor", tol.rel_floor}, {"why", tol.why}};
    }
  }
}

}  // namespace

// ---- writing --------------------------------------------------------------------------
namespace {

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

struct Writer {
  hid_t file;
  std::map<std::string, std::string> hashes;
  void put(const std::string& path, const std::vector<std::size_t>& shape, h5::Raw::Type type, const void* data,
           std::size_t bytes, const std::string& format = "") {
    h5::Handle ds = h5::write(file, path, shape, type, data);
    const std::string h = sha256_hex(data, bytes);
    h5::set_attr(ds, "sha256", h);
    if (!format.empty()) h5::set_attr(ds, "format", format);
    hashes[path] = h;
  }
  void f64(const std::string& path, const Tensor<double>& t) {
    put(path, t.shape, h5::Raw::F64, t.data.data(), t.size() * 8);
  }
  // An input in the problem dtype: exact storage (+ a float32 view for bf16/fp16).
  void input(const std::string& name, const Tensor<double>& t, DType dt) {
    const std::size_t n = t.size();
    if (dt == DType::F64) return f64(name, t);
    std::vector<float> f(n);
    for (std::size_t i = 0; i < n; ++i) f[i] = float(t.data[i]);
    if (dt == DType::F32) return put(name, t.shape, h5::Raw::F32, f.data(), n * 4);
    std::vector<std::uint16_t> u(n);
    for (std::size_t i = 0; i < n; ++i) u[i] = dt == DType::BF16 ? bf16_bits(f[i]) : f16_bits(f[i]);
    put(name, t.shape, h5::Raw::U16, u.data(), n * 2, to_string(dt));
    put(name + "_f32", t.shape, h5::Raw::F32, f.data(), n * 4);
  }
};

}  // namespace

std::string git_commit() { return PLX_GIT_COMMIT; }
std::string version_string() {
  return std::string("plx ") + PLX_VERSION + " (git commit " + PLX_GIT_COMMIT + ", fixture schema v" +
         std::to_string(kFixtureSchemaVersion) + ")";
}

std::map<std::string, std::string> write_fixture(const FixtureData& f, const std::string& path) {
  namespace fs = std::filesystem;
  static std::atomic<int> counter{0};
  const fs::path final_path(path);
  const fs::path dir = final_path.has_parent_path() ? final_path.parent_path() : fs::path(".");
  if (!fs::is_directory(dir)) throw Error("output directory '" + dir.string() + "' does not exist");
  const std::string tmp = (dir / ("." + final_path.filename().string() + ".tmp." + std::to_string(::getpid()) + "." +
                                  std::to_string(counter++)))
                              .string();
  std::map<std::string, std::string> hashes;
  try {
    {
      h5::Handle file = h5::create_file(tmp);
      Writer w{file, {}};
      const Problem& p = f.p;
      w.input("q", f.in.q, p.dtype), w.input("k", f.in.k, p.dtype), w.input("v", f.in.v, p.dtype);
      w.input("dO", f.in.dO, p.dtype);
      if (p.probe == Probe::Learned) w.input("r", f.in.r, p.dtype);
      if (p.probe == Probe::Solver) w.f64("lambda", f.in.lambda);
      if (!f.rows.empty()) {
        const std::vector<std::int64_t> rows(f.rows.begin(), f.rows.end());
        w.put("rows", {rows.size()}, h5::Raw::I64, rows.data(), rows.size() * 8);
      }
      for (auto& [n, t] : f.truth) w.f64(n, t.hi), w.f64(n + "_lo", t.lo);
      for (auto& [n, t] : f.rad) w.f64(n + "_rad", t);  // certified radii (optional)
      { h5::Handle g = h5::create_group(file, "saved"); }
      for (auto& [n, t] : f.saved) w.f64("saved/" + n, t.hi), w.f64("saved/" + n + "_lo", t.lo);
      { h5::Handle g = h5::create_group(file, "diag"); }
      for (auto& [n, t] : f.diag) w.f64("diag/" + n, t);

      h5::set_attr(file, "schema_version", std::int64_t(kFixtureSchemaVersion));
      h5::set_attr(file, "problem", problem_json_text(p));
      h5::set_attr(file, "member", member_name(p));
      h5::set_attr(file, "dtype", to_string(p.dtype));
      h5::set_attr_u64(file, "seed", p.seed);
      h5::set_attr(file, "scalar", f.scalar);
      h5::set_attr(file, "generator", std::string("plx ") + PLX_VERSION);
      h5::set_attr(file, "git_commit", std::string(PLX_GIT_COMMIT));
      h5::set_attr(file, "created", utc_now());
      h5::set_attr(file, "reference_error", f.reference_error.dump());
      h5::set_attr(file, "tolerances", f.tolerances.dump());
      if (!f.purpose.empty()) h5::set_attr(file, "purpose", f.purpose);
      if (!f.hint.empty()) h5::set_attr(file, "hint", f.hint);
      if (!f.certified.is_null()) h5::set_attr(file, "certified", f.certified.dump());
      if (!f.rows.empty())
        h5::set_attr(file, "rows",
                     json{{"count", f.rows.size()},
                          {"spec", f.rows_spec},
                          {"meaning", "truth only for the query rows in dataset 'rows' (int64, increasing): out, dq, dr "
                                      "[B,R,Hq,X], dlambda, saved/<per-row>, diag/* [B,Hq,R]; no dk, dv"}}
                         .dump());
      h5::set_attr(file, "layout",
                   std::string("heads-last, row-major: q, r, dq, dr [B,Lq,Hq,D]; k, dk [B,Lkv,Hkv,D]; v, dv "
                               "[B,Lkv,Hkv,Dv]; out, dO [B,Lq,Hq,Dv]; lambda, dlambda, saved/<per-row>, diag/* "
                               "[B,Hq,Lq]; saved/probe [B,Lq,Hq,D]; saved/vbar [B,Lq,Hq,Dv]"));
      hashes = w.hashes;
      h5::flush(file);  // a write failure (full disk) is an error here, before the rename
    }
    std::error_code ec;
    fs::rename(tmp, final_path, ec);
    if (ec) throw Error("cannot rename '" + tmp + "' to '" + path + "': " + ec.message());
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  return hashes;
}

// ---- reading ----------------------------------------------------------------------------
namespace {

std::string where(const std::string& path, const std::string& obj) { return "fixture '" + path + "', dataset '" + obj + "'"; }

}  // namespace

FixtureData read_fixture(const std::string& path) {
  h5::Handle file = h5::open_file(path);
  if (!h5::has_attr(file, ".", "schema_version"))
    throw Error("'" + path + "' is an HDF5 file but not a plx fixture (no 'schema_version' attribute)");
  const std::int64_t ver = h5::get_attr_int(file, ".", "schema_version");
  if (ver != kFixtureSchemaVersion)
    throw Error("fixture '" + path + "' has schema_version " + std::to_string(ver) + "; this plx reads version " +
                std::to_string(kFixtureSchemaVersion));
  FixtureData f;
  try {
    f.p = problem_from_json(json::parse(h5::get_attr_string(file, ".", "problem")));
  } catch (const json::exception& e) {
    throw Error("fixture '" + path + "': attribute 'problem' is not valid JSON: " + e.what());
  } catch (const Error& e) {
    throw Error("fixture '" + path + "': attribute 'problem': " + e.what());
  }
  std::size_t sampled_rows = 0;  // a row-sampled fixture's row count, from its `rows` attribute
  if (h5::has_attr(file, ".", "rows")) {
    try {
      sampled_rows = json::parse(h5::get_attr_string(file, ".", "rows")).value("count", std::size_t(0));
    } catch (const json::exception& e) {
      throw Error("fixture '" + path + "': attribute 'rows' is not valid JSON with a count: " + e.what());
    }
  }
  require_memory(estimate_check_memory(f.p, sampled_rows), "fixture '" + path + "' (problem " + problem_json_text(f.p) + ")");
  f.scalar = h5::get_attr_string(file, ".", "scalar");
  for (const char* a : {"reference_error", "tolerances"}) {
    try {
      (std::string(a) == "tolerances" ? f.tolerances : f.reference_error) = json::parse(h5::get_attr_string(file, ".", a));
    } catch (const json::exception& e) {
      throw Error("fixture '" + path + "': attribute '" + a + "' is not valid JSON: " + e.what());
    }
  }
  for (const char* a : {"generator", "git_commit", "created"})
    f.provenance[a] = h5::has_attr(file, ".", a) ? h5::get_attr_string(file, ".", a) : "";
  if (h5::has_attr(file, ".", "purpose")) f.purpose = h5::get_attr_string(file, ".", "purpose");
  if (h5::has_attr(file, ".", "hint")) f.hint = h5::get_attr_string(file, ".", "hint");

  // Every dataset, with its checksum verified before anything uses it.
  std::map<std::string, h5::Raw> raw;
  std::vector<std::string> paths;
  for (const auto& n : h5::list(file, ".")) {
    if (n == "saved" || n == "diag") {
      for (const auto& m : h5::list(file, n)) paths.push_back(n + "/" + m);
    } else {
      paths.push_back(n);
    }
  }
  for (const auto& ds : paths) {
    h5::Raw r = h5::read(file, ds);
    if (r.type == h5::Raw::Other || (r.type == h5::Raw::I64 && ds != "rows"))
      throw Error(where(path, ds) + ": unsupported storage type " + r.type_desc);
    if (!h5::has_attr(file, ds, "sha256")) throw Error(where(path, ds) + ": no 'sha256' attribute");
    const std::string want = h5::get_attr_string(file, ds, "sha256");
    const std::string got = sha256_hex(r.bytes.data(), r.bytes.size());
    if (want != got)
      throw Error(where(path, ds) + ": checksum mismatch (stored sha256 " + want + ", data hashes to " + got +
                  "): the file is corrupt or was edited");
    f.sha256[ds] = got;
    raw.emplace(ds, std::move(r));
  }

  const Problem& p = f.p;
  auto need = [&](const std::string& ds) -> const h5::Raw& {
    auto it = raw.find(ds);
    if (it == raw.end()) throw Error("fixture '" + path + "': required dataset '" + ds + "' is missing");
    return it->second;
  };
  // Inputs must be stored exactly in the problem dtype.
  auto input = [&](const std::string& name) {
    const h5::Raw& r = need(name);
    const DType dt = p.dtype;
    const h5::Raw::Type want = dt == DType::F64 ? h5::Raw::F64 : dt == DType::F32 ? h5::Raw::F32 : h5::Raw::U16;
    if (r.type != want)
      throw Error(where(path, name) + ": stored as " + r.type_desc + " but the problem dtype " + to_string(dt) +
                  " is stored as " + (want == h5::Raw::F64 ? "float64" : want == h5::Raw::F32 ? "float32" : "uint16"));
    std::string fmt = r.type == h5::Raw::U16 && h5::has_attr(file, name, "format") ? h5::get_attr_string(file, name, "format") : "";
    if (r.type == h5::Raw::U16 && fmt != to_string(dt))
      throw Error(where(path, name) + ": 'format' attribute is '" + fmt + "', expected '" + to_string(dt) + "'");
    return h5::to_tensor(r, fmt);
  };
  f.in.q = input("q"), f.in.k = input("k"), f.in.v = input("v"), f.in.dO = input("dO");
  const std::size_t B = p.B, Lq = p.Lq, Hq = p.Hq;
  f.in.r = p.probe == Probe::Learned ? input("r") : Tensor<double>({B, Lq, Hq, std::size_t(p.D)});
  f.in.lambda = p.probe == Probe::Solver ? h5::to_tensor(need("lambda")) : Tensor<double>({B, Hq, Lq}, p.solver.lambda);
  try {
    check_inputs(p, f.in);
    f.in.dO.require_shape({B, Lq, Hq, std::size_t(p.Dv)}, "dO");
  } catch (const Error& e) {
    throw Error("fixture '" + path + "': " + e.what());
  }

  auto truth_pair = [&](const std::string& name, const std::vector<std::size_t>& shape) {
    Truth t{h5::to_tensor(need(name)), h5::to_tensor(need(name + "_lo"))};
    try {
      t.hi.require_shape(shape, name), t.lo.require_shape(shape, name + "_lo");
    } catch (const Error& e) {
      throw Error("fixture '" + path + "': " + e.what());
    }
    return t;
  };
  if (raw.count("rows")) {  // row-sampled truth (validation/row_sample.hpp)
    const h5::Raw& r = raw.at("rows");
    if (r.type != h5::Raw::I64 || r.shape.size() != 1)
      throw Error(where(path, "rows") + ": must be a 1-d int64 list of query rows; it is " + r.type_desc + " of shape " +
                  shape_str(r.shape));
    for (double x : h5::to_tensor(r).data) f.rows.push_back(int(std::max(-1.0, std::min(x, double(p.Lq)))));
    try {
      check_row_set(p, f.rows);
    } catch (const Error& e) {
      throw Error(where(path, "rows") + ": " + e.what());
    }
    for (const char* n : {"dk", "dv"})
      if (raw.count(n)) throw Error(where(path, n) + ": a row-sampled fixture has no truth for dk, dv (they sum over every query row)");
    if (h5::has_attr(file, ".", "rows")) {
      try {
        f.rows_spec = json::parse(h5::get_attr_string(file, ".", "rows")).value("spec", json());
      } catch (const json::exception& e) {
        throw Error("fixture '" + path + "': attribute 'rows' is not valid JSON: " + e.what());
      }
    }
  }
  const std::size_t D = p.D, Dv = p.Dv, Lkv = p.Lkv, Hkv = p.Hkv, Lr = f.truth_rows();
  const std::map<std::string, std::vector<std::size_t>> shapes = {
      {"out", {B, Lr, Hq, Dv}}, {"dq", {B, Lr, Hq, D}}, {"dk", {B, Lkv, Hkv, D}},
      {"dv", {B, Lkv, Hkv, Dv}}, {"dr", {B, Lr, Hq, D}}, {"dlambda", {B, Hq, Lr}}};
  f.truth["out"] = truth_pair("out", shapes.at("out"));
  for (const auto& n : checked_tensor_names())
    if (n != "out" && raw.count(n)) f.truth[n] = truth_pair(n, shapes.at(n));
  for (const auto& [ds, r] : raw) {
    if (ds.rfind("saved/", 0) == 0 && ds.size() > 3 && ds.compare(ds.size() - 3, 3, "_lo") != 0) {
      const std::string n = ds.substr(6);
      f.saved[n] = {h5::to_tensor(r), raw.count(ds + "_lo") ? h5::to_tensor(raw.at(ds + "_lo")) : Tensor<double>()};
    } else if (ds.rfind("diag/", 0) == 0) {
      f.diag[ds.substr(5)] = h5::to_tensor(r);
    }
  }
  for (const auto& [n, t] : f.truth)
    if (!f.tolerances.contains(n)) throw Error("fixture '" + path + "': attribute 'tolerances' has no entry for '" + n + "'");
  // Optional certified radii: every tensor the `certified` attribute lists has its <name>_rad.
  if (h5::has_attr(file, ".", "certified")) {
    try {
      f.certified = json::parse(h5::get_attr_string(file, ".", "certified"));
    } catch (const json::exception& e) {
      throw Error("fixture '" + path + "': attribute 'certified' is not valid JSON: " + e.what());
    }
    const json listed = f.certified.value("tensors", json::object());
    for (auto it = listed.begin(); it != listed.end(); ++it) {
      const std::string n = it.key();
      if (!f.truth.count(n)) throw Error("fixture '" + path + "': attribute 'certified' lists '" + n + "', which has no truth");
      Tensor<double> r = h5::to_tensor(need(n + "_rad"));
      try {
        r.require_shape(f.truth.at(n).hi.shape, n + "_rad");
      } catch (const Error& e) {
        throw Error("fixture '" + path + "': " + e.what());
      }
      f.rad[n] = std::move(r);
    }
  }
  return f;
}

}  // namespace plx
