// validation/emulate.cpp — the rounding-point emulation engine (see emulate.hpp).
//
// Layout: one task per (batch, q head), rows in order; each task keeps its own partial dK / dV
// for its kv head, reduced afterwards in head order, so results do not depend on threads.
// Arithmetic is in A (float for fp32 accumulation, double for fp64); every dot product and
// key sum is a plain left-to-right sum in A (a tensor core's internal order is not emulated).
// Compiled with the reference's -ffp-contract=off, so no fused multiply-adds change roundings.
#include "validation/emulate.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>

#include "reference/all.hpp"
#include "validation/check.hpp"

namespace plx {
namespace {

// Everything one (b, h) task needs, converted to A once.
template <class A> struct HeadIn {
  std::vector<A> K, V;      // [Lkv][D], [Lkv][Dv] of kv head g
  std::vector<A> Q, R, dO;  // [Lq][D], [Lq][D], [Lq][Dv] of q head h
};

template <class A> struct Engine {
  const Problem& p;
  const Profile& pf;
  int D, Dv;
  A tau;
  bool solver, learned, query, centred;

  Engine(const Problem& pr, const Profile& prof) : p(pr), pf(prof) {
    D = p.D, Dv = p.Dv;
    tau = A(p.tau());
    solver = p.probe == Probe::Solver;
    learned = p.probe == Probe::Learned;
    query = p.anchor == Anchor::Query;
    centred = p.form == Formulation::Centred && p.probe != Probe::None;
  }

  static A rnd(RoundFmt f, A x) { return f == RoundFmt::None ? x : A(round_fmt(f, double(x))); }
  static A dot(const A* a, const A* b, int n) {
    A s = A(0);
    for (int d = 0; d < n; ++d) s += a[d] * b[d];
    return s;
  }
  A shift_of(A Delta) const {  // delta_eps * sgn(Delta) (sgn(0) per the problem)
    const A eps = A(p.anchor_knobs.delta_eps);
    if (Delta > A(0)) return eps;
    if (Delta < A(0)) return -eps;
    return p.anchor_knobs.sgn0 == Sgn0::Plus ? eps : A(0);
  }

  // Per-row state shared by the forward passes and the backward's recomputation.
  struct RowState {
    RowRange R;
    std::vector<A> s;      // logits of keys R.lo .. R.hi - 1
    A m = A(0), omega = A(0);
    Vec<A> theta;          // probe (rounded to profile.probe for solver probes), zero if none
    A lambda = A(0);
    Mat<A> Asys;           // solver probes: the SPD system
    Vec<A> kbar;           // KeyMean solver: weighted key mean
  };

  // Logits and the streaming pivot / normaliser: per key tile, m_new = max(m, tile max) and
  // omega rescaled by exp(m - m_new) before the tile's weights are added.
  void logits_and_stream(const HeadIn<A>& H, int i, RowState& st) const {
    const int n = st.R.size();
    st.s.resize(n);
    const A* q = &H.Q[std::size_t(i) * D];
    for (int j = 0; j < n; ++j) st.s[j] = tau * dot(q, &H.K[std::size_t(st.R.lo + j) * D], D);
    A m = -std::numeric_limits<A>::infinity(), l = A(0);
    for_tiles(st.R, [&](int j0, int j1) {
      A mt = m;
      for (int j = j0; j < j1; ++j) mt = std::max(mt, st.s[j - st.R.lo]);
      const A alpha = m == -std::numeric_limits<A>::infinity() ? A(0) : A(std::exp(A(m - mt)));
      l *= alpha;
      for (int j = j0; j < j1; ++j) l += A(std::exp(A(st.s[j - st.R.lo] - mt)));
      m = mt;
    });
    st.m = m, st.omega = l;
  }

  // Key tiles aligned to multiples of key_tile in the absolute key index.
  template <class F> void for_tiles(const RowRange& R, F&& f) const {
    const int T = std::max(1, pf.key_tile);
    for (int j0 = R.lo; j0 < R.hi;) {
      const int j1 = std::min(R.hi, (j0 / T + 1) * T);
      f(j0, j1);
      j0 = j1;
    }
  }

  // Solver probes: the system and its solution (rounded to the profile's probe format).
  // KeyMean (covariance form): (C + lambda I) theta = kbar - q, C the weighted covariance
  // (centred before the product). Query: Sigma rho = mu, Sigma = sum w e e^T + lambda omega I.
  // Weights are w_j = exp(s_j - m) with the final pivot (a second pass over the keys).
  void solve_probe(const HeadIn<A>& H, int i, RowState& st) const {
    const int n = st.R.size();
    const A* q = &H.Q[std::size_t(i) * D];
    Vec<A> y = Vec<A>::Zero(D);
    st.Asys = Mat<A>::Zero(D, D);
    std::vector<A> w(n);
    for (int j = 0; j < n; ++j) w[j] = A(std::exp(A(st.s[j] - st.m)));
    if (!query) {
      st.kbar = Vec<A>::Zero(D);
      for (int j = 0; j < n; ++j) {
        const A pj = w[j] / st.omega;
        for (int d = 0; d < D; ++d) st.kbar(d) += pj * H.K[std::size_t(st.R.lo + j) * D + d];
      }
      Vec<A> e(D);
      for (int j = 0; j < n; ++j) {
        const A pj = w[j] / st.omega;
        for (int d = 0; d < D; ++d) e(d) = H.K[std::size_t(st.R.lo + j) * D + d] - st.kbar(d);
        for (int a = 0; a < D; ++a)
          for (int c = 0; c < D; ++c) st.Asys(a, c) += (pj * e(a)) * e(c);
      }
      for (int d = 0; d < D; ++d) st.Asys(d, d) += st.lambda, y(d) = st.kbar(d) - q[d];
    } else {
      Vec<A> e(D);
      for (int j = 0; j < n; ++j) {
        for (int d = 0; d < D; ++d) e(d) = H.K[std::size_t(st.R.lo + j) * D + d] - q[d];
        for (int a = 0; a < D; ++a) {
          y(a) += w[j] * e(a);
          for (int c = 0; c < D; ++c) st.Asys(a, c) += (w[j] * e(a)) * e(c);
        }
      }
      for (int d = 0; d < D; ++d) st.Asys(d, d) += st.lambda * st.omega;
    }
    st.theta = solve(st.Asys, y, i);
    for (int d = 0; d < D; ++d) st.theta(d) = rnd(pf.probe, st.theta(d));
  }
  Vec<A> solve(const Mat<A>& Asys, const Vec<A>& y, int i) const {
    const auto& s = p.solver;
    if (s.method == SolverMethod::Direct)
      return solve_cholesky<A>(Asys, y, p.block_size(), "emulated row " + std::to_string(i));
    SolveReport rep;
    return solve_cg<A>(Asys, y, s.method == SolverMethod::JacobiCG, s.cg_atol, s.cg_rtol, s.cg_max_iters, rep);
  }

  void row_state(const HeadIn<A>& H, const Inputs& in, int b, int h, int i, RowState& st) const {
    logits_and_stream(H, i, st);
    st.lambda = A(in.lambda(b, h, i));
    st.theta = Vec<A>::Zero(D);
    if (learned)
      for (int d = 0; d < D; ++d) st.theta(d) = H.R[std::size_t(i) * D + d];
    else if (solver)
      solve_probe(H, i, st);
  }

  // ---- forward of one row: writes out (unrounded into out_raw, vbar_raw) and the saved values ----
  struct RowOut {
    std::vector<A> out, vbar;  // unrounded (accumulation format)
    A m = A(0), lse = A(0), d1 = A(0), zbar = A(0);
  };

  void forward_row(const HeadIn<A>& H, const RowState& st, int i, RowOut& ro) const {
    ro.out.assign(Dv, A(0)), ro.vbar.assign(Dv, A(0));
    const RowRange& R = st.R;
    const A* q = &H.Q[std::size_t(i) * D];
    const bool has_probe = p.probe != Probe::None;
    const A thq = has_probe ? dot(st.theta.data(), q, D) : A(0);
    auto z_of = [&](int j) { return has_probe ? dot(st.theta.data(), &H.K[std::size_t(j) * D], D) : A(0); };
    std::vector<A> o1(Dv, A(0)), o2(Dv, A(0));
    if (!centred) {
      // One streaming pass: O1 = sum p1 v, O2 = sum p2 v, acc = sum w z (KeyMean) or sum w theta.e
      // (Query), all rescaled by exp(m_old - m_new) at each tile.
      A m = -std::numeric_limits<A>::infinity(), l = A(0), acc = A(0);
      for_tiles(R, [&](int j0, int j1) {
        A mt = m;
        for (int j = j0; j < j1; ++j) mt = std::max(mt, st.s[j - R.lo]);
        const A alpha = m == -std::numeric_limits<A>::infinity() ? A(0) : A(std::exp(A(m - mt)));
        l *= alpha, acc *= alpha;
        for (int c = 0; c < Dv; ++c) o1[c] *= alpha, o2[c] *= alpha;
        for (int j = j0; j < j1; ++j) {
          const A w = A(std::exp(A(st.s[j - R.lo] - mt)));
          const A zz = query ? A(z_of(j) - thq) : z_of(j);  // theta.e_j (Query) or z_j
          const A wz = w * zz;
          l += w, acc += wz;
          const A p1 = rnd(pf.p, w), p2 = rnd(pf.p, wz);
          const A* v = &H.V[std::size_t(j) * Dv];
          for (int c = 0; c < Dv; ++c) o1[c] += p1 * v[c];
          if (has_probe)
            for (int c = 0; c < Dv; ++c) o2[c] += p2 * v[c];
        }
        m = mt;
      });
      ro.m = m, ro.d1 = l, ro.lse = m + A(std::log(l));
      if (!query) {
        ro.zbar = acc / l;
        for (int c = 0; c < Dv; ++c) {
          ro.vbar[c] = o1[c] / l;
          ro.out[c] = has_probe ? A(ro.vbar[c] * (A(1) + ro.zbar) - o2[c] / l) : ro.vbar[c];
        }
      } else {
        const A Delta = l - acc, d = Delta + shift_of(Delta);
        if (d == A(0)) throw NumericalError("emulated query-anchored denominator d = 0 at row " + std::to_string(i));
        for (int c = 0; c < Dv; ++c) ro.vbar[c] = o1[c] / l, ro.out[c] = (o1[c] - o2[c]) / d;
        ro.zbar = acc / l;  // mean of theta.e (saved for inspection only)
      }
      return;
    }
    // Centred forms: the streaming pass gave m and omega (st); a pass for zbar = sum p z (and
    // Delta for a query anchor), then the value pass with p = w / omega and c = p (z - zbar).
    const int n = R.size();
    std::vector<A> w(n), z(n);
    A sz = A(0), sne = A(0);
    for (int j = 0; j < n; ++j) {
      w[j] = A(std::exp(A(st.s[j] - st.m)));
      z[j] = z_of(R.lo + j);
      sz += w[j] * z[j];
      sne += w[j] * A(z[j] - thq);
    }
    const A zbar = sz / st.omega;
    A gamma = A(1);
    if (query) {
      const A Delta = st.omega - sne, d = Delta + shift_of(Delta);
      if (d == A(0)) throw NumericalError("emulated query-anchored denominator d = 0 at row " + std::to_string(i));
      gamma = st.omega / d;
    }
    A sumc = A(0);
    for (int j = 0; j < n; ++j) {
      const A pj = w[j] / st.omega, cj = pj * A(z[j] - zbar);
      sumc += cj;
      const A p1 = rnd(pf.p, pj), p2 = rnd(pf.p, cj);
      const A* v = &H.V[std::size_t(R.lo + j) * Dv];
      for (int c = 0; c < Dv; ++c) o1[c] += p1 * v[c], o2[c] += p2 * v[c];
    }
    ro.m = st.m, ro.d1 = st.omega, ro.lse = st.m + A(std::log(st.omega)), ro.zbar = zbar;
    for (int c = 0; c < Dv; ++c) ro.vbar[c] = o1[c], ro.out[c] = o1[c] - gamma * A(o2[c] - o1[c] * sumc);
  }

  // ---- backward of one row (adds into the task's dK, dV partials) ----
  // Block-diagonal helpers (bs = D: full): bilinear_j = sum_t (a_t.E_jt)(c_t.E_jt),
  // bracket_j = [(c_t.E_jt) a_t + (a_t.E_jt) c_t]_t.
  A bilinear(const A* e, const Vec<A>& a, const Vec<A>& c) const {
    const int bs = p.block_size();
    A s = A(0);
    for (int t = 0; t < D; t += bs) {
      A ea = A(0), ec = A(0);
      for (int d = t; d < t + bs; ++d) ea += e[d] * a(d), ec += e[d] * c(d);
      s += ea * ec;
    }
    return s;
  }
  void bracket(const A* e, const Vec<A>& a, const Vec<A>& c, A scale, A* outv) const {
    const int bs = p.block_size();
    for (int t = 0; t < D; t += bs) {
      A ea = A(0), ec = A(0);
      for (int d = t; d < t + bs; ++d) ea += e[d] * a(d), ec += e[d] * c(d);
      for (int d = t; d < t + bs; ++d) outv[d] += scale * (ec * a(d) + ea * c(d));
    }
  }

  struct Saved {  // the stored (rounded) values the backward reads
    A m, lse, d1, zbar;
    std::vector<A> out, vbar, out_raw, vbar_raw;
  };

  void backward_row(const HeadIn<A>& H, const RowState& st, const Saved& sv, int i, A* dq, A* dr, A& dlam,
                    std::vector<A>& dK, std::vector<A>& dV, A& t_out, A& b_out) const {
    const RowRange& R = st.R;
    const int n = R.size();
    const A* q = &H.Q[std::size_t(i) * D];
    const A* g = &H.dO[std::size_t(i) * Dv];
    const bool has_probe = p.probe != Probe::None;
    const Vec<A>& th = st.theta;
    std::vector<A> G(n), z(n, A(0));
    for (int j = 0; j < n; ++j) {
      G[j] = dot(g, &H.V[std::size_t(R.lo + j) * Dv], Dv);
      if (has_probe) z[j] = dot(th.data(), &H.K[std::size_t(R.lo + j) * D], D);
    }
    std::vector<A> gl(n, A(0)), gu(n, A(0)), sw(n, A(0));
    std::vector<A> dKx;  // extra dK terms of the solve (not rounded: rank-one per key)
    Vec<A> dqx = Vec<A>::Zero(D);
    if (!query) {
      // Kernel-style (the Parallax / softmax backward of docs/math.md §5.1-§5.2 from the stored values).
      const std::vector<A>& O = pf.t_from_stored ? sv.out : sv.out_raw;
      const std::vector<A>& Vb = pf.t_from_stored ? sv.vbar : sv.vbar_raw;
      const A tt = dot(g, O.data(), Dv), bb = has_probe ? dot(g, Vb.data(), Dv) : tt;
      t_out = tt, b_out = bb;
      const A zb = has_probe ? sv.zbar : A(0);
      std::vector<A> pj(n);
      for (int j = 0; j < n; ++j) {
        pj[j] = p.probe == Probe::None ? A(std::exp(A(st.s[j] - sv.lse))) : A(std::exp(A(st.s[j] - sv.m)) / sv.d1);
        gl[j] = pj[j] * A(G[j] - tt + A(zb - z[j]) * A(G[j] - bb));
        gu[j] = -(pj[j] * A(G[j] - bb));
        sw[j] = pj[j] * A(A(1) + zb - z[j]);
      }
      if (solver) {  // covariance-form LLA: chain dtheta through (C + lambda I) theta = kbar - q
        Vec<A> dth = Vec<A>::Zero(D);
        for (int j = 0; j < n; ++j)
          for (int d = 0; d < D; ++d) dth(d) += gu[j] * H.K[std::size_t(R.lo + j) * D + d];
        const Vec<A> up = solve(st.Asys, dth, i);
        dlam = -up.dot(th);
        dqx = -up;
        std::vector<A> dLdp(n), e(D);
        A mean = A(0);
        for (int j = 0; j < n; ++j) {
          for (int d = 0; d < D; ++d) e[d] = H.K[std::size_t(R.lo + j) * D + d] - st.kbar(d);
          dLdp[j] = dot(e.data(), up.data(), D) - bilinear(e.data(), up, th);
          mean += pj[j] * dLdp[j];
        }
        dKx.assign(std::size_t(n) * D, A(0));
        for (int j = 0; j < n; ++j) {
          gl[j] += pj[j] * A(dLdp[j] - mean);
          for (int d = 0; d < D; ++d) e[d] = H.K[std::size_t(R.lo + j) * D + d] - st.kbar(d);
          A* dk = &dKx[std::size_t(j) * D];
          for (int d = 0; d < D; ++d) dk[d] += pj[j] * up(d);
          bracket(e.data(), up, th, -pj[j], dk);
        }
      }
      for (int j = 0; j < n; ++j) {
        const A glr = rnd(pf.grad_p, gl[j]), gur = rnd(pf.grad_p, gu[j]), swr = rnd(pf.p, sw[j]);
        const A* k = &H.K[std::size_t(R.lo + j) * D];
        A* dk = &dK[std::size_t(R.lo + j) * D];
        for (int d = 0; d < D; ++d) {
          dq[d] += glr * k[d];
          if (learned) dr[d] += gur * k[d];
          dk[d] += tau * glr * q[d];
          if (has_probe) dk[d] += gur * th(d);
          if (!dKx.empty()) dk[d] += dKx[std::size_t(j) * D + d];
        }
        A* dv = &dV[std::size_t(R.lo + j) * Dv];
        for (int c = 0; c < Dv; ++c) dv[c] += swr * g[c];
      }
      for (int d = 0; d < D; ++d) dq[d] = tau * dq[d] + dqx(d);
      return;
    }
    // Query anchor (implicit differentiation through the solve for LLA; theta fixed otherwise).
    const bool exact_ridge = p.solver.ridge_grad == RidgeGrad::Exact;
    std::vector<A> w(n), ne(n), nn(n);
    A omega = A(0);
    for (int j = 0; j < n; ++j) w[j] = A(std::exp(A(st.s[j] - sv.m))), omega += w[j];
    std::vector<A> E(std::size_t(n) * D);
    A sne = A(0);
    for (int j = 0; j < n; ++j) {
      for (int d = 0; d < D; ++d) E[std::size_t(j) * D + d] = H.K[std::size_t(R.lo + j) * D + d] - q[d];
      ne[j] = has_probe ? dot(&E[std::size_t(j) * D], th.data(), D) : A(0);
      nn[j] = A(1) - ne[j];
      sne += w[j] * ne[j];
    }
    const A Delta = omega - sne, dd = Delta + shift_of(Delta);
    if (dd == A(0)) throw NumericalError("emulated query-anchored denominator d = 0 at row " + std::to_string(i));
    std::vector<A> Sv(n);
    A beta = A(0);
    for (int j = 0; j < n; ++j) Sv[j] = w[j] * nn[j] / dd, beta += G[j] * Sv[j];
    beta /= dd;
    Vec<A> Tv = Vec<A>::Zero(D), mu = Vec<A>::Zero(D);
    for (int j = 0; j < n; ++j) {
      const A cj = G[j] * w[j] / dd;
      for (int d = 0; d < D; ++d) Tv(d) += cj * E[std::size_t(j) * D + d], mu(d) += w[j] * E[std::size_t(j) * D + d];
    }
    const A sh = dd - Delta;
    A bq = A(0);
    if (p.form == Formulation::Centred) {
      for (int j = 0; j < n; ++j) bq += (w[j] / omega) * G[j];
      beta += bq * sh / (dd * dd);
      for (int j = 0; j < n; ++j) Sv[j] += (sh / dd) * (w[j] / omega);
    }
    t_out = A(0), b_out = bq;
    const Vec<A> gth = beta * mu - Tv;
    std::vector<A> dLdw(n), coef(n);
    for (int j = 0; j < n; ++j) {
      dLdw[j] = G[j] * nn[j] / dd - beta * nn[j];
      if (p.form == Formulation::Centred) dLdw[j] += (sh / (dd * omega)) * A(G[j] - bq);
      coef[j] = beta * w[j] - G[j] * w[j] / dd;
    }
    std::vector<A> dLdE(std::size_t(n) * D);
    for (int j = 0; j < n; ++j)
      for (int d = 0; d < D; ++d) dLdE[std::size_t(j) * D + d] = coef[j] * th(d);
    if (learned) {
      for (int d = 0; d < D; ++d) dr[d] = gth(d);
    } else if (solver) {
      const Vec<A> u = solve(st.Asys, gth, i);
      const A urho = u.dot(th);
      const A eps_r = exact_ridge ? A(-st.lambda * urho) : A(0);
      dlam = -omega * urho;
      for (int j = 0; j < n; ++j) {
        const A* e = &E[std::size_t(j) * D];
        dLdw[j] += dot(e, u.data(), D) - bilinear(e, u, th) + eps_r;
        A* de = &dLdE[std::size_t(j) * D];
        for (int d = 0; d < D; ++d) de[d] += w[j] * u(d);
        bracket(e, u, th, -w[j], de);
      }
    }
    std::vector<A> ds(n);
    A sds = A(0);
    int jmax = 0;
    for (int j = 0; j < n; ++j) {
      ds[j] = w[j] * dLdw[j], sds += ds[j];
      if (st.s[j] > st.s[jmax]) jmax = j;
    }
    if (exact_ridge || !solver) ds[jmax] -= sds;
    for (int j = 0; j < n; ++j) {
      const A dsr = rnd(pf.grad_p, ds[j]), svr = rnd(pf.p, Sv[j]);
      const A* k = &H.K[std::size_t(R.lo + j) * D];
      A* dk = &dK[std::size_t(R.lo + j) * D];
      for (int d = 0; d < D; ++d) {
        dq[d] += dsr * k[d];
        dk[d] += tau * dsr * q[d] + dLdE[std::size_t(j) * D + d];
      }
      A* dv = &dV[std::size_t(R.lo + j) * Dv];
      for (int c = 0; c < Dv; ++c) dv[c] += svr * g[c];
    }
    for (int d = 0; d < D; ++d) {
      A se = A(0);
      for (int j = 0; j < n; ++j) se += dLdE[std::size_t(j) * D + d];
      dq[d] = tau * dq[d] - se;
    }
  }
};

template <class A> std::vector<A> gather(const Tensor<double>& t, int b, int h, RoundFmt f) {
  const int L = int(t.shape[1]), H = int(t.shape[2]), D = int(t.shape[3]);
  std::vector<A> m(std::size_t(L) * D);
  for (int j = 0; j < L; ++j)
    for (int d = 0; d < D; ++d) m[std::size_t(j) * D + d] = A(round_fmt(f, t.data[((std::size_t(b) * L + j) * H + h) * D + d]));
  return m;
}

template <class A> EmulationResult run_engine(const Problem& p, const Inputs& in, const Profile& pf, bool backward) {
  const std::size_t B = p.B, Lq = p.Lq, Lkv = p.Lkv, Hq = p.Hq, Hkv = p.Hkv, D = p.D, Dv = p.Dv;
  Engine<A> eng(p, pf);
  EmulationResult res;
  res.out = Tensor<double>({B, Lq, Hq, Dv});
  auto& S = res.saved;
  for (const char* nme : {"m", "lse", "d1", "zbar"}) S[nme] = Tensor<double>({B, Hq, Lq});
  S["vbar"] = Tensor<double>({B, Lq, Hq, Dv});
  S["probe"] = Tensor<double>({B, Lq, Hq, D});
  if (backward) {
    res.dq = Tensor<double>({B, Lq, Hq, D}), res.dr = Tensor<double>({B, Lq, Hq, D});
    res.dk = Tensor<double>({B, Lkv, Hkv, D}), res.dv = Tensor<double>({B, Lkv, Hkv, Dv});
    res.dlambda = Tensor<double>({B, Hq, Lq});
    S["t"] = Tensor<double>({B, Hq, Lq}), S["b"] = Tensor<double>({B, Hq, Lq});
  }
  const long ntask = long(B) * long(Hq);
  std::vector<std::vector<A>> partK(ntask), partV(ntask);
  std::vector<std::exception_ptr> errs(ntask);
#pragma omp parallel for schedule(dynamic, 1)
  for (long task = 0; task < ntask; ++task) {
    try {
      const int b = int(task / long(Hq)), h = int(task % long(Hq)), g = h / p.group();
      HeadIn<A> H;
      H.K = gather<A>(in.k, b, g, pf.input), H.V = gather<A>(in.v, b, g, pf.input);
      H.Q = gather<A>(in.q, b, h, pf.input), H.dO = gather<A>(in.dO, b, h, pf.input);
      if (p.probe == Probe::Learned) H.R = gather<A>(in.r, b, h, pf.input);
      if (backward) partK[task].assign(Lkv * D, A(0)), partV[task].assign(Lkv * Dv, A(0));
      for (int i = 0; i < p.Lq; ++i) {
        typename Engine<A>::RowState st;
        st.R = row_range(p, b, i);
        if (st.R.empty()) {  // exact zeros, lse = -inf (as the reference)
          S.at("lse")(b, h, i) = -std::numeric_limits<double>::infinity();
          continue;
        }
        eng.row_state(H, in, b, h, i, st);
        typename Engine<A>::RowOut ro;
        eng.forward_row(H, st, i, ro);
        typename Engine<A>::Saved sv;
        sv.m = Engine<A>::rnd(pf.stats, ro.m), sv.lse = Engine<A>::rnd(pf.stats, ro.lse);
        sv.d1 = Engine<A>::rnd(pf.stats, ro.d1), sv.zbar = Engine<A>::rnd(pf.zbar, ro.zbar);
        sv.out_raw = ro.out, sv.vbar_raw = ro.vbar;
        sv.out.resize(Dv), sv.vbar.resize(Dv);
        for (std::size_t c = 0; c < Dv; ++c) {
          sv.out[c] = Engine<A>::rnd(pf.out, ro.out[c]), sv.vbar[c] = Engine<A>::rnd(pf.vbar, ro.vbar[c]);
          res.out(b, i, h, c) = double(sv.out[c]);
          S.at("vbar")(b, i, h, c) = double(sv.vbar[c]);
        }
        S.at("m")(b, h, i) = double(sv.m), S.at("lse")(b, h, i) = double(sv.lse);
        S.at("d1")(b, h, i) = double(sv.d1), S.at("zbar")(b, h, i) = double(sv.zbar);
        for (std::size_t d = 0; d < D; ++d) S.at("probe")(b, i, h, d) = double(st.theta(d));
        if (!backward) continue;
        std::vector<A> dq(D, A(0)), dr(D, A(0));
        A dlam = A(0), tt = A(0), bb = A(0);
        eng.backward_row(H, st, sv, i, dq.data(), dr.data(), dlam, partK[task], partV[task], tt, bb);
        for (std::size_t d = 0; d < D; ++d)
          res.dq(b, i, h, d) = round_fmt(pf.grads, double(dq[d])), res.dr(b, i, h, d) = round_fmt(pf.grads, double(dr[d]));
        res.dlambda(b, h, i) = double(dlam);
        S.at("t")(b, h, i) = double(tt), S.at("b")(b, h, i) = double(bb);
      }
    } catch (...) {
      errs[task] = std::current_exception();
    }
  }
  for (auto& e : errs)
    if (e) std::rethrow_exception(e);
  if (backward) {  // reduce the heads of each GQA group in head order (in A, as a kernel's fp32 atomics would not)
    for (int b = 0; b < p.B; ++b)
      for (int g = 0; g < p.Hkv; ++g) {
        std::vector<A> sk(Lkv * D, A(0)), svv(Lkv * Dv, A(0));
        for (int h = g * p.group(); h < (g + 1) * p.group(); ++h) {
          const long task = long(b) * long(Hq) + h;
          for (std::size_t x = 0; x < sk.size(); ++x) sk[x] += partK[task][x];
          for (std::size_t x = 0; x < svv.size(); ++x) svv[x] += partV[task][x];
        }
        for (std::size_t j = 0; j < Lkv; ++j) {
          for (std::size_t d = 0; d < D; ++d) res.dk(b, j, g, d) = round_fmt(pf.grads, double(sk[j * D + d]));
          for (std::size_t c = 0; c < Dv; ++c) res.dv(b, j, g, c) = round_fmt(pf.grads, double(svv[j * Dv + c]));
        }
      }
  }
  res.note = "emulation profile '" + pf.name + "': " + pf.description;
  return res;
}

RoundFmt fmt_of(DType t) {
  switch (t) {
    case DType::F64: return RoundFmt::None;
    case DType::F32: return RoundFmt::F32;
    case DType::BF16: return RoundFmt::BF16;
    case DType::F16: return RoundFmt::F16;
  }
  return RoundFmt::None;
}

Profile make(std::string name, std::string desc) {
  Profile p;
  p.name = std::move(name), p.description = std::move(desc);
  return p;
}

const std::vector<Profile>& profiles() {
  static const std::vector<Profile> all = [] {
    std::vector<Profile> v;
    const RoundFmt F32 = RoundFmt::F32, BF = RoundFmt::BF16, H = RoundFmt::F16, N = RoundFmt::None;
    {
      Profile x = make("exact-fp32", "the reference algorithm (two-pass, compensated key sums) in float32 arithmetic, "
                                     "outputs rounded to fp32 (the check's default baseline)");
      x.reference_engine = true, x.accum = F32, x.out = F32, x.grads = F32;
      v.push_back(x);
    }
    {
      Profile x = make("exact-fp64", "the reference algorithm in float64 arithmetic (compensated key sums)");
      x.reference_engine = true, x.accum = N;
      v.push_back(x);
    }
    {
      Profile x = make("ideal-fp64", "streaming engine, float64 accumulation, no rounding point (an identity test)");
      x.accum = N;
      v.push_back(x);
    }
    {
      Profile x = make("fp32-stream", "streaming engine, fp32 inputs and accumulation, everything stored in fp32");
      x.accum = F32, x.input = F32, x.out = F32, x.vbar = F32, x.stats = F32, x.zbar = F32, x.probe = F32, x.grads = F32;
      v.push_back(x);
    }
    auto flash = [&](const char* nm, RoundFmt f, bool t_stored, const char* d) {
      Profile x = make(nm, d);
      x.accum = F32, x.input = f, x.p = f, x.out = f, x.vbar = f, x.stats = F32, x.zbar = F32, x.probe = f;
      x.grad_p = f, x.t_from_stored = t_stored, x.grads = f;
      return x;
    };
    v.push_back(flash("flash-bf16", BF, true,
                      "FlashAttention-style bf16 kernel: bf16 inputs, P (and the Parallax/LLA weights) rounded to bf16 "
                      "before the value products, out stored bf16, lse/m/d1/zbar fp32, t = <dO, out> from the stored "
                      "bf16 out, gl/gu (dS) rounded to bf16 before dQ/dK, fp32 accumulation, gradients stored bf16"));
    v.push_back(flash("flash-fp16", H, true, "as flash-bf16 with fp16 in place of bf16"));
    v.push_back(flash("flash-bf16-t32", BF, false,
                      "as flash-bf16 but t = <dO, out> and b = <dO, vbar> from the fp32 out / vbar before storing"));
    {
      Profile x = make("parallax-triton-bf16",
                       "Parallax Triton kernel: bf16 inputs, p1 = w and p2 = w z rounded to bf16 before the value "
                       "products, out and vbar stored bf16, m/d1/zbar fp32, fp32 accumulation, t and b from the "
                       "stored out/vbar, gl/gu rounded to bf16 before dQ/dK/dR, gradients stored bf16");
      x.accum = F32, x.input = BF, x.p = BF, x.out = BF, x.vbar = BF, x.stats = F32, x.zbar = F32, x.probe = F32;
      x.grad_p = BF, x.t_from_stored = true, x.grads = BF;
      v.push_back(x);
    }
    {
      Profile x = make("lla-bf16", "LLA kernel: bf16 inputs, rho/theta stored bf16, the weights w and w (rho . e) "
                                   "rounded to bf16 before the value products, out stored bf16, m/d1 fp32, fp32 "
                                   "accumulation and solve, ds rounded to bf16 before dQ/dK, gradients stored bf16");
      x.accum = F32, x.input = BF, x.p = BF, x.probe = BF, x.out = BF, x.vbar = BF, x.stats = F32, x.zbar = F32;
      x.grad_p = BF, x.t_from_stored = true, x.grads = BF;
      v.push_back(x);
    }
    return v;
  }();
  return all;
}

}  // namespace

RoundFmt round_fmt_from_string(const std::string& s) {
  if (s == "none" || s == "fp64" || s == "f64" || s == "float64") return RoundFmt::None;
  if (s == "fp32" || s == "f32" || s == "float32") return RoundFmt::F32;
  if (s == "tf32") return RoundFmt::TF32;
  if (s == "bf16" || s == "bfloat16") return RoundFmt::BF16;
  if (s == "fp16" || s == "f16" || s == "float16" || s == "half") return RoundFmt::F16;
  fail("rounding format: unknown name '" + s + "' (none, fp32, tf32, bf16, fp16)");
}

const std::vector<std::string>& profile_names() {
  static const std::vector<std::string> n = [] {
    std::vector<std::string> v;
    for (const auto& x : profiles()) v.push_back(x.name);
    return v;
  }();
  return n;
}

const Profile& profile_by_name(const std::string& name) {
  for (const auto& x : profiles())
    if (x.name == name) return x;
  std::string known;
  for (const auto& n : profile_names()) known += (known.empty() ? "" : ", ") + n;
  fail("emulation profile: unknown name '" + name + "' (known: " + known + ")");
}

Profile ideal_profile() { return profile_by_name("ideal-fp64"); }

std::map<std::string, Tensor<double>> profile_baseline(const Problem& p, const Inputs& in, DType X, bool gradients,
                                                       const std::string& profile, std::string* note, bool* fell_back) {
  if (profile.empty()) return same_precision_baseline(p, in, X, gradients, note, fell_back);
  const Profile& pf = profile_by_name(profile);
  if (fell_back) *fell_back = false;
  EmulationResult e;
  try {
    e = emulate(p, in, pf, gradients && !p.decode);
  } catch (const NumericalError& err) {
    std::string how;
    auto r = same_precision_baseline(p, in, X, gradients, &how, fell_back);
    if (note) *note = "baseline profile '" + profile + "' could not run (" + err.what() + "); " + how;
    return r;
  }
  std::map<std::string, Tensor<double>> r;
  auto put = [&](const char* n, const Tensor<double>& t) {
    if (t.empty()) return;
    Tensor<double> c = t;
    for (auto& x : c.data) x = round_fmt(fmt_of(X), x);
    r[n] = std::move(c);
  };
  put("out", e.out);
  if (gradients && !p.decode) put("dq", e.dq), put("dk", e.dk), put("dv", e.dv), put("dr", e.dr), put("dlambda", e.dlambda);
  if (note) *note = "baseline for " + to_string(X) + " candidates: " + e.note + "; results rounded to " + to_string(X);
  return r;
}

EmulationResult emulate(const Problem& p, const Inputs& in, const Profile& pf, bool backward) {
  check_inputs(p, in);
  if (backward) {
    detail::refuse_decode(p, "emulate");
    detail::check_dO(p, in);
  }
  if (pf.accum != RoundFmt::F32 && pf.accum != RoundFmt::None)
    fail("emulation profile '" + pf.name + "': accumulation must be fp32 or fp64 (none), got " + to_string(pf.accum));
  if (pf.key_tile < 1) fail("emulation profile '" + pf.name + "': key_tile must be >= 1");
  if (pf.reference_engine) {
    if (pf.input != RoundFmt::None)
      fail("emulation profile '" + pf.name + "': the reference engine takes the inputs as given (input must be none)");
    std::string how;
    auto r = same_precision_baseline(p, in, pf.accum == RoundFmt::F32 ? DType::F32 : DType::F64, backward, &how);
    EmulationResult res;
    auto take = [&](const char* n, RoundFmt f, Tensor<double>& dst) {
      if (!r.count(n)) return;
      dst = r.at(n);
      for (auto& x : dst.data) x = round_fmt(f, x);
    };
    take("out", pf.out, res.out);
    if (backward) {
      take("dq", pf.grads, res.dq), take("dk", pf.grads, res.dk), take("dv", pf.grads, res.dv);
      take("dr", pf.grads, res.dr), take("dlambda", RoundFmt::None, res.dlambda);
    }
    res.note = "emulation profile '" + pf.name + "': " + how;
    return res;
  }
  return pf.accum == RoundFmt::F32 ? run_engine<float>(p, in, pf, backward) : run_engine<double>(p, in, pf, backward);
}

}  // namespace plx
