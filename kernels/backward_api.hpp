// kernels/backward_api.hpp — Problem/Inputs-level API of the CUDA backward (sm_90, bf16/fp16).
//
// Charter: `supports_backward` says whether the kernels take a problem; `backward` uploads the
// Inputs (which must be exact in the problem's dtype), runs the CUDA prefill forward (saving
// out, vbar, lse, m, d1, zbar), poisons the gradient buffers (0xFF = NaN), runs the
// deterministic CUDA backward (kernels/parallax_backward.cu) with the inputs' dO, and returns
// everything widened to double: out, dq, dk, dv, dr and, in `saved`, the forward's vbar, lse,
// m, omega (= d1), zbar and the backward's per-row t = <dO,out>, b = <dO,vbar>. Params-level
// entry points (check_backward_params, launch_backward) are in kernels/backward_launch.hpp.
// Not here: LLA (solver probes), query anchors, decode (forward only, docs/math.md §6.1).
#pragma once
#include <string>

#include "kernels/backward_launch.hpp"
#include "kernels/options.hpp"
#include "reference/inputs.hpp"
#include "reference/problem.hpp"
#include "reference/candidate.hpp"

namespace plx::cuda {

// The backward kernels implement this problem: softmax or Parallax (learned probe, key-mean
// anchor), not a decode step, dtype bf16 or fp16, D = Dv in {64, 128}, Hq % Hkv == 0, grid limits.
bool supports_backward(const Problem& p, std::string* why_not);

// Forward + backward on the device for L = sum(dO * out) with dO = in.dO. Throws plx::Error if
// !supports_backward (before any CUDA call) or no device is available.
CandidateResult backward(const Problem& p, const Inputs& in, const RunOptions& opt = {});

}  // namespace plx::cuda
