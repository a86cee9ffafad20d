// kernels/lla_api.hpp — host API of the LLA CUDA kernels (sm_90, bf16/fp16, fp32 state).
//
// Charter: params level (check_lla_params, launch_lla, lla_decode_num_splits; C++17-safe, the
// benchmarks use it) and Problem level (lla_supports, lla_forward: rounds nothing, uploads the
// dtype-exact Inputs, poisons every output with NaN, launches, checks every CUDA call, widens
// the results to double). Bad input is a plx::Error thrown before any CUDA call; a row whose
// fp32 direct solve finds C + lambda I singular is a plx::NumericalError after the launch, as
// in reference/ and fast/ (LlaRunOptions::throw_on_singular = false returns it as a status).
// Formulation (docs/math.md §3.5, §7.3, §7.4): the output is always assembled in the covariance form
//   out = a * vbar - b * sum_j p_j (r.(k_j - kbar)) (v_j - vbar)
// with (r, a, b) = (theta, 1, 1) for the key-mean anchor and (rho, omega (1 - rho.delta)/d,
// omega/d) for the query anchor, so no `1 - rho.e_j` or `O1 (1 + c) - O2` cancellation occurs;
// direct solves always factor C + lambda I (never the worse-conditioned Sigma).
// Not here: backward, block-diagonal solves, Dv != D.
#pragma once
#include <string>

#include "kernels/lla_params.hpp"
#include "kernels/options.hpp"  // LlaRunOptions

namespace plx {  // reference/candidate.hpp (C++20); declared here so C++17 benchmarks can include this header
struct Problem;
struct Inputs;
struct CandidateResult;
template <class T> struct Tensor;
}  // namespace plx

namespace plx::cuda {

// Argument validation of one launch (no device needed). Throws plx::Error naming the field.
// Op::Decode: Lq = 1, any solver; Op::Forward: any Lq, CG or JacobiCG only (matrix-free).
void check_lla_params(const LlaParams& p, Op op);

// Validate, then launch asynchronously on `stream` (cudaStream_t; null = default stream).
// Every CUDA call and launch is checked (plx::Error with the CUDA message).
void launch_lla(const LlaParams& p, Op op, void* stream = nullptr);

// Split count of the decode for these shapes (>= 1), given the SM count.
int lla_decode_num_splits(const LlaParams& p, int num_sms);

// The kernels implement this problem: solver probe (LLA), full solve (block = D), either
// anchor, Direct/CG/JacobiCG, bf16 or fp16, D = Dv in {64, 128}; decode (Lq = 1): group
// Hq/Hkv <= 16; prefill (Lq > 1): CG or JacobiCG only.
bool lla_supports(const Problem& p, std::string* why_not);

// Run the problem. Returns out and saved: lse, omega, probe, cg_iters, status (LlaStatus per
// row, widened to double). Throws plx::Error if unsupported or no device, and (unless
// opt.throw_on_singular is false) plx::NumericalError if any row's direct solve was singular
// (lla_throw_if_singular). Not-converged / non-finite CG rows are reported in status, not thrown
// (docs/math.md §7.5, like the reference).
CandidateResult lla_forward(const Problem& p, const Inputs& in, const LlaRunOptions& opt = {});

// Throws plx::NumericalError naming the first row (b, h, i) of a [B, Hq, Lq] status tensor (the
// saved "status" of lla_forward) that is kLlaSingular, and how many are; returns otherwise.
void lla_throw_if_singular(const Tensor<double>& status);

namespace detail {  // kernels/lla.cu; params assumed validated; return a cudaError_t as int
int launch_lla_decode(const LlaParams& p, void* stream);
int launch_lla_forward(const LlaParams& p, void* stream);
int lla_decode_smem_max(int D);  // largest dynamic shared memory (bytes) of the decode kernels
}  // namespace detail

}  // namespace plx::cuda
