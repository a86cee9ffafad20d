// tests/reference/test_backward.cpp — the reference backward's contract (no oracles here).
//
// Charter: bad input and decode are refused with a clear plx::Error; singular systems raise
// NumericalError; empty rows and masked keys give exact zeros; the kernel-style backward from
// saved tensors equals the direct backward in double (FlashAttention rule against bf100 truth);
// GQA gradients equal the group sums of replicated MHA; results are bit-identical for 1 or 2
// threads. Oracle agreement (FD, forward AD, adjoint) is in test_gradcheck.cpp.
#include <gtest/gtest.h>
#include <omp.h>

#include "reference/all.hpp"
#include "tests/support.hpp"
#include "validation/compare.hpp"
#include "validation/gradcheck.hpp"

using namespace plx;

namespace {
Problem small(const std::string& member, std::uint64_t seed = 7) {
  Problem p;
  set_member(p, member);
  p.B = 2, p.Hq = 4, p.Hkv = 2, p.Lq = 6, p.Lkv = 6, p.D = 4, p.Dv = 3, p.seed = seed;
  p.solver.lambda = 0.3;
  return p;
}
const char* kMembers[] = {"softmax", "parallax", "parallax_centred", "lla", "lla_cov", "learned_query"};

template <class T> double max_abs(const Tensor<T>& t) {
  double m = 0;
  for (const auto& x : t.data) m = std::max(m, std::abs(to_double(x)));
  return m;
}
}  // namespace

TEST(Backward, DecodeIsForwardOnly) {
  Problem p = small("parallax");
  p.Lq = 1, p.decode = true;
  auto in = make_inputs(p);
  try {
    attention_backward<double>(p, in);
    FAIL() << "decode backward did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("decode is forward only (docs/math.md §6.1)"), std::string::npos) << e.what();
  }
}

TEST(Backward, BadUpstreamGradientIsReportedWithIndex) {
  Problem p = small("lla");
  auto in = make_inputs(p);
  auto bad = in;
  bad.dO(1, 2, 3, 1) = std::numeric_limits<double>::quiet_NaN();
  try {
    attention_backward<double>(p, bad);
    FAIL() << "NaN in dO accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'dO'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[1, 2, 3, 1]"), std::string::npos) << e.what();
  }
  bad = in;
  bad.dO = Tensor<double>({2, 6, 4, 4}, 1.0);  // Dv = 4 instead of 3
  try {
    attention_backward<double>(p, bad);
    FAIL() << "wrong dO shape accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'dO': shape [2, 6, 4, 4]"), std::string::npos) << e.what();
  }
}

// lambda = 0 and a row with fewer than D + 1 keys: Sigma (rank <= |A|) is singular (docs/math.md §3.6).
TEST(Backward, SingularRidgeSystemIsANumericalError) {
  for (const char* m : {"lla", "lla_cov"}) {
    Problem p = small(m);
    p.solver.lambda = 0;
    auto in = make_inputs(p);
    EXPECT_THROW(attention_backward<double>(p, in), NumericalError) << m;
  }
}

// Empty rows (end-aligned Lq > Lkv, window 0, start >= used) contribute exact zeros (docs/math.md §1.4).
TEST(Backward, EmptyRowsGiveExactZeroGradients) {
  for (const char* m : kMembers) {
    Problem p = small(m);
    p.Lq = 7, p.Lkv = 4;  // rows 0..2 of every head are empty
    p.start = {0, 3}, p.used = {4, 3};  // batch 1: start == used, every row empty
    auto in = make_inputs(p);
    auto g = attention_backward<double>(p, in);
    for (int b = 0; b < p.B; ++b)
      for (int h = 0; h < p.Hq; ++h)
        for (int i = 0; i < p.Lq; ++i) {
          if (!row_range(p, b, i).empty()) continue;
          for (int d = 0; d < p.D; ++d) {
            EXPECT_EQ(g.dq(b, i, h, d), 0.0) << m;
            EXPECT_EQ(g.dr(b, i, h, d), 0.0) << m;
          }
          EXPECT_EQ(g.dlambda(b, h, i), 0.0) << m;
        }
    // batch 1 has no allowed key at all: every kv gradient is exactly zero; masked keys
    // (j >= used) of batch 0 are never touched either.
    EXPECT_EQ(max_abs(g.dk) > 0, true) << m;
    for (int j = 0; j < p.Lkv; ++j)
      for (int g2 = 0; g2 < p.Hkv; ++g2) {
        for (int d = 0; d < p.D; ++d) EXPECT_EQ(g.dk(1, j, g2, d), 0.0) << m;
        for (int d = 0; d < p.Dv; ++d) EXPECT_EQ(g.dv(1, j, g2, d), 0.0) << m;
      }
    p.window = 0;  // W = 0 empties every row
    auto z = attention_backward<double>(p, in);
    for (auto* t : {&z.dq, &z.dk, &z.dv, &z.dr, &z.dlambda}) EXPECT_EQ(max_abs(*t), 0.0) << m;
  }
}

// dr is zero unless the probe is learned; dlambda zero unless it is a solver.
TEST(Backward, UnusedGradientsAreZero) {
  for (const char* m : kMembers) {
    Problem p = small(m);
    auto g = attention_backward<double>(p, make_inputs(p));
    EXPECT_EQ(max_abs(g.dr) > 0, p.probe == Probe::Learned) << m;
    EXPECT_EQ(max_abs(g.dlambda) > 0, p.probe == Probe::Solver) << m;
  }
}

// GQA: the kv gradient is the sum over the group of the MHA gradients with replicated k, v.
TEST(Backward, GqaEqualsReplicatedMhaGroupSum) {
  for (const char* m : kMembers) {
    Problem p = small(m);
    auto in = make_inputs(p);
    Problem pm = p;
    pm.Hkv = p.Hq;
    Inputs im = in;
    im.k = Tensor<double>({std::size_t(p.B), std::size_t(p.Lkv), std::size_t(p.Hq), std::size_t(p.D)});
    im.v = Tensor<double>({std::size_t(p.B), std::size_t(p.Lkv), std::size_t(p.Hq), std::size_t(p.Dv)});
    for (int b = 0; b < p.B; ++b)
      for (int j = 0; j < p.Lkv; ++j)
        for (int h = 0; h < p.Hq; ++h) {
          for (int d = 0; d < p.D; ++d) im.k(b, j, h, d) = in.k(b, j, h / p.group(), d);
          for (int d = 0; d < p.Dv; ++d) im.v(b, j, h, d) = in.v(b, j, h / p.group(), d);
        }
    auto g = attention_backward<bf50>(p, in);
    auto gm = attention_backward<bf50>(pm, im);
    // Same arithmetic per head; only the order of the group sum differs: bf50 rounding,
    // |error| <= G * 1e-50 * max|dk| — far below the 1e-40 * max|dk| asserted.
    const double tol = 1e-40 * (1 + max_abs(g.dk) + max_abs(g.dv));
    for (int b = 0; b < p.B; ++b)
      for (int j = 0; j < p.Lkv; ++j)
        for (int gg = 0; gg < p.Hkv; ++gg) {
          for (int d = 0; d < p.D; ++d) {
            bf50 s = 0;
            for (int h = gg * p.group(); h < (gg + 1) * p.group(); ++h) s += gm.dk(b, j, h, d);
            EXPECT_NEAR(to_double(bf50(g.dk(b, j, gg, d) - s)), 0.0, tol) << m;
          }
          for (int d = 0; d < p.Dv; ++d) {
            bf50 s = 0;
            for (int h = gg * p.group(); h < (gg + 1) * p.group(); ++h) s += gm.dv(b, j, h, d);
            EXPECT_NEAR(to_double(bf50(g.dv(b, j, gg, d) - s)), 0.0, tol) << m;
          }
        }
    for (std::size_t i = 0; i < g.dq.size(); ++i) EXPECT_NEAR(to_double(bf50(g.dq.data[i] - gm.dq.data[i])), 0.0, tol) << m;
  }
}

// Same seed and problem: bit-identical gradients for 1 and 2 threads (fixed-order reduction).
TEST(Backward, BitIdenticalWhateverTheThreadCount) {
  for (const char* m : kMembers) {
    Problem p = small(m);
    p.Lq = 70, p.Lkv = 70;  // three query blocks per head, so the reduction really has parts
    auto in = make_inputs(p);
    const int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    auto a = attention_backward<double>(p, in);
    omp_set_num_threads(2);
    auto b = attention_backward<double>(p, in);
    omp_set_num_threads(nt);
    EXPECT_EQ(a.dq.data, b.dq.data) << m;
    EXPECT_EQ(a.dk.data, b.dk.data) << m;
    EXPECT_EQ(a.dv.data, b.dv.data) << m;
    EXPECT_EQ(a.dr.data, b.dr.data) << m;
    EXPECT_EQ(a.dlambda.data, b.dlambda.data) << m;
  }
}

// The kernel-style backward (from out, vbar, d1, zbar, m / out, lse) equals the direct one in
// double. Both are checked against the bf100 backward (itself checked against FD and AD in
// test_gradcheck): the saved path's error must be within 2x the direct path's error (FlashAttention
// rule, same precision), or below 64 u max|truth| (a handful of roundings of t, b, p per term).
TEST(Backward, FromSavedEqualsDirect) {
  for (const char* m : {"softmax", "parallax", "parallax_centred"}) {
    for (std::uint64_t s = 0; s < 4; ++s) {
      Problem p = small(m, plx::test::seed() + s);
      p.Lq = 37, p.Lkv = 41, p.window = s == 3 ? 9 : -1;
      auto in = make_inputs(p);
      auto F = attention_forward<double>(p, in, {.saved = true});
      auto direct = to_candidate(attention_backward<double>(p, in));
      auto truth = to_candidate(attention_backward<bf100>(p, in));
      SavedBackward<double> sb = p.probe == Probe::None
                                     ? softmax_backward_from_saved<double>(p, in, F.out, F.saved.at("lse"))
                                     : parallax_backward_from_saved<double>(p, in, F.out, F.saved.at("vbar"), F.saved.at("omega"),
                                                                            F.saved.at("zbar"), F.saved.at("m"));
      auto saved = to_candidate(sb.grad);
      Tolerance tol{2.0, 0.0, 64 * 0x1p-53, "2x direct-path error, or 64 u max|truth|"};
      std::vector<TensorReport> rs = {compare_tensor("dq", saved.dq, truth.dq, DType::F64, tol, &direct.dq),
                                      compare_tensor("dk", saved.dk, truth.dk, DType::F64, tol, &direct.dk),
                                      compare_tensor("dv", saved.dv, truth.dv, DType::F64, tol, &direct.dv)};
      if (p.probe == Probe::Learned) rs.push_back(compare_tensor("dr", saved.dr, truth.dr, DType::F64, tol, &direct.dr));
      for (const auto& r : rs) EXPECT_TRUE(r.passed) << m << "\n" << format_report(rs);
      // Preprocessing: t = <dO, out>, and for softmax b = t.
      for (int h = 0; h < p.Hq; ++h) {
        double t = 0;
        for (int d = 0; d < p.Dv; ++d) t += in.dO(1, 5, h, d) * F.out(1, 5, h, d);
        EXPECT_NEAR(sb.t(1, h, 5), t, 8 * p.Dv * 0x1p-53 * (1 + std::abs(t))) << m;  // Dv-term dot product
      }
    }
  }
}

TEST(Backward, FromSavedRefusesOtherMembers) {
  Problem p = small("lla");
  auto in = make_inputs(p);
  auto F = attention_forward<double>(p, in, {.saved = true});
  EXPECT_THROW(parallax_backward_from_saved<double>(p, in, F.out, F.saved.at("vbar"), F.saved.at("omega"),
                                                    F.saved.at("zbar"), F.saved.at("m")),
               Error);
  EXPECT_THROW(softmax_backward_from_saved<double>(p, in, F.out, F.saved.at("lse")), Error);
}
