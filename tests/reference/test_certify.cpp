// tests/reference/test_certify.cpp — the certified tier: interval arithmetic, verified solves,
// and enclosures of the reference's outputs and gradients.
//
// Charter: (1) Ival's operations enclose exact results and its comparisons never guess;
// (2) verified_solve proves or refuses: it encloses the exact solution of an ill-conditioned
// system once the precision suffices, and says "not verified" (never a wrong interval) below
// that or for a singular system; (3) on random problems of every member and hazard generator,
// the enclosures of out and of every gradient contain the 100-digit reference (allowing for
// bf100's own error); (4) they are not uselessly wide: at 256 bits they are orders of magnitude
// narrower than the double-double truth's actual error, so the certified radius of that truth is
// within a factor 2 of its true error; (5) an ill-conditioned LLA case is reported not verified.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cmath>

#include "reference/all.hpp"
#include "reference/certify.hpp"
#include "reference/verified_solve.hpp"
#include "tests/support.hpp"

using namespace plx;
using namespace plx::test;

namespace {

using MatI = Eigen::Matrix<Ival, Eigen::Dynamic, Eigen::Dynamic>;
using VecI = Eigen::Matrix<Ival, Eigen::Dynamic, 1>;

bool contains(const Ival& e, const bf100& x, const bf100& slack) {
  // e.lo <= x + slack and x - slack <= e.hi, compared in 400-bit MPFR (exact for bf100's 333 bits).
  mpfr_t a;
  mpfr_init2(a, 400);
  const std::string s = bf100(x + slack).str(120, std::ios_base::scientific);
  mpfr_set_str(a, s.c_str(), 10, MPFR_RNDU);
  const bool lo_ok = mpfr_lessequal_p(e.lo, a);
  const std::string t = bf100(x - slack).str(120, std::ios_base::scientific);
  mpfr_set_str(a, t.c_str(), 10, MPFR_RNDD);
  const bool hi_ok = mpfr_lessequal_p(a, e.hi);
  mpfr_clear(a);
  return lo_ok && hi_ok;
}

// hi - lo rounded up, in MPFR (hi_d() - lo_d() would add the outward rounding to float64).
double width(const Ival& e) {
  mpfr_t d;
  mpfr_init2(d, 64);
  mpfr_sub(d, e.hi, e.lo, MPFR_RNDU);
  const double w = mpfr_get_d(d, MPFR_RNDU);
  mpfr_clear(d);
  return w;
}

struct PrecisionGuard {
  long saved = IvalPrecision::bits();
  explicit PrecisionGuard(long b) { IvalPrecision::set(b); }
  ~PrecisionGuard() { IvalPrecision::set(saved); }
};

}  // namespace

// ---- (1) interval arithmetic ----------------------------------------------------------------
TEST(Interval, OperationsEncloseExactResults) {
  PrecisionGuard g(64);
  const Ival third = Ival(1) / Ival(3);
  EXPECT_FALSE(third.is_point());                       // 1/3 is not dyadic: a proper interval
  const Ival one = third * Ival(3);
  EXPECT_TRUE(mpfr_cmp_ui(one.lo, 1) <= 0 && mpfr_cmp_ui(one.hi, 1) >= 0);
  // exp(log(2)) contains 2; e = exp(1) is enclosed (checked against MPFR at 300 bits).
  const Ival two = exp(log(Ival(2)));
  EXPECT_TRUE(mpfr_cmp_ui(two.lo, 2) <= 0 && mpfr_cmp_ui(two.hi, 2) >= 0);
  mpfr_t e;
  mpfr_init2(e, 300);
  mpfr_set_ui(e, 1, MPFR_RNDN);
  mpfr_exp(e, e, MPFR_RNDN);
  const Ival ei = exp(Ival(1));
  EXPECT_TRUE(mpfr_lessequal_p(ei.lo, e) && mpfr_lessequal_p(e, ei.hi));
  mpfr_clear(e);
  // The width is one ulp of 64 bits at most for a single correctly rounded operation.
  EXPECT_LT(width(ei), std::ldexp(3.0, -62));
  // Sign cases of the product: [-1, 2] * [-3, 1] = [-6, 3].
  const Ival p = Ival::hull(-1, 2) * Ival::hull(-3, 1);
  EXPECT_EQ(p.lo_d(), -6.0);
  EXPECT_EQ(p.hi_d(), 3.0);
  EXPECT_EQ(sqr(Ival::hull(-2, 1)).lo_d(), 0.0);
}

TEST(Interval, ComparisonsAreCertainOrThrow) {
  PrecisionGuard g(64);
  EXPECT_TRUE(Ival(1) < Ival(2));
  EXPECT_FALSE(Ival(2) < Ival(1));
  EXPECT_FALSE(Ival(0) > Ival(0));  // equal points: certainly not greater
  EXPECT_TRUE(Ival(0) == Ival(0));
  EXPECT_THROW((void)(Ival::hull(0, 2) < Ival(1)), NotVerified);
  EXPECT_THROW((void)(Ival::hull(0, 2) == Ival(1)), NotVerified);
  EXPECT_THROW((void)(Ival(1) / Ival::hull(-1, 1)), NotVerified);
  EXPECT_THROW((void)log(Ival::hull(-1, 1)), NotVerified);
}

// ---- (2) verified solves ---------------------------------------------------------------------
namespace {
// The n x n Hilbert matrix H_ij = 1/(i + j + 1) as enclosures, and b = H 1 in intervals: the
// exact system (H, H 1) lies inside (H, b), so its solution, the all-ones vector, must be enclosed.
void hilbert(int n, MatI& H, VecI& b) {
  H.resize(n, n), b.resize(n);
  for (int i = 0; i < n; ++i) {
    Ival s(0);
    for (int j = 0; j < n; ++j) H(i, j) = Ival(1) / Ival(i + j + 1), s += H(i, j);
    b(i) = s;
  }
}
}  // namespace

TEST(VerifiedSolve, IllConditionedRefusedAtLowPrecisionEnclosedAtHigh) {
  const int n = 16;  // cond_2(H_16) ~ 2e22
  {
    PrecisionGuard g(64);  // 2^-64 cond >> 1: verification must fail, not return a wrong interval
    MatI H;
    VecI b;
    hilbert(n, H, b);
    VerifiedSolve v = verified_solve(H, b);
    EXPECT_FALSE(v.verified);
    EXPECT_NE(v.reason.find("not < 1"), std::string::npos) << v.reason;
  }
  {
    PrecisionGuard g(256);
    MatI H;
    VecI b;
    hilbert(n, H, b);
    VerifiedSolve v = verified_solve(H, b);
    ASSERT_TRUE(v.verified) << v.reason;
    for (int i = 0; i < n; ++i) {
      EXPECT_TRUE(mpfr_cmp_ui(v.x(i).lo, 1) <= 0 && mpfr_cmp_ui(v.x(i).hi, 1) >= 0) << i;
      // width <~ cond 2^-256 n^2 ~ 2e22 * 8.6e-78 * 256 ~ 5e-53: ask for 1e-45.
      EXPECT_LT(width(v.x(i)), 1e-45) << i;
    }
  }
}

TEST(VerifiedSolve, SingularSystemIsNotVerified) {
  PrecisionGuard g(256);
  MatI A(3, 3);
  VecI b(3);
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) A(i, j) = Ival(double((i + 1) * (j + 1)));  // rank 1
    b(i) = Ival(1);
  }
  VerifiedSolve v = verified_solve(A, b);
  EXPECT_FALSE(v.verified);
  EXPECT_FALSE(v.reason.empty());
}

// ---- (3) enclosures contain the 100-digit reference --------------------------------------------
namespace {

rc::Gen<Problem> gen_certify_problem() {
  return rc::gen::exec([] {
    const std::string m = *rc::gen::element<std::string>("softmax", "parallax", "parallax_centred", "lla", "lla_cov",
                                                         "learned_query");
    Problem p = *gen_problem(m, 9);
    p.B = std::min(p.B, 2);
    if (*rc::gen::arbitrary<bool>()) p.gen = *gen_hazard();
    if (p.probe == Probe::Solver) {
      const int pick = *rc::gen::inRange(0, 4);  // direct full, direct block-diagonal, CG, Jacobi-CG
      if (pick == 1 && p.D % 2 == 0) p.solver.block = p.D / 2;
      if (pick == 2) p.solver.method = SolverMethod::CG;
      if (pick == 3) p.solver.method = SolverMethod::JacobiCG;
    }
    return p;
  });
}

// Allowance for bf100's own error: its unit roundoff is 1e-100 and its forward/backward errors are
// below (Lkv + D + Dv) * 1e-100 * kappa * max|x| with kappa the problem's amplification; on these
// small problems (lambda >= 0.05, hazards' cond(cov k) = 1e4, zbar/sigma_z <= 57) kappa < 1e20,
// so 1e-75 max|x| bounds it with orders of magnitude to spare while staying far below any
// plausible error of a wrong enclosure. Plus 1e-80 absolute: a tensor that is exactly zero
// (dq when every row has at most one key) has no relative scale, and bf100's rounding noise
// there is ~1e-100 times the terms' magnitudes (inputs are O(1), hazards scale them by <= 1e3).
bf100 slack_for(const Tensor<bf100>& x) {
  bf100 m = 0;
  for (const auto& v : x.data) m = std::max(m, bf100(abs(v)));
  return m * bf100(1e-75) + bf100(1e-80);
}

void expect_enclosed(const std::string& name, const Tensor<Ival>& enc, const Tensor<bf100>& x) {
  RC_ASSERT(enc.shape == x.shape);
  const bf100 slack = slack_for(x);
  for (std::size_t i = 0; i < x.size(); ++i)
    if (!contains(enc.data[i], x.data[i], slack))
      RC_FAIL(name + " entry " + std::to_string(i) + ": bf100 " + x.data[i].str(40) + " outside [" +
              std::to_string(enc.data[i].lo_d()) + ", " + std::to_string(enc.data[i].hi_d()) + "]");
}

}  // namespace

RC_GTEST_PROP(Certify, EnclosuresContainTheHundredDigitReference, ()) {
  const Problem p = *gen_certify_problem();
  const Inputs in = make_inputs(p);
  Forward<bf100> F;
  Gradients<bf100> G;
  try {
    F = attention_forward<bf100>(p, in);
    G = attention_backward<bf100>(p, in);
  } catch (const NumericalError&) {
    RC_DISCARD("the reference refuses this problem (singular system or d = 0)");
  }
  CertifyOptions o;
  o.max_bits = 1024;
  const Certificate c = certify(p, in, o);
  for (const auto& [n, why] : c.not_verified) RC_FAIL(n + " not verified: " + why);
  expect_enclosed("out", c.enclosure.at("out"), F.out);
  expect_enclosed("dq", c.enclosure.at("dq"), G.dq);
  expect_enclosed("dk", c.enclosure.at("dk"), G.dk);
  expect_enclosed("dv", c.enclosure.at("dv"), G.dv);
  if (p.probe == Probe::Learned) expect_enclosed("dr", c.enclosure.at("dr"), G.dr);
  if (p.probe == Probe::Solver) expect_enclosed("dlambda", c.enclosure.at("dlambda"), G.dlambda);
}

// ---- (4) widths: useful, not merely correct ---------------------------------------------------
// Well-conditioned cases (normal inputs, lambda >= 0.3, direct solves): at 256 bits every tensor's
// enclosure is narrower than 1e-60 relative (normwise) — the a priori error of a 256-bit
// evaluation is ~(Lkv + D + Dv) 2^-256 kappa ~ 1e-74, so 1e-60 leaves 10^14 for dependency
// effects and still proves 60 digits — and so narrower than the dd truth's actual error
// (>= 1e-34 or exact) by 10^25: the certified radius of the dd truth is its true error to within
// a factor 1 + 1e-25.
RC_GTEST_PROP(Certify, WidthsOnWellConditionedCasesAreSixtyDigits, ()) {
  const std::string m = *rc::gen::element<std::string>("softmax", "parallax", "parallax_centred", "lla", "lla_cov",
                                                       "learned_query");
  Problem p = *gen_problem(m, 12);
  p.solver.lambda = std::max(p.solver.lambda, 0.3);
  CertifyOptions o;
  o.max_bits = 256;
  const Certificate c = certify(p, make_inputs(p), o);
  for (const auto& [n, why] : c.not_verified) RC_FAIL(n + " not verified: " + why);
  // Absolute widths against max(max|value|, 1): a tensor that is exactly zero (single-key rows
  // make dq zero) has no relative scale; inputs are O(1).
  for (const auto& [n, t] : c.enclosure) {
    double wmax = 0, amax = 1;
    for (const Ival& e : t.data) wmax = std::max(wmax, width(e)), amax = std::max(amax, std::fabs(e.mid_d()));
    RC_ASSERT(wmax <= 1e-60 * amax);
  }
}

// ---- (5) ill-conditioned: not verified, not wide ------------------------------------------------
TEST(Certify, SingularRidgeSystemIsReportedNotVerified) {
  // LLA with lambda = 0 and fewer keys than D + 1 in the first rows: Sigma = sum w e e^T has
  // rank < D, exactly singular; no precision can verify it.
  Problem p;
  set_member(p, "lla");
  p.Lq = p.Lkv = 4, p.D = p.Dv = 8;
  p.solver.lambda = 0;
  p.seed = 7;
  CertifyOptions o;
  o.max_bits = 512;
  o.backward = false;
  const Certificate c = certify(p, make_inputs(p), o);
  ASSERT_TRUE(c.not_verified.count("out"));
  EXPECT_FALSE(c.enclosure.count("out"));
  EXPECT_NE(c.not_verified.at("out").find("ridge solve"), std::string::npos) << c.not_verified.at("out");
  EXPECT_NE(c.not_verified.at("out").find("512 bits"), std::string::npos) << c.not_verified.at("out");
}

TEST(Certify, EmptyRowsAreExactZeros) {
  Problem p;
  set_member(p, "parallax");
  p.Lq = 6, p.Lkv = 3, p.D = p.Dv = 4;  // rows 0..2 see no key
  const Certificate c = certify(p, make_inputs(p));
  const Tensor<Ival>& out = c.enclosure.at("out");
  for (int i = 0; i < 3; ++i)
    for (int d = 0; d < 4; ++d) {
      const Ival& e = out(0, i, 0, d);
      EXPECT_TRUE(mpfr_zero_p(e.lo) && mpfr_zero_p(e.hi));
    }
  for (int i = 0; i < 3; ++i)
    for (int d = 0; d < 4; ++d) EXPECT_TRUE(mpfr_zero_p(c.enclosure.at("dq")(0, i, 0, d).hi));
}
