// tests/reference/test_gradcheck.cpp — analytic gradients vs the three independent oracles.
//
// Charter: every member's analytic backward (bf100) agrees with forward-mode AD and with
// FD-Richardson of the reference forward to 1e-40 relative, on rapidcheck shapes (directional
// derivatives) and per element on fixed edge cases; docs/math.md §9.1 regression (Detached = Exact minus
// the eps_r term, and only Exact matches the oracles); CG backward = direct backward to the CG
// solve accuracy; the validation API flags a wrong candidate. Prints the measured errors.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cstdio>

#include "reference/all.hpp"
#include "tests/support.hpp"
#include "validation/gradcheck.hpp"

using namespace plx;

namespace {
// Why 1e-40: analytic backward and oracles run in bf100 (u = 1e-100). Each is a few hundred
// operations per entry at L <= 7, D <= 4, so its rounding error is <= ~1e3 u cond, with cond (the
// amplification by Sigma^-1, 1/d, 1/omega) far below 1e40 for lambda >= 0.05; FD-Richardson's
// truncation is h^4 |L^(5)| / 480 with h = u^(1/5) = 1e-20, i.e. ~1e-82 |L^(5)|. Hence 1e-40 leaves
// a margin of > 1e30 over every legitimate error, while any missing term (eps_r ~ 1e-2, the pivot
// term ~ delta_eps = 1e-12) or formula slip is > 1e-15 relative: the test cannot pass by luck.
constexpr double kRel = 1e-40;

// Small shapes for 100-digit arithmetic: gen_problem edge shapes with L <= 7, D, Dv <= 4.
rc::Gen<Problem> small_problem(const std::string& member) {
  return rc::gen::map(plx::test::gen_problem(member, 7), [member](Problem p) {
    p.D = std::min(p.D, 4), p.Dv = std::min(p.Dv, 4);
    if (member == "lla" || member == "lla_cov") p.solver.block = (p.D % 2 == 0 && p.seed % 3 == 0) ? 2 : 0;
    return p;
  });
}

double tensor_rel(const Tensor<bf100>& a, const Tensor<bf100>& o, double* abs_out = nullptr) {
  bf100 num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) num += (a.data[i] - o.data[i]) * (a.data[i] - o.data[i]), den += o.data[i] * o.data[i];
  if (abs_out) *abs_out = to_double(bf100(sqrt(num)));
  return den > 0 ? to_double(bf100(sqrt(num / den))) : (num > 0 ? 1.0 : 0.0);
}

// |<g, e> - oracle| <= kRel * sum |g_i e_i| (the condition of the inner product).
template <class G> bf100 abs_inner(const Problem& p, const Gradients<G>& g, const Direction& e) {
  Gradients<bf100> a = g;
  for (auto* t : {&a.dq, &a.dk, &a.dv, &a.dr, &a.dlambda})
    for (auto& x : t->data) x = abs(x);
  Direction ea = e;
  for (auto* t : {&ea.q, &ea.k, &ea.v, &ea.r, &ea.lambda})
    for (auto& x : t->data) x = std::abs(x);
  return inner<bf100>(p, a, ea);
}

void directional_property(const std::string& member) {
  const Problem p = *small_problem(member);
  Inputs in = make_inputs(p);
  Gradients<bf100> g;
  try {
    g = attention_backward<bf100>(p, in);
  } catch (const NumericalError&) {
    RC_DISCARD("singular system");
  }
  for (int k = 0; k < 2; ++k) {
    Direction e = random_direction(p, in, p.seed + 17 * k);
    const bf100 lhs = inner<bf100>(p, g, e), scale = abs_inner(p, g, e);
    const bf100 ad = directional_ad<bf100>(p, in, e);
    RC_ASSERT(to_double(bf100(abs(lhs - ad))) <= kRel * to_double(scale));
    if (k == 0) {
      const bf100 fd = directional_fd<bf100>(p, in, e);
      RC_ASSERT(to_double(bf100(abs(lhs - fd))) <= kRel * to_double(scale));
    }
  }
}

Problem fixed_case(const std::string& member) {
  Problem p;
  set_member(p, member);
  p.B = 1, p.Hq = 2, p.Hkv = 1, p.Lq = 4, p.Lkv = 5, p.D = 3, p.Dv = 2, p.seed = plx::test::seed();
  p.window = 4;
  p.solver.lambda = 0.3, p.solver.lambda_per_row = true;
  return p;
}

// Per-element comparison of the analytic backward with a full oracle gradient; returns the
// worst normwise relative error over the tensors.
double per_element(const Problem& p, bool fd, bool print) {
  Inputs in = make_inputs(p);
  auto g = attention_backward<bf100>(p, in);
  auto o = oracle_gradient<bf100>(p, in, fd, 0.0);
  double worst = 0;
  std::vector<std::pair<const char*, std::pair<Tensor<bf100>*, Tensor<bf100>*>>> ts = {
      {"dq", {&g.dq, &o.dq}}, {"dk", {&g.dk, &o.dk}}, {"dv", {&g.dv, &o.dv}}};
  if (p.probe == Probe::Learned) ts.push_back({"dr", {&g.dr, &o.dr}});
  if (p.probe == Probe::Solver) ts.push_back({"dlambda", {&g.dlambda, &o.dlambda}});
  for (auto& t : ts) {
    double rel = tensor_rel(*t.second.first, *t.second.second);
    worst = std::max(worst, rel);
    EXPECT_LE(rel, kRel) << member_name(p) << " " << t.first << (fd ? " vs FD" : " vs AD");
  }
  if (print) std::printf("  %-16s %-11s block=%d %-6s vs %s: worst normwise rel %.2e\n", member_name(p).c_str(), to_string(p.form).c_str(), p.solver.block,
                         p.solver.method == SolverMethod::Direct ? "direct" : "cg", fd ? "FD-Richardson" : "forward-AD", worst);
  return worst;
}
}  // namespace

RC_GTEST_PROP(GradcheckProp, SoftmaxMatchesOracles, ()) { directional_property("softmax"); }
RC_GTEST_PROP(GradcheckProp, ParallaxMatchesOracles, ()) { directional_property("parallax"); }
RC_GTEST_PROP(GradcheckProp, ParallaxCentredMatchesOracles, ()) { directional_property("parallax_centred"); }
RC_GTEST_PROP(GradcheckProp, LlaMatchesOracles, ()) { directional_property("lla"); }
RC_GTEST_PROP(GradcheckProp, LlaCovMatchesOracles, ()) { directional_property("lla_cov"); }
RC_GTEST_PROP(GradcheckProp, LearnedQueryMatchesOracles, ()) { directional_property("learned_query"); }

// Full per-element gradients on fixed edge cases (odd D, GQA-free window, per-row lambda).
TEST(Gradcheck, PerElementAgainstForwardAdAndFd) {
  std::printf("per-element analytic (bf100) vs oracles (bf100), B=1 Hq=2 Hkv=1 Lq=4 Lkv=5 D=3 Dv=2 W=4:\n");
  for (const char* m : {"softmax", "parallax", "parallax_centred", "lla", "lla_cov", "learned_query"}) {
    Problem p = fixed_case(m);
    per_element(p, false, true);
    per_element(p, true, true);
  }
  for (const char* m : {"lla", "lla_cov"}) {  // block-diagonal solve, b = 2 of D = 4
    Problem p = fixed_case(m);
    p.D = 4, p.solver.block = 2;
    per_element(p, false, true);
  }
  // Query anchor with theta = 0 and delta_eps = 1e-3: exercises the pivot term and the Centred
  // form's extra vbar * shift / d (the two forms are different functions when delta_eps != 0).
  for (Formulation f : {Formulation::Accumulator, Formulation::Centred}) {
    Problem p = fixed_case("softmax");
    p.anchor = Anchor::Query, p.anchor_knobs.delta_eps = 1e-3, p.form = f;
    per_element(p, false, true);
  }
  {  // lla in the Centred formulation, delta_eps = 1e-3
    Problem p = fixed_case("lla");
    p.form = Formulation::Centred, p.anchor_knobs.delta_eps = 1e-3;
    per_element(p, false, true);
  }
}

// docs/math.md §9.1 regression. With delta_eps = 0 (so the pivot term vanishes identically), the Exact and
// Detached backwards differ by exactly the eps_r term, whose size follows from dlambda alone:
// eps_r_i = -lambda_i u.rho = lambda_i dlambda_i / omega_i, hence
//   Exact - Detached:  dq_i = tau lambda_i dlambda_i kbar_i,   dk_j = tau sum_i lambda_i dlambda_i p_ij q_i,
// dv and dlambda unchanged. Exact matches forward AD (1e-40); Detached misses it by that amount.
TEST(Gradcheck, DetachedRidgeGradientMissesExactlyEpsR) {
  std::printf("docs/math.md §9.1: FlashLLA-convention (Detached) vs forward AD, rel. max-norm error of (dq, dk):\n");
  for (double lambda : {0.05, 0.5, 10.0}) {
    Problem p = fixed_case("lla");
    p.solver.lambda = lambda, p.solver.lambda_per_row = false, p.anchor_knobs.delta_eps = 0;
    p.Hq = 2, p.Hkv = 1, p.Lq = 5, p.Lkv = 5, p.D = 3, p.window = -1;
    Inputs in = make_inputs(p);
    auto ex = attention_backward<bf100>(p, in);
    Problem pd = p;
    pd.solver.ridge_grad = RidgeGrad::Detached;
    auto de = attention_backward<bf100>(pd, in);
    auto ad = oracle_gradient<bf100>(p, in, false, 0.0);
    // Prediction, from scratch: weights and key means in bf100.
    Tensor<bf100> pq = ex.dq, pk = ex.dk;
    for (auto& x : pq.data) x = 0;
    for (auto& x : pk.data) x = 0;
    const bf100 tau = p.tau();
    for (int h = 0; h < p.Hq; ++h)
      for (int i = 0; i < p.Lq; ++i) {
        RowRange R = row_range(p, 0, i);
        std::vector<bf100> w;
        bf100 om = 0, mx = -1e300;
        for (int j = R.lo; j < R.hi; ++j) {
          bf100 s = 0;
          for (int d = 0; d < p.D; ++d) s += bf100(in.q(0, i, h, d)) * in.k(0, j, 0, d);
          w.push_back(tau * s), mx = std::max(mx, w.back());
        }
        for (auto& x : w) x = exp(x - mx), om += x;
        const bf100 c = tau * bf100(in.lambda(0, h, i)) * ex.dlambda(0, h, i);
        for (int j = R.lo; j < R.hi; ++j)
          for (int d = 0; d < p.D; ++d) {
            const bf100 pj = w[j - R.lo] / om;
            pq(0, i, h, d) += c * pj * in.k(0, j, 0, d);
            pk(0, j, 0, d) += c * pj * in.q(0, i, h, d);
          }
      }
    Tensor<bf100> diffq = ex.dq, diffk = ex.dk;
    for (std::size_t i = 0; i < diffq.size(); ++i) diffq.data[i] -= de.dq.data[i];
    for (std::size_t i = 0; i < diffk.size(); ++i) diffk.data[i] -= de.dk.data[i];
    EXPECT_LE(tensor_rel(diffq, pq), kRel) << lambda;
    EXPECT_LE(tensor_rel(diffk, pk), kRel) << lambda;
    EXPECT_LE(tensor_rel(de.dv, ex.dv), kRel) << lambda;
    EXPECT_LE(tensor_rel(de.dlambda, ex.dlambda), kRel) << lambda;
    // Exact agrees with the oracle; Detached does not, and by the predicted amount.
    EXPECT_LE(tensor_rel(ex.dq, ad.dq), kRel);
    EXPECT_LE(tensor_rel(ex.dk, ad.dk), kRel);
    auto maxrel = [](const Tensor<bf100>& a, const Tensor<bf100>& o) {
      bf100 e = 0, s = 0;
      for (std::size_t i = 0; i < a.size(); ++i) e = std::max(e, bf100(abs(a.data[i] - o.data[i]))), s = std::max(s, bf100(abs(o.data[i])));
      return to_double(bf100(e / s));
    };
    const double mq = maxrel(de.dq, ad.dq), mk = maxrel(de.dk, ad.dk);
    EXPECT_GT(mq, 1e-6) << "Detached should visibly miss eps_r at lambda = " << lambda;
    std::printf("  lambda=%-5g  dq %.3e  dk %.3e   (Exact: %.1e)\n", lambda, mq, mk,
                std::max(maxrel(ex.dq, ad.dq), maxrel(ex.dk, ad.dk)));
  }
}

// The relative error, against Cholesky, of the backward's SECOND CG solve (the adjoint solve
// A u = dL/dtheta of reference/backward.hpp), max over rows, in bf100. Its right-hand side is
// rebuilt here from the same quantities: key-mean anchor (lla_cov): dtheta = sum_j gu_j k_j,
// gu = -p (G - b); query anchor, accumulator form (lla): dtheta = beta mu - T (docs/gradients.md).
// Why it is needed: docs/math.md §3.7's step a = r.z / (p.A p + 1e-10) has an absolute 1e-10, so a CG
// solve's error scales like 1e-10 / |rhs|^2; the adjoint right-hand side is often 0.05-0.3 in
// norm against 1-4 for the forward's, and that solve can stall unconverged after all its
// iterations with errors of 1e-6..3e-5 while the forward's sits at 1e-9..1e-11 (a random-seed
// soak, 30 Nov 2026: the old bound, from the forward solve only, failed on ~1 seed in 3).
double second_solve_error(const Problem& p, const Inputs& in) {
  using T = bf100;
  using VecT = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  using MatT = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
  const T tau = from_double<T>(p.tau());
  const auto& sv = p.solver;
  double worst = 0;
  for (int b = 0; b < p.B; ++b)
    for (int h = 0; h < p.Hq; ++h)
      for (int i = 0; i < p.Lq; ++i) {
        const RowRange R = row_range(p, b, i);
        if (R.empty()) continue;
        const int n = R.size(), D = p.D, g = h / p.group();
        MatT K(n, D), V(n, p.Dv);
        VecT q(D), dO(p.Dv);
        for (int j = 0; j < n; ++j) {
          for (int d = 0; d < D; ++d) K(j, d) = T(in.k(b, R.lo + j, g, d));
          for (int d = 0; d < p.Dv; ++d) V(j, d) = T(in.v(b, R.lo + j, g, d));
        }
        for (int d = 0; d < D; ++d) q(d) = T(in.q(b, i, h, d));
        for (int d = 0; d < p.Dv; ++d) dO(d) = T(in.dO(b, i, h, d));
        const VecT s = tau * (K * q);
        const T mx = s.maxCoeff();
        VecT w(n);
        for (int j = 0; j < n; ++j) w(j) = exp(T(s(j) - mx));
        const T om = w.sum();
        const VecT pp = w / om, G = V * dO;
        const T lam = T(in.lambda(b, h, i));
        MatT A;
        VecT y, rhs;
        if (p.anchor == Anchor::KeyMean) {
          const VecT kbar = K.transpose() * pp;
          const MatT Ec = K.rowwise() - kbar.transpose();
          A = Ec.transpose() * pp.asDiagonal() * Ec;
          A.diagonal().array() += lam;
          const T bb = pp.dot(G);
          rhs = K.transpose() * VecT(-(pp.array() * (G.array() - bb)));
        } else {
          EXPECT_EQ(p.form, Formulation::Accumulator) << "second_solve_error covers the accumulator form";
          const MatT E = K.rowwise() - q.transpose();
          A = E.transpose() * w.asDiagonal() * E;
          A.diagonal().array() += lam * om;
          y = E.transpose() * w;
          SolveReport r1;
          const VecT th = solve_cg<T>(A, y, sv.method == SolverMethod::JacobiCG, sv.cg_atol, sv.cg_rtol, sv.cg_max_iters, r1);
          const VecT ne = E * th, nn = (T(1) - ne.array()).matrix();
          const T Delta = om - w.dot(ne), d = Delta + detail::sgn_shift(p, Delta);
          const VecT Sv = (w.array() * nn.array() / d).matrix(), c = (G.array() * w.array() / d).matrix();
          const T beta = G.dot(Sv) / d;
          rhs = beta * VecT(E.transpose() * w) - VecT(E.transpose() * c);
        }
        if (rhs.norm() == T(0)) continue;
        SolveReport r2;
        const VecT u = solve_cg<T>(A, rhs, sv.method == SolverMethod::JacobiCG, sv.cg_atol, sv.cg_rtol, sv.cg_max_iters, r2);
        const VecT ux = solve_cholesky<T>(A, rhs, D, "second solve");
        worst = std::max(worst, to_double(T((u - ux).norm() / ux.norm())));
      }
  return worst;
}

// "Gradient of a CG forward" = the exact-solve gradient with both solves done by CG. Bound:
// each CG solve's relative error e enters the gradient linearly, amplified by at most
// cond(A): |g_cg - g_direct| <= 8 cond max(e_forward, e_second) |g|, with e_forward from the
// forward's diagnostics (cg_error) and e_second measured by second_solve_error (the adjoint
// solve has the same matrix but its own right-hand side, so its error is not the forward's).
// Over 1000 seeds per member the worst gradient error was <= 0.23 (lla_cov) and 0.52 (lla) of
// this bound; with e_forward alone it reached 784x and 19.5x.
TEST(Gradcheck, CgBackwardEqualsDirectToSolveAccuracy) {
  for (const char* m : {"lla", "lla_cov"}) {
    Problem p = fixed_case(m);
    p.solver.method = SolverMethod::CG;
    Inputs in = make_inputs(p);
    auto F = attention_forward<bf100>(p, in, {.diagnostics = true});
    double ecg = 0, cond = 1;
    for (std::size_t i = 0; i < F.diag.at("cg_error").size(); ++i) {
      ecg = std::max(ecg, F.diag.at("cg_error").data[i]);
      cond = std::max(cond, F.diag.at(p.anchor == Anchor::Query ? "cond_Sigma" : "cond_C").data[i]);
    }
    const double e2 = second_solve_error(p, in);
    auto gc = attention_backward<bf100>(p, in);
    Problem pd = p;
    pd.solver.method = SolverMethod::Direct;
    auto gd = attention_backward<bf100>(pd, in);
    const double bound = std::max(8 * cond * std::max(ecg, e2), 1e-90);
    double worst = 0;
    for (auto pr : {std::make_pair(&gc.dq, &gd.dq), std::make_pair(&gc.dk, &gd.dk), std::make_pair(&gc.dv, &gd.dv),
                    std::make_pair(&gc.dlambda, &gd.dlambda)})
      worst = std::max(worst, tensor_rel(*pr.first, *pr.second));
    EXPECT_LE(worst, bound) << m;
    std::printf("  %s CG (32 it.) vs direct backward: %.2e (CG solve errors: forward %.2e, adjoint %.2e; cond %.1f)\n", m,
                worst, ecg, e2, cond);
  }
}

// The validation API: the double reference passes against every oracle; a candidate with the
// FlashLLA (Detached) gradient or a 1e-9 relative perturbation of one entry fails.
TEST(Gradcheck, ApiFlagsWrongCandidates) {
  Problem p = fixed_case("lla");
  Inputs in = make_inputs(p);
  CandidateResult good = to_candidate(attention_backward<double>(p, in));
  for (GradOracle o : {GradOracle::ForwardAD, GradOracle::FiniteDifference, GradOracle::Adjoint}) {
    auto r = check_gradients(p, in, good, {.oracle = o});
    EXPECT_TRUE(r.passed) << format_report(r);
  }
  Problem pd = p;
  pd.solver.ridge_grad = RidgeGrad::Detached;
  CandidateResult bad = to_candidate(attention_backward<double>(pd, in));
  for (GradOracle o : {GradOracle::ForwardAD, GradOracle::Adjoint}) {
    auto r = check_gradients(p, in, bad, {.oracle = o});
    EXPECT_FALSE(r.passed) << format_report(r);
  }
  CandidateResult nudged = good;
  std::size_t worst = 0;
  for (std::size_t i = 0; i < nudged.dk.size(); ++i)
    if (std::abs(nudged.dk.data[i]) > std::abs(nudged.dk.data[worst])) worst = i;
  nudged.dk.data[worst] *= 1 + 1e-9;
  auto r = check_gradients(p, in, nudged, {.oracle = GradOracle::ForwardAD});
  EXPECT_FALSE(r.passed) << format_report(r);
  std::printf("%s", format_report(r).c_str());
}
