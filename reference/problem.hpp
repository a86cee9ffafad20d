// reference/problem.hpp — the Problem: one attention case, shared by every layer.
//
// Charter: shapes, mask, GQA map, the member of the attention family and its knobs,
// input dtype, generator and seed (docs/math.md §1, §4.3). `validate()` rejects an invalid
// problem with a message naming the field. `row_range()` is the single definition
// of the allowed key set A_i used by the reference, the fast path and the kernels.
// Layouts: q, r [B, Lq, Hq, D]; k [B, Lkv, Hkv, D]; v [B, Lkv, Hkv, Dv];
// out, dO [B, Lq, Hq, Dv]; per-row tensors [B, Hq, Lq].
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "reference/dtype.hpp"
#include "reference/errors.hpp"

namespace plx {

// --- The family (docs/math.md §4.3) -------------------------------------------------
enum class Probe { None, Learned, Solver };          // theta = 0 | r | ridge solve
enum class Anchor { KeyMean, Query };                 // c = kbar (gamma = 1) | c = q
enum class Formulation { Accumulator, Centred };      // Algorithm-1 sums | covariance form
enum class SolverMethod { Direct, CG, JacobiCG };     // docs/math.md §3.7
enum class RidgeGrad { Exact, Detached };             // docs/math.md §5.3 / §9.1 (backward only)
enum class Sgn0 { Plus, Zero };                       // sgn(0) in delta_eps * sgn(Delta)

// Input generators (docs/math.md §7 hazards). `gen_param` is the knob of each; see inputs.hpp.
enum class InputGen {
  Normal,         // iid ~N(0,1) q, k, v, dO; r ~ 0.5 N(0,1)
  RmsNorm,        // q, k rows scaled to RMS 1 (|x| = sqrt(D))
  Anisotropic,    // key coordinate scales decay so cond(cov(k)) = gen_param
  Outliers,       // every 17th key/value token scaled by gen_param
  Sink,           // key 0 is a large attention sink (gen_param = its size along the query mean)
  NearDuplicate,  // keys in pairs k_{2j+1} = k_{2j} + gen_param * noise
  LargeScale,     // RMS-normalised q scaled by gen_param (= qk_scale * gen_param)
  LargeR,         // |r| scaled by gen_param and keys share a common offset of norm 4: large |zbar|
  ZCancel         // keys share an offset gen_param * u and r leans along u: zbar / sigma_z ~ 0.9 gen_param
};

struct SolverKnobs {
  double lambda = 0.1;          // ridge (>= 0), in normalised-weight units (docs/math.md §3.1)
  bool lambda_per_row = false;  // if set, lambda_i = lambda * 4^(2u-1), u uniform, rounded to fp32
  int block = 0;                // block-diagonal solve block size b; 0 means b = D (full)
  SolverMethod method = SolverMethod::Direct;
  double cg_atol = 1e-12, cg_rtol = 1e-12;  // squared-norm test (docs/math.md §3.7)
  int cg_max_iters = 32;                    // exactly this many iterations are run
  RidgeGrad ridge_grad = RidgeGrad::Exact;
};

struct AnchorKnobs {
  double delta_eps = 1e-12;  // absolute clamp on the unnormalised denominator (Query anchor)
  Sgn0 sgn0 = Sgn0::Plus;
};

struct Problem {
  std::string name = "case";
  // Shapes (docs/math.md §1.1)
  int B = 1, Hq = 1, Hkv = 1, Lq = 1, Lkv = 1, D = 1, Dv = 1;
  double qk_scale = 0;  // tau; 0 means the default 1/sqrt(D)
  bool decode = false;  // a forward-only decode step (docs/math.md §6.1): requires Lq = 1; backward refuses it
  // Mask (docs/math.md §1.2): causal aligned to the end of the (used) KV sequence.
  bool causal = true;
  int window = -1;               // keep the W most recent keys incl. the diagonal; -1 = off
  std::vector<int> start;        // per batch first usable key (left padding); empty = all 0
  std::vector<int> used;         // per batch number of used keys (seqused_k); empty = all Lkv
  // Member of the family and its knobs (docs/math.md §4.3)
  Probe probe = Probe::Learned;
  Anchor anchor = Anchor::KeyMean;
  Formulation form = Formulation::Centred;
  SolverKnobs solver;
  AnchorKnobs anchor_knobs;
  // Inputs
  DType dtype = DType::F64;  // inputs are rounded to this before anyone sees them
  InputGen gen = InputGen::Normal;
  double gen_param = 0;      // 0 means the generator's default
  double r_scale = 0.5;      // Learned probe: r ~ r_scale * N(0,1) before generator tweaks
  std::uint64_t seed = 0;

  double tau() const { return qk_scale > 0 ? qk_scale : 1.0 / std::sqrt(double(D)); }
  int group() const { return Hq / Hkv; }
  int block_size() const { return solver.block > 0 ? solver.block : D; }
  bool is_decode() const { return Lq == 1; }
  int start_of(int b) const { return start.empty() ? 0 : start[b]; }
  int used_of(int b) const { return used.empty() ? Lkv : used[b]; }
};

// --- Names, for JSON, files and reports -------------------------------------
std::string to_string(Probe);
std::string to_string(Anchor);
std::string to_string(Formulation);
std::string to_string(SolverMethod);
std::string to_string(RidgeGrad);
std::string to_string(InputGen);

inline std::string to_string(Probe x) { return x == Probe::None ? "none" : x == Probe::Learned ? "learned" : "solver"; }
inline std::string to_string(Anchor x) { return x == Anchor::KeyMean ? "key_mean" : "query"; }
inline std::string to_string(Formulation x) { return x == Formulation::Accumulator ? "accumulator" : "centred"; }
inline std::string to_string(SolverMethod x) { return x == SolverMethod::Direct ? "direct" : x == SolverMethod::CG ? "cg" : "jacobi_cg"; }
inline std::string to_string(RidgeGrad x) { return x == RidgeGrad::Exact ? "exact" : "detached"; }
inline std::string to_string(InputGen x) {
  static const char* n[] = {"normal", "rms_norm", "anisotropic", "outliers", "sink", "near_duplicate", "large_scale", "large_r", "z_cancel"};
  return n[static_cast<int>(x)];
}

// Named members (docs/math.md §4.3 table). Sets probe/anchor/formulation only.
//   softmax | parallax (official accumulator form) | parallax_centred |
//   lla (FlashLLA: solver, query anchor, accumulator) | lla_cov (stable covariance form) |
//   learned_query (ablation: learned probe, query anchor)
inline void set_member(Problem& p, const std::string& m) {
  if (m == "softmax") { p.probe = Probe::None; p.anchor = Anchor::KeyMean; p.form = Formulation::Centred; }
  else if (m == "parallax") { p.probe = Probe::Learned; p.anchor = Anchor::KeyMean; p.form = Formulation::Accumulator; }
  else if (m == "parallax_centred") { p.probe = Probe::Learned; p.anchor = Anchor::KeyMean; p.form = Formulation::Centred; }
  else if (m == "lla") { p.probe = Probe::Solver; p.anchor = Anchor::Query; p.form = Formulation::Accumulator; }
  else if (m == "lla_cov") { p.probe = Probe::Solver; p.anchor = Anchor::KeyMean; p.form = Formulation::Centred; }
  else if (m == "learned_query") { p.probe = Probe::Learned; p.anchor = Anchor::Query; p.form = Formulation::Accumulator; }
  else fail("member: unknown name '" + m + "' (softmax, parallax, parallax_centred, lla, lla_cov, learned_query)");
}
inline std::string member_name(const Problem& p) {
  if (p.probe == Probe::None) return "softmax";
  if (p.probe == Probe::Learned)
    return p.anchor == Anchor::Query ? "learned_query" : (p.form == Formulation::Accumulator ? "parallax" : "parallax_centred");
  return p.anchor == Anchor::Query ? "lla" : "lla_cov";
}

// --- Validation ----------------------------------------------------------------
inline void validate(const Problem& p) {
  auto need = [](bool ok, const std::string& field, const std::string& why) {
    if (!ok) throw Error("problem field '" + field + "': " + why);
  };
  need(p.B >= 1, "B", "must be >= 1, got " + std::to_string(p.B));
  need(p.Hq >= 1, "Hq", "must be >= 1, got " + std::to_string(p.Hq));
  need(p.Hkv >= 1, "Hkv", "must be >= 1, got " + std::to_string(p.Hkv));
  need(p.Hq % p.Hkv == 0, "Hq", "must be a multiple of Hkv (GQA), got Hq=" + std::to_string(p.Hq) + ", Hkv=" + std::to_string(p.Hkv));
  need(p.Lq >= 1, "Lq", "must be >= 1, got " + std::to_string(p.Lq));
  need(p.Lkv >= 1, "Lkv", "must be >= 1, got " + std::to_string(p.Lkv));
  need(p.D >= 1, "D", "must be >= 1, got " + std::to_string(p.D));
  need(!p.decode || p.Lq == 1, "decode", "a decode step has exactly one query (Lq = 1), got Lq=" + std::to_string(p.Lq));
  need(p.Dv >= 1, "Dv", "must be >= 1, got " + std::to_string(p.Dv));
  need(std::isfinite(p.qk_scale) && p.qk_scale >= 0, "qk_scale", "must be finite and >= 0 (0 = 1/sqrt(D))");
  need(p.window >= -1, "window", "must be -1 (off) or >= 0");
  need(p.start.empty() || int(p.start.size()) == p.B, "start", "needs one entry per batch (B=" + std::to_string(p.B) + ")");
  need(p.used.empty() || int(p.used.size()) == p.B, "used", "needs one entry per batch (B=" + std::to_string(p.B) + ")");
  for (int b = 0; b < p.B; ++b) {
    need(p.used_of(b) >= 0 && p.used_of(b) <= p.Lkv, "used", "entry " + std::to_string(b) + " must lie in [0, Lkv]");
    need(p.start_of(b) >= 0 && p.start_of(b) <= p.Lkv, "start", "entry " + std::to_string(b) + " must lie in [0, Lkv]");
  }
  double elems = double(p.B) * (double(p.Lq) * p.Hq * (2.0 * p.D + 2.0 * p.Dv) + double(p.Lkv) * p.Hkv * (p.D + p.Dv));
  need(elems < 4e9, "B/L/H/D", "the problem needs more than 4e9 elements");
  if (p.probe == Probe::Solver) {
    const auto& s = p.solver;
    need(std::isfinite(s.lambda) && s.lambda >= 0, "solver.lambda", "must be finite and >= 0");
    need(s.block >= 0, "solver.block", "must be >= 0 (0 = D)");
    need(p.D % p.block_size() == 0, "solver.block", "must divide D=" + std::to_string(p.D) + ", got " + std::to_string(s.block));
    need(s.cg_max_iters >= 1, "solver.cg_max_iters", "must be >= 1");
    need(std::isfinite(s.cg_atol) && s.cg_atol >= 0, "solver.cg_atol", "must be finite and >= 0");
    need(std::isfinite(s.cg_rtol) && s.cg_rtol >= 0, "solver.cg_rtol", "must be finite and >= 0");
    need(s.method == SolverMethod::Direct || p.block_size() == p.D, "solver.method", "CG solves need block = D (the block variant is direct only)");
  }
  if (p.anchor == Anchor::Query)
    need(std::isfinite(p.anchor_knobs.delta_eps) && p.anchor_knobs.delta_eps >= 0, "anchor.delta_eps", "must be finite and >= 0");
  need(std::isfinite(p.r_scale), "r_scale", "must be finite");
  need(std::isfinite(p.gen_param) && p.gen_param >= 0, "gen_param", "must be finite and >= 0");
}

// --- The allowed key set (docs/math.md §1.2) --------------------------------------------
// A_i = [lo, hi) for query row i of batch b. The mask is aligned to the end of the
// *used* KV sequence: P_i = used_b - Lq + i (docs/math.md §1.2). With used_b = Lkv
// this is P_i = Lkv - Lq + i; for a decode step (Lq = 1) it is P = used_b - 1
// (docs/math.md §6.1), so decode is exactly the last row of the corresponding
// prefill for any used_b.
struct RowRange {
  int lo = 0, hi = 0;
  bool empty() const { return hi <= lo; }
  int size() const { return hi > lo ? hi - lo : 0; }
};
inline RowRange row_range(const Problem& p, int b, int i) {
  const int used = p.used_of(b);
  const long P = long(used) - p.Lq + i;
  long lo = p.start_of(b), hi = used;
  if (p.causal) hi = std::min<long>(hi, P + 1);
  if (p.window >= 0) lo = std::max<long>(lo, P - p.window + 1);
  lo = std::max<long>(lo, 0);
  hi = std::min<long>(hi, p.Lkv);
  if (hi <= lo) return {0, 0};
  return {int(lo), int(hi)};
}

}  // namespace plx
