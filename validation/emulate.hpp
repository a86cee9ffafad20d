// validation/emulate.hpp — re-evaluate a member of the family with a kernel's rounding points.
//
// Charter: emulate(problem, inputs, profile, backward) runs the member's forward (and backward)
// the way a low-precision kernel does: inputs rounded to the profile's input format, every sum
// and product in the accumulation format (fp32 or fp64), and a rounding into a narrow format at
// each named rounding point of the Profile (the weights before the value products, the stored
// out / vbar / statistics / probe, the backward's gl and gu before the dQ/dK products, ...).
// Forward keys are visited in tiles of `key_tile` with the online rescale of a streaming
// (FlashAttention-style) kernel; the backward recomputes the weights from the stored (rounded)
// statistics and takes t = <dO, out>, b = <dO, vbar> from the stored out / vbar when the profile
// says so. Every rounding is bit-exact round-to-nearest-even (reference/rounding.hpp).
// Results are widened to double. Deterministic and thread-count independent (one task per
// (batch, head); no reduction depends on scheduling).
// The profile "exact-fp32" is the check's historical same-precision baseline: the reference
// algorithm (compensated key sums, two-pass) in float arithmetic, outputs rounded to the
// candidate dtype; it is evaluated by the reference itself, not by the streaming engine.
// What each profile rounds, and what is not emulated: docs/emulation.md.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "reference/inputs.hpp"
#include "reference/problem.hpp"
#include "reference/rounding.hpp"
#include "reference/tensor.hpp"
#include "reference/dtype.hpp"

namespace plx {

// Where a kernel rounds. RoundFmt::None means "no rounding point here" (the value stays in the
// accumulation format). Names below are the rounding points of docs/emulation.md.
struct Profile {
  std::string name;         // e.g. "flash-bf16"
  std::string description;  // one line, for reports
  // Engine: the reference algorithm in float/double (exact-fp32 / exact-fp64 profiles), or the
  // streaming kernel emulation with the rounding points below.
  bool reference_engine = false;
  RoundFmt accum = RoundFmt::F32;   // F32: every sum, product, exp, solve in float; None: in double
  RoundFmt input = RoundFmt::None;  // q, k, v, r, dO rounded to this first (on top of problem.dtype)
  // Forward
  RoundFmt p = RoundFmt::None;      // weights before the value products: softmax P (unnormalised,
                                    // exp(s - m_running)); Parallax accumulator p1 = w, p2 = w z;
                                    // centred forms p = w / omega and c = p (z - zbar); query-anchored
                                    // (LLA, learned_query) w and w (theta . e). Also the backward's
                                    // weights S_j before the dV product.
  RoundFmt probe = RoundFmt::None;  // stored rho / theta (solver probes) before z = theta . k is formed
  RoundFmt out = RoundFmt::None;    // stored out
  RoundFmt vbar = RoundFmt::None;   // stored vbar (= O1 / d1)
  RoundFmt stats = RoundFmt::None;  // stored m, lse, d1 (= omega)
  RoundFmt zbar = RoundFmt::None;   // stored zbar (= d2 / d1)
  // Backward
  RoundFmt grad_p = RoundFmt::None; // gl, gu (softmax dS) before the dQ, dK, dR products
  bool t_from_stored = true;        // t = <dO, out>, b = <dO, vbar> from the stored (rounded) out /
                                    // vbar (FlashAttention-style); false: from the unrounded values
  RoundFmt grads = RoundFmt::None;  // stored dq, dk, dv, dr
  int key_tile = 64;                // keys per streaming tile (online rescale between tiles)
};

struct EmulationResult {
  Tensor<double> out;                       // [B, Lq, Hq, Dv]
  Tensor<double> dq, dk, dv, dr, dlambda;   // empty unless backward (dr zeros unless probe == Learned)
  std::map<std::string, Tensor<double>> saved;  // what the emulated kernel stores, as stored (rounded):
                                                // per-row "m", "lse", "d1", "zbar" [B,Hq,Lq];
                                                // "vbar" [B,Lq,Hq,Dv]; "probe" [B,Lq,Hq,D];
                                                // backward: "t", "b" [B,Hq,Lq]
  std::string note;                         // what was emulated (profile description + engine)
};

// Evaluate `problem` on `inputs` under `profile`; backward = also dq, dk, dv, dr, dlambda (for
// L = sum(dO * out)). Throws plx::Error for invalid problems/inputs (as the reference does),
// plx::NumericalError where the emulated arithmetic cannot proceed (a ridge system singular in the
// working precision). Decode problems are forward only.
EmulationResult emulate(const Problem& problem, const Inputs& inputs, const Profile& profile, bool backward);

// Named profiles (docs/emulation.md): exact-fp32, exact-fp64, fp32-stream, flash-bf16, flash-fp16,
// flash-bf16-t32, parallax-triton-bf16, lla-bf16, ideal-fp64 (every rounding point off, fp64).
const std::vector<std::string>& profile_names();
// The named profile; plx::Error listing the known names for an unknown one.
const Profile& profile_by_name(const std::string& name);
// A profile whose rounding points are all None with fp64 accumulation, in the streaming engine:
// equals the double reference to rounding (a test identity).
Profile ideal_profile();
// Parse a format name: none, fp32 (f32, float32), tf32, bf16 (bfloat16), fp16 (f16, float16, half).
RoundFmt round_fmt_from_string(const std::string& s);

// The check's same-precision baseline from a named profile (`plx check --baseline NAME`): the
// emulation's out and gradients (dq, dk, dv, dr, dlambda when `gradients`), each then rounded to the
// candidate dtype X. An empty name is the historical rule (same_precision_baseline in check.hpp:
// the float32 reference for fp32/bf16/fp16 candidates, float64 for float64 ones). If the profile's
// arithmetic cannot proceed (a ridge system singular in fp32) the historical rule is used instead,
// *fell_back is set as that rule sets it, and the note says so. `note` says what was emulated.
std::map<std::string, Tensor<double>> profile_baseline(const Problem& p, const Inputs& in, DType X, bool gradients,
                                                       const std::string& profile, std::string* note,
                                                       bool* fell_back = nullptr);

}  // namespace plx
