// tests/reference/test_forward_props.cpp — docs/math.md identities of the reference forward, as
// rapidcheck properties over random edge shapes (double).
//
// Charter: each property is one identity of docs/math.md §3-§4 (family endpoints, forms of the same
// member, invariances, masks, decode, GQA, CG vs Cholesky, empty rows, diagnostics), checked
// row by row with a tolerance c u (1 + kappa) scale_i derived in forward_bounds.hpp. Inputs
// come from plx's seeded generator; tensors the test builds are NaN-poisoned first. Split-KV
// lives in test_split_kv.cpp, multiprecision agreement in test_forward_precision.cpp.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <limits>
#include <numeric>

#include "tests/reference/forward_bounds.hpp"
#include "tests/support.hpp"

using namespace plx;
using namespace plx::test;

namespace {

constexpr double u = 0x1p-53;  // unit roundoff of double
const double kNaN = std::numeric_limits<double>::quiet_NaN();

Forward<double> run(const Problem& p, const Inputs& in) { return attention_forward<double>(p, in, saved_diag()); }

rc::Gen<std::string> gen_member() {
  return rc::gen::element<std::string>("softmax", "parallax", "parallax_centred", "lla", "lla_cov", "learned_query");
}

// Query-anchored members divide by d = Delta + delta_eps sgn(Delta); the identities below
// are statements about delta_eps = 0 (docs/math.md §3.4).
Problem no_eps(Problem p) {
  p.anchor_knobs.delta_eps = 0;
  return p;
}

void unmask(Problem& p) {
  p.causal = false, p.window = -1;
  p.start.clear(), p.used.clear();
}

// Limit for comparing two double evaluations that each carry <= c_round (1 + kappa) u scale.
auto two_runs(const Problem& p, const RowBounds& rb, double extra = 0) {
  return [&p, &rb, extra](int b, int h, int i) {
    return (2 * c_round(p) + extra) * u * (1 + rb.kappa(b, h, i)) * rb.scale(b, h, i);
  };
}

std::string why_two_runs() { return "2 (66 + D + 8) u (1 + kappa_i) scale_i: two evaluations, each bounded as in forward_bounds.hpp"; }

Tensor<double> poisoned(std::vector<std::size_t> shape) { return Tensor<double>(std::move(shape), kNaN); }

// Independent textbook LLA intercept (docs/math.md §3.4), in long double: weighted least squares of
// v on [1, k - q] with rows scaled by sqrt(w_j) and D ridge rows sqrt(lambda omega) I, by QR.
Tensor<double> lla_textbook_wls(const Problem& p, const Inputs& in) {
  using LD = long double;
  using MatL = Eigen::Matrix<LD, Eigen::Dynamic, Eigen::Dynamic>;
  Tensor<double> out = poisoned({std::size_t(p.B), std::size_t(p.Lq), std::size_t(p.Hq), std::size_t(p.Dv)});
  const LD tau = p.tau();
  for (int b = 0; b < p.B; ++b)
    for (int h = 0; h < p.Hq; ++h)
      for (int i = 0; i < p.Lq; ++i) {
        const RowRange R = row_range(p, b, i);
        const int g = h / p.group(), n = R.size(), D = p.D;
        if (R.empty()) {
          for (int d = 0; d < p.Dv; ++d) out(b, i, h, d) = 0;
          continue;
        }
        std::vector<LD> s(n);
        LD m = -std::numeric_limits<LD>::infinity(), omega = 0;
        for (int j = 0; j < n; ++j) {
          LD acc = 0;
          for (int d = 0; d < D; ++d) acc += LD(in.q(b, i, h, d)) * LD(in.k(b, R.lo + j, g, d));
          s[j] = tau * acc, m = std::max(m, s[j]);
        }
        for (auto& x : s) x = std::exp(x - m), omega += x;
        MatL A = MatL::Zero(n + D, D + 1), Y = MatL::Zero(n + D, p.Dv);
        for (int j = 0; j < n; ++j) {
          const LD sw = std::sqrt(s[j]);
          A(j, 0) = sw;
          for (int d = 0; d < D; ++d) A(j, 1 + d) = sw * (LD(in.k(b, R.lo + j, g, d)) - LD(in.q(b, i, h, d)));
          for (int d = 0; d < p.Dv; ++d) Y(j, d) = sw * LD(in.v(b, R.lo + j, g, d));
        }
        const LD ridge = std::sqrt(LD(in.lambda(b, h, i)) * omega);
        for (int d = 0; d < D; ++d) A(n + d, 1 + d) = ridge;
        MatL X = A.colPivHouseholderQr().solve(Y);
        for (int d = 0; d < p.Dv; ++d) out(b, i, h, d) = double(X(0, d));
      }
  return out;
}

// A permutation of 0..n-1 from plx's counter RNG (Fisher-Yates).
std::vector<int> permutation(int n, std::uint64_t seed) {
  std::vector<int> perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  CounterRng g = rng_for(seed, Stream::Partition, 77);
  for (int t = n - 1; t > 0; --t) std::swap(perm[t], perm[std::size_t(g.uniform(t) * (t + 1))]);
  return perm;
}

}  // namespace

// docs/math.md §4.2: r = 0 gives softmax exactly (both Parallax forms).
RC_GTEST_PROP(ForwardProps, ParallaxZeroProbeIsSoftmax, ()) {
  Problem p = *gen_problem("softmax");
  Inputs in = make_inputs(p);
  auto soft = run(p, in);
  for (const char* m : {"parallax", "parallax_centred"}) {
    Problem q = p;
    set_member(q, m);
    Inputs iq = in;
    std::fill(iq.r.data.begin(), iq.r.data.end(), 0.0);
    auto par = run(q, iq);
    RowBounds rb = row_bounds(q, iq, par);  // theta = 0: scale_i = max |v_j|
    auto f = check_rows(std::string(m) + "(r=0) vs softmax", q, par.out, soft.out, two_runs(q, rb), why_two_runs());
    RC_ASSERT(f.empty());
  }
}

// docs/math.md §4.1 vs §4.2: the accumulator (closed) form equals the centred form.
RC_GTEST_PROP(ForwardProps, ParallaxClosedEqualsCentred, ()) {
  Problem p = *gen_problem("parallax");
  p.r_scale = *rc::gen::element(0.5, 3.0);
  Inputs in = make_inputs(p);
  auto acc = run(p, in);
  Problem c = p;
  set_member(c, "parallax_centred");
  auto cen = run(c, in);
  RowBounds rb = row_bounds(p, in, acc);
  RC_LOG() << "seed " << p.seed;
  auto f = check_rows("parallax closed vs centred", p, acc.out, cen.out, two_runs(p, rb), why_two_runs());
  RC_ASSERT(f.empty());
}

// docs/math.md §3.4/§3.5: LLA query-centred = textbook WLS intercept (Eigen QR, long double) =
// covariance form, with delta_eps = 0.
RC_GTEST_PROP(ForwardProps, LlaQueryCentredEqualsWlsEqualsCovariance, ()) {
  Problem p = no_eps(*gen_problem("lla", 33));
  Inputs in = make_inputs(p);
  auto lla = run(p, in);
  Problem c = p;
  set_member(c, "lla_cov");
  auto cov = run(c, in);
  Tensor<double> wls = lla_textbook_wls(p, in);
  RowBounds rb = row_bounds(p, in, lla);  // query anchor: gamma = 1 + alpha, kappa = cond(Sigma/omega)
  // Against long-double WLS (u_ld = 2^-64, 2^-11 of u): one double evaluation's bound, doubled.
  auto f1 = check_rows("lla vs textbook WLS", p, lla.out, wls, two_runs(p, rb), why_two_runs());
  RC_ASSERT(f1.empty());
  auto f2 = check_rows("lla_cov vs textbook WLS", p, cov.out, wls, two_runs(p, rb), why_two_runs());
  RC_ASSERT(f2.empty());
  auto f3 = check_rows("lla vs lla_cov", p, lla.out, cov.out, two_runs(p, rb), why_two_runs());
  RC_ASSERT(f3.empty());
}

// docs/math.md §4.3 key identity: Parallax with the per-row probe r = theta (taken from lla_cov's
// saved probe) reproduces LLA; and theta = (1 + alpha) rho, Delta = omega / (1 + alpha) (§3.5).
RC_GTEST_PROP(ForwardProps, ParallaxWithLlaThetaIsLla, ()) {
  Problem pl = no_eps(*gen_problem("lla"));
  Inputs in = make_inputs(pl);
  auto lla = run(pl, in);
  Problem pc = pl;
  set_member(pc, "lla_cov");
  auto cov = run(pc, in);
  RowBounds rb = row_bounds(pl, in, lla);
  Inputs ir = in;
  ir.r = cov.saved.at("probe");
  for (const char* m : {"parallax", "parallax_centred"}) {
    Problem pp = pl;
    set_member(pp, m);
    auto par = run(pp, ir);
    auto f = check_rows(std::string(m) + "(r=theta) vs lla", pl, par.out, lla.out, two_runs(pl, rb), why_two_runs());
    RC_ASSERT(f.empty());
    auto f2 = check_rows(std::string(m) + "(r=theta) vs lla_cov", pl, par.out, cov.out, two_runs(pl, rb), why_two_runs());
    RC_ASSERT(f2.empty());
  }
  // theta = (1 + alpha) rho and (1 + alpha) Delta = omega, alpha from lla_cov's diagnostic.
  // |rho| relative error <= kappa (67 + D) u (forward_bounds.hpp) and Delta = omega - mu.rho
  // loses another factor (1 + alpha): limit 2 (66 + D + 8) u (1 + kappa)(1 + alpha).
  // The right-hand sides cancel when q is near the weighted key mean (kbar - q for theta,
  // sum_j w_j (k_j - q) = omega (kbar - q) for rho), so their rounding is absolute, not relative
  // to |theta|: each is <= c u (max|k| + |q|)(1 + S1) (the differences, and the weights through
  // the logit tau q.k, S1 = tau |q| max|k|), per unit weight, and the systems' inverses are at
  // most 1/lambda (C + lambda I) and 1/(lambda omega) (Sigma): |dtheta| + (1 + alpha)|drho| <=
  // c u (max|k| + |q|)(1 + S1)(2 + alpha) / lambda. (A random seed found |theta| ~ 1e-3 with an
  // absolute error 1.0e-16 over the relative limit's 2.4e-17.)
  for (int b = 0; b < pl.B; ++b)
    for (int h = 0; h < pl.Hq; ++h)
      for (int i = 0; i < pl.Lq; ++i) {
        const RowRange R = row_range(pl, b, i);
        if (R.empty()) continue;
        const double alpha = cov.diag.at("alpha")(b, h, i), kap = rb.kappa(b, h, i);
        const double lim = 2 * c_round(pl) * u * (1 + kap) * (1 + alpha);
        double kmax = 0, qn = 0;
        for (int j = R.lo; j < R.hi; ++j) {
          double kn = 0;
          for (int d = 0; d < pl.D; ++d) kn += in.k(b, j, h / pl.group(), d) * in.k(b, j, h / pl.group(), d);
          kmax = std::max(kmax, std::sqrt(kn));
        }
        for (int d = 0; d < pl.D; ++d) qn += in.q(b, i, h, d) * in.q(b, i, h, d);
        qn = std::sqrt(qn);
        const double s1 = pl.tau() * qn * kmax, lam = in.lambda(b, h, i);
        const double rhs = c_round(pl) * u * (kmax + qn) * (1 + s1) * (2 + alpha) / lam;
        double num = 0, den = 0;
        for (int d = 0; d < pl.D; ++d) {
          const double th = cov.saved.at("probe")(b, i, h, d), rho = lla.saved.at("probe")(b, i, h, d);
          num += std::pow(th - (1 + alpha) * rho, 2), den += th * th;
        }
        RC_ASSERT(std::sqrt(num) <= lim * std::sqrt(den) + rhs);
        const double omega = lla.saved.at("omega")(b, h, i), Delta = lla.saved.at("Delta")(b, h, i);
        RC_ASSERT(std::abs((1 + alpha) * Delta / omega - 1) <= lim);
      }
}

// docs/math.md §3.1: LLA -> softmax as lambda -> inf at rate 1/lambda. out - vbar = -delta^T (C + lambda I)^-1
// Cov(k, v), so err(lambda) / err(10 lambda) = 10 (1 + O(||C|| / lambda)). Inputs are Irwin-Hall
// normals (|x| <= 6), so ||C|| <= max_j |k_j|^2 <= 36 D <= 576 and with lambda = 1e5 the ratio
// lies in 10 (1 +- 2 * 0.006) = [9.88, 10.12]; rounding adds <= 1e-9 relative (err >= 1e-6).
// Asserted: |ratio - 10| <= 0.15.
RC_GTEST_PROP(ForwardProps, LlaLargeLambdaTendsToSoftmaxAtRateOneOverLambda, ()) {
  Problem p = no_eps(*gen_problem(*rc::gen::element<std::string>("lla", "lla_cov")));
  p.solver.lambda_per_row = false;
  Inputs in = make_inputs(p);
  Problem ps = p;
  set_member(ps, "softmax");
  auto soft = attention_forward<double>(ps, in);
  auto err = [&](double lambda) {
    Problem q = p;
    q.solver.lambda = lambda;
    Inputs iq = make_inputs(q);
    auto f = attention_forward<double>(q, iq);
    double s = 0;
    for (std::size_t t = 0; t < f.out.size(); ++t) s += std::pow(f.out.data[t] - soft.out.data[t], 2);
    return std::sqrt(s);
  };
  const double e1 = err(1e5), e2 = err(1e6);
  RC_PRE(e2 > 1e-6 * 1e-3);  // discard cases with no two-key row (then out = vbar exactly)
  RC_LOG() << "err(1e5) = " << e1 << ", err(1e6) = " << e2;
  RC_ASSERT(std::abs(e1 / e2 - 10.0) <= 0.15);
}

// docs/math.md §10: LLA at lambda = 0 reproduces affine targets v = a + B k exactly (non-causal,
// |A| >= D + 1 keys in general position): out_i = a + B q_i.
RC_GTEST_PROP(ForwardProps, LlaLambdaZeroReproducesAffineTargets, ()) {
  Problem p = no_eps(*gen_problem(*rc::gen::element<std::string>("lla", "lla_cov"), 33));
  unmask(p);
  p.Lkv = std::max(p.Lkv, p.D + 1 + *rc::gen::inRange(0, 8));
  p.solver.lambda = 0, p.solver.lambda_per_row = false;
  Inputs in = make_inputs(p);
  CounterRng g = rng_for(p.seed, Stream::Aux, 5);
  std::vector<long double> a(p.Dv), Bm(std::size_t(p.Dv) * p.D);
  for (int d = 0; d < p.Dv; ++d) a[d] = g.normal(d);
  for (std::size_t t = 0; t < Bm.size(); ++t) Bm[t] = g.normal(1000 + t) / std::sqrt(double(p.D));
  for (int b = 0; b < p.B; ++b)
    for (int j = 0; j < p.Lkv; ++j)
      for (int h = 0; h < p.Hkv; ++h)
        for (int d = 0; d < p.Dv; ++d) {
          long double x = a[d];
          for (int e = 0; e < p.D; ++e) x += Bm[std::size_t(d) * p.D + e] * in.k(b, j, h, e);
          in.v(b, j, h, d) = double(x);  // rounding of v: <= u |v_j|, inside the D u term of c_round
        }
  Tensor<double> want = poisoned({std::size_t(p.B), std::size_t(p.Lq), std::size_t(p.Hq), std::size_t(p.Dv)});
  for (int b = 0; b < p.B; ++b)
    for (int i = 0; i < p.Lq; ++i)
      for (int h = 0; h < p.Hq; ++h)
        for (int d = 0; d < p.Dv; ++d) {
          long double x = a[d];
          for (int e = 0; e < p.D; ++e) x += Bm[std::size_t(d) * p.D + e] * in.q(b, i, h, e);
          want(b, i, h, d) = double(x);
        }
  auto F = run(p, in);
  RowBounds rb = row_bounds(p, in, F);
  auto f = check_rows("lla(lambda=0) vs affine a + B q", p, F.out, want, two_runs(p, rb), why_two_runs());
  RC_ASSERT(f.empty());
}

// Partition of unity (sum_j S_j = 1, delta_eps = 0): adding a constant c to every value
// shifts every non-empty row's output by c; empty rows stay 0. Every member.
// c has integer entries in [-4, 4] and values are multiples of 2^-32 with |v| <= 6, so
// v + c is exact in double: the identity holds exactly and only the two forward
// evaluations round (plus one rounding of out + c, <= u scale_i).
RC_GTEST_PROP(ForwardProps, ValueShiftShiftsOutput, ()) {
  Problem p = no_eps(*gen_problem(*gen_member()));
  Inputs in = make_inputs(p);
  CounterRng g = rng_for(p.seed, Stream::Aux, 9);
  std::vector<double> c(p.Dv);
  for (int d = 0; d < p.Dv; ++d) c[d] = std::floor(9 * g.uniform(d)) - 4;
  Inputs is = in;
  for (std::size_t t = 0; t < is.v.size(); ++t) is.v.data[t] += c[t % p.Dv];
  auto F0 = run(p, in), F1 = run(p, is);
  Tensor<double> want = poisoned(F0.out.shape);
  for (int b = 0; b < p.B; ++b)
    for (int i = 0; i < p.Lq; ++i)
      for (int h = 0; h < p.Hq; ++h)
        for (int d = 0; d < p.Dv; ++d)
          want(b, i, h, d) = row_range(p, b, i).empty() ? 0.0 : F0.out(b, i, h, d) + c[d];
  RowBounds rb = row_bounds(p, is, F1);  // same weights and probe in both runs: no kappa
  auto lim = [&](int b, int h, int i) { return (2 * c_round(p) + 1) * u * rb.scale(b, h, i); };
  auto f = check_rows("out(v + c) vs out(v) + c", p, F1.out, want, lim, "(2 (66 + D + 8) + 1) u scale_i");
  RC_ASSERT(f.empty());
}

// Without a mask, permuting keys and values together leaves every output unchanged.
RC_GTEST_PROP(ForwardProps, KeyPermutationInvariance, ()) {
  Problem p = no_eps(*gen_problem(*gen_member()));
  unmask(p);
  Inputs in = make_inputs(p);
  auto perm = permutation(p.Lkv, p.seed);
  Inputs ip = in;
  for (int b = 0; b < p.B; ++b)
    for (int j = 0; j < p.Lkv; ++j)
      for (int h = 0; h < p.Hkv; ++h) {
        for (int d = 0; d < p.D; ++d) ip.k(b, j, h, d) = in.k(b, perm[j], h, d);
        for (int d = 0; d < p.Dv; ++d) ip.v(b, j, h, d) = in.v(b, perm[j], h, d);
      }
  auto F0 = run(p, in), F1 = run(p, ip);
  RowBounds rb = row_bounds(p, in, F0);
  auto f = check_rows("permuted keys", p, F1.out, F0.out, two_runs(p, rb), why_two_runs());
  RC_ASSERT(f.empty());
}

// Causal prefix: changing keys and values at positions >= X changes nothing for rows whose
// allowed set ends before X. The replacement keys/values are 100x larger, so a leak would
// exceed the rounding limit by orders of magnitude.
RC_GTEST_PROP(ForwardProps, CausalPrefixIgnoresLaterTokens, ()) {
  Problem p = no_eps(*gen_problem(*gen_member()));
  p.causal = true;
  Inputs in = make_inputs(p);
  const int X = *rc::gen::inRange(0, p.Lkv);
  Inputs ic = in;
  CounterRng g = rng_for(p.seed, Stream::Aux, 11);
  std::size_t t = 0;
  for (int b = 0; b < p.B; ++b)
    for (int j = X; j < p.Lkv; ++j)
      for (int h = 0; h < p.Hkv; ++h) {
        for (int d = 0; d < p.D; ++d) ic.k(b, j, h, d) = 100 * g.normal(t++);
        for (int d = 0; d < p.Dv; ++d) ic.v(b, j, h, d) = 100 * g.normal(t++);
      }
  auto F0 = run(p, in), F1 = run(p, ic);
  RowBounds rb = row_bounds(p, in, F0);
  auto lim = [&](int b, int h, int i) {
    // Rows that can see position X are not constrained (negative limit: skipped).
    return row_range(p, b, i).hi > X ? -1.0 : two_runs(p, rb)(b, h, i);
  };
  auto f = check_rows("causal prefix", p, F1.out, F0.out, lim, why_two_runs());
  RC_ASSERT(f.empty());
}

// Decode (Lq = 1, docs/math.md §6.1) equals the last row of prefill, padding and windows included.
RC_GTEST_PROP(ForwardProps, DecodeIsLastPrefillRow, ()) {
  Problem p = no_eps(*gen_problem(*gen_member()));
  Inputs in = make_inputs(p);
  auto F = run(p, in);
  Problem pd = p;
  pd.Lq = 1, pd.decode = true;
  Inputs id = make_inputs(pd);
  const int last = p.Lq - 1;
  id.k = in.k, id.v = in.v;
  for (int b = 0; b < p.B; ++b)
    for (int h = 0; h < p.Hq; ++h) {
      id.lambda(b, h, 0) = in.lambda(b, h, last);
      for (int d = 0; d < p.D; ++d) id.q(b, 0, h, d) = in.q(b, last, h, d), id.r(b, 0, h, d) = in.r(b, last, h, d);
    }
  auto Fd = run(pd, id);
  Tensor<double> want = poisoned(Fd.out.shape);
  for (int b = 0; b < p.B; ++b)
    for (int h = 0; h < p.Hq; ++h)
      for (int d = 0; d < p.Dv; ++d) want(b, 0, h, d) = F.out(b, last, h, d);
  RowBounds rb = row_bounds(pd, id, Fd);
  auto f = check_rows("decode vs last prefill row", pd, Fd.out, want, two_runs(pd, rb), why_two_runs());
  RC_ASSERT(f.empty());
}

// GQA (query head h reads kv head h / G, docs/math.md §1.1) equals MHA with the kv heads repeated.
RC_GTEST_PROP(ForwardProps, GqaEqualsRepeatedMha, ()) {
  Problem p = no_eps(*gen_problem(*gen_member()));
  p.Hq = p.Hkv * *rc::gen::element(2, 3);
  Inputs in = make_inputs(p);
  Problem pm = p;
  pm.Hkv = p.Hq;
  Inputs im = in;
  im.k = poisoned({std::size_t(p.B), std::size_t(p.Lkv), std::size_t(p.Hq), std::size_t(p.D)});
  im.v = poisoned({std::size_t(p.B), std::size_t(p.Lkv), std::size_t(p.Hq), std::size_t(p.Dv)});
  for (int b = 0; b < p.B; ++b)
    for (int j = 0; j < p.Lkv; ++j)
      for (int h = 0; h < p.Hq; ++h) {
        for (int d = 0; d < p.D; ++d) im.k(b, j, h, d) = in.k(b, j, h / p.group(), d);
        for (int d = 0; d < p.Dv; ++d) im.v(b, j, h, d) = in.v(b, j, h / p.group(), d);
      }
  auto F0 = run(p, in), F1 = run(pm, im);
  RowBounds rb = row_bounds(p, in, F0);
  auto f = check_rows("GQA vs repeated MHA", p, F1.out, F0.out, two_runs(p, rb), why_two_runs());
  RC_ASSERT(f.empty());
}

// docs/math.md §3.7 CG on well-conditioned systems (lambda >= 1, cg_max_iters = 4 D + 8 > D):
// (a) the reported true residual matches one recomputed here in long double, within the
//     rounding of A x - y, (D + 66 + 8) u (||A|| |x| + |y|) / |y|, plus the rounding of the
//     reference's double A and y themselves (derived at the check);
// (b) CG stopped by its test, so ||res|| / ||y|| <= sqrt(rtol) (plain CG; Jacobi: times
//     sqrt(max diag / min diag)), plus that rounding;
// (c) the output equals the direct solve's within the perturbation of the probe,
//     |dtheta| / |theta| <= kappa * relres, which moves out by <= 2 (1 + alpha) relres kappa scale_i,
//     plus two runs' rounding.
RC_GTEST_PROP(ForwardProps, CgMatchesDirectSolve, ()) {
  Problem p = no_eps(*gen_problem(*rc::gen::element<std::string>("lla", "lla_cov"), 33));
  p.solver.lambda = *rc::gen::element(1.0, 4.0, 10.0);
  const bool jacobi = *rc::gen::arbitrary<bool>();
  Inputs in = make_inputs(p);
  auto Fd = run(p, in);
  Problem pc = p;
  pc.solver.method = jacobi ? SolverMethod::JacobiCG : SolverMethod::CG;
  pc.solver.cg_max_iters = 4 * p.D + 8;
  auto Fc = run(pc, in);
  RowBounds rb = row_bounds(p, in, Fd);
  using LD = long double;
  using MatL = Eigen::Matrix<LD, Eigen::Dynamic, Eigen::Dynamic>;
  using VecL = Eigen::Matrix<LD, Eigen::Dynamic, 1>;
  for (int b = 0; b < p.B; ++b)
    for (int h = 0; h < p.Hq; ++h)
      for (int i = 0; i < p.Lq; ++i) {
        const RowRange R = row_range(p, b, i);
        if (R.empty()) continue;
        const int g = h / p.group(), n = R.size(), D = p.D;
        // The system, rebuilt in long double from the definitions (docs/math.md §3.2 / §3.5).
        std::vector<LD> w(n);
        LD m = -std::numeric_limits<LD>::infinity(), omega = 0;
        for (int j = 0; j < n; ++j) {
          LD s = 0;
          for (int d = 0; d < D; ++d) s += LD(in.q(b, i, h, d)) * in.k(b, R.lo + j, g, d);
          w[j] = LD(p.tau()) * s, m = std::max(m, w[j]);
        }
        for (auto& x : w) x = std::exp(x - m), omega += x;
        MatL A = MatL::Zero(D, D);
        VecL y = VecL::Zero(D), kbar = VecL::Zero(D), q(D);
        for (int d = 0; d < D; ++d) q(d) = in.q(b, i, h, d);
        for (int j = 0; j < n; ++j)
          for (int d = 0; d < D; ++d) kbar(d) += w[j] / omega * in.k(b, R.lo + j, g, d);
        const VecL anchor = p.anchor == Anchor::Query ? q : kbar;
        const LD wscale = p.anchor == Anchor::Query ? 1 : 1 / omega;  // Sigma vs C
        for (int j = 0; j < n; ++j) {
          VecL e(D);
          for (int d = 0; d < D; ++d) e(d) = in.k(b, R.lo + j, g, d) - anchor(d);
          A += wscale * w[j] * e * e.transpose();
          if (p.anchor == Anchor::Query) y += w[j] * e;
        }
        const LD lam = in.lambda(b, h, i);
        A.diagonal().array() += p.anchor == Anchor::Query ? lam * omega : lam;
        if (p.anchor == Anchor::KeyMean) y = kbar - q;
        VecL x(D);
        for (int d = 0; d < D; ++d) x(d) = Fc.saved.at("probe")(b, i, h, d);
        const double ny = double(y.norm());
        if (ny == 0) continue;
        const double rr = double((A * x - y).norm()) / ny;
        // The reference forms A and y in double; here they are exact to long double. Their
        // difference moves the residual by (|dA| |x| + |dy|) / |y|, and |y| can be far below
        // the terms it sums (q near the weighted key mean), so the formation counts (found by a
        // random seed: Query anchor, D = 1, |y| = 0.007, diff 4.7e-14 > the rounding term alone):
        //   weights: logit tau q.k in double (D-term dot: <= D u tau |q| max|k|) and exp, relative
        //     ew <= 2 (D u S1 + 2 u), S1 = tau |q| max|k| (pivot and weight, each run's own);
        //   differences e_j = k_j - anchor: Query <= u (max|k| + |q|) each; KeyMean: kbar carries
        //     ew E + u max|k| and the subtraction u (max|k| + |kbar|): <= 3 u max|k| + ew E;
        //   A = sum w e e^T (/omega): |dA|_F <= W (2 E de + 3 ew E^2), y (Query: sum w e) <=
        //     W (de + 2 ew E) with W = omega (Query) or 1 (KeyMean; y = kbar - q: de + u |q|),
        // with E = max |e_j|. The compensated sums add only O(u) relative to these.
        double kmax = 0, emax = 0;
        for (int j = 0; j < n; ++j) {
          LD kn = 0, en = 0;
          for (int d = 0; d < D; ++d) {
            const LD kd = in.k(b, R.lo + j, g, d);
            kn += kd * kd, en += (kd - anchor(d)) * (kd - anchor(d));
          }
          kmax = std::max(kmax, double(std::sqrt(kn))), emax = std::max(emax, double(std::sqrt(en)));
        }
        const double qn = double(q.norm()), s1 = p.tau() * qn * kmax;
        const double ew = 2 * (D * u * s1 + 2 * u);
        const bool qa = p.anchor == Anchor::Query;
        const double de = qa ? u * (kmax + qn) : 3 * u * kmax + ew * emax, W = qa ? double(omega) : 1.0;
        const double dA = W * (2 * emax * de + 3 * ew * emax * emax), dy = qa ? W * (de + 2 * ew * emax) : de + u * qn;
        const double formation = (dA * double(x.norm()) + dy) / ny;
        const double round = c_round(p) * u * double(A.norm() * x.norm() + y.norm()) / ny + formation;
        RC_ASSERT(std::abs(Fc.diag.at("cg_residual")(b, h, i) - rr) <= round);  // (a)
        double ratio = 1;
        if (jacobi) ratio = double(A.diagonal().maxCoeff() / A.diagonal().minCoeff());
        if (Fc.diag.at("cg_iters")(b, h, i) < pc.solver.cg_max_iters)
          RC_ASSERT(rr <= std::sqrt(p.solver.cg_rtol * ratio) + round);  // (b)
        const double kap = rb.kappa(b, h, i), alpha = Fd.diag.at("alpha")(b, h, i);
        Tensor<double> c({std::size_t(p.Dv)}), t({std::size_t(p.Dv)});
        for (int d = 0; d < p.Dv; ++d) c.data[d] = Fc.out(b, i, h, d), t.data[d] = Fd.out(b, i, h, d);
        const double lim = 2 * (1 + alpha) * rr * kap * rb.scale(b, h, i) + two_runs(p, rb)(b, h, i);
        auto rep = compare_tensor("cg vs direct", c, t, DType::F64, Tolerance{0, lim, 0, "2 (1+alpha) relres kappa scale + rounding"});
        RC_LOG() << format_report({rep});
        RC_ASSERT(rep.passed);  // (c)
      }
}

// docs/math.md §1.4: empty rows (window 0, Lq > Lkv causal, start >= used) give exactly 0, lse = -inf,
// omega = 0, the empty flag, and no NaN anywhere.
RC_GTEST_PROP(ForwardProps, EmptyRowsAreExactlyZero, ()) {
  Problem p = no_eps(*gen_problem(*gen_member()));
  switch (*rc::gen::inRange(0, 3)) {
    case 0: p.window = 0; break;
    case 1: p.causal = true, p.Lq = p.Lkv + *rc::gen::inRange(1, 4); break;
    default:
      p.start.assign(p.B, 0), p.used.assign(p.B, p.Lkv);
      p.used[0] = *rc::gen::inRange(0, p.Lkv + 1), p.start[0] = p.used[0];
  }
  Inputs in = make_inputs(p);
  auto F = run(p, in);
  int empties = 0;
  for (double x : F.out.data) RC_ASSERT(std::isfinite(x));
  for (int b = 0; b < p.B; ++b)
    for (int h = 0; h < p.Hq; ++h)
      for (int i = 0; i < p.Lq; ++i) {
        const bool empty = row_range(p, b, i).empty();
        RC_ASSERT(F.diag.at("empty")(b, h, i) == (empty ? 1.0 : 0.0));
        if (!empty) continue;
        ++empties;
        for (int d = 0; d < p.Dv; ++d) RC_ASSERT(F.out(b, i, h, d) == 0.0);
        RC_ASSERT(F.saved.at("omega")(b, h, i) == 0.0);
        RC_ASSERT(F.saved.at("lse")(b, h, i) == -std::numeric_limits<double>::infinity());
      }
  RC_ASSERT(empties > 0);
}

// docs/math.md §7 diagnostics: n_keys = |A_i|; ESS in [1, |A_i|]; |sum S - 1| at rounding level for
// delta_eps = 0; for solver probes (1 + alpha) = omega / Delta in the query-centred member.
RC_GTEST_PROP(ForwardProps, DiagnosticsAreConsistent, ()) {
  Problem p = no_eps(*gen_problem(*gen_member()));
  Inputs in = make_inputs(p);
  auto F = run(p, in);
  RowBounds rb = row_bounds(p, in, F);
  for (int b = 0; b < p.B; ++b)
    for (int h = 0; h < p.Hq; ++h)
      for (int i = 0; i < p.Lq; ++i) {
        const RowRange R = row_range(p, b, i);
        RC_ASSERT(F.diag.at("n_keys")(b, h, i) == double(R.size()));
        if (R.empty()) continue;
        const double n = R.size();
        // ESS = omega^2 / sum w^2 with max w = 1: omega >= 1 and sum w^2 <= omega give ESS >= 1;
        // Cauchy-Schwarz gives ESS <= n. Rounding: sum w^2 uncompensated (n u), the rest 8 u.
        const double ess = F.diag.at("ess")(b, h, i), r = (n + 8) * u;
        RC_ASSERT(ess >= 1 - r);
        RC_ASSERT(ess <= n * (1 + r));
        // |sum_j S_j - 1| <= rounding of a compensated sum of terms with sum |S_j| <= scale_i / max|v|
        // (forward_bounds.hpp), times (1 + kappa) for solver probes.
        double vmax = 0;
        for (int j = R.lo; j < R.hi; ++j)
          for (int d = 0; d < p.Dv; ++d) vmax = std::max(vmax, std::abs(in.v(b, j, h / p.group(), d)));
        if (vmax > 0) {
          const double lim = 2 * c_round(p) * u * (1 + rb.kappa(b, h, i)) * rb.scale(b, h, i) / vmax;
          RC_ASSERT(F.diag.at("sum_S_minus_1")(b, h, i) <= lim);
        }
        if (p.probe == Probe::Solver) {
          RC_ASSERT(F.diag.at("cond_C")(b, h, i) >= 1.0);
          RC_ASSERT(F.diag.at("cond_Sigma")(b, h, i) >= 1.0);
          RC_ASSERT(F.diag.at("eps_over_delta")(b, h, i) == 0.0);
          if (p.anchor == Anchor::Query) {
            // alpha is solved from C + lambda I, Delta from Sigma: as in ParallaxWithLlaThetaIsLla.
            const double alpha = F.diag.at("alpha")(b, h, i);
            const double lim = 2 * c_round(p) * u * (1 + rb.kappa(b, h, i)) * (1 + alpha);
            RC_ASSERT(std::abs((1 + alpha) * F.saved.at("Delta")(b, h, i) / F.saved.at("omega")(b, h, i) - 1) <= lim);
          }
        }
      }
}

// docs/math.md §4.3 table: block-diagonal LLA (b < D) equals Parallax with r = rho / (1 - rho.delta),
// delta = kbar - q (computed here in long double from the definitions), delta_eps = 0.
RC_GTEST_PROP(ForwardProps, BlockDiagonalLlaIsParallax, ()) {
  Problem p = no_eps(*gen_problem("lla", 33));
  p.D = *rc::gen::element(2, 4, 6, 8);
  p.solver.block = *rc::gen::element(1, 2);
  Inputs in = make_inputs(p);
  auto Fl = run(p, in);
  Inputs ir = in;
  ir.r = poisoned(in.q.shape);
  for (int b = 0; b < p.B; ++b)
    for (int h = 0; h < p.Hq; ++h)
      for (int i = 0; i < p.Lq; ++i) {
        const RowRange R = row_range(p, b, i);
        const int g = h / p.group();
        std::vector<long double> w(R.size()), kbar(p.D, 0);
        long double m = -std::numeric_limits<long double>::infinity(), omega = 0, rd = 0;
        for (int j = 0; j < R.size(); ++j) {
          long double s = 0;
          for (int d = 0; d < p.D; ++d) s += (long double)in.q(b, i, h, d) * in.k(b, R.lo + j, g, d);
          w[j] = p.tau() * s, m = std::max(m, w[j]);
        }
        for (auto& x : w) x = std::exp(x - m), omega += x;
        for (int j = 0; j < R.size(); ++j)
          for (int d = 0; d < p.D; ++d) kbar[d] += w[j] / omega * in.k(b, R.lo + j, g, d);
        for (int d = 0; d < p.D; ++d) rd += Fl.saved.at("probe")(b, i, h, d) * (kbar[d] - in.q(b, i, h, d));
        for (int d = 0; d < p.D; ++d) ir.r(b, i, h, d) = R.empty() ? 0.0 : double(Fl.saved.at("probe")(b, i, h, d) / (1 - rd));
      }
  Problem pp = p;
  set_member(pp, "parallax_centred");
  auto Fp = run(pp, ir);
  // Bounds from the LLA run (gamma = omega / |d| = 1 / |1 - rho.delta| carries the pole);
  // kappa: cond of the blocks is <= cond(Sigma/omega) of the full matrix's diagonal blocks,
  // which the diagnostic (full Sigma) bounds from above by interlacing.
  RowBounds rb = row_bounds(p, in, Fl);
  auto f = check_rows("block-diag lla vs parallax(r = rho/(1 - rho.delta))", p, Fp.out, Fl.out, two_runs(p, rb), why_two_runs());
  RC_ASSERT(f.empty());
}
