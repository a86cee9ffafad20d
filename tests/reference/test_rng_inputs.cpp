// tests/reference/test_rng_inputs.cpp — the portable RNG, the input generators and dtype rounding.
//
// Charter: same seed -> bit-identical inputs and reference outputs whatever the OpenMP thread
// count; different seeds differ; every input is exactly representable in its dtype; each
// generator of reference/inputs.hpp does what its comment claims (checked against the Normal
// generator with the same seed, or by a statistic with a derived margin); bf16/fp16 rounding
// is round-to-nearest-even on hand-derived bit patterns. No tolerance is guessed.
#include <algorithm>
#include <gtest/gtest.h>
#include <omp.h>

#include <bit>
#include <cstring>

#include "reference/all.hpp"
#include "tests/support.hpp"

using namespace plx;

namespace {

const char* kMembers[] = {"softmax", "parallax", "parallax_centred", "lla", "lla_cov", "learned_query"};
const InputGen kGens[] = {InputGen::Normal,  InputGen::RmsNorm,       InputGen::Anisotropic, InputGen::Outliers,
                          InputGen::Sink,    InputGen::NearDuplicate, InputGen::LargeScale,  InputGen::LargeR,
                          InputGen::ZCancel};

Problem base_problem(std::uint64_t seed) {
  Problem p;
  p.B = 2, p.Hq = 4, p.Hkv = 2, p.Lq = 65, p.Lkv = 70, p.D = 7, p.Dv = 5, p.seed = seed;
  p.window = 40;
  return p;
}

bool same_bits(const Tensor<double>& a, const Tensor<double>& b) {
  return a.shape == b.shape && std::memcmp(a.data.data(), b.data.data(), a.size() * sizeof(double)) == 0;
}

}  // namespace

// Inputs and the reference forward are bit-identical with 1 and 2 OpenMP threads.
TEST(RngInputs, BitIdenticalAcrossThreadCounts) {
  for (const char* m : kMembers) {
    Problem p = base_problem(plx::test::seed());
    set_member(p, m);
    p.solver.lambda_per_row = true;
    omp_set_num_threads(1);
    Inputs in1 = make_inputs(p);
    auto F1 = attention_forward<double>(p, in1, ForwardOptions{true, false});
    omp_set_num_threads(2);
    Inputs in2 = make_inputs(p);
    auto F2 = attention_forward<double>(p, in2, ForwardOptions{true, false});
    for (auto [a, b, n] : {std::tuple{&in1.q, &in2.q, "q"}, {&in1.k, &in2.k, "k"}, {&in1.v, &in2.v, "v"},
                           {&in1.r, &in2.r, "r"}, {&in1.dO, &in2.dO, "dO"}, {&in1.lambda, &in2.lambda, "lambda"}})
      EXPECT_TRUE(same_bits(*a, *b)) << m << ": input " << n;
    EXPECT_TRUE(same_bits(F1.out, F2.out)) << m << ": out differs between 1 and 2 threads";
    for (const auto& [name, t] : F1.saved) EXPECT_TRUE(same_bits(t, F2.saved.at(name))) << m << ": saved " << name;
  }
  omp_set_num_threads(omp_get_num_procs());
}

// Different seeds give different inputs in (almost) every entry; none is all zeros.
TEST(RngInputs, DifferentSeedsDiffer) {
  Problem p = base_problem(plx::test::seed());
  Problem p2 = p;
  p2.seed = p.seed + 1;
  Inputs a = make_inputs(p), b = make_inputs(p2);
  for (auto [x, y, n] : {std::tuple{&a.q, &b.q, "q"}, {&a.k, &b.k, "k"}, {&a.v, &b.v, "v"}, {&a.r, &b.r, "r"}, {&a.dO, &b.dO, "dO"}}) {
    std::size_t equal = 0, zero = 0;
    for (std::size_t i = 0; i < x->size(); ++i) equal += x->data[i] == y->data[i], zero += x->data[i] == 0;
    // Irwin-Hall values are multiples of 2^-32: two independent draws coincide with
    // probability < 2^-20 each, so more than 1 % equal entries means the seed is ignored.
    EXPECT_LT(equal, x->size() / 100 + 1) << n;
    EXPECT_LT(zero, x->size()) << n << " is all zeros";
  }
}

// Every input value is exactly representable in the problem's dtype, for every generator.
TEST(RngInputs, InputsAreExactlyRepresentable) {
  for (DType t : {DType::F64, DType::F32, DType::BF16, DType::F16})
    for (InputGen g : kGens) {
      Problem p = base_problem(3);
      p.dtype = t, p.gen = g;
      Inputs in = make_inputs(p);
      for (auto [x, n] : {std::pair{&in.q, "q"}, {&in.k, "k"}, {&in.v, "v"}, {&in.r, "r"}, {&in.dO, "dO"}})
        for (std::size_t i = 0; i < x->size(); ++i) {
          const double v = x->data[i];
          ASSERT_TRUE(std::isfinite(v)) << to_string(t) << " " << to_string(g) << " " << n << "[" << i << "]";
          ASSERT_EQ(round_to(t, v), v) << to_string(t) << " " << to_string(g) << " " << n << "[" << i << "]";
          if (t != DType::F64) ASSERT_EQ(double(float(v)), v);
        }
    }
}

// The RNG is a pure function of (seed, stream, index): values and their distribution.
TEST(RngInputs, CounterRngIsPureAndNormalised) {
  CounterRng g = rng_for(42, Stream::Q), g2 = rng_for(42, Stream::Q), h = rng_for(42, Stream::K);
  double s1 = 0, s2 = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double x = g.normal(i);
    ASSERT_EQ(x, g2.normal(i));
    ASSERT_LE(std::abs(x), 6.0);  // Irwin-Hall(12) support
    s1 += x, s2 += x * x;
  }
  EXPECT_NE(g.normal(0), h.normal(0));
  // Mean 0, variance 1: the sample mean has sd 1/sqrt(n) = 2.2e-3, the sample variance
  // sd sqrt(2/n) = 3.2e-3 (Irwin-Hall kurtosis is close to Gaussian). 5 sd margins.
  EXPECT_LT(std::abs(s1 / n), 5 / std::sqrt(double(n)));
  EXPECT_LT(std::abs(s2 / n - 1), 5 * std::sqrt(2.0 / n));
}

// rms_norm and large_scale: q, k rows have norm sqrt(D) (times gen_param for large_scale q).
TEST(RngInputs, RmsNormRowsHaveNormSqrtD) {
  for (InputGen g : {InputGen::RmsNorm, InputGen::LargeScale}) {
    Problem p = base_problem(5);
    p.gen = g;
    Inputs in = make_inputs(p);
    const double qs = g == InputGen::LargeScale ? default_gen_param(g) : 1.0;
    for (auto [t, want] : {std::pair{&in.q, qs * std::sqrt(double(p.D))}, {&in.k, std::sqrt(double(p.D))}})
      for (std::size_t o = 0; o < t->size(); o += p.D) {
        double ss = 0;
        for (int d = 0; d < p.D; ++d) ss += t->data[o + d] * t->data[o + d];
        // scaling by sqrt(D/ss) then summing D squares: relative error <= (D + 4) u
        EXPECT_NEAR(std::sqrt(ss), want, (p.D + 4) * 0x1p-53 * want) << to_string(g);
      }
  }
}

// anisotropic: the sample covariance of the keys has condition number ~ gen_param. With
// n = 8192 keys in D = 8 the eigenvalues of a sample covariance deviate by ~ sqrt(D/n) = 3 %
// relative, so the estimate is within a factor 1.5 of the target; the brief's "factor 3" is
// asserted, together with a monotone response to gen_param.
TEST(RngInputs, AnisotropicKeyConditionNumber) {
  for (double cond : {1e2, 1e4, 1e6}) {
    Problem p;
    p.B = 1, p.Hq = p.Hkv = 1, p.Lq = 1, p.Lkv = 8192, p.D = 8, p.Dv = 1, p.seed = 9;
    p.gen = InputGen::Anisotropic, p.gen_param = cond;
    Inputs in = make_inputs(p);
    Eigen::MatrixXd K = Eigen::Map<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(in.k.data.data(), p.Lkv, p.D);
    Eigen::MatrixXd Kc = K.rowwise() - K.colwise().mean();
    Eigen::MatrixXd C = Kc.transpose() * Kc / double(p.Lkv);
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(C);
    const double got = es.eigenvalues().maxCoeff() / es.eigenvalues().minCoeff();
    EXPECT_GT(got, cond / 3) << "requested cond " << cond;
    EXPECT_LT(got, cond * 3) << "requested cond " << cond;
  }
}

// outliers, large_r, near_duplicate, sink: compared with the Normal generator of the same seed
// (same streams), the claimed transformation and nothing else. Scalings by 30 and 100 of
// values with <= 36 significant bits are exact in double, so equality is exact.
TEST(RngInputs, GeneratorsTransformTheNormalDraws) {
  Problem p = base_problem(13);
  Inputs n = make_inputs(p);
  {
    Problem q = p;
    q.gen = InputGen::Outliers;
    Inputs o = make_inputs(q);
    for (int b = 0; b < p.B; ++b)
      for (int j = 0; j < p.Lkv; ++j)
        for (int h = 0; h < p.Hkv; ++h) {
          const double f = j % 17 == 5 ? 30.0 : 1.0;  // every 17th token from 5, scaled by gen_param
          for (int d = 0; d < p.D; ++d) ASSERT_EQ(o.k(b, j, h, d), f * n.k(b, j, h, d));
          for (int d = 0; d < p.Dv; ++d) ASSERT_EQ(o.v(b, j, h, d), f * n.v(b, j, h, d));
        }
    EXPECT_TRUE(same_bits(o.q, n.q));
  }
  {
    Problem q = p;
    q.gen = InputGen::LargeR;
    Inputs o = make_inputs(q);
    for (std::size_t i = 0; i < o.r.size(); ++i) ASSERT_EQ(o.r.data[i], 100.0 * n.r.data[i]);
    // keys share one offset vector of norm 4 (rounding of the addition: <= u |k| per entry)
    for (std::size_t o2 = 0; o2 < o.k.size(); o2 += p.D) {
      double ss = 0;
      for (int d = 0; d < p.D; ++d) ss += std::pow(o.k.data[o2 + d] - n.k.data[o2 + d], 2);
      ASSERT_NEAR(std::sqrt(ss), 4.0, 1e-14);
    }
  }
  {
    Problem q = p;
    q.gen = InputGen::ZCancel;
    Inputs o = make_inputs(q);
    // keys: one common offset of norm gen_param = 64; r: one common offset of norm
    // 2 r_scale sqrt(D) (rounding of the additions: <= u |x| per entry)
    auto offset_norm = [&](const Tensor<double>& a, const Tensor<double>& b, std::size_t o2) {
      double ss = 0;
      for (int d = 0; d < p.D; ++d) ss += std::pow(a.data[o2 + d] - b.data[o2 + d], 2);
      return std::sqrt(ss);
    };
    for (std::size_t o2 = 0; o2 < o.k.size(); o2 += p.D) ASSERT_NEAR(offset_norm(o.k, n.k, o2), 64.0, 1e-12);
    for (std::size_t o2 = 0; o2 < o.r.size(); o2 += p.D)
      ASSERT_NEAR(offset_norm(o.r, n.r, o2), 2 * p.r_scale * std::sqrt(double(p.D)), 1e-13);
    EXPECT_TRUE(same_bits(o.q, n.q));
    EXPECT_TRUE(same_bits(o.v, n.v));
    // The hazard itself: per (b, query row, head) the mean of z_j = r.k_j over the head's keys
    // against their standard deviation. Claimed ~ 0.9 x 64 = 57; asserted: every row > 16
    // (a row below needs its normal draw n.u < -1.5 sqrt(D), p ~ 1e-4 per row at D = 7) and
    // the median > 40 (the claim, less a margin for D = 7's sampling spread).
    std::vector<double> ratios;
    for (int b = 0; b < p.B; ++b)
      for (int i = 0; i < p.Lq; ++i)
        for (int h = 0; h < p.Hq; ++h) {
          const int hk = h / p.group();
          double s1 = 0, s2 = 0;
          for (int j = 0; j < p.Lkv; ++j) {
            double z = 0;
            for (int d = 0; d < p.D; ++d) z += o.r(b, i, h, d) * o.k(b, j, hk, d);
            s1 += z, s2 += z * z;
          }
          const double mean = s1 / p.Lkv, sd = std::sqrt(std::max(0.0, s2 / p.Lkv - mean * mean));
          ratios.push_back(std::abs(mean) / sd);
        }
    std::sort(ratios.begin(), ratios.end());
    EXPECT_GT(ratios.front(), 16.0);
    EXPECT_GT(ratios[ratios.size() / 2], 40.0);
  }
  {
    Problem q = p;
    q.gen = InputGen::NearDuplicate;
    Inputs o = make_inputs(q);
    for (int b = 0; b < p.B; ++b)
      for (int j = 1; j < p.Lkv; j += 2)
        for (int h = 0; h < p.Hkv; ++h)
          for (int d = 0; d < p.D; ++d) {
            // k_{2j+1} = k_{2j} + 1e-3 * fresh draw; |draw| <= 6, one rounding of <= u * 6
            ASSERT_EQ(o.k(b, j - 1, h, d), n.k(b, j - 1, h, d));
            ASSERT_NEAR(o.k(b, j, h, d) - o.k(b, j - 1, h, d), 1e-3 * n.k(b, j, h, d), 8 * 0x1p-53 * 6);
          }
  }
  {
    Problem q = p;
    q.gen = InputGen::Sink;
    Inputs o = make_inputs(q);
    // key 0 of every (batch, kv head) is the same vector of norm gen_param = 8, and the mean
    // query points along it: mean q = 0.5 sqrt(D) u + mean of B Lq Hq RMS-normalised draws,
    // whose norm is ~ sqrt(D / (B Lq Hq)) = 0.16 << 0.5 sqrt(D) = 1.3, so cos > 0.9.
    Eigen::VectorXd k0(p.D), qm = Eigen::VectorXd::Zero(p.D);
    for (int d = 0; d < p.D; ++d) k0(d) = o.k(0, 0, 0, d);
    EXPECT_NEAR(k0.norm(), 8.0, 1e-14);
    for (int b = 0; b < p.B; ++b)
      for (int h = 0; h < p.Hkv; ++h)
        for (int d = 0; d < p.D; ++d) ASSERT_EQ(o.k(b, 0, h, d), k0(d));
    for (std::size_t t = 0; t < o.q.size(); ++t) qm(t % p.D) += o.q.data[t];
    EXPECT_GT(qm.dot(k0) / (qm.norm() * k0.norm()), 0.9);
  }
}

// bf16: keep the top 16 bits of the float, rounding to nearest with ties to even.
// Patterns are float bit strings; the expected bf16 word is worked out by hand:
TEST(RngInputs, Bf16RoundsToNearestEven) {
  struct Case { std::uint32_t f; std::uint16_t want; const char* why; };
  const Case cases[] = {
      {0x3F800000u, 0x3F80, "1.0: exact"},
      {0x3F808000u, 0x3F80, "1 + 2^-8: tie between 0x3F80 and 0x3F81, 0x3F80 is even"},
      {0x3F818000u, 0x3F82, "tie between 0x3F81 (odd) and 0x3F82 (even) -> up"},
      {0x3F808001u, 0x3F81, "just above the tie -> up"},
      {0x3F807FFFu, 0x3F80, "just below the tie -> down"},
      {0xBFC00000u, 0xBFC0, "-1.5: exact, sign kept"},
      {0x7F7FFFFFu, 0x7F80, "FLT_MAX: low half 0xFFFF > tie, carries into the exponent -> +inf"},
      {0x00008000u, 0x0000, "subnormal tie between 0 and 0x0001 -> 0 (even)"},
      {0x00018000u, 0x0002, "subnormal tie between 0x0001 and 0x0002 -> 0x0002 (even)"},
      {0x7F800000u, 0x7F80, "+inf stays inf"},
  };
  for (const auto& c : cases) EXPECT_EQ(bf16_bits(std::bit_cast<float>(c.f)), c.want) << c.why;
  // NaNs stay NaN (a signalling NaN becomes quiet)
  EXPECT_TRUE(std::isnan(bf16_to_float(bf16_bits(std::bit_cast<float>(0x7F800001u)))));
  EXPECT_EQ(round_to(DType::BF16, 1.0 + 0x1p-8), 1.0);
  EXPECT_EQ(round_to(DType::BF16, 1.0 + 3 * 0x1p-8), 1.0 + 0x1p-6);  // tie 0x3F81|0x3F82 -> 0x3F82 = 1 + 2^-6
}

// fp16: 10 fraction bits, exponent bias 15, subnormal spacing 2^-24, max 65504.
TEST(RngInputs, Fp16RoundsToNearestEven) {
  struct Case { float f; std::uint16_t want; const char* why; };
  const Case cases[] = {
      {1.0f, 0x3C00, "1.0 = 2^0 -> exponent 15, fraction 0"},
      {-2.0f, 0xC000, "-2.0: sign, exponent 16"},
      {1.0f + 0x1p-11f, 0x3C00, "tie between 1 (0x3C00, even) and 1 + 2^-10 -> down"},
      {1.0f + 3 * 0x1p-11f, 0x3C02, "tie between 0x3C01 (odd) and 0x3C02 -> up"},
      {1.0f + 0x1p-11f + 0x1p-20f, 0x3C01, "just above the tie -> up"},
      {65504.0f, 0x7BFF, "max finite"},
      {65519.0f, 0x7BFF, "below the tie 65520 -> max finite"},
      {65520.0f, 0x7C00, "tie between 65504 (odd fraction 0x3FF) and 65536 -> up, overflows to inf"},
      {0x1p-14f, 0x0400, "min normal"},
      {0x1p-24f, 0x0001, "min subnormal"},
      {0x1p-25f, 0x0000, "tie between 0 and 2^-24 -> 0 (even)"},
      {3 * 0x1p-25f, 0x0002, "tie between 2^-24 (odd) and 2^-23 -> 2^-23"},
      {0x1p-14f - 0x1p-25f, 0x0400, "tie between the largest subnormal 0x03FF and min normal 0x0400 -> even"},
  };
  for (const auto& c : cases) EXPECT_EQ(f16_bits(c.f), c.want) << c.why;
  for (const auto& c : cases)
    if (c.want != 0x7C00) EXPECT_EQ(f16_bits(f16_to_float(c.want)), c.want) << "round trip of " << c.why;
  EXPECT_EQ(round_to(DType::F16, 1.0 + 3 * 0x1p-11), 1.0 + 0x1p-9);
  EXPECT_EQ(round_to(DType::F32, 1.0 + 0x1p-24), 1.0);  // tie, even
}
