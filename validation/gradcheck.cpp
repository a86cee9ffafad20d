// validation/gradcheck.cpp — the gradient-check API (see gradcheck.hpp) and the one place the
// Dual<T> oracle forwards are instantiated (bf100, bf50, dd).
#include "validation/gradcheck.hpp"

#include <sstream>

namespace plx {
PLX_GRADCHECK_TEMPLATES(bf100, template)
PLX_GRADCHECK_TEMPLATES(bf50, template)
PLX_GRADCHECK_TEMPLATES(dd, template)

std::string to_string(GradOracle o) {
  return o == GradOracle::FiniteDifference ? "fd_richardson_bf100" : o == GradOracle::ForwardAD ? "forward_ad_bf100" : "adjoint_dual_dd";
}

CandidateResult oracle_gradients(const Problem& p, const Inputs& in, GradOracle oracle) {
  if (oracle == GradOracle::Adjoint) throw Error("oracle_gradients: the adjoint oracle gives directional derivatives only");
  detail::refuse_decode(p, "oracle_gradients");
  return to_candidate(oracle_gradient<bf100>(p, in, oracle == GradOracle::FiniteDifference, 0.0));
}

namespace {
struct Named {
  std::string name;
  const Tensor<double>* cand;
  const Tensor<double>* truth;
  const Tensor<double>* base;
};
const Tensor<double>* dlambda_of(const CandidateResult& c) {
  auto it = c.saved.find("dlambda");
  return it == c.saved.end() ? nullptr : &it->second;
}
Tolerance default_tol(const GradCheckOptions& opt) {
  Tolerance t;
  t.baseline_ratio = 2.0;
  t.rel_floor = unit_roundoff(opt.cand_dtype);
  t.why = "max(2 x |reference backward in double - oracle| (FlashAttention rule), u(" + to_string(opt.cand_dtype) +
          ") * max|truth| (rounding of the result))";
  return t;
}
}  // namespace

GradCheckReport check_gradients(const Problem& p, const Inputs& in, const CandidateResult& cand, const GradCheckOptions& opt) {
  detail::refuse_decode(p, "check_gradients");
  GradCheckReport R;
  R.oracle = to_string(opt.oracle);
  const Tolerance tol = opt.tol ? *opt.tol : default_tol(opt);
  const CandidateResult base = to_candidate(attention_backward<double>(p, in));
  std::vector<std::pair<std::string, const Tensor<double>*>> cands = {{"dq", &cand.dq}, {"dk", &cand.dk}, {"dv", &cand.dv}};
  std::vector<const Tensor<double>*> bases = {&base.dq, &base.dk, &base.dv};
  std::string keys = "qkv";
  if (p.probe == Probe::Learned) cands.push_back({"dr", &cand.dr}), bases.push_back(&base.dr), keys += "r";
  if (p.probe == Probe::Solver) cands.push_back({"dlambda", dlambda_of(cand)}), bases.push_back(dlambda_of(base)), keys += "l";
  for (auto& c : cands)
    if (!c.second || c.second->empty()) throw Error("check_gradients: the candidate has no '" + c.first + "'");

  if (opt.oracle != GradOracle::Adjoint) {
    const CandidateResult truth = oracle_gradients(p, in, opt.oracle);
    std::vector<const Tensor<double>*> truths = {&truth.dq, &truth.dk, &truth.dv};
    if (p.probe == Probe::Learned) truths.push_back(&truth.dr);
    if (p.probe == Probe::Solver) truths.push_back(dlambda_of(truth));
    for (std::size_t i = 0; i < cands.size(); ++i)
      R.tensors.push_back(compare_tensor(cands[i].first, *cands[i].second, *truths[i], opt.cand_dtype, tol, bases[i]));
  } else {
    // Per tensor: `directions` random directions supported on that tensor only.
    auto as_grad = [](const CandidateResult& c, const Problem& p) {
      Gradients<double> g = detail::zero_gradients<double>(p);
      g.dq = c.dq, g.dk = c.dk, g.dv = c.dv;
      if (!c.dr.empty()) g.dr = c.dr;
      if (auto* l = dlambda_of(c)) g.dlambda = *l;
      return g;
    };
    const Gradients<double> gc = as_grad(cand, p), gb = as_grad(base, p);
    for (std::size_t i = 0; i < cands.size(); ++i) {
      const std::size_t n = std::size_t(std::max(1, opt.directions));
      Tensor<double> tc({n}), tt({n}), tb({n});
      for (std::size_t k = 0; k < n; ++k) {
        Direction e = random_direction(p, in, opt.seed * 1000003ull + k, std::string(1, keys[i]));
        tt.data[k] = to_double(directional_ad<dd>(p, in, e));
        tc.data[k] = to_double(inner<dd>(p, gc, e));
        tb.data[k] = to_double(inner<dd>(p, gb, e));
      }
      R.tensors.push_back(compare_tensor("<" + cands[i].first + ",e>", tc, tt, opt.cand_dtype, tol, &tb));
    }
  }
  R.passed = true;
  for (const auto& t : R.tensors) R.passed = R.passed && t.passed;
  return R;
}

std::string format_report(const GradCheckReport& r) {
  std::ostringstream o;
  o << "gradient check against " << r.oracle << ": " << (r.passed ? "PASS" : "FAIL") << "\n" << format_report(r.tensors);
  return o.str();
}

}  // namespace plx
