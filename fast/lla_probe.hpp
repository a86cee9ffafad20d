// fast/lla_probe.hpp — LLA's per-row probe theta (covariance form), see lla_probe.cpp.
//
// Charter: declaration only. theta [B,Lq,Hq,D]; alpha, omega [B,Hq,Lq]; lambda [B,Hq,Lq].
// Throws plx::NumericalError when C + lambda I is not positive definite in precision A.
#pragma once
#include <cstdint>

#include "reference/problem.hpp"

namespace plx::fast {
template <class S, class A>
void lla_probe(const Problem& p, const S* q, const S* k, const double* lambda, A* theta, A* alpha, A* omega);
}  // namespace plx::fast
