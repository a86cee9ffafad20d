// A program outside the plx tree: reads a golden fixture, runs the reference forward in double
// on its inputs (plx::reference), and checks that result through plx::validation exactly as
// `plx check --run ref-double` would. Exit 0 when the check passes and the direct forward agrees
// with the checked candidate, 1 otherwise, 2 on a plx::Error.
#include <cmath>
#include <iostream>

#include "reference/all.hpp"
#include "validation/candidates.hpp"
#include "validation/check.hpp"
#include "validation/fixture.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: consumer FIXTURE.h5\n";
    return 2;
  }
  try {
    const plx::FixtureData fx = plx::read_fixture(argv[1]);
    const auto r = plx::run_candidate("ref-double", fx.p, fx.in);
    plx::Candidate c = plx::candidate_from_result("run:ref-double", r, fx.p, plx::candidate_dtypes("ref-double", fx.p));
    for (auto it = c.tensors.begin(); it != c.tensors.end();)
      it = fx.truth.count(it->first) ? std::next(it) : c.tensors.erase(it);
    const plx::CheckResult res = plx::check_candidate(argv[1], fx, c);
    std::cout << res.format();
    // The header-only reference, called directly, gives the candidate's numbers bit for bit.
    const auto out = plx::attention_forward<double>(fx.p, fx.in).out;
    bool same = out.data.size() == r.out.data.size();
    for (std::size_t i = 0; same && i < out.data.size(); ++i) same = out.data[i] == r.out.data[i];
    std::cout << "direct reference forward " << (same ? "matches" : "DIFFERS FROM") << " the ref-double candidate\n";
    return res.passed && same ? 0 : 1;
  } catch (const plx::Error& e) {
    std::cerr << "consumer: error: " << e.what() << "\n";
    return 2;
  }
}
