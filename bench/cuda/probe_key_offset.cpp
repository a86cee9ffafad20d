// bench/cuda/probe_key_offset.cpp — is the CUDA backward invariant to a common key offset?
//
// Charter: a measurement, not a test (run by hand on the device, docs/gpu-results.md). Outputs
// and gradients of Parallax are exactly invariant to k_j -> k_j + w for all keys (the offset
// adds the row constant tau q.w to the logits and r.w to every z_j). So a kernel's gradient
// error on keys with a large common offset (gen z_cancel, offset c u) should match its error on
// the same problem with the offset removed. This prints, for the CUDA backward (bf16, causal,
// B = 1, Hq = 2, Hkv = 1, L = 256, D = 128) and for c in {64, 256}, the normwise relative error
// of out, dq, dk, dv, dr against the double reference on (a) the z_cancel inputs and (b) the
// same inputs with each kv head's key mean subtracted (rounded back to bf16, truth recomputed),
// and the ratio (a) / (b). The fast CPU backward had ratio ~6-19 for dr before it centred the
// keys (docs/performance-fast.md). Measured on the H200 (30 Nov 2026, docs/gpu-results.md): dq
// 7.1x / 28x, dr 6.6x / 27x at offsets 64 / 256; out, dk, dv 0.95-1.05x.
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
  for (double c : {64.0, 256.0}) {
    Problem p;
    set_member(p, "parallax");
    p.B = 1, p.Hq = 2, p.Hkv = 1, p.Lq = p.Lkv = 256, p.D = p.Dv = 128, p.dtype = DType::BF16, p.seed = 11;
    p.gen = InputGen::ZCancel, p.gen_param = c;
    const Inputs a = make_inputs(p);
    Inputs z = a;  // keys centred per (b, kv head), rounded back to bf16
    for (int b = 0; b < p.B; ++b)
      for (int g = 0; g < p.Hkv; ++g)
        for (int d = 0; d < p.D; ++d) {
          double m = 0;
          for (int j = 0; j < p.Lkv; ++j) m += a.k(b, j, g, d);
          m /= p.Lkv;
          for (int j = 0; j < p.Lkv; ++j) z.k(b, j, g, d) = round_to(p.dtype, a.k(b, j, g, d) - m);
        }
    double e[2][5];
    int k = 0;
    for (const Inputs* in : {static_cast<const Inputs*>(&a), static_cast<const Inputs*>(&z)}) {
      const auto F = attention_forward<double>(p, *in);
      const auto G = attention_backward<double>(p, *in);
      const CandidateResult r = cuda::backward(p, *in);
      e[k][0] = rel(r.out, F.out), e[k][1] = rel(r.dq, G.dq), e[k][2] = rel(r.dk, G.dk), e[k][3] = rel(r.dv, G.dv);
      e[k][4] = rel(r.dr, G.dr);
      ++k;
    }
    const char* n[] = {"out", "dq", "dk", "dv", "dr"};
    std::printf("{\"offset\": %g", c);
    for (int t = 0; t < 5; ++t)
      std::printf(", \"%s\": {\"offset_err\": %.3e, \"centred_err\": %.3e, \"ratio\": %.2f}", n[t], e[0][t], e[1][t],
                  e[1][t] > 0 ? e[0][t] / e[1][t] : 0.0);
    std::printf("}\n");
  }
  return 0;
}
