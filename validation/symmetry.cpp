// validation/symmetry.cpp — see symmetry.hpp.
#include "validation/symmetry.hpp"

#include <numeric>


namespace plx {
namespace {
std::vector<std::size_t> shuffled(std::size_t n, std::uint64_t seed) {
  std::vector<std::size_t> p(n);
  std::iota(p.begin(), p.end(), std::size_t(0));
  std::uint64_t s = seed;
  auto next = [&] {  // splitmix64: portable, so the permutation is the same on every platform
    s += 0x9e3779b97f4a7c15ull;
    std::uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  for (std::size_t i = n; i > 1; --i) std::swap(p[i - 1], p[next() % i]);
  return p;
}
// x'[..., j] = x[..., perm[j]] along the last axis.
Tensor<double> permute_last(const Tensor<double>& x, const std::vector<std::size_t>& perm) {
  if (x.empty() || x.shape.empty() || x.shape.back() != perm.size()) return x;
  Tensor<double> y = x;
  const std::size_t n = perm.size();
  for (std::size_t o = 0; o < x.size(); o += n)
    for (std::size_t j = 0; j < n; ++j) y.data[o + j] = x.data[o + perm[j]];
  return y;
}
Tensor<double> unpermute_last(const Tensor<double>& y, const std::vector<std::size_t>& perm) {
  if (y.empty() || y.shape.empty() || y.shape.back() != perm.size()) return y;
  Tensor<double> x = y;
  const std::size_t n = perm.size();
  for (std::size_t o = 0; o < y.size(); o += n)
    for (std::size_t j = 0; j < n; ++j) x.data[o + perm[j]] = y.data[o + j];
  return x;
}
}  // namespace

FeaturePerm feature_permutation(const Problem& p, unsigned variant) {
  FeaturePerm f;
  if (variant == 0) {
    f.d.resize(p.D), f.dv.resize(p.Dv);
    std::iota(f.d.begin(), f.d.end(), std::size_t(0));
    std::iota(f.dv.begin(), f.dv.end(), std::size_t(0));
    return f;
  }
  const std::uint64_t s = p.seed * 0x2545f4914f6cdd1dull + variant;
  // A block-diagonal solve (LLA with solver.block < D) couples features only inside each
  // block: only permutations within blocks are symmetries there.
  const std::size_t bs = p.probe == Probe::Solver ? std::size_t(p.block_size()) : std::size_t(p.D);
  f.d.resize(p.D);
  for (std::size_t b0 = 0; b0 < std::size_t(p.D); b0 += bs) {
    const auto blk = shuffled(bs, s + b0);
    for (std::size_t j = 0; j < bs; ++j) f.d[b0 + j] = b0 + blk[j];
  }
  f.dv = shuffled(p.Dv, s ^ 0xa5a5a5a5a5a5a5a5ull);
  return f;
}

Inputs permute_inputs(const Inputs& in, const FeaturePerm& f) {
  Inputs o = in;
  o.q = permute_last(in.q, f.d), o.k = permute_last(in.k, f.d), o.r = permute_last(in.r, f.d);
  o.v = permute_last(in.v, f.dv), o.dO = permute_last(in.dO, f.dv);
  return o;
}

std::map<std::string, Tensor<double>> unpermute_outputs(std::map<std::string, Tensor<double>> t, const FeaturePerm& f) {
  for (auto& [n, x] : t) {
    if (n == "out" || n == "dv") x = unpermute_last(x, f.dv);
    else if (n == "dq" || n == "dk" || n == "dr") x = unpermute_last(x, f.d);
  }
  return t;
}

}  // namespace plx
