// tests/support.hpp — helpers shared by every test: seed, repeat count, rapidcheck
// generators for problems with edge shapes, and error helpers.
#pragma once
#include <rapidcheck.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "reference/problem.hpp"
#include "reference/tensor.hpp"

namespace plx::test {

// Largest row norm of a [.., D] tensor.
inline double max_row_norm(const Tensor<double>& t) {
  const std::size_t w = t.shape.back();
  double m = 0;
  for (std::size_t o = 0; o < t.size(); o += w) {
    double ss = 0;
    for (std::size_t d = 0; d < w; ++d) ss += t.data[o + d] * t.data[o + d];
    m = std::max(m, std::sqrt(ss));
  }
  return m;
}

inline std::uint64_t seed() {
  const char* s = std::getenv("PLX_SEED");
  return s ? std::strtoull(s, nullptr, 10) : 20261129ull;
}
inline int repeat() {
  const char* s = std::getenv("PLX_REPEAT");
  return s ? std::atoi(s) : 40;
}

// Edge lengths the style guide asks for, plus small random ones.
inline rc::Gen<int> gen_length() {
  return rc::gen::weightedOneOf<int>({{4, rc::gen::element(1, 2, 3, 7, 63, 64, 65)}, {3, rc::gen::inRange(1, 20)}});
}
inline rc::Gen<int> gen_dim() { return rc::gen::element(1, 2, 3, 4, 5, 7, 8, 16); }

// One of the docs/math.md §7 hazard generators (every InputGen except Normal), with its default knob
// (reference/inputs.hpp default_gen_param): rms-normalised rows, cond(cov k) = 1e4, outlier
// tokens x30, an attention sink, near-duplicate keys, logits x8, a large common offset of z,
// and z - zbar cancelling (zbar / sigma_z ~ 57).
inline rc::Gen<InputGen> gen_hazard() {
  return rc::gen::element(InputGen::RmsNorm, InputGen::Anisotropic, InputGen::Outliers, InputGen::Sink,
                          InputGen::NearDuplicate, InputGen::LargeScale, InputGen::LargeR, InputGen::ZCancel);
}

// A random problem of the given member with small edge shapes, GQA, windows, padding
// and empty rows. Sizes are kept small so 50/100-digit arithmetic stays fast.
inline rc::Gen<Problem> gen_problem(const std::string& member, int max_len = 65) {
  return rc::gen::exec([member, max_len] {
    Problem p;
    set_member(p, member);
    p.B = *rc::gen::inRange(1, 3);
    p.Hkv = *rc::gen::inRange(1, 3);
    p.Hq = p.Hkv * *rc::gen::element(1, 2, 3);
    p.Lq = std::min(max_len, *gen_length());
    p.Lkv = std::min(max_len, *gen_length());
    p.D = *gen_dim();
    p.Dv = *rc::gen::element(p.D, 1, 3, 6);
    p.causal = *rc::gen::weightedOneOf<bool>({{3, rc::gen::just(true)}, {1, rc::gen::just(false)}});
    p.window = *rc::gen::weightedOneOf<int>({{3, rc::gen::just(-1)}, {1, rc::gen::inRange(0, 9)}});
    if (*rc::gen::weightedOneOf<bool>({{3, rc::gen::just(false)}, {1, rc::gen::just(true)}})) {
      p.start.resize(p.B), p.used.resize(p.B);
      for (int b = 0; b < p.B; ++b) {
        p.used[b] = *rc::gen::inRange(0, p.Lkv + 1);
        p.start[b] = *rc::gen::inRange(0, p.used[b] + 1);
      }
    }
    p.solver.lambda = *rc::gen::element(0.05, 0.3, 1.0, 4.0);
    p.solver.lambda_per_row = *rc::gen::arbitrary<bool>();
    p.seed = *rc::gen::inRange<std::uint64_t>(0, 1u << 30);
    return p;
  });
}

}  // namespace plx::test
