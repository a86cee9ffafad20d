// tests/validation/test_cg_reference_error.cpp — a CG-solved LLA fixture states a reference
// error at least as large as an independent measurement of it (docs/cg.md).
//
// The case is docs/cg.md's D = 64 bf16 case (FlashLLA prefill, lambda = 0.1, plain CG with the default 32
// iterations, D = Dv = 64, L = 97) with one kv head of two query heads to keep it cheap. Its
// truncated CG iterate amplifies the rounding of the truth's scalar by ~1e10 and more, so the
// direct-solve estimate 64 (Lkv + D + Dv) u kappa (~1e-24 here) understates the dd truth's
// error by orders of magnitude; the generator must measure it instead.
#include <gtest/gtest.h>

#include <cmath>

#include "reference/all.hpp"
#include "validation/fixture.hpp"

using namespace plx;

namespace {

Problem d64_bf16_case() {
  Problem p;
  set_member(p, "lla");
  p.name = "lla_cg_bf16_d64";
  p.B = 1, p.Hq = 2, p.Hkv = 1, p.Lq = p.Lkv = 97, p.D = p.Dv = 64;
  p.dtype = DType::BF16;
  p.solver.lambda = 0.1;
  p.solver.method = SolverMethod::CG;
  p.seed = 20261207;
  return p;
}

// max|truth - other| / max|other| over a tensor, the statistic the fixture states.
template <class T> double rel_diff(const Truth& truth, const Tensor<T>& other) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < other.size(); ++i) {
    T d = (from_double<T>(truth.hi.data[i]) + from_double<T>(truth.lo.data[i])) - other.data[i];
    num = std::max(num, std::fabs(to_double(d)));
    den = std::max(den, std::fabs(to_double(other.data[i])));
  }
  return den > 0 ? num / den : num;
}

}  // namespace

TEST(CgReferenceError, StatedErrorCoversAnIndependentBf50Measurement) {
  const Problem p = d64_bf16_case();
  const FixtureData f = generate_fixture(p, "dd");
  ASSERT_TRUE(f.reference_error.contains("max_rel"));
  const auto& stated = f.reference_error["max_rel"];
  EXPECT_NE(f.reference_error["method"].get<std::string>().find("measured"), std::string::npos)
      << f.reference_error.dump();
  // Non-converged rows are what makes this case hard: some row must have used every iteration.
  double max_iters = 0;
  for (double k : f.diag.at("cg_iters").data) max_iters = std::max(max_iters, k);
  EXPECT_EQ(max_iters, p.solver.cg_max_iters);

  // Independent measurement: the same problem in 50 decimal digits (a different scalar and a
  // different cross-check path from the generator's quad-double one).
  auto F = attention_forward<bf50>(p, f.in);
  std::map<std::string, double> measured = {{"out", rel_diff(f.truth.at("out"), F.out)}};
#ifdef PLX_BACKWARD_TEMPLATES
  auto G = attention_backward<bf50>(p, f.in);
  measured["dq"] = rel_diff(f.truth.at("dq"), G.dq);
  measured["dk"] = rel_diff(f.truth.at("dk"), G.dk);
  measured["dv"] = rel_diff(f.truth.at("dv"), G.dv);
  measured["dlambda"] = rel_diff(f.truth.at("dlambda"), G.dlambda);
#endif
  for (const auto& [n, m] : measured) {
    ASSERT_TRUE(stated.contains(n)) << n;
    const double s = stated[n].get<double>();
    std::printf("%-8s stated %.3e  measured vs bf50 %.3e\n", n.c_str(), s, m);
    EXPECT_GE(s, m) << n << ": the fixture claims a smaller reference error than bf50 measures";
  }
  // What the direct-solve estimate would have claimed; the measurement shows it is not an
  // upper bound for a truncated CG (the reason the generator no longer uses it here).
  double kappa = 1;
  for (double c : f.diag.at("cond_Sigma").data) kappa = std::max(kappa, c);
  const double estimate = 64.0 * (p.Lkv + p.D + p.Dv) * 0x1p-104 * kappa;
  std::printf("direct-solve estimate %.3e (kappa %.3g)\n", estimate, kappa);
  EXPECT_GT(measured.at("out"), estimate);
}
