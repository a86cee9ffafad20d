// tests/validation/test_symmetry.cpp — no false verdicts: every rule's verdict on a correct
// fp32 implementation under exact symmetries, on every committed golden fixture.
//
// A correct implementation run on symmetrically transformed inputs (validation/symmetry.hpp:
// the feature axis D of q, k, r permuted together, the value axis Dv of v, dO; for fixtures
// whose member is order-invariant over keys — no causal mask, no window, no padding — the
// key order too) and mapped back is as correct as on the inputs as given: only its rounding
// changes. Each such run is checked against the fixture by the real rules (check_candidate,
// default options); every judged tensor must sit at <= 0.7 of its limit, so that a correct
// kernel cannot fail by the luck of its summation order. The permutations here (variants
// 101...) are not the ones the rule itself samples (1...3). Implementations: the fp32 reference
// (plx's straightforward fp32 path: the same algorithm as the truth, in float) and the fast
// CPU path where it supports the fixture. Tensors without a sound rule are "not judged" and
// counted. The worst error/limit per fixture is printed (docs/reliability.md quotes it).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "reference/all.hpp"
#include "validation/candidates.hpp"
#include "validation/check.hpp"
#include "validation/symmetry.hpp"

using namespace plx;

namespace {
constexpr double kMargin = 0.7;  // a correct implementation's error/limit under any symmetric variant
constexpr int kVariants = 4;     // feature-axis permutations per implementation (plus key order where allowed)

std::filesystem::path golden_dir() {
  const char* src = std::getenv("PLX_SOURCE_DIR");
  return std::filesystem::path(src ? src : ".") / "fixtures" / "golden";
}

// Keys are exchangeable (every row sees every key): permuting k and v rows together is exact.
bool key_order_invariant(const Problem& p) { return !p.causal && p.window < 0 && p.start.empty() && p.used.empty(); }

// Permute the key axis (axis 1 of k, v; dk, dv back).
std::vector<std::size_t> key_perm(const Problem& p, unsigned v) {
  std::vector<std::size_t> k(p.Lkv);
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = i;
  std::uint64_t s = p.seed + 977 * v;
  for (std::size_t i = k.size(); i > 1; --i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    std::swap(k[i - 1], k[(s >> 33) % i]);
  }
  return k;
}
Tensor<double> permute_axis1(const Tensor<double>& x, const std::vector<std::size_t>& perm, bool inverse) {
  Tensor<double> y = x;
  const std::size_t B = x.shape[0], L = x.shape[1], inner = x.size() / (B * L);
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t j = 0; j < L; ++j) {
      const std::size_t dst = inverse ? perm[j] : j, src = inverse ? j : perm[j];
      std::copy_n(&x.data[(b * L + src) * inner], inner, &y.data[(b * L + dst) * inner]);
    }
  return y;
}

std::map<std::string, CandidateTensor> fp32_reference(const Problem& p, const Inputs& in, bool grads) {
  std::map<std::string, CandidateTensor> r;
  const DType out_dt = p.dtype;
  const DType g_dt = p.dtype == DType::F64 ? DType::F64 : DType::F32;
  bool fb = false;
  auto o = same_precision_baseline(p, in, out_dt, false, nullptr, &fb);
  if (fb) throw NumericalError("the fp32 reference cannot run here");
  r["out"] = {o.at("out"), out_dt};
  if (grads) {
    auto g = same_precision_baseline(p, in, g_dt, true, nullptr, &fb);
    if (fb) throw NumericalError("the fp32 reference cannot run here");
    for (auto& [n, t] : g)
      if (n != "out") r[n] = {t, g_dt};
  }
  return r;
}
}  // namespace

TEST(Symmetry, CorrectFp32ImplementationsPassWithMarginUnderEverySymmetry) {
  std::ifstream mf(golden_dir() / "manifest.json");
  ASSERT_TRUE(mf) << "missing manifest in " << golden_dir();
  const nlohmann::json manifest = nlohmann::json::parse(mf);
  int fixtures = 0, runs = 0, judged = 0, not_judged = 0, skipped = 0;
  double worst_all = 0;
  std::string worst_where;
  for (auto it = manifest["files"].begin(); it != manifest["files"].end(); ++it) {
    const std::string path = (golden_dir() / it.key()).string();
    const FixtureData fx = read_fixture(path);
    ++fixtures;
    std::vector<std::string> impls = {"fp32-reference"};
#ifdef PLX_HAVE_FAST
    if (candidate_supports("fast", fx.p, nullptr)) impls.push_back("fast");
#endif
    double worst_fx = 0;
    std::string worst_fx_where;
    for (const auto& impl : impls) {
      // Variants: feature permutations 101.., and key-order permutations where exact.
      std::vector<std::pair<std::string, unsigned>> variants;
      for (int v = 0; v < kVariants; ++v) variants.push_back({"features", 101u + unsigned(v)});
      if (key_order_invariant(fx.p))
        for (int v = 0; v < 2; ++v) variants.push_back({"keys", 201u + unsigned(v)});
      for (const auto& [kind, v] : variants) {
        FeaturePerm f = feature_permutation(fx.p, kind == "features" ? v : 0);
        Inputs in = permute_inputs(fx.in, f);
        std::vector<std::size_t> kp;
        if (kind == "keys") {
          kp = key_perm(fx.p, v);
          in.k = permute_axis1(in.k, kp, false), in.v = permute_axis1(in.v, kp, false);
        }
        Candidate c;
        c.label = impl + ":" + kind + std::to_string(v);
        try {
          if (impl == "fast") {
            const CandidateResult r = run_candidate("fast", fx.p, in);
            c = candidate_from_result(c.label, r, fx.p, candidate_dtypes("fast", fx.p));
          } else {
            c.tensors = fp32_reference(fx.p, in, fx.truth.size() > 1);
          }
        } catch (const NumericalError&) {
          ++skipped;  // this implementation cannot run this fixture at all (e.g. a singular fp32 solve)
          continue;
        }
        for (auto t = c.tensors.begin(); t != c.tensors.end();)  // only tensors with truth
          t = fx.truth.count(t->first) ? std::next(t) : c.tensors.erase(t);
        // Map back: key order first (it was applied last), then the feature axes.
        std::map<std::string, Tensor<double>> vals;
        for (auto& [n, t] : c.tensors) vals[n] = t.values;
        if (kind == "keys")
          for (const char* n : {"dk", "dv"})
            if (vals.count(n)) vals[n] = permute_axis1(vals[n], kp, true);
        vals = unpermute_outputs(std::move(vals), f);
        for (auto& [n, t] : c.tensors) t.values = vals[n];
        const CheckResult res = check_candidate(path, fx, c);
        ++runs;
        for (const auto& rep : res.reports) {
          if (!rep.judged) {
            ++not_judged;
            continue;
          }
          ++judged;
          const std::string where = it.key() + " " + impl + " " + kind + std::to_string(v) + " " + rep.name;
          if (rep.worst_limit_ratio > worst_fx) worst_fx = rep.worst_limit_ratio, worst_fx_where = where;
          EXPECT_LE(rep.worst_limit_ratio, kMargin) << where << "\n" << res.format();
        }
      }
    }
    std::cout << "symmetry: " << it.key() << ": worst error/limit " << worst_fx << " (" << worst_fx_where << ")\n";
    if (worst_fx > worst_all) worst_all = worst_fx, worst_where = worst_fx_where;
  }
  std::cout << "symmetry: " << fixtures << " fixtures, " << runs << " checked runs, " << judged << " judged tensors, "
            << not_judged << " not judged, " << skipped << " runs not possible; worst error/limit " << worst_all << " ("
            << worst_where << ")\n";
  EXPECT_GE(fixtures, 35);
  EXPECT_GT(judged, 0);
}
