// fast/lla_probe.hpp — LLA's per-row probe theta (covariance form), see lla_probe.cpp.
//
// Charter: declaration only. theta [B,Lq,Hq,D]; dom = Delta/omega, omega [B,Hq,Lq];
// lambda [B,Hq,Lq]. For CG solves, rep (optional, [B,Hq,Lq]) receives the solver report.
// Throws plx::NumericalError when C + lambda I is not positive definite in fp64 (direct), or
// when a CG solve produces a non-finite probe or Delta = 0 (query anchor).
#pragma once
#include <cstdint>

#include "reference/problem.hpp"

namespace plx::fast {
// Per-row CG report, the reference's SolveReport fields (reference/solvers.hpp).
struct LlaSolveReport {
  int iterations = 0;       // iterations taken while the stopping test had not fired
  double rel_residual = 0;  // ||A x - y|| / ||y||, recomputed with one more matvec
  bool converged = true;    // the test nrm' <= max(atol, nrm0) rtol fired (or y = 0)
};
template <class S, class A>
void lla_probe(const Problem& p, const S* q, const S* k, const double* lambda, A* theta, A* dom, A* omega,
               LlaSolveReport* rep = nullptr);
}  // namespace plx::fast
