// tests/validation/test_registry.cpp — the backend registry (validation/candidates.hpp): every
// registered Backend is complete, names are unique, the order is by preference, lookups of unknown
// names fail naming the known ones, and the generic run path honours supports / gradients.
#include <gtest/gtest.h>

#include <set>

#include "reference/all.hpp"
#include "tests/expect_error.hpp"
#include "validation/candidates.hpp"

using namespace plx;
using plx::test::expect_error;

TEST(Registry, EveryBackendIsCompleteUniqueAndOrdered) {
  const auto& b = backends();
  ASSERT_GE(b.size(), 1u);
  std::set<std::string> names;
  for (std::size_t i = 0; i < b.size(); ++i) {
    EXPECT_TRUE(names.insert(b[i].name).second) << "duplicate backend " << b[i].name;
    EXPECT_FALSE(b[i].summary.empty()) << b[i].name;
    EXPECT_TRUE(b[i].supports && b[i].run_forward && b[i].dtypes) << b[i].name;
    EXPECT_EQ(bool(b[i].supports_backward), bool(b[i].run_backward)) << b[i].name;
    if (i) EXPECT_LE(b[i - 1].preference, b[i].preference) << b[i - 1].name << " before " << b[i].name;
  }
  EXPECT_TRUE(names.count("ref-double"));
  EXPECT_EQ(candidate_names().size(), b.size());
}

TEST(Registry, UnknownNamesAreErrorsNamingTheKnownOnes) {
  expect_error([] { find_backend("warp-drive"); }, "ref-double");
  std::string why;
  Problem p;
  EXPECT_FALSE(candidate_supports("warp-drive", p, &why));
  EXPECT_NE(why.find("warp-drive"), std::string::npos) << why;
}

// ref-double differentiates every problem but a decode step: the generic path runs its backward
// where it can and, for a decode step, runs the forward and says why there are no gradients.
TEST(Registry, GenericRunHonoursGradientSupport) {
  Problem p;
  set_member(p, "parallax");
  p.B = 1, p.Hq = p.Hkv = 1, p.Lq = p.Lkv = 5, p.D = p.Dv = 4, p.dtype = DType::F32, p.seed = 3;
  const Inputs in = make_inputs(p);
  std::string why;
  CandidateResult r = run_candidate("ref-double", p, in, RunWhat::ForwardAndBackward, &why);
  EXPECT_TRUE(why.empty()) << why;
  EXPECT_EQ(r.dq.shape, in.q.shape);
  EXPECT_EQ(r.dr.shape, in.r.shape);
  r = run_candidate("ref-double", p, in, RunWhat::Forward);
  EXPECT_TRUE(r.dq.empty());
  Problem d = p;
  d.Lq = 1, d.decode = true;
  const Inputs din = make_inputs(d);
  r = run_candidate("ref-double", d, din, RunWhat::ForwardAndBackward, &why);
  EXPECT_TRUE(r.dq.empty());
  EXPECT_NE(why.find("decode"), std::string::npos) << why;
  for (const auto& [name, dt] : candidate_dtypes("ref-double", p)) EXPECT_EQ(dt, DType::F64) << name;
}
