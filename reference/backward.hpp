// reference/backward.hpp — the reference backward: dL/d(q, k, v, r, lambda) for L = sum(dO * out).
//
// Charter: analytic gradients of attention_forward<T> for every member (docs/math.md §5), in scalar T:
// softmax (§5.1), Parallax both forms (§5.2), query-anchored members through the solve by implicit
// differentiation (§5.3: FlashLLA LLA full / block / CG, ridge_grad Exact | Detached; the learned
// query-anchored ablation; softmax with a query anchor), and the stable covariance-form LLA (§5.3 last
// paragraph). Also the kernel-style backward from saved tensors (Parallax, softmax) with its per-row
// preprocessing t = <dO, out>, b = <dO, vbar>. Decode (p.decode) is forward only and is refused.
// Deterministic: per-(b, h, query-block) partial dK/dV are reduced in task order, one wave of tasks at a time.
// Shapes: q, r, dq, dr [B,Lq,Hq,D]; k, dk [B,Lkv,Hkv,D]; v, dv [B,Lkv,Hkv,Dv]; dO [B,Lq,Hq,Dv];
// per-row dlambda, t, b [B,Hq,Lq]. Formulas and oracle cross-checks: docs/gradients.md.
#pragma once
#include <Eigen/Dense>
#include <algorithm>
#include <exception>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "reference/attention.hpp"

namespace plx {

template <class T> struct Gradients {
  Tensor<T> dq, dk, dv, dr;  // dq,dr [B,Lq,Hq,D]; dk [B,Lkv,Hkv,D]; dv [B,Lkv,Hkv,Dv]; dr zero unless probe == Learned
  Tensor<T> dlambda;         // [B,Hq,Lq] per-row dL/dlambda_i (zeros unless probe == Solver)
};

// The kernel-style backward's result: the gradients plus the per-row preprocessing terms.
template <class T> struct SavedBackward {
  Gradients<T> grad;
  Tensor<T> t, b;  // [B,Hq,Lq]: t = <dO_i, out_i> (FlashAttention's "D"), b = <dO_i, vbar_i>
};

namespace detail {

template <class T> Gradients<T> zero_gradients(const Problem& p) {
  const std::size_t B = p.B, Lq = p.Lq, Lkv = p.Lkv, Hq = p.Hq, Hkv = p.Hkv, D = p.D, Dv = p.Dv;
  Gradients<T> g;
  g.dq = Tensor<T>({B, Lq, Hq, D});
  g.dr = Tensor<T>({B, Lq, Hq, D});
  g.dk = Tensor<T>({B, Lkv, Hkv, D});
  g.dv = Tensor<T>({B, Lkv, Hkv, Dv});
  g.dlambda = Tensor<T>({B, Hq, Lq});
  return g;
}

// dO must match out's shape and be finite; the message names the first bad index.
inline void check_dO(const Problem& p, const Inputs& in) {
  in.dO.require_shape({std::size_t(p.B), std::size_t(p.Lq), std::size_t(p.Hq), std::size_t(p.Dv)}, "dO");
  for (std::size_t i = 0; i < in.dO.size(); ++i)
    if (!std::isfinite(in.dO.data[i]))
      throw Error("tensor 'dO' has a non-finite value " + std::to_string(in.dO.data[i]) + " at index " +
                  shape_str({i / (std::size_t(p.Lq) * p.Hq * p.Dv), (i / (std::size_t(p.Hq) * p.Dv)) % p.Lq,
                             (i / std::size_t(p.Dv)) % p.Hq, i % p.Dv}));
}

inline void refuse_decode(const Problem& p, const char* who) {
  if (p.decode)
    throw Error(std::string(who) + ": decode is forward only (docs/math.md §6.1); a decode step has no backward. "
                                   "Set problem.decode = false to differentiate a one-query prefill row.");
}

// Partial dK/dV of one (b, h, query block) task: rows L0 .. L0 + dK.rows() of kv head g(h).
template <class T> struct KVPart {
  int L0 = 0;
  Mat<T> dK, dV;
};

// Block-diagonal helpers (block size bs; bs = D is the full solve), docs/math.md §5.3 last lines.
// bilinear_j = sum_t (a_t . E_jt)(c_t . E_jt);   bracket_j = [(c_t . E_jt) a_t + (a_t . E_jt) c_t]_t.
template <class T> Vec<T> block_bilinear(const Mat<T>& E, const Vec<T>& a, const Vec<T>& c, int bs) {
  Vec<T> s = Vec<T>::Zero(E.rows());
  for (int t = 0; t < int(E.cols()); t += bs) {
    Vec<T> ea = E.middleCols(t, bs) * a.segment(t, bs), ec = E.middleCols(t, bs) * c.segment(t, bs);
    s.array() += ea.array() * ec.array();
  }
  return s;
}
template <class T> Mat<T> block_bracket(const Mat<T>& E, const Vec<T>& a, const Vec<T>& c, int bs) {
  Mat<T> X(E.rows(), E.cols());
  for (int t = 0; t < int(E.cols()); t += bs) {
    Vec<T> ea = E.middleCols(t, bs) * a.segment(t, bs), ec = E.middleCols(t, bs) * c.segment(t, bs);
    X.middleCols(t, bs) = ec * a.segment(t, bs).transpose() + ea * c.segment(t, bs).transpose();
  }
  return X;
}

// The SPD system of a solver probe, built exactly as detail::solver_probe builds it, so the probe
// equals the forward's bit for bit. Query: Sigma, mu (docs/math.md §3.2). KeyMean: C + lambda I, kbar - q (§3.5).
template <class T> void ridge_system(const Problem& p, Row<T>& row, const Mat<T>& K, const Vec<T>& q, Mat<T>& A, Vec<T>& y) {
  const int n = row.R.size();
  if (p.anchor == Anchor::Query) {
    Mat<T> E = K.middleRows(row.R.lo, n).rowwise() - q.transpose();
    Mat<T> WE = E.array().colwise() * row.w.array();
    A = comp_product<T>(WE.transpose(), E);
    y = comp_product<T>(row.w.transpose(), E).transpose();
    A.diagonal().array() += row.lambda * row.omega;
  } else {
    key_moments(row, K);
    A = row.C;
    A.diagonal().array() += row.lambda;
    y = row.kbar - q;
  }
}

// Solve with the problem's method (Direct: block Cholesky; CG / Jacobi-CG: docs/math.md §3.7 with the
// forward's knobs). Used for the probe and for the backward's second solve.
template <class T> Vec<T> ridge_solve(const Problem& p, const Mat<T>& A, const Vec<T>& y, const std::string& where) {
  const auto& s = p.solver;
  if (s.method == SolverMethod::Direct) return solve_cholesky<T>(A, y, p.block_size(), where);
  SolveReport rep;
  return solve_cg<T>(A, y, s.method == SolverMethod::JacobiCG, s.cg_atol, s.cg_rtol, s.cg_max_iters, rep);
}

// One (b, h, query block [i0, i1)) of the backward. Writes dq, dr, dlambda rows it owns and the
// partial dK, dV of its key union into `part`.
template <class T>
void backward_block(const Problem& p, const Inputs& in, const HeadData<T>& hd, const Mat<T>& Q, const Mat<T>& Rq,
                    const Mat<T>& dO, int b, int h, int i0, int i1, Gradients<T>& Gr, KVPart<T>& part) {
  using std::exp;
  const int D = p.D, Dv = p.Dv, nb = i1 - i0, bs = p.block_size();
  const T tau = from_double<T>(p.tau());
  const bool solver = p.probe == Probe::Solver, exact_ridge = p.solver.ridge_grad == RidgeGrad::Exact;

  std::vector<Row<T>> rows(nb);
  const auto [L0, L1] = block_rows(p, b, i0, rows);
  const int nU = std::max(0, L1 - L0);
  part.L0 = L0 < L1 ? L0 : 0;
  part.dK = Mat<T>::Zero(nU, D);
  part.dV = Mat<T>::Zero(nU, Dv);
  if (nU == 0) return;  // every row empty: exact zeros (docs/math.md §1.4)
  auto KU = hd.K.middleRows(L0, nU);
  auto VU = hd.V.middleRows(L0, nU);
  auto Qb = Q.middleRows(i0, nb);
  auto dOb = dO.middleRows(i0, nb);

  // Recompute the forward's per-row state (phase 1 of forward_block) and G_ij = g_i . v_j.
  Mat<T> S = tau * (Qb * KU.transpose());
  Mat<T> Gm = dOb * VU.transpose();
  Mat<T> Theta = Mat<T>::Zero(nb, D);
  std::vector<Mat<T>> A(nb);  // the SPD system per row (solver probes), for the second solve
  std::vector<Eigen::Index> jmax(nb, 0);
  for (int ii = 0; ii < nb; ++ii) {
    Row<T>& row = rows[ii];
    if (row.R.empty()) continue;
    row_weights(row, S.row(ii), L0, &jmax[ii]);
    row.lambda = from_double<T>(in.lambda(b, h, i0 + ii));
    if (p.probe == Probe::Learned) row.theta = Rq.row(i0 + ii).transpose();
    else if (solver) {
      Vec<T> y;
      ridge_system(p, row, hd.K, Vec<T>(Q.row(i0 + ii).transpose()), A[ii], y);
      row.theta = ridge_solve(p, A[ii], y, row_name<T>(b, h, i0 + ii));
    } else row.theta = Vec<T>::Zero(D);
    Theta.row(ii) = row.theta.transpose();
  }

  if (p.anchor == Anchor::KeyMean) {
    // ---- docs/math.md §5.2 (Parallax; softmax is theta = 0), vectorised over the block ----
    Mat<T> Z = p.probe != Probe::None ? Mat<T>(Theta * KU.transpose()) : Mat<T>::Zero(nb, nU);
    Mat<T> GL = Mat<T>::Zero(nb, nU), GU = Mat<T>::Zero(nb, nU), SW = Mat<T>::Zero(nb, nU);
    Mat<T> dQx = Mat<T>::Zero(nb, D);  // -u' of the covariance-form solve (lla_cov)
    for (int ii = 0; ii < nb; ++ii) {
      Row<T>& row = rows[ii];
      if (row.R.empty()) continue;
      const int n = row.R.size(), c0 = row.c0;
      Vec<T> z = Z.row(ii).segment(c0, n).transpose(), g = Gm.row(ii).segment(c0, n).transpose();
      const T zbar = comp_product<T>(row.p.transpose(), z)(0, 0);
      const T bb = comp_product<T>(row.p.transpose(), g)(0, 0);                     // b = g . vbar
      Vec<T> sw = row.p.array() * (T(1) + zbar - z.array());                      // S_j
      const T tt = comp_product<T>(sw.transpose(), g)(0, 0);                         // t = g . out
      Vec<T> gmb = g.array() - bb;
      Vec<T> gl = row.p.array() * (g.array() - tt + (zbar - z.array()) * gmb.array());
      Vec<T> gu = -(row.p.array() * gmb.array());
      if (solver) {  // covariance-form LLA: chain dtheta = dr through theta = (C + lambda I)^-1 (kbar - q)
        auto KA = KU.middleRows(c0, n);
        Vec<T> dtheta = comp_product<T>(gu.transpose(), KA).transpose();
        Vec<T> up = ridge_solve(p, A[ii], dtheta, row_name<T>(b, h, i0 + ii));  // u' (block-diag if b < D)
        Gr.dlambda(b, h, i0 + ii) = -up.dot(row.theta);
        dQx.row(ii) = -up.transpose();
        Mat<T> Ec = KA.rowwise() - row.kbar.transpose();
        Vec<T> dLdp = Ec * up - block_bilinear<T>(Ec, up, row.theta, bs);
        const T mean = comp_product<T>(row.p.transpose(), dLdp)(0, 0);
        gl.array() += row.p.array() * (dLdp.array() - mean);
        Mat<T> dKA = row.p * up.transpose() - Mat<T>(block_bracket<T>(Ec, up, row.theta, bs).array().colwise() * row.p.array());
        part.dK.middleRows(c0, n) += dKA;
      }
      GL.row(ii).segment(c0, n) = gl.transpose();
      GU.row(ii).segment(c0, n) = gu.transpose();
      SW.row(ii).segment(c0, n) = sw.transpose();
    }
    Mat<T> dQ = tau * comp_product<T>(GL, KU) + dQx;
    for (int ii = 0; ii < nb; ++ii)
      for (int d = 0; d < D; ++d) Gr.dq(b, i0 + ii, h, d) = dQ(ii, d);
    if (p.probe == Probe::Learned) {
      Mat<T> dR = comp_product<T>(GU, KU);
      for (int ii = 0; ii < nb; ++ii)
        for (int d = 0; d < D; ++d) Gr.dr(b, i0 + ii, h, d) = dR(ii, d);
    }
    part.dK += tau * (GL.transpose() * Qb);
    if (p.probe != Probe::None) part.dK += GU.transpose() * Theta;
    part.dV += SW.transpose() * dOb;
    return;
  }

  // ---- Query anchor (docs/math.md §5.3; learned probe and theta = 0 are the same lines without the solve) ----
  for (int ii = 0; ii < nb; ++ii) {
    Row<T>& row = rows[ii];
    if (row.R.empty()) continue;
    const int n = row.R.size(), c0 = row.c0, i = i0 + ii;
    auto KA = KU.middleRows(c0, n);
    Vec<T> q = Qb.row(ii).transpose(), g = dOb.row(ii).transpose(), G = Gm.row(ii).segment(c0, n).transpose();
    const Vec<T>& th = row.theta;
    Mat<T> E = KA.rowwise() - q.transpose();               // e_j = k_j - q
    Vec<T> ne = E * th;                                     // theta . e_j
    Vec<T> nn = T(1) - ne.array();                          // n_j
    const T Delta = row.omega - comp_product<T>(row.w.transpose(), ne)(0, 0);
    const T d = Delta + sgn_shift(p, Delta);
    if (d == T(0))
      throw NumericalError("query-anchored denominator d = 0 at " + row_name<T>(b, h, i) + " (Delta = 0 and sgn0 = 0)");
    Vec<T> Sv = row.w.array() * nn.array() / d;             // S_j
    T beta = comp_product<T>(G.transpose(), Sv)(0, 0) / d;  // -dL/dd
    Vec<T> c = G.array() * row.w.array() / d;
    Vec<T> Tv = comp_product<T>(c.transpose(), E).transpose();
    Vec<T> mu = comp_product<T>(row.w.transpose(), E).transpose();
    // The Centred formulation with a query anchor (out = vbar - (omega/d) theta^T Cov(k, v)) is the
    // accumulator output plus vbar * sh / d, sh = d - Delta (the delta_eps shift): they differ only
    // when delta_eps != 0. Its extra loss (g.vbar) sh / d adds to -dL/dDelta, to dL/dw through
    // vbar, and to dv.
    const T sh = d - Delta;
    T bq = T(0);
    if (p.form == Formulation::Centred) {
      bq = comp_product<T>(row.p.transpose(), G)(0, 0);  // g . vbar
      beta += bq * sh / (d * d);
      Sv += (sh / d) * row.p;
    }
    Vec<T> gth = beta * mu - Tv;                            // dL/dtheta with the solve held fixed
    // Direct terms (theta fixed): dL/dw_j = G_j n_j/d - beta n_j, dL/de_j = (beta w_j - c_j) theta.
    Vec<T> dLdw = G.array() * nn.array() / d - beta * nn.array();
    if (p.form == Formulation::Centred) dLdw.array() += (sh / (d * row.omega)) * (G.array() - bq);
    Vec<T> coef = beta * row.w.array() - c.array();
    Mat<T> dLdE = coef * th.transpose();
    if (p.probe == Probe::Learned) {
      for (int dd = 0; dd < D; ++dd) Gr.dr(b, i, h, dd) = gth(dd);
    } else if (solver) {  // through rho = Sigma^-1 mu: u = Sigma^-1 dL/drho
      Vec<T> u = ridge_solve(p, A[ii], gth, row_name<T>(b, h, i));
      const T urho = u.dot(th);
      const T eps_r = exact_ridge ? T(-row.lambda * urho) : T(0);  // ridge-omega coupling (docs/math.md §5.3, §9.1)
      Gr.dlambda(b, h, i) = -row.omega * urho;
      dLdw.array() += (E * u).array() - block_bilinear<T>(E, u, th, bs).array() + eps_r;
      dLdE += row.w * u.transpose() - Mat<T>(block_bracket<T>(E, u, th, bs).array().colwise() * row.w.array());
    }
    Vec<T> ds = row.w.array() * dLdw.array();
    // Pivot: w_j = exp(s_j - m), m = s_jmax. Only delta_eps breaks the scale invariance of the
    // query-anchored output, so this term is O(delta_eps / d) — kept because the oracles see it.
    // Detached (FlashLLA's convention) holds m fixed as well as lambda * omega.
    if (exact_ridge || !solver) ds(jmax[ii]) -= comp_sum<T>(ds);
    Vec<T> dq = tau * comp_product<T>(ds.transpose(), KA).transpose() - Vec<T>(dLdE.colwise().sum().transpose());
    for (int dd = 0; dd < D; ++dd) Gr.dq(b, i, h, dd) = dq(dd);
    part.dK.middleRows(c0, n) += tau * ds * q.transpose() + dLdE;
    part.dV.middleRows(c0, n) += Sv * g.transpose();
  }
}

// Run `block(b, h, i0, i1, part)` over all (b, h, query block) tasks in parallel and reduce the
// partial dK/dV in a fixed order (task index: h within the GQA group, then block), so the sums are
// thread-count independent. Tasks run in waves of a few per thread and each wave is reduced before
// the next starts: a partial dK/dV spans the block's key union (up to Lkv rows), so keeping all of
// them would take O(Lq Lkv (D + Dv) / 32) memory; a wave keeps O(threads Lkv (D + Dv)). The
// reduction order is the task order whatever the wave size, so the result does not depend on it.
template <class T, class F> void run_tasks(const Problem& p, Gradients<T>& Gr, int QB, F&& block) {
  const int nblk = (p.Lq + QB - 1) / QB;
  const long ntask = long(p.B) * p.Hq * nblk;
#ifdef _OPENMP
  const long wave = 4L * omp_get_max_threads();
#else
  const long wave = 4;
#endif
  std::vector<KVPart<T>> parts(std::min(ntask, wave));
  std::vector<std::exception_ptr> errs(parts.size());
  for (long t0 = 0; t0 < ntask; t0 += wave) {
    const long nw = std::min(wave, ntask - t0);
#pragma omp parallel for schedule(dynamic, 1)
    for (long w = 0; w < nw; ++w) {
      const long t = t0 + w;
      try {
        ScalarTraits<T>::thread_setup();
        const int blk = int(t % nblk), h = int((t / nblk) % p.Hq), b = int(t / (long(nblk) * p.Hq));
        const int i0 = blk * QB, i1 = std::min(p.Lq, i0 + QB);
        block(b, h, i0, i1, parts[w]);
      } catch (...) {
        errs[w] = std::current_exception();
      }
    }
    for (long w = 0; w < nw; ++w)  // the lowest-numbered failing task's error, as before waves
      if (errs[w]) std::rethrow_exception(errs[w]);
    for (long w = 0; w < nw; ++w) {
      const long t = t0 + w;
      const int h = int((t / nblk) % p.Hq), b = int(t / (long(nblk) * p.Hq)), g = h / p.group();
      KVPart<T>& pt = parts[w];
      for (int j = 0; j < int(pt.dK.rows()); ++j) {
        for (int d = 0; d < p.D; ++d) Gr.dk(b, pt.L0 + j, g, d) += pt.dK(j, d);
        for (int d = 0; d < p.Dv; ++d) Gr.dv(b, pt.L0 + j, g, d) += pt.dV(j, d);
      }
      pt = KVPart<T>{};  // free the wave's partials before the next wave allocates its own
    }
  }
}

template <class T> struct HeadMats {
  std::vector<HeadData<T>> kv;
  std::vector<Mat<T>> Q, R, dO;
};
template <class T> HeadMats<T> gather_heads(const Problem& p, const Inputs& in, bool need_r) {
  HeadMats<T> H;
  H.kv.resize(p.B * p.Hkv);
  H.Q.resize(p.B * p.Hq), H.R.resize(p.B * p.Hq), H.dO.resize(p.B * p.Hq);
  for (int b = 0; b < p.B; ++b) {
    for (int g = 0; g < p.Hkv; ++g) H.kv[b * p.Hkv + g] = {gather_rows<T>(in.k, b, g), gather_rows<T>(in.v, b, g)};
    for (int h = 0; h < p.Hq; ++h) {
      H.Q[b * p.Hq + h] = gather_rows<T>(in.q, b, h);
      H.dO[b * p.Hq + h] = gather_rows<T>(in.dO, b, h);
      if (need_r) H.R[b * p.Hq + h] = gather_rows<T>(in.r, b, h);
    }
  }
  return H;
}

}  // namespace detail

// Gradient of L = sum(dO * out) for the problem's member, using in.dO and p.solver.ridge_grad.
// A CG problem differentiates the exact-solve function, with both solves done by the same CG
// (docs/gradients.md). Throws plx::Error for bad input or decode, NumericalError for singular systems.
template <class T> Gradients<T> attention_backward(const Problem& p, const Inputs& in) {
  detail::refuse_decode(p, "attention_backward");
  check_inputs(p, in);
  detail::check_dO(p, in);
  Gradients<T> Gr = detail::zero_gradients<T>(p);
  auto H = detail::gather_heads<T>(p, in, p.probe == Probe::Learned);
  detail::run_tasks<T>(p, Gr, 32, [&](int b, int h, int i0, int i1, detail::KVPart<T>& part) {
    const int k = b * p.Hq + h;
    detail::backward_block<T>(p, in, H.kv[b * p.Hkv + h / p.group()], H.Q[k], H.R[k], H.dO[k], b, h, i0, i1, Gr, part);
  });
  return Gr;
}

namespace detail {
// Kernel-style backward of docs/math.md §5.2 from saved tensors (softmax: z = 0, vbar = out).
// p_ij = exp(s_ij - m_i) / d1_i; t = <dO, out>; b = <dO, vbar>; gl, gu as §5.2 with zbar from the save.
template <class T>
SavedBackward<T> backward_from_saved(const Problem& p, const Inputs& in, const Tensor<T>& out, const Tensor<T>* vbar,
                                     const Tensor<T>& d1, const Tensor<T>* zbar, const Tensor<T>& m, bool softmax) {
  using std::exp;
  const std::size_t B = p.B, Lq = p.Lq, Hq = p.Hq, D = p.D, Dv = p.Dv;
  out.require_shape({B, Lq, Hq, Dv}, "out");
  if (vbar) vbar->require_shape({B, Lq, Hq, Dv}, "vbar");
  d1.require_shape({B, Hq, Lq}, softmax ? "lse" : "d1");
  if (zbar) zbar->require_shape({B, Hq, Lq}, "zbar");
  m.require_shape({B, Hq, Lq}, "m");
  SavedBackward<T> R;
  R.grad = zero_gradients<T>(p);
  R.t = Tensor<T>({B, Hq, Lq});
  R.b = Tensor<T>({B, Hq, Lq});
  auto H = gather_heads<T>(p, in, !softmax);
  const T tau = from_double<T>(p.tau());
  run_tasks<T>(p, R.grad, 32, [&](int b, int h, int i0, int i1, KVPart<T>& part) {
    const int nb = i1 - i0, k = b * p.Hq + h;
    const HeadData<T>& hd = H.kv[b * p.Hkv + h / p.group()];
    std::vector<RowRange> rr(nb);
    int L0 = p.Lkv, L1 = 0;
    for (int ii = 0; ii < nb; ++ii) {
      rr[ii] = row_range(p, b, i0 + ii);
      if (!rr[ii].empty()) L0 = std::min(L0, rr[ii].lo), L1 = std::max(L1, rr[ii].hi);
    }
    const int nU = std::max(0, L1 - L0);
    part.L0 = L0 < L1 ? L0 : 0;
    part.dK = Mat<T>::Zero(nU, p.D);
    part.dV = Mat<T>::Zero(nU, p.Dv);
    if (nU == 0) return;
    auto KU = hd.K.middleRows(L0, nU);
    auto VU = hd.V.middleRows(L0, nU);
    auto Qb = H.Q[k].middleRows(i0, nb);
    auto dOb = H.dO[k].middleRows(i0, nb);
    Mat<T> S = tau * (Qb * KU.transpose());
    Mat<T> Gm = dOb * VU.transpose();
    Mat<T> Rb = softmax ? Mat<T>::Zero(nb, p.D) : Mat<T>(H.R[k].middleRows(i0, nb));
    Mat<T> Z = softmax ? Mat<T>::Zero(nb, nU) : Mat<T>(Rb * KU.transpose());
    Mat<T> GL = Mat<T>::Zero(nb, nU), GU = Mat<T>::Zero(nb, nU), SW = Mat<T>::Zero(nb, nU);
    for (int ii = 0; ii < nb; ++ii) {
      const int i = i0 + ii;
      if (rr[ii].empty()) continue;
      T tt = T(0), bb = T(0);
      for (int d = 0; d < p.Dv; ++d) {
        tt += dOb(ii, d) * out(b, i, h, d);
        bb += dOb(ii, d) * (vbar ? (*vbar)(b, i, h, d) : out(b, i, h, d));
      }
      R.t(b, h, i) = tt;
      R.b(b, h, i) = bb;
      const T zb = zbar ? (*zbar)(b, h, i) : T(0);
      for (int j = rr[ii].lo; j < rr[ii].hi; ++j) {
        const int c = j - L0;
        // softmax: p = exp(s - lse) (d1 holds lse, m unused); Parallax: p = exp(s - m) / d1
        const T pj = softmax ? T(exp(T(S(ii, c) - d1(b, h, i)))) : T(exp(T(S(ii, c) - m(b, h, i))) / d1(b, h, i));
        const T a = Gm(ii, c), zz = Z(ii, c);
        GL(ii, c) = pj * (a - tt + (zb - zz) * (a - bb));
        GU(ii, c) = -pj * (a - bb);
        SW(ii, c) = pj * (T(1) + zb - zz);
      }
    }
    Mat<T> dQ = tau * comp_product<T>(GL, KU);
    Mat<T> dR = softmax ? Mat<T>::Zero(nb, p.D) : comp_product<T>(GU, KU);
    for (int ii = 0; ii < nb; ++ii)
      for (int d = 0; d < p.D; ++d) R.grad.dq(b, i0 + ii, h, d) = dQ(ii, d), R.grad.dr(b, i0 + ii, h, d) = dR(ii, d);
    part.dK += tau * (GL.transpose() * Qb);
    if (!softmax) part.dK += GU.transpose() * Rb;
    part.dV += SW.transpose() * dOb;
  });
  return R;
}
}  // namespace detail

// Parallax backward the way the kernels do it (docs/math.md §5.2): from the saved out, vbar (= O1/d1),
// d1 (= omega), zbar (= d2/d1) and m (natural-log units). Requires the Parallax member.
template <class T>
SavedBackward<T> parallax_backward_from_saved(const Problem& p, const Inputs& in, const Tensor<T>& out, const Tensor<T>& vbar,
                                              const Tensor<T>& d1, const Tensor<T>& zbar, const Tensor<T>& m) {
  detail::refuse_decode(p, "parallax_backward_from_saved");
  if (!(p.probe == Probe::Learned && p.anchor == Anchor::KeyMean))
    throw Error("parallax_backward_from_saved: member '" + member_name(p) +
                "' is not Parallax (learned probe, key-mean anchor); use attention_backward");
  check_inputs(p, in);
  detail::check_dO(p, in);
  return detail::backward_from_saved<T>(p, in, out, &vbar, d1, &zbar, m, false);
}

// Softmax backward from saved out and lse (docs/math.md §5.1): p = exp(s - lse), ds = p (g.v - t).
template <class T>
SavedBackward<T> softmax_backward_from_saved(const Problem& p, const Inputs& in, const Tensor<T>& out, const Tensor<T>& lse) {
  detail::refuse_decode(p, "softmax_backward_from_saved");
  if (p.probe != Probe::None || p.anchor != Anchor::KeyMean)
    throw Error("softmax_backward_from_saved: member '" + member_name(p) + "' is not softmax; use attention_backward");
  check_inputs(p, in);
  detail::check_dO(p, in);
  return detail::backward_from_saved<T>(p, in, out, nullptr, lse, nullptr, lse, true);
}

}  // namespace plx

// Pre-instantiated per scalar in plx_reference_inst (see reference/all.hpp).
#define PLX_BACKWARD_TEMPLATES(T, PREFIX)                                                                    \
  PREFIX Gradients<T> attention_backward<T>(const Problem&, const Inputs&);                                  \
  PREFIX SavedBackward<T> parallax_backward_from_saved<T>(const Problem&, const Inputs&, const Tensor<T>&,   \
                                                          const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, \
                                                          const Tensor<T>&);                                 \
  PREFIX SavedBackward<T> softmax_backward_from_saved<T>(const Problem&, const Inputs&, const Tensor<T>&,    \
                                                         const Tensor<T>&);
