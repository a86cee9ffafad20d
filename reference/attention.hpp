// reference/attention.hpp — the reference forward for every member of the family.
//
// Charter: attention_forward<T>(problem, inputs) computes softmax, Parallax (accumulator
// and centred forms), LLA (query-centred §3.2 with direct / block / CG / Jacobi-CG solves,
// and the covariance form §3.5) and the general member of docs/math.md §4.3, in scalar T, with
// compensated summation over keys. Optionally it returns the intermediates kernels save
// and the per-row diagnostics of docs/math.md §7. Decode is simply Lq = 1.
// Speed: dot products are Eigen products over a block of 32 queries; sums over keys are
// Eigen products over tiles of 64 keys whose partial results are added with Neumaier
// summation (error <= (64 + 2) u sum|terms|, independent of L). OpenMP over
// (batch, head, query block); every output row is written by exactly one task, so
// results do not depend on the thread count.
// Shapes: see reference/problem.hpp. Per-row outputs are [B, Hq, Lq].
#pragma once
#include <atomic>
#include <cstdlib>
#include <Eigen/Dense>
#include <exception>
#include <type_traits>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "reference/inputs.hpp"
#include "reference/problem.hpp"
#include "reference/scalar.hpp"
#include "reference/solvers.hpp"
#include "reference/tensor.hpp"
#include "reference/dd_kernels.hpp"

namespace plx {

struct ForwardOptions {
  bool saved = false;        // m, lse, omega(=d1), zbar(=d2/d1), Delta, d, probe, vbar
  bool diagnostics = false;  // docs/math.md §7 per-row diagnostics (costs an eigen-solve per row for solvers)
  int query_block = 32;      // rows per task
};

template <class T> struct Forward {
  Tensor<T> out;                                 // [B, Lq, Hq, Dv]
  std::map<std::string, Tensor<T>> saved;        // per-row [B,Hq,Lq]; probe [B,Lq,Hq,D]; vbar [B,Lq,Hq,Dv]
  std::map<std::string, Tensor<double>> diag;    // per-row [B,Hq,Lq]
};

// Names of the per-row diagnostics (docs/math.md §7), all [B, Hq, Lq], in double:
//   empty          1 if A_i is empty, else 0
//   n_keys         |A_i|
//   ess            omega^2 / sum w^2 (effective number of keys)
//   zbar_over_sigma |zbar| / sigma_z of z = theta.k (0 when sigma_z = 0 or no probe)
//   alpha          boundary amplification gamma - 1 (= alpha of docs/math.md §3.5 for solver probes)
//   delta_over_omega  Delta / omega (Query anchor; 1 otherwise)
//   eps_over_delta delta_eps / |Delta| (Query anchor; 0 otherwise)
//   sum_S_minus_1  |sum_j S_j - 1|
//   cond_C         cond(C + lambda I)          (solver probes)
//   cond_Sigma     cond(C + delta delta^T + lambda I) = cond(Sigma / omega)   (solver probes)
//   cg_iters, cg_residual, cg_error   CG iterations, true relative residual, rel. error vs Cholesky
inline const std::vector<std::string>& diagnostic_names() {
  static const std::vector<std::string> n = {"empty", "n_keys", "ess", "zbar_over_sigma", "alpha",
                                             "delta_over_omega", "eps_over_delta", "sum_S_minus_1",
                                             "cond_C", "cond_Sigma", "cg_iters", "cg_residual", "cg_error"};
  return n;
}

namespace detail {

constexpr int kKeyTile = 64;

// Multiprecision scalars whose products go through the four-double cascade of
// reference/dd_kernels.hpp (mp_cascade_product_nt): cpp_bin_float_50 always, MPFR while its
// run-time precision is at most 60 digits (<= 200 bits < the cascade's 209). bf100 and deeper
// MPFR keep T's own arithmetic. set_mp_cascade(false) turns the cascade off for comparisons
// (the plx tool: PLX_MP_CASCADE=0, validation/environment.cpp).
template <class T> constexpr bool mp_cascade_scalar() { return std::is_same_v<T, bf50> || std::is_same_v<T, mpfr>; }
inline std::atomic<bool>& mp_cascade_switch() {
  static std::atomic<bool> on{true};
  return on;
}
template <class T> bool mp_cascade_enabled() {
  const bool on = mp_cascade_switch().load(std::memory_order_relaxed);
  if constexpr (std::is_same_v<T, mpfr>) return on && MpfrPrecision::digits10() <= 60;
  return on;
}

// W (r x n) * X (n x c) with the n-sum done in exact-product tiles of kKeyTile whose
// partial results are combined with TwoSum (error-free) compensation. For dd and qd4 the
// whole product is compensated (reference/dd_kernels.hpp).
template <class T, class DW, class DX>
Mat<T> comp_product(const Eigen::MatrixBase<DW>& W, const Eigen::MatrixBase<DX>& X) {
  if constexpr (std::is_same_v<T, dd>) {
    return dd_product_nt(W, X.transpose());
  } else if constexpr (std::is_same_v<T, qd4>) {
    return qd_product_nt(W, X.transpose());
  } else {
    if constexpr (mp_cascade_scalar<T>()) {
      Mat<T> C;
      if (mp_cascade_enabled<T>() && mp_cascade_product_nt(W, X.transpose(), C)) return C;
    }
    const Eigen::Index r = W.rows(), c = X.cols(), n = W.cols();
    Mat<T> sum = Mat<T>::Zero(r, c), comp = Mat<T>::Zero(r, c), part(r, c);
    for (Eigen::Index t = 0; t < n; t += kKeyTile) {
      const Eigen::Index len = std::min<Eigen::Index>(kKeyTile, n - t);
      part.noalias() = W.middleCols(t, len) * X.middleRows(t, len);
      T* __restrict s = sum.data();
      T* __restrict e = comp.data();
      const T* __restrict x = part.data();
      for (Eigen::Index i = 0; i < r * c; ++i) {  // TwoSum: s + x = tt + err exactly
        const T tt = s[i] + x[i];
        const T bp = tt - s[i];
        e[i] += (s[i] - (tt - bp)) + (x[i] - bp);
        s[i] = tt;
      }
    }
    return sum + comp;
  }
}

// A (m x k) * B (n x k)^T: plain Eigen product (dot products over D are not compensated,
// their error is k u sum|a b|), except for dd and qd4 where it is compensated and vectorised.
template <class T, class DA, class DB>
Mat<T> product_nt(const Eigen::MatrixBase<DA>& A, const Eigen::MatrixBase<DB>& B) {
  if constexpr (std::is_same_v<T, dd>) return dd_product_nt(A, B);
  else if constexpr (std::is_same_v<T, qd4>) return qd_product_nt(A, B);
  else {
    if constexpr (mp_cascade_scalar<T>()) {
      Mat<T> C;
      if (mp_cascade_enabled<T>() && mp_cascade_product_nt(A, B, C)) return C;
    }
    return A * B.transpose();
  }
}

template <class T, class D> T comp_sum(const Eigen::MatrixBase<D>& x) {
  Neumaier<T> acc;
  for (Eigen::Index i = 0; i < x.size(); ++i) acc.add(x(i));
  return acc.value();
}
// sum_j a_j b_j with Neumaier summation of the products (each product rounded once).
template <class T, class DA, class DB> T comp_dot(const Eigen::MatrixBase<DA>& a, const Eigen::MatrixBase<DB>& b) {
  Neumaier<T> acc;
  for (Eigen::Index i = 0; i < a.size(); ++i) acc.add(T(a(i) * b(i)));
  return acc.value();
}

// Per-head data converted to T once, shared by all tasks.
template <class T> struct HeadData {
  Mat<T> K, V;  // [Lkv, D], [Lkv, Dv] for (b, kv head)
  // For the multiprecision cascade (mp_cascade_enabled<T>): K and V split once into four
  // doubles (inputs are doubles, so components 1-3 are zero), laid out for cascade_core:
  // K4[(c D + d) Lkv + key], V4[(c Lkv + key) Dv + col]. Empty otherwise.
  std::vector<double> K4, V4;
};

// Fill hd.K4 / hd.V4 from the double inputs (exact: the value and three zeros).
template <class T> void presplit_head(const Tensor<double>& k, const Tensor<double>& v, int b, int g, HeadData<T>& hd) {
  const long L = long(k.shape[1]), H = long(k.shape[2]), D = long(k.shape[3]), Dv = long(v.shape[3]);
  hd.K4.assign(4 * D * L, 0.0);
  hd.V4.assign(4 * L * Dv, 0.0);
  for (long j = 0; j < L; ++j) {
    for (long d = 0; d < D; ++d) hd.K4[d * L + j] = k.data[((long(b) * L + j) * H + g) * D + d];
    for (long c = 0; c < Dv; ++c) hd.V4[j * Dv + c] = v.data[((long(b) * L + j) * H + g) * Dv + c];
  }
}

// A (m x k) times the pre-split rows [r0, r0 + n) of a head matrix: keys (B = K rows, k = D) or
// values (C = A V, k = n keys). Falls back (returns false) when the cascade refuses A.
template <class T, class DA>
bool presplit_keys_nt(const Eigen::MatrixBase<DA>& A, const HeadData<T>& hd, long r0, long n, Mat<T>& C) {
  if constexpr (!mp_cascade_scalar<T>()) return false;
  else {
    const long L = hd.K.rows(), D = hd.K.cols();
    return mp_cascade_product_presplit<T>(A, hd.K4.data() + r0, n, D * L, L, C);
  }
}
template <class T, class DA>
bool presplit_values(const Eigen::MatrixBase<DA>& W, const HeadData<T>& hd, long r0, Mat<T>& C) {
  if constexpr (!mp_cascade_scalar<T>()) return false;
  else {
    const long L = hd.V.rows(), Dv = hd.V.cols();
    return mp_cascade_product_presplit<T>(W, hd.V4.data() + r0 * Dv, Dv, L * Dv, Dv, C);
  }
}

template <class T> Mat<T> gather_rows(const Tensor<double>& t, int b, int h) {
  const int L = int(t.shape[1]), H = int(t.shape[2]), D = int(t.shape[3]);
  Mat<T> m(L, D);
  for (int j = 0; j < L; ++j)
    for (int d = 0; d < D; ++d) m(j, d) = from_double<T>(t.data[((std::size_t(b) * L + j) * H + h) * D + d]);
  return m;
}

inline double cond_spd(const Eigen::MatrixXd& A) {
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(A, Eigen::EigenvaluesOnly);
  double lo = es.eigenvalues().minCoeff(), hi = es.eigenvalues().maxCoeff();
  return lo > 0 ? hi / lo : std::numeric_limits<double>::infinity();
}
template <class T> Eigen::MatrixXd to_double_mat(const Mat<T>& A) {
  Eigen::MatrixXd d(A.rows(), A.cols());
  for (Eigen::Index i = 0; i < A.size(); ++i) d.data()[i] = to_double(A.data()[i]);
  return d;
}

// Everything one row needs between the phases of a block.
template <class T> struct Row {
  RowRange R;
  int c0 = 0;          // offset of R.lo within the block's key union
  T m = T(0), omega = T(0);
  Vec<T> w, p;         // [n]
  Vec<T> theta;        // [D] probe (rho for the Query-anchored solver)
  T lambda = T(0);
  SolveReport solve;
  double cg_error = 0;
  bool have_kbar = false;
  Vec<T> kbar;         // [D]
  Mat<T> C;            // [D, D] key covariance (when computed)
};

// The rows i0 .. i0 + nb - 1 of batch b: their key ranges into `rows`, and the union [L0, L1)
// of the non-empty ones (L0 >= L1 when every row is empty). Shared by forward_block and
// backward_block (reference/backward.hpp).
template <class T> std::pair<int, int> block_rows(const Problem& p, int b, int i0, std::vector<Row<T>>& rows) {
  int L0 = p.Lkv, L1 = 0;
  for (std::size_t ii = 0; ii < rows.size(); ++ii) {
    rows[ii].R = row_range(p, b, i0 + int(ii));
    if (!rows[ii].R.empty()) L0 = std::min(L0, rows[ii].R.lo), L1 = std::max(L1, rows[ii].R.hi);
  }
  return {L0, L1};
}

// Phase 1 of a non-empty row from its logits over the key union (s_union = tau q.k_j for the
// union's keys): the row's offset c0 in the union, the pivot m = max s (its index into *jmax
// if asked), the weights w_j = exp(s_j - m), omega = sum w (compensated) and p = w / omega.
template <class T, class S>
void row_weights(Row<T>& row, const S& s_union, int L0, Eigen::Index* jmax = nullptr) {
  using std::exp;
  const int n = row.R.size();
  row.c0 = row.R.lo - L0;
  auto s = s_union.segment(row.c0, n);
  row.m = jmax ? s.maxCoeff(jmax) : s.maxCoeff();
  row.w.resize(n);
  for (int j = 0; j < n; ++j) row.w(j) = exp(T(s(j) - row.m));
  row.omega = comp_sum<T>(row.w);
  row.p = row.w / row.omega;
}

template <class T>
std::string row_name(int b, int h, int i) {
  return "row (b=" + std::to_string(b) + ", h=" + std::to_string(h) + ", i=" + std::to_string(i) + ")";
}

// Weighted key mean and covariance of one row (two-pass: centred before the product).
template <class T> void key_moments(Row<T>& row, const Mat<T>& K) {
  if (row.have_kbar) return;
  const int n = row.R.size();
  auto KA = K.middleRows(row.R.lo, n);
  row.kbar = comp_product<T>(row.p.transpose(), KA).transpose();
  Mat<T> Ec = KA.rowwise() - row.kbar.transpose();
  Mat<T> PEc = Ec.array().colwise() * row.p.array();
  row.C = comp_product<T>(PEc.transpose(), Ec);
  row.have_kbar = true;
}

// Solver probe for one row: rho = Sigma^-1 mu (Query) or theta = (C + lambda I)^-1 delta (KeyMean).
template <class T>
void solver_probe(const Problem& p, Row<T>& row, const Mat<T>& K, const Vec<T>& q, bool diagnostics,
                  const std::string& where) {
  const int n = row.R.size(), D = p.D;
  const auto& s = p.solver;
  Mat<T> A;
  Vec<T> y;
  if (p.anchor == Anchor::Query) {  // docs/math.md §3.2: Sigma = sum w e e^T + lambda omega I, mu = sum w e
    Mat<T> E = K.middleRows(row.R.lo, n).rowwise() - q.transpose();
    Mat<T> WE = E.array().colwise() * row.w.array();
    A = comp_product<T>(WE.transpose(), E);
    y = comp_product<T>(row.w.transpose(), E).transpose();
    A.diagonal().array() += row.lambda * row.omega;
  } else {  // docs/math.md §3.5: (C + lambda I) theta = kbar - q
    key_moments(row, K);
    A = row.C;
    A.diagonal().array() += row.lambda;
    y = row.kbar - q;
  }
  if (s.method == SolverMethod::Direct) {
    row.theta = solve_cholesky<T>(A, y, p.block_size(), where);
    if (diagnostics) {
      T ny = y.norm();
      row.solve.rel_residual = ny > T(0) ? to_double(T((A * row.theta - y).norm() / ny)) : 0.0;
    }
  } else {
    row.theta = solve_cg<T>(A, y, s.method == SolverMethod::JacobiCG, s.cg_atol, s.cg_rtol, s.cg_max_iters, row.solve);
    if (diagnostics) {
      Vec<T> exact = solve_cholesky<T>(A, y, D, where);
      T ne = exact.norm();
      row.cg_error = ne > T(0) ? to_double(T((row.theta - exact).norm() / ne)) : 0.0;
    }
  }
}

template <class T> T sgn_shift(const Problem& p, const T& Delta) {
  const T eps = from_double<T>(p.anchor_knobs.delta_eps);
  if (Delta > T(0)) return eps;
  if (Delta < T(0)) return -eps;
  return p.anchor_knobs.sgn0 == Sgn0::Plus ? eps : T(0);
}

template <class T>
void forward_block(const Problem& p, const Inputs& in, const HeadData<T>& hd, const Mat<T>& Q, const Mat<T>& Rq,
                   int b, int h, int i0, int i1, const ForwardOptions& opt, Forward<T>& F) {
  using std::exp;
  using std::log;
  using std::sqrt;
  using std::abs;
  const int D = p.D, Dv = p.Dv, nb = i1 - i0;
  const T tau = from_double<T>(p.tau());
  const bool has_probe = p.probe != Probe::None;

  // Union of the rows' key ranges.
  std::vector<Row<T>> rows(nb);
  const auto [L0, L1] = block_rows(p, b, i0, rows);
  const int nU = std::max(0, L1 - L0);
  auto KU = hd.K.middleRows(L0 < L1 ? L0 : 0, nU);
  auto VU = hd.V.middleRows(L0 < L1 ? L0 : 0, nU);

  // Phase 1: logits, pivots, weights, probes.
  const bool pre = !hd.K4.empty();  // multiprecision cascade with the head pre-split
  const long r0 = L0 < L1 ? L0 : 0;
  Mat<T> S;
  if (!(pre && presplit_keys_nt<T>(Q.middleRows(i0, nb), hd, r0, nU, S))) S = product_nt<T>(Q.middleRows(i0, nb), KU);
  S *= tau;
  Mat<T> Theta = Mat<T>::Zero(nb, D);
  for (int ii = 0; ii < nb; ++ii) {
    Row<T>& row = rows[ii];
    if (row.R.empty()) continue;
    row_weights(row, S.row(ii), L0);
    row.lambda = from_double<T>(in.lambda(b, h, i0 + ii));
    if (p.probe == Probe::Learned) row.theta = Rq.row(i0 + ii).transpose();
    else if (p.probe == Probe::Solver)
      solver_probe(p, row, hd.K, Vec<T>(Q.row(i0 + ii).transpose()), opt.diagnostics, row_name<T>(b, h, i0 + ii));
    else row.theta = Vec<T>::Zero(D);
    Theta.row(ii) = row.theta.transpose();
  }

  // Phase 2: z_j = theta_i . k_j for the whole block (one product).
  Mat<T> Z;
  if (!has_probe) Z = Mat<T>::Zero(nb, nU);
  else if (!(pre && presplit_keys_nt<T>(Theta, hd, r0, nU, Z))) Z = product_nt<T>(Theta, KU);

  // Phase 3: per-row scalars and the two weight rows W1, W2 (see the switch below).
  Mat<T> W1 = Mat<T>::Zero(nb, nU), W2 = Mat<T>::Zero(nb, nU);
  std::vector<T> zbar(nb, T(0)), sumc(nb, T(0)), gamma(nb, T(1)), Delta(nb, T(0)), dd(nb, T(0));
  std::vector<double> sumS(nb, 0.0), zratio(nb, 0.0), ess(nb, 0.0);
  for (int ii = 0; ii < nb; ++ii) {
    Row<T>& row = rows[ii];
    if (row.R.empty()) continue;
    const int n = row.R.size();
    auto z = Z.row(ii).segment(row.c0, n);
    Vec<T> zr = z.transpose();
    zbar[ii] = comp_dot<T>(row.p, zr);
    Vec<T> c = row.p.array() * (zr.array() - zbar[ii]);
    sumc[ii] = comp_sum<T>(c);
    // mu . theta = sum_j w_j (z_j - theta.q): the query-anchored normaliser (docs/math.md §3.2, §4.3)
    const T thq = row.theta.dot(Q.row(i0 + ii).transpose());
    Vec<T> ne = zr.array() - thq;  // theta . e_j
    const T mu_theta = comp_dot<T>(row.w, ne);
    Delta[ii] = row.omega - mu_theta;
    if (p.anchor == Anchor::Query) {
      dd[ii] = Delta[ii] + sgn_shift(p, Delta[ii]);
      if (dd[ii] == T(0))
        throw NumericalError("query-anchored denominator d = 0 at " + row_name<T>(b, h, i0 + ii) +
                             " (Delta = 0 and sgn0 = 0)");
      gamma[ii] = row.omega / dd[ii];
    } else {
      dd[ii] = row.omega;
    }
    Vec<T> Srow;  // S_j, the attention scores, for the partition-of-unity diagnostic
    if (p.form == Formulation::Centred) {
      W1.row(ii).segment(row.c0, n) = row.p.transpose();
      W2.row(ii).segment(row.c0, n) = c.transpose();
      Srow = row.p - gamma[ii] * c;
    } else if (p.anchor == Anchor::KeyMean) {  // Algorithm 1: O1 = sum w v, O2 = sum w z v
      W1.row(ii).segment(row.c0, n) = row.w.transpose();
      W2.row(ii).segment(row.c0, n) = (row.w.array() * zr.array()).matrix().transpose();
      Srow = row.p.array() * (T(1) + zbar[ii] - zr.array());
    } else {  // docs/math.md §3.2: S_j = w_j (1 - theta.e_j) / d
      W1.row(ii).segment(row.c0, n) = row.p.transpose();
      Srow = row.w.array() * (T(1) - ne.array()) / dd[ii];
      W2.row(ii).segment(row.c0, n) = Srow.transpose();
    }
    sumS[ii] = std::abs(to_double(T(comp_sum<T>(Srow) - T(1))));
    if (opt.diagnostics) {
      T s2 = comp_dot<T>(c, Vec<T>(zr.array() - zbar[ii]));
      double sig = to_double(T(sqrt(s2)));
      zratio[ii] = sig > 0 ? std::abs(to_double(zbar[ii])) / sig : 0.0;
      ess[ii] = to_double(T(row.omega * row.omega / row.w.squaredNorm()));
    }
  }

  // Phase 4: the two value products, compensated over key tiles.
  Mat<T> Y1, Y2;
  if (!(pre && presplit_values<T>(W1, hd, r0, Y1))) Y1 = comp_product<T>(W1, VU);
  if (!(has_probe || p.form == Formulation::Accumulator)) Y2 = Mat<T>::Zero(nb, Dv);
  else if (!(pre && presplit_values<T>(W2, hd, r0, Y2))) Y2 = comp_product<T>(W2, VU);

  // Phase 5: assemble outputs.
  for (int ii = 0; ii < nb; ++ii) {
    const int i = i0 + ii;
    Row<T>& row = rows[ii];
    const bool empty = row.R.empty();
    Vec<T> out = Vec<T>::Zero(Dv), vbar = Vec<T>::Zero(Dv);
    if (!empty) {
      if (p.form == Formulation::Centred) {
        vbar = Y1.row(ii).transpose();
        out = vbar - gamma[ii] * (Vec<T>(Y2.row(ii).transpose()) - vbar * sumc[ii]);
      } else if (p.anchor == Anchor::KeyMean) {
        const T d1 = row.omega, d2 = zbar[ii] * row.omega;
        vbar = Y1.row(ii).transpose() / d1;
        out = vbar * (T(1) + d2 / d1) - Vec<T>(Y2.row(ii).transpose()) / d1;
      } else {
        vbar = Y1.row(ii).transpose();
        out = Y2.row(ii).transpose();
      }
    }
    for (int d = 0; d < Dv; ++d) F.out(b, i, h, d) = out(d);
    if (opt.saved) {
      auto& sv = F.saved;
      sv.at("m")(b, h, i) = row.m;
      sv.at("lse")(b, h, i) = empty ? T(-std::numeric_limits<double>::infinity()) : T(row.m + log(row.omega));
      sv.at("omega")(b, h, i) = row.omega;
      sv.at("zbar")(b, h, i) = zbar[ii];
      sv.at("Delta")(b, h, i) = Delta[ii];
      sv.at("d")(b, h, i) = dd[ii];
      for (int d = 0; d < D; ++d) sv.at("probe")(b, i, h, d) = empty ? T(0) : row.theta(d);
      for (int d = 0; d < Dv; ++d) sv.at("vbar")(b, i, h, d) = vbar(d);
    }
    if (opt.diagnostics) {
      auto& dg = F.diag;
      dg.at("empty")(b, h, i) = empty ? 1.0 : 0.0;
      dg.at("n_keys")(b, h, i) = row.R.size();
      if (empty) continue;
      dg.at("ess")(b, h, i) = ess[ii];
      dg.at("zbar_over_sigma")(b, h, i) = zratio[ii];
      dg.at("sum_S_minus_1")(b, h, i) = sumS[ii];
      double alpha = to_double(T(gamma[ii] - T(1)));
      dg.at("delta_over_omega")(b, h, i) = to_double(T(Delta[ii] / row.omega));
      dg.at("eps_over_delta")(b, h, i) =
          p.anchor == Anchor::Query ? p.anchor_knobs.delta_eps / std::abs(to_double(Delta[ii])) : 0.0;
      if (p.probe == Probe::Solver) {
        key_moments(row, hd.K);
        Vec<T> delta = row.kbar - Q.row(i).transpose();
        Mat<T> Bm = row.C;
        Bm.diagonal().array() += row.lambda;
        Eigen::MatrixXd Bd = to_double_mat(Bm);
        dg.at("cond_C")(b, h, i) = cond_spd(Bd);
        Eigen::MatrixXd Sd = to_double_mat(Mat<T>(Bm + delta * delta.transpose()));
        dg.at("cond_Sigma")(b, h, i) = cond_spd(Sd);
        // alpha = delta^T (C + lambda I)^-1 delta, solved in T (not from gamma)
        Eigen::LDLT<Mat<T>> ldlt(Bm);
        alpha = to_double(T(delta.dot(ldlt.solve(delta))));
        dg.at("cg_iters")(b, h, i) = row.solve.iterations;
        dg.at("cg_residual")(b, h, i) = row.solve.rel_residual;
        dg.at("cg_error")(b, h, i) = row.cg_error;
      }
      dg.at("alpha")(b, h, i) = alpha;
    }
  }
}

}  // namespace detail

// The multiprecision product cascade (detail::mp_cascade_enabled), on by default; process-wide.
inline void set_mp_cascade(bool on) { detail::mp_cascade_switch().store(on); }
inline bool mp_cascade() { return detail::mp_cascade_switch().load(); }


// The reference forward. Throws plx::Error for invalid problems/inputs and
// plx::NumericalError where the mathematics is undefined (singular Sigma at lambda = 0).
template <class T>
Forward<T> attention_forward(const Problem& p, const Inputs& in, const ForwardOptions& opt = {}) {
  check_inputs(p, in);
  const std::size_t B = p.B, Lq = p.Lq, Hq = p.Hq, D = p.D, Dv = p.Dv;
  Forward<T> F;
  // Poisoned: every entry must be written by exactly one task (a forgotten row stays NaN).
  const T nan = from_double<T>(std::numeric_limits<double>::quiet_NaN());
  F.out = Tensor<T>({B, Lq, Hq, Dv}, nan);
  if (opt.saved) {
    for (const char* n : {"m", "lse", "omega", "zbar", "Delta", "d"}) F.saved[n] = Tensor<T>({B, Hq, Lq}, nan);
    F.saved["probe"] = Tensor<T>({B, Lq, Hq, D}, nan);
    F.saved["vbar"] = Tensor<T>({B, Lq, Hq, Dv}, nan);
  }
  if (opt.diagnostics)
    for (const auto& n : diagnostic_names()) F.diag[n] = Tensor<double>({B, Hq, Lq});

  // Convert K, V per (b, kv head) and Q, R per (b, q head) once.
  std::vector<detail::HeadData<T>> kv(B * p.Hkv);
  std::vector<Mat<T>> Qh(B * Hq), Rh(B * Hq);
  for (int b = 0; b < p.B; ++b) {
    for (int g = 0; g < p.Hkv; ++g)
    {
      kv[b * p.Hkv + g].K = detail::gather_rows<T>(in.k, b, g);
      kv[b * p.Hkv + g].V = detail::gather_rows<T>(in.v, b, g);
      if constexpr (detail::mp_cascade_scalar<T>())
        if (detail::mp_cascade_enabled<T>()) detail::presplit_head(in.k, in.v, b, g, kv[b * p.Hkv + g]);
    }
    for (int h = 0; h < p.Hq; ++h) {
      Qh[b * Hq + h] = detail::gather_rows<T>(in.q, b, h);
      if (p.probe == Probe::Learned) Rh[b * Hq + h] = detail::gather_rows<T>(in.r, b, h);
    }
  }
  // Tasks only look keys up with at(): the maps are never modified concurrently.

  const int QB = std::max(1, opt.query_block);
  const int nblk = (p.Lq + QB - 1) / QB;
  const long ntask = long(p.B) * p.Hq * nblk;
  std::vector<std::exception_ptr> errs(ntask);
#pragma omp parallel for schedule(dynamic, 1)
  for (long t = 0; t < ntask; ++t) {
    try {
      ScalarTraits<T>::thread_setup();
      const int blk = int(t % nblk), h = int((t / nblk) % p.Hq), b = int(t / (long(nblk) * p.Hq));
      const int i0 = blk * QB, i1 = std::min(p.Lq, i0 + QB);
      const int g = h / p.group();
      detail::forward_block<T>(p, in, kv[b * p.Hkv + g], Qh[b * Hq + h], Rh[b * Hq + h], b, h, i0, i1, opt, F);
    } catch (...) {
      errs[t] = std::current_exception();
    }
  }
  for (auto& e : errs)
    if (e) std::rethrow_exception(e);
  return F;
}

// Convenience: output only, as doubles (the hi part).
template <class T> Tensor<double> attention_forward_double(const Problem& p, const Inputs& in) {
  auto F = attention_forward<T>(p, in);
  return convert<double>(F.out, [](const T& x) { return to_double(x); });
}

}  // namespace plx

// Pre-instantiated per scalar in plx_reference_inst (see reference/all.hpp).
#define PLX_ATTENTION_TEMPLATES(T, PREFIX) \
  PREFIX Forward<T> attention_forward<T>(const Problem&, const Inputs&, const ForwardOptions&);
