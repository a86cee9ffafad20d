// kernels/cuda_api.hpp — host API of the plx CUDA kernels (sm_90, bf16/fp16, fp32 accumulation).
//
// Charter: `available` / `supports` / `forward` are what the plx tool and the tests call:
// forward() uploads the Inputs (which must be exact in the problem's dtype), poisons the outputs
// (0xFF = NaN), runs the decode kernel (Lq = 1: split-KV flash-decoding, GQA group per
// block) or the prefill forward (mma.sync m16n8k16), and returns the outputs plus the
// saved per-row tensors. `check_params` is the argument validation every launch runs
// first; it needs no device, so CPU-only CI tests it. Bad input is a plx::Error thrown
// before any launch. LLA problems are forwarded to kernels/lla_api.hpp; the backward is
// kernels/backward_api.hpp. Not here: learned probes with the query anchor.
#pragma once
#include <string>

#include "kernels/launch.hpp"
#include "kernels/options.hpp"
#include "reference/inputs.hpp"
#include "reference/problem.hpp"
#include "reference/candidate.hpp"

namespace plx::cuda {

// A usable CUDA device is present (false with the reason otherwise; never throws).
bool available(std::string* why_not);

// The kernels implement this problem: softmax or Parallax (learned probe, key-mean anchor;
// either formulation, both computed as the shifted closed form of docs/math.md §7.1), dtype bf16 or
// fp16, D = Dv in {64, 128}, Hq % Hkv == 0 (decode: group G = Hq/Hkv <= 16). LLA (solver probe)
// problems are routed to kernels/lla_api.hpp (lla_supports / lla_forward).
bool supports(const Problem& p, std::string* why_not);

// Run the problem on the device. Throws plx::Error if !supports or !available, or if an input
// is not exactly representable in the dtype. Returns out (and saved: lse, m, omega, zbar, vbar)
// widened to double. LLA problems go to lla_forward with default options (plx::NumericalError
// for a singular direct solve).
CandidateResult forward(const Problem& p, const Inputs& in, const RunOptions& opt = {});

}  // namespace plx::cuda
