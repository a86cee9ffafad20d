// reference/solvers.hpp — the per-row ridge systems of LLA and how they are solved.
//
// Charter: Cholesky (full or block-diagonal) and the fixed-count CG / Jacobi-CG of
// docs/math.md §3.7, transcribed literally (the 1e-10 in the step denominator, the squared-norm
// stopping test against max(atol, nrm0) * rtol). Templated on the scalar; the system
// is given as a dense SPD matrix (the reference can afford to form it; CG still only
// uses matrix-vector products, so its iterates are those of the matrix-free kernel).
// Singular systems raise plx::NumericalError; CG non-convergence is reported, not thrown.
#pragma once
#include <Eigen/Dense>
#include <string>

#include "reference/errors.hpp"
#include "reference/scalar.hpp"

namespace plx {

template <class T> using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
template <class T> using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;

struct SolveReport {
  int iterations = 0;          // CG: iterations taken while active; direct: 0
  double rel_residual = 0;     // ||A x - y|| / ||y|| (true residual, recomputed)
  bool converged = true;       // CG: the stopping test fired (or y = 0)
};

// Solve A x = y with A SPD, block-diagonal in blocks of size `block` (block = n: full).
// Off-diagonal blocks of A are ignored. Throws NumericalError if a block is not
// numerically positive definite.
template <class T>
Vec<T> solve_cholesky(const Mat<T>& A, const Vec<T>& y, int block, const std::string& where) {
  const int n = int(A.rows());
  Vec<T> x(n);
  for (int t = 0; t < n; t += block) {
    Mat<T> At = A.block(t, t, block, block);
    Eigen::LLT<Mat<T>> llt(At);
    bool ok = llt.info() == Eigen::Success;
    if (ok) {  // reject pivots at rounding level: the matrix is singular to working precision
      using std::abs;
      T dmax = At.diagonal().cwiseAbs().maxCoeff();
      T lmin = llt.matrixLLT().diagonal().cwiseAbs().minCoeff();
      ok = dmax > T(0) && lmin * lmin > T(64 * block) * from_double<T>(ScalarTraits<T>::eps()) * dmax;
    }
    if (!ok)
      throw NumericalError("singular ridge system at " + where +
                           " (Sigma or C + lambda I is not positive definite; lambda = 0 with too few or "
                           "affinely dependent keys?)");
    x.segment(t, block) = llt.solve(y.segment(t, block));
  }
  return x;
}

// docs/math.md §3.7 conjugate gradients (plain or Jacobi-preconditioned), exactly as written.
template <class T>
Vec<T> solve_cg(const Mat<T>& A, const Vec<T>& y, bool jacobi, double atol, double rtol, int max_iters,
                SolveReport& rep) {
  const int n = int(y.size());
  Vec<T> diag = jacobi ? Vec<T>(A.diagonal()) : Vec<T>::Ones(n);
  auto precond = [&](const Vec<T>& r) -> Vec<T> { return jacobi ? Vec<T>(r.cwiseQuotient(diag)) : r; };
  Vec<T> x = Vec<T>::Zero(n), res = y, z = precond(res), pdir = z;
  T nrm0 = res.dot(z);
  bool active = nrm0 != T(0);
  const T thresh = (nrm0 > T(atol) ? nrm0 : T(atol)) * T(rtol);
  rep = {};
  rep.converged = !active;
  for (int it = 0; it < max_iters; ++it) {
    if (active) ++rep.iterations;
    Vec<T> Sp = A * pdir;
    T nrm = res.dot(z);
    T a = active ? T(nrm / (pdir.dot(Sp) + T(1e-10))) : T(0);
    x += a * pdir;
    res -= a * Sp;
    z = precond(res);
    T nrm1 = res.dot(z);
    bool stop = nrm1 <= thresh || !is_finite(nrm1);
    if (active && stop) rep.converged = is_finite(nrm1);
    active = active && !stop;
    T bt = active ? T(nrm1 / nrm) : T(0);
    pdir = z + bt * pdir;
  }
  T ny = y.norm();
  rep.rel_residual = ny > T(0) ? to_double(T((A * x - y).norm() / ny)) : 0.0;
  return x;
}

}  // namespace plx
