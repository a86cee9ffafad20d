// tests/sanitize/tsan_fast.cpp — the fast CPU path's OpenMP loops under ThreadSanitizer.
//
// Built by .ci/sanitize.sh with clang-14, -fsanitize=thread and LLVM's OpenMP runtime with
// its Archer tool (OMP_TOOL_LIBRARIES=libarcher.so), which tells TSan about OpenMP's
// barriers, tasks and reductions. (GCC's libgomp synchronises through futexes TSan cannot
// see, so a GCC build reports every barrier as a race; helgrind and DRD have the same
// problem with libgomp unless it is rebuilt without futexes.) Small problems of every
// member, forward and backward, in fp32, bf16 and fp64, with 4 threads; the result must also
// be bit-identical to a 1-thread run (the house rule), so a race that changes a value fails
// here even where TSan's sampling misses it. Exit 0 when clean.
#include <omp.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "fast/fast.hpp"
#include "reference/inputs.hpp"

using namespace plx;

namespace {
bool same(const Tensor<double>& a, const Tensor<double>& b) {
  return a.shape == b.shape && std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(double)) == 0;
}
}  // namespace

int main() {
  int bad = 0, runs = 0;
  for (const char* m : {"softmax", "parallax", "parallax_centred", "learned_query", "lla", "lla_cov"})
    for (DType dt : {DType::F32, DType::BF16, DType::F64}) {
      Problem p;
      p.name = std::string("tsan_") + m;
      set_member(p, m);
      p.B = 2, p.Hq = 4, p.Hkv = 2, p.Lq = 70, p.Lkv = 70, p.D = 16, p.Dv = 16, p.causal = true, p.dtype = dt, p.seed = 7;
      p.solver.lambda = 0.5;
      std::string why;
      if (!fast::supports(p, &why)) continue;
      const Inputs in = make_inputs(p);
      const bool bwd = fast::supports_backward(p, nullptr);
      auto run = [&](int threads) {
        omp_set_num_threads(threads);
        return bwd ? fast::forward_backward(p, in) : fast::forward(p, in);
      };
      const CandidateResult a = run(4), b = run(1);
      ++runs;
      const bool ok = same(a.out, b.out) && same(a.dq, b.dq) && same(a.dk, b.dk) && same(a.dv, b.dv) && same(a.dr, b.dr);
      if (!ok) {
        ++bad;
        std::printf("tsan_fast: %s %s: 4 threads differ from 1 thread\n", m, to_string(dt).c_str());
      }
    }
  std::printf("tsan_fast: %d runs (forward%s), %d thread-count mismatches\n", runs, " + backward where supported", bad);
  return bad == 0 && runs > 0 ? 0 : 1;
}
