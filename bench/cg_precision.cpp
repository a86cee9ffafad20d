// bench/cg_precision.cpp — how far a CG iterate of one LLA row moves with the arithmetic (docs/cg.md).
//
// For the query-centred systems Sigma rho = mu of a few rows (bf16 inputs, one head, L = 97,
// D = argv[1], default 64) formed in 300-digit MPFR, prints per iteration k <= 40 the relative
// deviation of the iterate computed in double, dd, qd and bf50 from the same recurrence in
// MPFR: plain CG, the eps-CG recurrence of docs/math.md "Solving for the probe" (+1e-10 in the step) and Lanczos with full
// reorthogonalisation (whose exact value is the Krylov iterate), as CSV on stdout.
// bench/plot_cg_precision.py draws docs/figures/cg_precision.png from it.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "reference/scalar.hpp"
#include "reference/solvers.hpp"
#include "reference/inputs.hpp"
using namespace plx;
using M = mpfr;
const int KMAX = 40;

// Every iterate x_1..x_KMAX of plain CG (eps10 = false) or the eps-CG recurrence of docs/math.md "Solving for the probe" (+epsval in
// the step denominator), without a stopping test (a pinned count k is a prefix of these).
template <class T> std::vector<Vec<T>> cg_iterates(const Mat<T>& A, const Vec<T>& y, bool eps10, double epsval) {
  const int n = int(y.size());
  Vec<T> x = Vec<T>::Zero(n), res = y, pdir = res;
  std::vector<Vec<T>> xs;
  for (int it = 0; it < KMAX; ++it) {
    Vec<T> Sp = A * pdir;
    T nrm = res.dot(res);
    T den = pdir.dot(Sp);
    if (eps10) den += T(epsval);
    T a = nrm / den;
    x += a * pdir;
    res -= a * Sp;
    T nrm1 = res.dot(res);
    T bt = nrm1 / nrm;
    pdir = res + bt * pdir;
    xs.push_back(x);
  }
  return xs;
}
template <class T> std::vector<Vec<T>> lanczos_iterates(const Mat<T>& A, const Vec<T>& y) {
  const int n = int(y.size()), k = KMAX;
  Mat<T> Vb(n, k + 1);
  Vec<T> alpha(k), beta(k + 1);
  T b0 = y.norm();
  Vb.col(0) = y / b0;
  for (int j = 0; j < k; ++j) {
    Vec<T> w = A * Vb.col(j);
    alpha(j) = Vb.col(j).dot(w);
    for (int pass = 0; pass < 2; ++pass)
      for (int i = 0; i <= j; ++i) w -= Vb.col(i).dot(w) * Vb.col(i);
    beta(j + 1) = w.norm();
    Vb.col(j + 1) = w / beta(j + 1);
  }
  std::vector<Vec<T>> xs;
  for (int kk = 1; kk <= k; ++kk) {
    Mat<T> Tm = Mat<T>::Zero(kk, kk);
    for (int j = 0; j < kk; ++j) { Tm(j, j) = alpha(j); if (j + 1 < kk) Tm(j, j + 1) = Tm(j + 1, j) = beta(j + 1); }
    Vec<T> e1 = Vec<T>::Zero(kk); e1(0) = b0;
    Vec<T> z = Tm.llt().solve(e1);
    xs.push_back(Vb.leftCols(kk) * z);
  }
  return xs;
}

M fromT(const double& x) { return M(x); }
M fromT(const dd& x) { return M(x.x[0]) + M(x.x[1]); }
M fromT(const qd4& x) { return M(x.x[0]) + M(x.x[1]) + M(x.x[2]) + M(x.x[3]); }
M fromT(const bf50& x) { return M(x); }
M fromT(const M& x) { return x; }
template <class T> T toT(const M& v) {
  if constexpr (std::is_same_v<T, dd> || std::is_same_v<T, qd4>) {
    M r = v; double c[4] = {0, 0, 0, 0};
    for (int t = 0; t < 4; ++t) { c[t] = r.convert_to<double>(); r -= M(c[t]); }
    if constexpr (std::is_same_v<T, dd>) return dd(c[0], c[1]); else return qd4(c[0], c[1], c[2], c[3]);
  } else if constexpr (std::is_same_v<T, double>) return v.convert_to<double>();
  else return T(v);
}
template <class T> Mat<T> cvt(const Mat<M>& A) { Mat<T> B(A.rows(), A.cols()); for (int i = 0; i < A.size(); ++i) B.data()[i] = toT<T>(A.data()[i]); return B; }
template <class T> Vec<T> cvtv(const Vec<M>& A) { Vec<T> B(A.size()); for (int i = 0; i < A.size(); ++i) B(i) = toT<T>(A(i)); return B; }
template <class T> Vec<M> back(const Vec<T>& A) { Vec<M> B(A.size()); for (int i = 0; i < A.size(); ++i) B(i) = fromT(A(i)); return B; }
double relerr(const Vec<M>& a, const Vec<M>& b) { return M((a - b).norm() / b.norm()).convert_to<double>(); }

template <class T> std::vector<double> devs(const Mat<M>& A, const Vec<M>& y, int variant, double epsval, const std::vector<Vec<M>>& ref) {
  Mat<T> At = cvt<T>(A); Vec<T> yt = cvtv<T>(y);
  auto xs = variant == 2 ? lanczos_iterates<T>(At, yt) : cg_iterates<T>(At, yt, variant == 1, epsval);
  std::vector<double> e;
  for (int k = 0; k < KMAX; ++k) e.push_back(relerr(back<T>(xs[k]), ref[k]));
  return e;
}

int main(int argc, char** argv) {
  set_mpfr_digits10(300);
  Problem p;
  set_member(p, "lla");
  p.B = 1, p.Hq = 1, p.Hkv = 1, p.Lq = p.Lkv = 97, p.D = p.Dv = argc > 1 ? atoi(argv[1]) : 64;
  p.dtype = DType::BF16; p.solver.method = SolverMethod::CG;
  p.seed = 0;
  Inputs in = make_inputs(p);
  const int D = p.D;
  M tau = M(1) / sqrt(M(D));
  std::printf("lambda,row,cond,stopk,variant,prec,k,dev,err_direct\n");
  for (double lam : {1.0, 0.1, 0.01}) for (int i : {16, 48, 96}) {
    int n = i + 1;
    Vec<M> q(D); for (int d = 0; d < D; ++d) q(d) = M(in.q(0, i, 0, d));
    Mat<M> E(n, D); Vec<M> s(n);
    for (int j = 0; j < n; ++j) { for (int d = 0; d < D; ++d) E(j, d) = M(in.k(0, j, 0, d)); s(j) = tau * E.row(j).dot(q); }
    M m = s.maxCoeff();
    Vec<M> w(n); for (int j = 0; j < n; ++j) w(j) = exp(s(j) - m);
    M omega = w.sum();
    E = E.rowwise() - q.transpose();
    Mat<M> WE = E.array().colwise() * w.array();
    Mat<M> A = WE.transpose() * E; Vec<M> y = WE.colwise().sum().transpose();
    A.diagonal().array() += M(lam) * omega;
    Vec<M> xdir = A.llt().solve(y);
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(cvt<double>(A));
    double cond = es.eigenvalues().maxCoeff() / es.eigenvalues().minCoeff();
    SolveReport rep; solve_cg<M>(A, y, false, 1e-12, 1e-12, 32, rep);
    for (int variant : {0, 1, 2}) {  // 0 plain CG, 1 eps-CG (+1e-10), 2 Lanczos full reorth
      auto ref = variant == 2 ? lanczos_iterates<M>(A, y) : cg_iterates<M>(A, y, variant == 1, 1e-10);
      const char* vn = variant == 0 ? "plain" : variant == 1 ? "spec" : "lanczos";
      auto emit = [&](const char* pn, const std::vector<double>& e) {
        for (int k = 0; k < KMAX; ++k)
          std::printf("%g,%d,%.4g,%d,%s,%s,%d,%.3e,%.3e\n", lam, i, cond, rep.iterations, vn, pn, k + 1, e[k], relerr(ref[k], xdir));
      };
      emit("double", devs<double>(A, y, variant, 1e-10, ref));
      emit("dd", devs<dd>(A, y, variant, 1e-10, ref));
      emit("qd", devs<qd4>(A, y, variant, 1e-10, ref));
      if (variant != 2) emit("bf50", devs<bf50>(A, y, variant, 1e-10, ref));
      std::fflush(stdout);
    }
  }
}
