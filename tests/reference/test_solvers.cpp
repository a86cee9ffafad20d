// tests/reference/test_solvers.cpp — the docs/math.md §3.7 solvers on their own, including the branches a
// well-conditioned attention problem never takes: CG that runs out of iterations (docs/math.md §7.5:
// reported, not thrown), CG on a non-finite system, and a singular system for Cholesky.
#include <gtest/gtest.h>

#include <cmath>

#include "reference/rng.hpp"
#include "reference/solvers.hpp"
#include "tests/support.hpp"

using namespace plx;

namespace {

// A = Q diag(lambda) Q^T with log-spaced eigenvalues from 1 to cond (Q from a random matrix's QR).
Mat<double> spd_with_condition(int n, double cond, std::uint64_t sd) {
  CounterRng g{sd, 11};
  Mat<double> M(n, n);
  for (int i = 0; i < n * n; ++i) M.data()[i] = g.normal(i);
  Eigen::HouseholderQR<Mat<double>> qr(M);
  Mat<double> Q = qr.householderQ();
  Vec<double> ev(n);
  for (int i = 0; i < n; ++i) ev(i) = std::pow(cond, double(i) / (n - 1));
  return Q * ev.asDiagonal() * Q.transpose();
}
Vec<double> random_rhs(int n, std::uint64_t sd) {
  CounterRng g{sd, 12};
  Vec<double> y(n);
  for (int i = 0; i < n; ++i) y(i) = g.normal(i);
  return y;
}

}  // namespace

// Too few iterations on an ill-conditioned system: the report says so. With cond = 1e6 and n = 32
// distinct eigenvalues, CG cannot reach the 1e-12 squared-norm test in 3 steps (its residual
// polynomial of degree 3 cannot vanish on 32 spread eigenvalues), so converged must be false, all
// 3 iterations used, and the true residual far above the tolerance.
TEST(Solvers, CgOutOfIterationsIsReported) {
  const int n = 32;
  Mat<double> A = spd_with_condition(n, 1e6, test::seed());
  Vec<double> y = random_rhs(n, test::seed());
  SolveReport rep;
  Vec<double> x = solve_cg<double>(A, y, false, 1e-12, 1e-12, 3, rep);
  EXPECT_FALSE(rep.converged);
  EXPECT_EQ(rep.iterations, 3);
  EXPECT_GT(rep.rel_residual, 1e-3);  // 1e-3: three CG steps remove at most a few eigen-components
  EXPECT_TRUE(x.allFinite());
}

// Enough iterations: converged, and x solves the system to the accuracy the stopping test and
// the conditioning allow. docs/math.md §3.7's step is nrm / (p.Ap + 1e-10): the absolute 1e-10 biases
// every step once p.Ap is that small, so a solve can only converge while p.Ap >> 1e-10; the
// right-hand side is scaled by 1e3 to keep it there (|r| >= 1e3 * 4 * 1e-6 at the stop, A >= I).
// Stopping test: r.z <= rtol * r0.z0 with z = M^-1 r, M = I or diag(A) (diag entries in [1, 100]
// for cond 100), so |r| / |y| <= sqrt(100 * rtol) = 1e-5; x2 for the drift between the recursive
// and the true residual. Error vs Cholesky <= cond * residual = 100 * 2e-5.
TEST(Solvers, CgConvergesAndAgreesWithCholesky) {
  const int n = 16;
  Mat<double> A = spd_with_condition(n, 1e2, test::seed() + 1);
  Vec<double> y = 1e3 * random_rhs(n, test::seed() + 1);
  for (bool jacobi : {false, true}) {
    SolveReport rep;
    Vec<double> x = solve_cg<double>(A, y, jacobi, 1e-12, 1e-12, 200, rep);
    EXPECT_TRUE(rep.converged) << jacobi;
    EXPECT_LT(rep.iterations, 200) << jacobi;
    EXPECT_GT(rep.iterations, 1) << jacobi;
    EXPECT_LE(rep.rel_residual, 2e-5) << jacobi;
    Vec<double> exact = solve_cholesky<double>(A, y, n, "test");
    EXPECT_LE((x - exact).norm() / exact.norm(), 1e2 * 2e-5) << jacobi;
  }
}

// The other side of the same docs/math.md detail: asked for more accuracy than the 1e-10 bias allows
// (squared-norm rtol 1e-24), CG stalls and says so instead of claiming convergence.
TEST(Solvers, CgStallBelowSpecRegulariserIsReported) {
  const int n = 16;
  Mat<double> A = spd_with_condition(n, 1e2, test::seed() + 1);
  Vec<double> y = random_rhs(n, test::seed() + 1);
  SolveReport rep;
  solve_cg<double>(A, y, false, 1e-30, 1e-24, 200, rep);
  EXPECT_FALSE(rep.converged);
  EXPECT_EQ(rep.iterations, 200);
  EXPECT_GT(rep.rel_residual, 1e-12);  // sqrt(1e-24): the accuracy that was asked for and not reached
}

// A non-finite system stops CG at once and is reported as not converged (never as success).
TEST(Solvers, CgOnNonFiniteSystemIsNotConverged) {
  const int n = 8;
  Mat<double> A = spd_with_condition(n, 10, test::seed() + 2);
  A(2, 3) = A(3, 2) = std::nan("");
  SolveReport rep;
  solve_cg<double>(A, random_rhs(n, test::seed() + 2), false, 1e-12, 1e-12, 32, rep);
  EXPECT_FALSE(rep.converged);
  EXPECT_EQ(rep.iterations, 1);
}

// A zero right-hand side: nothing to do, converged with 0 iterations and x = 0 exactly.
TEST(Solvers, CgZeroRhs) {
  Mat<double> A = spd_with_condition(6, 10, test::seed() + 3);
  SolveReport rep;
  Vec<double> x = solve_cg<double>(A, Vec<double>::Zero(6), false, 1e-12, 1e-12, 32, rep);
  EXPECT_TRUE(rep.converged);
  EXPECT_EQ(rep.iterations, 0);
  EXPECT_EQ(x.norm(), 0.0);
}

// A rank-deficient matrix is refused by the direct solver with a message naming the place.
TEST(Solvers, CholeskySingularThrows) {
  const int n = 5;
  CounterRng g{test::seed(), 13};
  Mat<double> U(n, 2);
  for (int i = 0; i < 2 * n; ++i) U.data()[i] = g.normal(i);
  Mat<double> A = U * U.transpose();  // rank 2
  try {
    solve_cholesky<double>(A, random_rhs(n, 5), n, "row 7");
    FAIL() << "no error";
  } catch (const NumericalError& e) {
    EXPECT_NE(std::string(e.what()).find("row 7"), std::string::npos) << e.what();
  }
}
