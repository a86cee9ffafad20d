// fast/fast.hpp — the optimised CPU path: flash-style softmax / Parallax / LLA on OpenMP.
//
// Charter: public entry points used by the `plx` tool and the tests. Inputs arrive as
// plx::Inputs (doubles exactly representable in p.dtype) and are converted once to the
// kernel's storage (F32: float, BF16: uint16 bf16 bits, F64: double = debug mode);
// accumulation is fp32 (fp64 in debug mode); the bf16 forward's products run on AMX where
// present (forward_kernel()). Outputs are widened to double; in BF16 mode `out` is rounded to bf16 like a
// bf16 kernel's output (gradients stay fp32).
// Not here: block-diagonal LLA solves, fp16 inputs, LLA backward (supports() says why).
// LLA: solver.method direct (fp64 Cholesky on C + lambda I) or cg / jacobi_cg (docs/math.md §3.7,
// the reference's iteration; saved cg_iters, cg_residual, cg_converged per row [B,Hq,Lq]).
// Shapes: q, r [B,Lq,Hq,D]; k [B,Lkv,Hkv,D]; v [B,Lkv,Hkv,Dv]; out, dO [B,Lq,Hq,Dv].
#pragma once
#include <cstdint>
#include <string>

#include "reference/inputs.hpp"
#include "reference/problem.hpp"
#include "reference/candidate.hpp"

namespace plx::fast {

// true if forward() handles p; otherwise false and *why_not (if given) says why.
bool supports(const Problem& p, std::string* why_not);
// true if backward() handles p (softmax and Parallax only).
bool supports_backward(const Problem& p, std::string* why_not);

// Forward in p.dtype. saved: m (natural units), lse, omega (= d1), zbar, vbar, probe.
// Throws plx::Error (bad shapes, NaN/Inf, unsupported problem) and plx::NumericalError
// (LLA: C + lambda I not positive definite in the working precision).
CandidateResult forward(const Problem& p, const Inputs& in);
// Forward plus dq, dk, dv, dr (dr only for Parallax) for the upstream gradient in.dO.
CandidateResult backward(const Problem& p, const Inputs& in);

// Name of the micro-kernel set chosen at run time ("avx512" or "generic").
std::string isa();
// Force the generic (portable) kernels even where AVX-512 exists (tests, benchmarks).
void force_generic(bool on);
// The kernel set of the forward for storage dtype dt: "amx" for bf16 where CPUID and the OS
// allow it (all four products on TDPBF16PS tiles; the fp32 probe and weights as exact bf16
// pieces, fast/amx_tiles.hpp), else the FMA kernels "avx512" / "generic" (bf16 widened to fp32
// at tile load). fp32, fp64 (debug mode) and every backward use the FMA kernels.
std::string forward_kernel(DType dt);
// Force the FMA kernels for the bf16 forward even where AMX exists (tests, benchmarks).
void force_fma(bool on);

// ---- Lower-level pointer API (canonical contiguous layouts, see the shape legend) ----
// S = storage type of q, k, v, dO (float, std::uint16_t = bf16 bits, double);
// A = accumulation type (float, or double for S = double). r / probe rows are in A.
template <class S, class A> struct FwdArgs {
  const Problem* p = nullptr;   // shapes, mask (row_range), tau
  const S* q = nullptr;         // [B,Lq,Hq,D]
  const A* r = nullptr;         // [B,Lq,Hq,D] probe per row (Parallax r or LLA theta); null = softmax
  const S* k = nullptr;         // [B,Lkv,Hkv,D]
  const S* v = nullptr;         // [B,Lkv,Hkv,Dv]
  A* out = nullptr;             // [B,Lq,Hq,Dv]
  A* vbar = nullptr;            // [B,Lq,Hq,Dv]  optional
  A* m2 = nullptr;              // [B,Hq,Lq] optional: row max of s * log2(e) (base-2 units)
  A* d1 = nullptr;              // [B,Hq,Lq] optional: omega = sum_j 2^(s2_j - m2)
  A* zbar = nullptr;            // [B,Hq,Lq] optional: zbar = sum_j p_j z_j (unshifted)
  A* z0 = nullptr;              // [B,Hq,Lq] optional: the final shift (docs/math.md §7.1; the running p-weighted mean of z)
  A* zbar_shifted = nullptr;    // [B,Hq,Lq] optional: d2/d1 = sum_j p_j (z_j - z0)
};
template <class S, class A> struct BwdArgs {
  const Problem* p = nullptr;
  const S *q = nullptr, *k = nullptr, *v = nullptr, *dO = nullptr;
  const A* r = nullptr;                      // null = softmax
  const A *out = nullptr, *vbar = nullptr;   // saved [B,Lq,Hq,Dv]
  const A *m2 = nullptr, *d1 = nullptr, *zbar = nullptr;  // saved [B,Hq,Lq]
  A *dq = nullptr, *dk = nullptr, *dv = nullptr, *dr = nullptr;  // outputs (dr null for softmax)
};
template <class S, class A> void attention_forward_tiles(const FwdArgs<S, A>& a);
template <class S, class A> void attention_backward_tiles(const BwdArgs<S, A>& a);

}  // namespace plx::fast
