// bench/cuda/probe_key_offset.cpp — is the CUDA backward invariant to a common key offset?
//
// Charter: a measurement, not a test (run on the device; the test is CudaBackward.KeyOffsetInvariance).
// Outputs and gradients are exactly invariant to k_j -> k_j + w for all keys (the offset adds the
// row constant tau q.w to the logits and r.w to every z_j). So a kernel's error on keys with a
// large common offset should match its error without it. The probe is the one
// probe_key_offset_torch.py runs on torch SDPA's backwards: bf16, causal, B = 1, H = 8, L = 1024,
// D = 128, q, k, v, dO normal, keys + c u (u a fixed unit vector, re-rounded to bf16), c in
// {0, 16, 64, 256, 1024}; errors are normwise relative against the double reference backward
// computed from the INPUTS, and the ratio is err(c) / err(0). Softmax (torch's comparison) and
// Parallax (r normal), each with the mma_sync and wgmma backward kernels. One JSON line per case.
// History: before dq / dr were formed against a key reference, this measured dq 7.1x / 28x and
// dr 6.6x / 27x at offsets 64 / 256 on the H200 (docs/gpu-results.md's git history has the
// table and the two attempts that were reverted because the tests' truth came from the saved
// tensors, which share the defect).
#include <cmath>
#include <cstdio>
#include <string>

#include "kernels/backward_api.hpp"
#include "kernels/cuda_api.hpp"
#include "reference/attention.hpp"  // forward<double> and backward<double>, instantiated here
#include "reference/backward.hpp"

using namespace plx;

static double rel(const Tensor<double>& a, const Tensor<double>& t) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < t.size(); ++i) num += (a.data[i] - t.data[i]) * (a.data[i] - t.data[i]), den += t.data[i] * t.data[i];
  return den > 0 ? std::sqrt(num / den) : 0.0;
}

int main() {
  std::string why;
  if (!cuda::available(&why)) {
    std::printf("{\"skipped\": \"%s\"}\n", why.c_str());
    return 0;
  }
  const char* names[] = {"out", "dq", "dk", "dv", "dr"};
  for (const char* member : {"softmax", "parallax"})
    for (cuda::BackwardKernel kern : {cuda::BackwardKernel::Wgmma, cuda::BackwardKernel::MmaSync}) {
      Problem p;
      set_member(p, member);
      p.B = 1, p.Hq = p.Hkv = 8, p.Lq = p.Lkv = 1024, p.D = p.Dv = 128, p.dtype = DType::BF16, p.seed = 11;
      p.gen = InputGen::Normal;
      const Inputs base = make_inputs(p);
      std::vector<double> u(p.D);
      double nu = 0;
      for (int d = 0; d < p.D; ++d) u[d] = std::sin(1.0 + 0.37 * d), nu += u[d] * u[d];
      for (double& x : u) x /= std::sqrt(nu);
      cuda::RunOptions o;
      o.backward = kern;
      double e0[5] = {};
      for (double c : {0.0, 16.0, 64.0, 256.0, 1024.0}) {
        Inputs in = base;
        for (std::size_t i = 0; i < in.k.size(); ++i) in.k.data[i] = round_to(p.dtype, base.k.data[i] + c * u[i % p.D]);
        const auto F = attention_forward<double>(p, in);
        const auto G = attention_backward<double>(p, in);
        const CandidateResult r = cuda::backward(p, in, o);
        double e[5] = {rel(r.out, F.out), rel(r.dq, G.dq), rel(r.dk, G.dk), rel(r.dv, G.dv),
                       p.probe == Probe::Learned ? rel(r.dr, G.dr) : 0.0};
        if (c == 0)
          for (int t = 0; t < 5; ++t) e0[t] = e[t];
        std::printf("{\"probe\": \"key_offset\", \"backend\": \"plx_%s\", \"member\": \"%s\", \"offset\": %g", cuda::name(kern),
                    member, c);
        for (int t = 0; t < 5; ++t) {
          if (t == 4 && p.probe != Probe::Learned) continue;
          std::printf(", \"%s\": {\"err\": %.3e, \"ratio\": %.2f}", names[t], e[t], e0[t] > 0 ? e[t] / e0[t] : 0.0);
        }
        std::printf("}\n");
        std::fflush(stdout);
      }
    }
  return 0;
}
