// validation/symmetry.hpp — exact symmetries of every member, for robust baselines and tests.
//
// Charter: permuting the feature axis D of q, k and r together (and the value axis Dv of v
// and dO together) changes no exact result of softmax, LLA or Parallax: logits q.k and r.k,
// the key covariance C (a similarity transform P C P^T, same eigenvalues) and every solve are
// equivariant, so out / dv come back permuted along Dv and dq / dk / dr along D, with
// dlambda unchanged. In floating point only the order of the D- and Dv-term sums (and a
// Cholesky's pivot order) changes, so a run on permuted inputs is an equally valid sample of
// the same precision's rounding error. check.cpp takes the same-precision baseline's error as
// the largest over several such samples where one sample is too noisy to be a limit (the
// conditioned LLA solves); tests/validation/test_symmetry.cpp measures every rule's verdict
// under these permutations. Permutations are deterministic in (problem seed, variant). A
// block-diagonal LLA solve (solver.block < D) is permuted only within its blocks.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "reference/inputs.hpp"
#include "reference/problem.hpp"

namespace plx {

struct FeaturePerm {
  std::vector<std::size_t> d, dv;  // new position j holds old index d[j] (resp. dv[j])
};

// Variant 0 is the identity; variant v > 0 a pseudo-random permutation of D and of Dv.
FeaturePerm feature_permutation(const Problem& p, unsigned variant);
Inputs permute_inputs(const Inputs& in, const FeaturePerm& f);
// Map tensors of the permuted problem back (out, dv along Dv; dq, dk, dr along D; others as is).
std::map<std::string, Tensor<double>> unpermute_outputs(std::map<std::string, Tensor<double>> t, const FeaturePerm& f);

}  // namespace plx
