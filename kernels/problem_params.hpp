// kernels/problem_params.hpp — a Problem's tensors on the device and the AttnParams over them.
//
// Charter: the one marshalling of Problem + Inputs into the forward's device buffers (inputs
// uploaded exactly, outputs and saved rows poisoned) and its AttnParams (dense heads-last
// strides, shapes, mask, dtype, mechanism), shared by cuda::forward and cuda::backward (which
// runs the same forward first), and the download of what the forward saved. Host compiler only.
#pragma once
#include "kernels/host_io.hpp"
#include "kernels/params.hpp"
#include "reference/candidate.hpp"

namespace plx::cuda {

struct ForwardBuffers {
  io::DevBuf q, r, k, v;                // inputs (r only for a learned probe)
  io::DevBuf out, vbar;                 // [B, Lq, Hq, Dv] in the dtype, poisoned
  io::DevBuf lse, m, d1, zbar;          // [B, Hq, Lq] fp32, poisoned
  io::DevBuf start, used;               // per-batch mask bounds, empty = defaults
};
ForwardBuffers upload_forward(const Problem& pr, const Inputs& in, const char* who);
AttnParams make_attn_params(const Problem& pr, const ForwardBuffers& b);
// out and saved vbar, lse, m, omega (= d1) and, for Parallax, zbar, widened to double.
void download_forward(const Problem& pr, const ForwardBuffers& b, CandidateResult& res);

}  // namespace plx::cuda
