// tests/reference/test_forward.cpp — smoke identities of the reference forward (double).
#include <gtest/gtest.h>

#include "reference/all.hpp"

using namespace plx;

TEST(ReferenceForward, ParallaxClosedEqualsCentred) {
  Problem p;
  p.B = 2, p.Hq = 4, p.Hkv = 2, p.Lq = 7, p.Lkv = 9, p.D = 5, p.Dv = 3, p.seed = 11;
  set_member(p, "parallax");
  auto in = make_inputs(p);
  auto a = attention_forward<double>(p, in);
  set_member(p, "parallax_centred");
  auto b = attention_forward<double>(p, in);
  double scale = 0;
  for (double x : b.out.data) scale = std::max(scale, std::abs(x));
  for (std::size_t i = 0; i < a.out.size(); ++i)
    EXPECT_NEAR(a.out.data[i], b.out.data[i], 64 * 9 * 0x1p-53 * (1 + scale));  // 64 L u |out|: sums of L terms
}
