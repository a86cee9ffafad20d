// tests/reference/test_forward.cpp — fixed regression cases of the reference forward (double).
//
// Charter: cases that run outside the random loop: the mask convention on hand-worked rows
// (docs/math.md §1.2, §6.1 and the window rule), first-token rows (docs/math.md §7.2), two-key rows against
// closed forms written out here from docs/math.md §2-§4 in long double, and awkward sizes (L = 97,
// 1025; D = 59) for closed-vs-centred Parallax and LLA forms. Random identities live in
// test_forward_props.cpp. Tolerances: forward_bounds.hpp, or stated beside the check.
#include <gtest/gtest.h>

#include "tests/reference/forward_bounds.hpp"

using namespace plx;
using namespace plx::test;

namespace {
constexpr double u = 0x1p-53;
}

// docs/math.md §1.2: end-aligned causal mask, a window keeps W keys including the diagonal,
// start/used restrict the keys; with used < Lkv the mask aligns to used (docs/math.md §6.1).
TEST(ReferenceForward, MaskConventionOnHandWorkedRows) {
  Problem p;
  p.Lq = 3, p.Lkv = 5;  // P_i = 5 - 3 + i = 2, 3, 4
  auto rr = [&](int i) { RowRange R = row_range(p, 0, i); return std::pair{R.lo, R.hi}; };
  EXPECT_EQ(rr(0), std::pair(0, 3));
  EXPECT_EQ(rr(2), std::pair(0, 5));
  p.window = 2;  // keys P-1, P
  EXPECT_EQ(rr(0), std::pair(1, 3));
  EXPECT_EQ(rr(2), std::pair(3, 5));
  p.window = 0;  // W = 0 empties every row
  EXPECT_TRUE(row_range(p, 0, 1).empty());
  p.window = -1, p.used = {4}, p.start = {1};  // P_i = used - Lq + i = 1, 2, 3 (docs/math.md §6.1 alignment)
  EXPECT_EQ(rr(0), std::pair(1, 2));
  EXPECT_EQ(rr(2), std::pair(1, 4));
  p.Lq = 1;  // decode: P = used - 1 = 3
  EXPECT_EQ(rr(0), std::pair(1, 4));
  p.Lq = 7, p.used.clear(), p.start.clear();  // Lq > Lkv: rows 0, 1 empty (P = -2, -1)
  EXPECT_TRUE(row_range(p, 0, 0).empty());
  EXPECT_TRUE(row_range(p, 0, 1).empty());
  EXPECT_EQ(rr(2), std::pair(0, 1));
  p.causal = false;
  EXPECT_EQ(rr(0), std::pair(0, 5));
}

// docs/math.md §7.2: a row with one key returns v_0. The centred / covariance forms get it exactly
// (c_j = p_j (z_j - zbar) = 0 exactly, S_0 = 1); the accumulator forms compute
// v_0 (1 + z_0) - z_0 v_0 (Parallax) or w n_0 / d (LLA) and may round: limit
// (8 + 2D) u (1 + |z_0|) |v_0| for Parallax (dot product D u |z_0|, four O(1) operations),
// (8 + 2D) u (1 + alpha) |v_0| for LLA (Delta = omega - mu.rho loses (1 + alpha)).
TEST(ReferenceForward, FirstTokenRowReturnsFirstValue) {
  for (const char* m : {"softmax", "parallax", "parallax_centred", "lla", "lla_cov", "learned_query"}) {
    Problem p;
    set_member(p, m);
    p.B = 1, p.Hq = p.Hkv = 1, p.Lq = p.Lkv = 4, p.D = 5, p.Dv = 3, p.seed = 21;
    p.r_scale = 1e3;  // |z_0| ~ 1e3 sqrt(D): the closed form's cancellation of docs/math.md §7.1
    p.anchor_knobs.delta_eps = 0;
    Inputs in = make_inputs(p);
    auto F = attention_forward<double>(p, in, saved_diag());
    double z0 = 0;
    for (int d = 0; d < p.D; ++d) z0 += in.r(0, 0, 0, d) * in.k(0, 0, 0, d);
    const bool exact = p.form == Formulation::Centred;
    for (int d = 0; d < p.Dv; ++d) {
      const double v0 = in.v(0, 0, 0, d), got = F.out(0, 0, 0, d);
      if (exact) {
        EXPECT_EQ(got, v0) << m;
      } else {
        const double amp = p.probe == Probe::Solver ? 1 + F.diag.at("alpha")(0, 0, 0) : 1 + std::abs(z0);
        EXPECT_NEAR(got, v0, (8 + 2 * p.D) * u * amp * std::abs(v0)) << m;
      }
    }
  }
}

// Two keys, D = Dv = 1, no mask: closed forms from docs/math.md in long double, written out here.
//   p_j = softmax(tau q k_j); vbar = sum p v; kbar = sum p k; C = p0 p1 (k1 - k0)^2;
//   Cov(k, v) = p0 p1 (k1 - k0)(v1 - v0); Parallax: out = vbar - r Cov; LLA (§3.5):
//   theta = (kbar - q) / (C + lambda), out = vbar - theta Cov.
// Limit: 64 u max|v| (1 + |r| max|k| + |theta| max|k|): a few dozen roundings of O(scale) terms.
TEST(ReferenceForward, TwoKeyRowsMatchClosedForms) {
  const double q = 0.75, k0 = -1.25, k1 = 2.0, v0 = 3.0, v1 = -0.5, r = 0.375, lam = 0.25;
  using LD = long double;
  const LD tau = 1.0L;  // D = 1: tau = 1/sqrt(1)
  const LD w0 = std::exp(tau * q * k0 - tau * q * k1), w1 = 1;  // pivot = max logit = q k1
  const LD p0 = w0 / (w0 + w1), p1 = w1 / (w0 + w1);
  const LD vbar = p0 * v0 + p1 * v1, kbar = p0 * k0 + p1 * k1;
  const LD C = p0 * p1 * (k1 - k0) * (k1 - k0), cov = p0 * p1 * (LD(k1) - k0) * (LD(v1) - v0);
  const LD theta = (kbar - q) / (C + lam);
  struct Case { const char* member; LD want; };
  for (const Case& c : {Case{"softmax", vbar}, Case{"parallax", vbar - r * cov}, Case{"parallax_centred", vbar - r * cov},
                        Case{"lla", vbar - theta * cov}, Case{"lla_cov", vbar - theta * cov}}) {
    Problem p;
    set_member(p, c.member);
    p.B = p.Hq = p.Hkv = p.Lq = 1, p.Lkv = 2, p.D = p.Dv = 1, p.causal = false;
    p.solver.lambda = lam, p.anchor_knobs.delta_eps = 0;
    Inputs in = make_inputs(p);
    in.q.data = {q}, in.k.data = {k0, k1}, in.v.data = {v0, v1}, in.r.data = {p.probe == Probe::Learned ? r : 0.0};
    auto F = attention_forward<double>(p, in);
    const double scale = 3.0 * (1 + r * 2.0 + std::abs(double(theta)) * 2.0);
    EXPECT_NEAR(F.out.data[0], double(c.want), 64 * u * scale) << c.member;
  }
}

// Awkward sizes (STYLE §7: L = 97, 1025 cross the 64-key tiles; D = 59 is odd): the
// Parallax forms and the LLA forms agree within the bound of forward_bounds.hpp.
TEST(ReferenceForward, AwkwardSizesFormsAgree) {
  for (int L : {97, 1025}) {
    for (auto [a, b] : {std::pair{"parallax", "parallax_centred"}, std::pair{"lla", "lla_cov"}}) {
      Problem p;
      set_member(p, a);
      p.B = 1, p.Hq = 2, p.Hkv = 1, p.Lq = L == 1025 ? 65 : L, p.Lkv = L, p.D = 59, p.Dv = 7, p.seed = 97;
      p.gen = InputGen::RmsNorm, p.anchor_knobs.delta_eps = 0;
      Inputs in = make_inputs(p);
      auto Fa = attention_forward<double>(p, in, saved_diag());
      Problem pb = p;
      set_member(pb, b);
      auto Fb = attention_forward<double>(pb, in);
      RowBounds rb = row_bounds(p, in, Fa);
      auto lim = [&](int bb, int h, int i) { return 2 * c_round(p) * u * (1 + rb.kappa(bb, h, i)) * rb.scale(bb, h, i); };
      double worst = 0;
      auto f = check_rows(std::string(a) + " vs " + b + " L=" + std::to_string(L), p, Fa.out, Fb.out, lim,
                          "2 (66 + D + 8) u (1 + kappa_i) scale_i", &worst);
      EXPECT_TRUE(f.empty()) << f;
      std::printf("  %s vs %s, L=%d, D=59: max err / limit = %.3g\n", a, b, L, worst);
    }
  }
}
