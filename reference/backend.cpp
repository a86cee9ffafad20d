// reference/backend.cpp — the reference in double as a backend ("ref-double").
//
// Charter: the forward (with its saved intermediates) and, for every problem that is not a
// decode step, the reference backward, all in double. Every tensor is reported as float64.
#include "reference/all.hpp"
#include "reference/candidate.hpp"

namespace plx {

namespace {
CandidateResult forward_double(const Problem& p, const Inputs& in) {
  ForwardOptions o;
  o.saved = true;
  auto F = attention_forward<double>(p, in, o);
  CandidateResult r;
  r.out = std::move(F.out);
  r.saved = std::move(F.saved);
  return r;
}
}  // namespace

Backend plx_backend_reference_double() {
  Backend b;
  b.name = "ref-double";
  b.summary = "the reference algorithm in double (forward; backward except decode steps)";
  b.preference = 100;
  b.supports = [](const Problem&, std::string*) { return true; };
  b.supports_backward = [](const Problem& p, std::string* why) {
    if (!p.decode) return true;
    if (why) *why = "a decode step has no backward";
    return false;
  };
  b.run_forward = forward_double;
  b.run_backward = [](const Problem& p, const Inputs& in) {
    CandidateResult r = forward_double(p, in);
    auto G = attention_backward<double>(p, in);
    r.dq = std::move(G.dq), r.dk = std::move(G.dk), r.dv = std::move(G.dv);
    if (p.probe == Probe::Learned) r.dr = std::move(G.dr);
    return r;
  };
  b.dtypes = [](const Problem&) {
    std::map<std::string, DType> d;
    for (const char* n : {"out", "dq", "dk", "dv", "dr"}) d[n] = DType::F64;
    return d;
  };
  return b;
}

}  // namespace plx
