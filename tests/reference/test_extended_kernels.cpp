// tests/reference/test_extended_kernels.cpp — the compensated product kernels of the extended tiers.
//
// Charter: dd_product_nt (double-double, Dot2) and qd_product_nt (quad-double, five-level
// cascade) against the same products in 100-digit arithmetic, on random full-width operands
// (every component of each dd/qd entry is used) with deliberate cancellation, so the error is
// measured relative to sum|a b| — the quantity the kernels' error bounds are stated in — and
// also on a nearly cancelling sum, where the result is tiny and a kernel that dropped a level
// would lose every digit. Inner lengths cover 1, the vector width, odd sizes and k > 256.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cmath>
#include <cstdlib>

#include "reference/dd_kernels.hpp"
#include "reference/rng.hpp"
#include "tests/support.hpp"

using namespace plx;

namespace {

// A random extended number: a normal double times 2^e, plus lower components at the scalar's
// own granularity (so every component of the representation carries information).
bf100 random_exact(const CounterRng& g, std::uint64_t i, int parts) {
  bf100 x = 0;
  double scale = std::ldexp(1.0, int(g.bits(4 * i) % 9) - 4);  // 2^-4 .. 2^4
  for (int c = 0; c < parts; ++c, scale *= 0x1p-53) x += bf100(g.normal(4 * i + 1 + c)) * scale;
  return x;
}
dd to_dd(const bf100& x) {
  const double hi = x.convert_to<double>();
  return dd(hi, bf100(x - hi).convert_to<double>());
}
qd4 to_qd(const bf100& x) {
  double c[4];
  bf100 rest = x;
  for (double& ci : c) ci = rest.convert_to<double>(), rest -= ci;
  return qd4(c[0], c[1], c[2], c[3]);
}
bf100 from_dd(const dd& x) { return bf100(x.x[0]) + bf100(x.x[1]); }
bf100 from_qd(const qd4& x) { return ((bf100(x.x[0]) + bf100(x.x[1])) + bf100(x.x[2])) + bf100(x.x[3]); }

bool verbose() { return std::getenv("PLX_VERBOSE") != nullptr; }

// Every entry: |C - exact| <= bound_per_sum * sum_d |a_d b_d| (exact in 100 digits).
template <class T, int Parts, class ToT, class FromT, class Kernel>
void check_kernel(int m, int n, int k, std::uint64_t sd, double bound_per_sum, ToT to_t, FromT from_t, Kernel kernel,
                  const char* name) {
  CounterRng ga{sd, 1}, gb{sd, 2};
  Eigen::Matrix<bf100, Eigen::Dynamic, Eigen::Dynamic> A(m, k), B(n, k);
  for (int i = 0; i < m; ++i)
    for (int d = 0; d < k; ++d) A(i, d) = random_exact(ga, std::uint64_t(i) * k + d, Parts);
  for (int j = 0; j < n; ++j)
    for (int d = 0; d < k; ++d) B(j, d) = random_exact(gb, std::uint64_t(j) * k + d, Parts);
  // Row 0 of A against column 0 of B nearly cancels: the last product is minus the sum of the
  // others (rounded into T), so the exact result is only the rounding residue, ~u_T sum|a b|.
  if (k >= 2) {
    bf100 s = 0;
    for (int d = 0; d < k - 1; ++d) s += A(0, d) * B(0, d);
    A(0, k - 1) = -s, B(0, k - 1) = 1;
  }
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic> At(m, k), Bt(n, k);
  for (int i = 0; i < m; ++i)
    for (int d = 0; d < k; ++d) At(i, d) = to_t(A(i, d)), A(i, d) = from_t(At(i, d));  // the exact operands used
  for (int j = 0; j < n; ++j)
    for (int d = 0; d < k; ++d) Bt(j, d) = to_t(B(j, d)), B(j, d) = from_t(Bt(j, d));
  auto C = kernel(At, Bt);
  ASSERT_EQ(C.rows(), m);
  ASSERT_EQ(C.cols(), n);
  double worst = 0;
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      bf100 exact = 0, abs_sum = 0;
      for (int d = 0; d < k; ++d) exact += A(i, d) * B(j, d), abs_sum += abs(A(i, d) * B(j, d));
      const double err = abs(from_t(C(i, j)) - exact).template convert_to<double>();
      const double rel = abs_sum > 0 ? err / abs_sum.template convert_to<double>() : err;
      worst = std::max(worst, rel);
      ASSERT_LE(rel, bound_per_sum) << name << " m=" << m << " n=" << n << " k=" << k << " entry (" << i << "," << j
                                    << ") error " << err << " sum|ab| " << abs_sum.template convert_to<double>();
    }
  if (verbose()) std::printf("  %s k=%d worst error / sum|ab| = %.3g (bound %.3g)\n", name, k, worst, bound_per_sum);
}

}  // namespace

// Dot2 in double-double: |error| <= (n^2 u^2 + small) sum|a b| + u^2 |result| (u = 2^-53; the
// kernel's charter). For n <= 300: <= 9e4 * 2^-106 sum|ab| ~ 1.1e-27; rounding the result into a
// dd adds <= 2^-106 |result| <= 2^-106 sum|ab|. Bound used: (k^2 + 4) 2^-106 sum|ab|.
RC_GTEST_PROP(ExtendedKernels, DoubleDoubleDot2MatchesBf100, ()) {
  const int k = *rc::gen::element(1, 2, 3, 4, 5, 17, 64, 300);
  const int m = *rc::gen::inRange(1, 4), n = *rc::gen::element(1, 3, 4, 5, 9);
  const std::uint64_t sd = *rc::gen::inRange<std::uint64_t>(1, 1u << 30);
  const double bound = (double(k) * k + 4) * 0x1p-106;
  check_kernel<dd, 2>(m, n, k, sd, bound, to_dd, from_dd,
                      [](const auto& A, const auto& B) { return detail::dd_product_nt(A, B); }, "dd_product_nt");
}

// Quad-double cascade: dropped component products (c1 + c2 >= 4, and the rounding of the
// c1 + c2 = 3 ones) <= 8 * 2^-212 per |a b|; the five-level cascade after k steps leaves
// <= (k u)^5 sum|ab| (u = 2^-53; k <= 300: < 2^-224); the final IEEE qd additions of the five
// levels add <= 5 * 2^-209 |result|. Bound used: 16 * 2^-209 sum|ab| (~1.9e-62): far below
// what dd could reach (2^-106), so a kernel that lost one level of the cascade fails.
RC_GTEST_PROP(ExtendedKernels, QuadDoubleCascadeMatchesBf100, ()) {
  const int k = *rc::gen::element(1, 2, 3, 4, 5, 17, 64, 300);
  const int m = *rc::gen::inRange(1, 4), n = *rc::gen::element(1, 3, 4, 5, 9, 130);  // 130: two column chunks
  const std::uint64_t sd = *rc::gen::inRange<std::uint64_t>(1, 1u << 30);
  check_kernel<qd4, 4>(m, n, k, sd, 16 * 0x1p-209, to_qd, from_qd,
                       [](const auto& A, const auto& B) { return detail::qd_product_nt(A, B); }, "qd_product_nt");
}

// The same kernel must give bit-identical results on repeated calls (no dependence on state).
TEST(ExtendedKernels, QuadDoubleKernelIsDeterministic) {
  CounterRng g{test::seed(), 9};
  Eigen::Matrix<qd4, Eigen::Dynamic, Eigen::Dynamic> A(3, 77), B(200, 77);
  for (int i = 0; i < A.size(); ++i) A.data()[i] = to_qd(random_exact(g, i, 4));
  for (int i = 0; i < B.size(); ++i) B.data()[i] = to_qd(random_exact(g, 1000 + i, 4));
  auto C1 = detail::qd_product_nt(A, B), C2 = detail::qd_product_nt(A, B);
  for (int i = 0; i < C1.size(); ++i)
    for (int c = 0; c < 4; ++c) ASSERT_EQ(C1.data()[i].x[c], C2.data()[i].x[c]) << i;
}

// The cascade used for cpp_bin_float_50 (and MPFR <= 60 digits): each entry split exactly into
// four doubles (50 digits ~ 168 bits < 212), the five levels summed in bf50. Error: the
// cascade's 16 * 2^-209 sum|ab| (above) plus bf50's rounding of the five-level sum, <= 5 u_50
// |result| <= 5e-50 sum|ab| (u_50 = 1e-50, ScalarTraits). Bound used: 6e-50 sum|ab|.
RC_GTEST_PROP(ExtendedKernels, Bf50CascadeMatchesBf100, ()) {
  const int k = *rc::gen::element(1, 2, 5, 17, 64, 300);
  const int m = *rc::gen::inRange(1, 4), n = *rc::gen::element(1, 3, 9, 130);
  const std::uint64_t sd = *rc::gen::inRange<std::uint64_t>(1, 1u << 30);
  auto to_bf50 = [](const bf100& x) { return bf50(x); };
  auto from_bf50 = [](const bf50& x) { return bf100(x); };
  check_kernel<bf50, 4>(m, n, k, sd, 6e-50, to_bf50, from_bf50,
                        [](const auto& A, const auto& B) {
                          Eigen::Matrix<bf50, Eigen::Dynamic, Eigen::Dynamic> C;
                          RC_ASSERT(detail::mp_cascade_product_nt(A, B, C));  // every entry in range: no fallback
                          return C;
                        },
                        "mp_cascade_product_nt<bf50>");
}

// Entries whose lower components would leave the normal double range (or are not finite) are
// refused, so the caller falls back to bf50's own product instead of losing digits.
TEST(ExtendedKernels, Bf50CascadeRefusesOutOfRangeEntries) {
  Eigen::Matrix<bf50, Eigen::Dynamic, Eigen::Dynamic> A(2, 3), B(2, 3), C;
  for (int i = 0; i < 6; ++i) A.data()[i] = B.data()[i] = bf50(1) / bf50(3 + i);
  EXPECT_TRUE(detail::mp_cascade_product_nt(A, B, C));
  A(1, 2) = bf50("1e-300");  // < 2^-800
  EXPECT_FALSE(detail::mp_cascade_product_nt(A, B, C));
  A(1, 2) = bf50("1e300");  // > 2^800
  EXPECT_FALSE(detail::mp_cascade_product_nt(A, B, C));
  A(1, 2) = 0;  // exact zero is fine
  EXPECT_TRUE(detail::mp_cascade_product_nt(A, B, C));
}
