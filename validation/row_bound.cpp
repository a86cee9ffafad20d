// validation/row_bound.cpp — see row_bound.hpp.
#include "validation/row_bound.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace plx {

namespace {
double norm2(const double* x, std::size_t n) {
  double s = 0;
  for (std::size_t i = 0; i < n; ++i) s += x[i] * x[i];
  return std::sqrt(s);
}
}  // namespace

std::map<std::string, std::vector<double>> row_sensitivities(const Problem& p, const Inputs& in, const RowBoundTruth& t) {
  const std::size_t B = p.B, Lq = p.Lq, Lkv = p.Lkv, Hq = p.Hq, Hkv = p.Hkv, D = p.D, Dv = p.Dv;
  const double tau = p.tau();
  const bool grads = !t.grads.empty();
  const bool probe = p.probe != Probe::None, solver = p.probe == Probe::Solver;
  std::map<std::string, std::vector<double>> M;
  M["out"].assign(B * Lq * Hq, 0.0);
  if (grads) {
    M["dq"].assign(B * Lq * Hq, 0.0);
    M["dk"].assign(B * Lkv * Hkv, 0.0);
    M["dv"].assign(B * Lkv * Hkv, 0.0);
    if (p.probe == Probe::Learned) M["dr"].assign(B * Lq * Hq, 0.0);
  }
  const auto& m = t.saved.at("m");
  const auto& omega = t.saved.at("omega");
  const auto& zbar = t.saved.at("zbar");
  const auto& dden = t.saved.at("d");
  const auto& theta = t.saved.at("probe");
  const auto& vbar = t.saved.at("vbar");
  const Tensor<double>* kap = nullptr;
  if (solver) kap = &t.diag.at(p.anchor == Anchor::Query ? "cond_Sigma" : "cond_C");

  std::vector<double> kn(Lkv), vn(Lkv);
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t h = 0; h < Hq; ++h) {
      const std::size_t g = h / std::size_t(p.group());
      for (std::size_t j = 0; j < Lkv; ++j) {
        kn[j] = norm2(&in.k.data[in.k.at4(b, j, g, 0)], D);
        vn[j] = norm2(&in.v.data[in.v.at4(b, j, g, 0)], Dv);
      }
      for (std::size_t i = 0; i < Lq; ++i) {
        const RowRange R = row_range(p, int(b), int(i));
        if (R.empty()) continue;
        const double* q = &in.q.data[in.q.at4(b, i, h, 0)];
        const double* th = &theta.data[theta.at4(b, i, h, 0)];
        const double* dO = &in.dO.data[in.dO.at4(b, i, h, 0)];
        const double* out = &t.out.data[t.out.at4(b, i, h, 0)];
        const double* vb = &vbar.data[vbar.at4(b, i, h, 0)];
        const double mi = m(b, h, i), om = omega(b, h, i), zb = zbar(b, h, i);
        const double gam = om / dden(b, h, i);
        const double ag = std::fabs(gam);
        const double kappa = kap ? std::min((*kap)(b, h, i), 1e300) : 0.0;
        double tt = 0, bb = 0, Tabs = 0, Babs = 0;
        for (std::size_t d = 0; d < Dv; ++d) {
          tt += dO[d] * out[d], bb += dO[d] * vb[d];
          Tabs += std::fabs(dO[d] * out[d]), Babs += std::fabs(dO[d] * vb[d]);
        }
        const double qn = norm2(q, D), thn = norm2(th, D), dOn = norm2(dO, Dv);
        double Mout = 0, Mdq = 0, Mdr = 0;
        for (int j = R.lo; j < R.hi; ++j) {
          const double* k = &in.k.data[in.k.at4(b, j, g, 0)];
          const double* v = &in.v.data[in.v.at4(b, j, g, 0)];
          double s = 0, ss = 0, z = 0, sz = 0;
          for (std::size_t d = 0; d < D; ++d) {
            s += q[d] * k[d], ss += std::fabs(q[d] * k[d]);
            if (probe) z += th[d] * k[d], sz += std::fabs(th[d] * k[d]);
          }
          s *= tau, ss *= tau;
          const double pj = std::exp(s - mi) / om;
          const double f = 1 + ss + ag * (std::fabs(z - zb) + sz) * (1 + kappa);
          Mout += pj * f * vn[j];
          if (!grads) continue;
          double a = 0, A = 0;
          for (std::size_t d = 0; d < Dv; ++d) a += dO[d] * v[d], A += std::fabs(dO[d] * v[d]);
          const double gl = pj * (a - tt + gam * (zb - z) * (a - bb));
          const double gu = -gam * pj * (a - bb);
          const double egl = std::fabs(gl) + pj * (A + Tabs) * f;
          const double egu = std::fabs(gu) + ag * pj * (A + Babs) * f;
          Mdq += tau * egl * kn[j];
          Mdr += egu * kn[j];
          const std::size_t kr = (b * Lkv + std::size_t(j)) * Hkv + g;
          M["dk"][kr] += egl * tau * qn + (probe ? egu * thn : 0.0);
          M["dv"][kr] += pj * f * dOn;
        }
        const std::size_t qr = (b * Lq + i) * Hq + h;
        M["out"][qr] = Mout;
        if (grads) {
          M["dq"][qr] = Mdq;
          if (M.count("dr")) M["dr"][qr] = Mdr;
        }
      }
    }
  return M;
}

double row_bound_constant(const std::string& name) {
  // Measured on the calibration sweep (bench/stability/rowbound.json, docs/stability.md): the
  // 99.95th percentile of |c_row - t_row| / (u M_row) over every candidate kind and member, rounded
  // up to a power of two.
  if (name == "out") return 1.0;
  if (name == "dq") return 1.0;
  if (name == "dk") return 1.0;
  if (name == "dv") return 1.0;
  if (name == "dr") return 1.0;
  throw Error("row bound: no rule for tensor '" + name + "' (out, dq, dk, dv, dr)");
}

std::vector<double> row_limits(const std::string& name, const std::vector<double>& M, const Tensor<double>& truth,
                               double u_work, double u_store) {
  const std::size_t len = truth.shape.back(), rows = len ? truth.size() / len : 0;
  if (M.size() != rows) throw Error("row bound: " + std::to_string(M.size()) + " sensitivities for " + std::to_string(rows) + " rows of " + name);
  const double C = row_bound_constant(name);
  std::vector<double> L(rows);
  for (std::size_t r = 0; r < rows; ++r) L[r] = C * u_work * M[r] + u_store * norm2(&truth.data[r * len], len);
  return L;
}

Tensor<double> row_limits_elementwise(const std::vector<double>& row_limit, const Tensor<double>& truth) {
  Tensor<double> e(truth.shape);
  const std::size_t len = truth.shape.back();
  for (std::size_t i = 0; i < truth.size(); ++i) e.data[i] = row_limit[i / len];
  return e;
}

std::map<std::string, Tensor<double>> check_row_limits(const Problem& p, const Inputs& in, const RowBoundTruth& t,
                                                       DType X, const std::vector<std::string>& names, std::string* note) {
  std::map<std::string, Tensor<double>> L;
  const double us = unit_roundoff(X);
  const double u = X == DType::F64 ? 0x1p-53 : X == DType::F32 ? 0x1p-24 : us;
  const auto M = row_sensitivities(p, in, t);
  std::string judged;
  for (const auto& n : names) {
    const Tensor<double>* truth = n == "out" ? &t.out : (t.grads.count(n) ? &t.grads.at(n) : nullptr);
    if (!truth || !M.count(n)) continue;
    L[n] = row_limits_elementwise(row_limits(n, M.at(n), *truth, u, us), *truth);
    judged += (judged.empty() ? "" : ", ") + n;
  }
  if (note) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "u = %.3g, u_store = %.3g", u, us);
    *note = "condition-aware row bound (validation/row_bound.hpp) for " + (judged.empty() ? std::string("no tensor") : judged) +
            ": per row C_T u M_row + u_store |truth_row|, " + buf;
  }
  return L;
}

std::optional<Tensor<double>> fixture_row_limits(const FixtureData& fx, DType X, const std::string& name, std::string* note) {
  RowBoundTruth t;
  for (const char* n : {"m", "omega", "zbar", "d", "probe", "vbar"}) {
    if (!fx.saved.count(n)) {
      if (note) *note = std::string("the fixture has no saved '") + n + "'";
      return std::nullopt;
    }
    t.saved[n] = fx.saved.at(n).hi;
  }
  t.diag = fx.diag;
  if (!fx.truth.count("out")) {
    if (note) *note = "the fixture has no truth for out";
    return std::nullopt;
  }
  t.out = fx.truth.at("out").hi;
  for (const char* n : {"dq", "dk", "dv", "dr"})
    if (fx.truth.count(n)) t.grads[n] = fx.truth.at(n).hi;
  if (fx.p.probe == Probe::Solver && !t.diag.count(fx.p.anchor == Anchor::Query ? "cond_Sigma" : "cond_C")) {
    if (note) *note = "the fixture has no condition-number diagnostics";
    return std::nullopt;
  }
  auto L = check_row_limits(fx.p, fx.in, t, X, {name}, note);
  if (!L.count(name)) {
    if (note) *note = "the row bound does not cover '" + name + "'";
    return std::nullopt;
  }
  return L.at(name);
}

}  // namespace plx
