// reference/certify.cpp — the reference instantiated on plx::Ival, and certify() (reference/certify.hpp).
//
// Soundness of evaluating the reference's own code on intervals (docs/certified.md has the
// argument in full): every arithmetic operation of Ival is an inclusion-isotone interval extension,
// so any straight-line program evaluated on Ival encloses the value the same program has in exact
// real arithmetic. The reference's programs are, in exact arithmetic, the definitions: the
// compensation terms of its Neumaier and TwoSum sums are exactly 0 over the reals (Neumaier is
// replaced below by a plain interval sum, tighter and cheaper); its branches on comparisons are
// taken only when Ival's certain-or-throw comparisons decide them, i.e. as the exact computation
// takes them. What is not straight-line is replaced here:
//  * the max-shift pivot (row_weights): m is the interval hull of max_j s_j, which contains the
//    exact maximum logit (the query-anchored output depends on m through the delta_eps clamp;
//    the key-mean members do not depend on m at all); the backward's argmax index is the key
//    whose logit is certainly the largest (first index on exact ties, as the reference's scan),
//    or the pass is not verified;
//  * the Cholesky solve of the ridge system: a verified solve (reference/verified_solve.hpp)
//    per diagonal block, which proves the block nonsingular and encloses its solution.
// CG (a fixed number of iterations with a stopping test) runs as written, in intervals: its
// stopping test is a certain-or-throw comparison, so the iteration count is the exact one.
#include "reference/certify.hpp"

#include <cmath>
#include <mutex>

#include "reference/attention.hpp"
#include "reference/backward.hpp"
#include "reference/verified_solve.hpp"

namespace plx {

template <> struct ScalarTraits<Ival> {
  static std::string name() { return "interval" + std::to_string(IvalPrecision::bits()); }
  static double eps() { return std::ldexp(1.0, -int(IvalPrecision::bits())); }
  static double to_double(const Ival& x) { return x.mid_d(); }
  static Ival from_double(double x) { return Ival(x); }
  static void thread_setup() {}
};

// A plain interval sum: Neumaier's compensation is 0 over the reals and only widens intervals.
template <> struct Neumaier<Ival> {
  Ival sum = Ival(0);
  void add(const Ival& x) { sum += x; }
  Ival value() const { return sum; }
};

template <>
Vec<Ival> solve_cholesky<Ival>(const Mat<Ival>& A, const Vec<Ival>& y, int block, const std::string& where) {
  const int n = int(A.rows());
  Vec<Ival> x(n);
  for (int t = 0; t < n; t += block) {
    VerifiedSolve vs = verified_solve(Mat<Ival>(A.block(t, t, block, block)), Vec<Ival>(y.segment(t, block)));
    if (!vs.verified) throw NotVerified("ridge solve at " + where + ", block " + std::to_string(t / block) + ": " + vs.reason);
    x.segment(t, block) = vs.x;
  }
  return x;
}

namespace detail {
// The pivot of one row on intervals (see the charter), then w, omega, p as in row_weights<T>.
template <class S> void row_weights(Row<Ival>& row, const S& s_union, int L0, Eigen::Index* jmax = nullptr) {
  const int n = row.R.size();
  row.c0 = row.R.lo - L0;
  auto s = s_union.segment(row.c0, n);
  Ival m = s(0);
  for (int j = 1; j < n; ++j) m = ival_max(m, s(j));
  if (jmax) {
    int js = 0;  // first index with the largest upper end
    for (int j = 1; j < n; ++j)
      if (mpfr_greater_p(s(j).hi, s(js).hi)) js = j;
    for (int j = 0; j < n; ++j) {
      if (j == js) continue;
      const bool ok = j < js ? mpfr_less_p(s(j).hi, s(js).lo) : mpfr_lessequal_p(s(j).hi, s(js).lo);
      if (!ok) throw NotVerified("the largest logit of a row is not decided (keys " + std::to_string(row.R.lo + js) +
                                 " and " + std::to_string(row.R.lo + j) + " overlap)");
    }
    *jmax = js;
  }
  row.m = m;
  row.w.resize(n);
  for (int j = 0; j < n; ++j) row.w(j) = exp(Ival(s(j) - m));
  row.omega = comp_sum<Ival>(row.w);
  row.p = row.w / row.omega;
}
}  // namespace detail

template Forward<Ival> attention_forward<Ival>(const Problem&, const Inputs&, const ForwardOptions&);
template Gradients<Ival> attention_backward<Ival>(const Problem&, const Inputs&);

std::vector<std::string> certified_tensor_names(const Problem& p, bool backward) {
  std::vector<std::string> n = {"out"};
  if (!backward || p.decode) return n;
  for (const char* g : {"dq", "dk", "dv"}) n.push_back(g);
  if (p.probe == Probe::Learned) n.push_back("dr");
  if (p.probe == Probe::Solver) n.push_back("dlambda");
  return n;
}

double normwise_rel_width(const Tensor<Ival>& t) {
  double w = 0, a = 0;
  mpfr_t d;
  mpfr_init2(d, 64);
  for (const Ival& x : t.data) {
    if (!is_finite(x)) {
      mpfr_clear(d);
      return std::numeric_limits<double>::infinity();
    }
    mpfr_sub(d, x.hi, x.lo, MPFR_RNDU);
    w = std::max(w, mpfr_get_d(d, MPFR_RNDU));
    a = std::max(a, std::fabs(x.mid_d()));
  }
  mpfr_clear(d);
  if (w == 0) return 0;
  return a > 0 ? w / a : std::numeric_limits<double>::infinity();
}

namespace {

// Run `pass` at increasing precision until every tensor it returns is within target_rel, or
// max_bits. Returns the tensors and the bits used, or fills `why` with the last reason.
template <class F>
std::map<std::string, Tensor<Ival>> run_passes(const char* what, const CertifyOptions& o, F&& pass, long& used,
                                               std::string& why, std::vector<std::string>& log) {
  std::map<std::string, Tensor<Ival>> best;
  for (long bits = o.bits; bits <= o.max_bits; bits *= 2) {
    IvalPrecision::set(bits);
    try {
      auto r = pass();
      double worst = 0;
      for (auto& [n, t] : r) worst = std::max(worst, normwise_rel_width(t));
      char buf[200];
      std::snprintf(buf, sizeof buf, "%s at %ld bits: widest tensor %.3g (relative, normwise)", what, bits, worst);
      log.push_back(buf);
      best = std::move(r), used = bits, why.clear();
      if (worst <= o.target_rel) break;
    } catch (const NotVerified& e) {
      why = std::string("not verified at ") + std::to_string(bits) + " bits: " + e.what();
      log.push_back(std::string(what) + ": " + why);
      if (!best.empty()) break;  // keep the earlier, verified but wider, result
    }
  }
  return best;
}

}  // namespace

Certificate certify(const Problem& p, const Inputs& in, const CertifyOptions& o) {
  static std::mutex mu;  // the working precision is process-wide
  std::lock_guard<std::mutex> lock(mu);
  const long saved_bits = IvalPrecision::bits();
  Certificate c;
  std::string why;
  long used = 0;
  try {
    auto fwd = run_passes("forward", o, [&] {
      std::map<std::string, Tensor<Ival>> r;
      r["out"] = attention_forward<Ival>(p, in).out;
      return r;
    }, used, why, c.log);
    if (fwd.count("out")) c.enclosure["out"] = std::move(fwd["out"]), c.bits["forward"] = used;
    else c.not_verified["out"] = why;

    const auto names = certified_tensor_names(p, o.backward);
    if (names.size() > 1) {
      used = 0, why.clear();
      auto bwd = run_passes("backward", o, [&] {
        Gradients<Ival> G = attention_backward<Ival>(p, in);
        std::map<std::string, Tensor<Ival>> r;
        r["dq"] = std::move(G.dq), r["dk"] = std::move(G.dk), r["dv"] = std::move(G.dv);
        if (p.probe == Probe::Learned) r["dr"] = std::move(G.dr);
        if (p.probe == Probe::Solver) r["dlambda"] = std::move(G.dlambda);
        return r;
      }, used, why, c.log);
      for (std::size_t i = 1; i < names.size(); ++i) {
        if (bwd.count(names[i])) c.enclosure[names[i]] = std::move(bwd[names[i]]);
        else c.not_verified[names[i]] = why;
      }
      if (!bwd.empty()) c.bits["backward"] = used;
    }
  } catch (const NumericalError& e) {  // the mathematics is undefined (e.g. d = 0 exactly)
    for (const auto& n : certified_tensor_names(p, o.backward))
      if (!c.enclosure.count(n)) c.not_verified[n] = std::string("the reference refuses: ") + e.what();
  } catch (...) {
    IvalPrecision::set(saved_bits);
    throw;
  }
  IvalPrecision::set(saved_bits);
  return c;
}

}  // namespace plx
