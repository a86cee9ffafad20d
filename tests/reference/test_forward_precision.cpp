// tests/reference/test_forward_precision.cpp — the reference forward's own accuracy.
//
// Charter: the same algorithm run at 50 digits (bf50), in quad-double (~62 digits) and at 60-digit MPFR must agree with
// the 100-digit run (bf100) to within c u (1 + kappa) scale_i of the lower precision (about
// 1e-47 relative for the tiny random problems used here, far inside the brief's 1e-45), for
// every member; a few docs/math.md identities are checked again in double-double; empty rows are
// exactly 0 in every extended scalar. Tiny shapes (L <= 7, D <= 4): multiprecision is slow.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "tests/reference/forward_bounds.hpp"
#include "tests/support.hpp"

using namespace plx;
using namespace plx::test;

namespace {

// A tiny random problem of the member: B = 1, Hq <= 2, L in {1, 2, 3, 7} or <= 7, D, Dv <= 4.
rc::Gen<Problem> gen_tiny(const std::string& member) {
  return rc::gen::map(gen_problem(member, 7), [](Problem p) {
    p.B = 1, p.start.resize(std::min<std::size_t>(p.start.size(), 1)), p.used.resize(std::min<std::size_t>(p.used.size(), 1));
    p.Hkv = 1, p.Hq = std::min(p.Hq, 2);
    p.D = std::min(p.D, 4), p.Dv = std::min(p.Dv, 4);
    if (p.D == 3) p.solver.block = 0;
    p.anchor_knobs.delta_eps = 0;
    return p;
  });
}

// The 100-digit value rounded into Lo (via its decimal string; dd via hi + lo doubles).
template <class Lo> Lo round_into(const bf100& x) { return Lo(x.str(0, std::ios::scientific)); }
template <> dd round_into<dd>(const bf100& x) {
  const double hi = x.convert_to<double>();
  return dd(hi, bf100(x - bf100(hi)).convert_to<double>());
}
template <> qd4 round_into<qd4>(const bf100& x) {  // four doubles, each the rounding of what is left
  double c[4];
  bf100 rest = x;
  for (double& ci : c) ci = rest.convert_to<double>(), rest -= ci;
  return qd4(c[0], c[1], c[2], c[3]);
}

// x_lo - round_lo(x_hi), in double: the rounding of the 100-digit value into Lo adds <= u_lo |x|.
template <class Lo> Tensor<double> difference(const Tensor<Lo>& lo, const Tensor<bf100>& hi) {
  Tensor<double> d(hi.shape, std::nan(""));
  for (std::size_t i = 0; i < hi.size(); ++i) d.data[i] = to_double(Lo(lo.data[i] - round_into<Lo>(hi.data[i])));
  return d;
}

double normwise(const Tensor<double>& diff, const Tensor<bf100>& hi) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < hi.size(); ++i) num += diff.data[i] * diff.data[i], den += std::pow(to_double(hi.data[i]), 2);
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Lo and bf100 on the same inputs: per row |x_lo - x_100| <= (66 + D + 8 + 2) u_lo (1 + kappa_i) scale_i
// (one Lo evaluation bounded as in forward_bounds.hpp; +1 for rounding the truth into Lo,
// +1 for bf100's own error, 1e-50 times smaller).
template <class Lo> void agrees_with_bf100(const Problem& p, double u_lo) {
  Inputs in = make_inputs(p);
  auto hi = attention_forward<bf100>(p, in, saved_diag());
  auto lo = attention_forward<Lo>(p, in);
  RowBounds rb = row_bounds(p, in, hi);
  Tensor<double> diff = difference(lo.out, hi.out), zero(diff.shape, 0.0);
  auto lim = [&](int b, int h, int i) { return (c_round(p) + 2) * u_lo * (1 + rb.kappa(b, h, i)) * rb.scale(b, h, i); };
  const std::string name = ScalarTraits<Lo>::name() + " vs bf100";
  auto f = check_rows(name, p, diff, zero, lim, "(66 + D + 10) u_lo (1 + kappa_i) scale_i");
  if (verbose()) std::printf("  %s %s normwise rel %.3g\n", name.c_str(), member_name(p).c_str(), normwise(diff, hi.out));
  RC_ASSERT(f.empty());
}

rc::Gen<std::string> gen_member() {
  return rc::gen::element<std::string>("softmax", "parallax", "parallax_centred", "lla", "lla_cov", "learned_query");
}

}  // namespace

// bf50: cpp_bin_float<50> carries >= 50 decimal digits, u <= 1e-50.
RC_GTEST_PROP(ForwardPrecision, Bf50AgreesWithBf100, ()) {
  agrees_with_bf100<bf50>(*gen_tiny(*gen_member()), 1e-50);
}

// MPFR at 60 decimal digits (set at run time): u <= 1e-60. A failure at ~1e-16 would mean the
// run-time precision did not reach the worker threads.
RC_GTEST_PROP(ForwardPrecision, Mpfr60AgreesWithBf100, ()) {
  set_mpfr_digits10(60);
  agrees_with_bf100<mpfr>(*gen_tiny(*gen_member()), 1e-60);
}

// double-double: u = 2^-104 for + and *, libqd's exp/log are good to ~2^-100: u_dd = 2^-100.
RC_GTEST_PROP(ForwardPrecision, DdAgreesWithBf100, ()) {
  agrees_with_bf100<dd>(*gen_tiny(*gen_member()), 0x1p-100);
}

// quad-double (libqd qd_real, the fast 50-digit tier): + and * are good to ~2^-209 (the sloppy
// add relative to the larger operand), exp/log to ~2^-200; products go through the compensated
// cascade of reference/dd_kernels.hpp (error below 2^-209 sum|ab|). u_qd = 2^-200 ~ 6e-61.
RC_GTEST_PROP(ForwardPrecision, QuadDoubleAgreesWithBf100, ()) {
  agrees_with_bf100<qd4>(*gen_tiny(*gen_member()), 0x1p-200);
}

// docs/math.md §3.5 and §4.2 identities again in dd (forms differ only by rounding, 2^-100 level).
RC_GTEST_PROP(ForwardPrecision, DdFormsAgree, ()) {
  const bool lla = *rc::gen::arbitrary<bool>();
  Problem p = *gen_tiny(lla ? "lla" : "parallax");
  Inputs in = make_inputs(p);
  auto a = attention_forward<dd>(p, in, saved_diag());
  Problem q = p;
  set_member(q, lla ? "lla_cov" : "parallax_centred");
  auto b = attention_forward<dd>(q, in);
  RowBounds rb = row_bounds(p, in, a);
  auto lim = [&](int bb, int h, int i) { return 2 * c_round(p) * 0x1p-100 * (1 + rb.kappa(bb, h, i)) * rb.scale(bb, h, i); };
  auto f = check_rows(lla ? "dd lla vs lla_cov" : "dd parallax closed vs centred", p, to_double_tensor(a.out),
                      to_double_tensor(b.out), lim, "2 (66 + D + 8) u_dd (1 + kappa_i) scale_i, u_dd = 2^-100");
  RC_ASSERT(f.empty());
}

// Empty rows are exactly 0 (no NaN) in every extended scalar (docs/math.md §1.4).
template <class T> void empty_rows_zero(const std::string& member) {
  Problem p;
  set_member(p, member);
  p.B = 1, p.Hq = p.Hkv = 1, p.Lq = 5, p.Lkv = 3, p.D = p.Dv = 2, p.seed = 3;  // causal, Lq > Lkv: rows 0, 1 empty
  p.anchor_knobs.delta_eps = 0;
  auto F = attention_forward<T>(p, make_inputs(p), saved_diag());
  for (int i = 0; i < p.Lq; ++i)
    for (int d = 0; d < p.Dv; ++d) {
      const double x = to_double(F.out(0, i, 0, d));
      EXPECT_TRUE(std::isfinite(x)) << ScalarTraits<T>::name() << " " << member;
      if (i < 2) EXPECT_EQ(x, 0.0) << ScalarTraits<T>::name() << " " << member << " row " << i;
    }
}
TEST(ForwardPrecision, EmptyRowsAreZeroInExtendedScalars) {
  set_mpfr_digits10(60);
  for (const char* m : {"softmax", "parallax", "lla", "lla_cov"}) {
    empty_rows_zero<long double>(m);
    empty_rows_zero<dd>(m);
    empty_rows_zero<qd4>(m);
    empty_rows_zero<f128>(m);
    empty_rows_zero<bf50>(m);
    empty_rows_zero<mpfr>(m);
  }
}
