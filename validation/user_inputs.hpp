// validation/user_inputs.hpp — truth on the caller's own inputs (`plx gen --inputs`, plx.reference).
//
// Charter: a user supplies q, k, v (r for a learned probe, lambda for a solver probe, dO for
// the gradients) and a problem; plx computes a normal schema-v1 fixture on exactly those
// values. Every input is checked before any arithmetic, and a refusal names the tensor:
// its shape against the problem's layout, finiteness (the index of the first NaN/Inf), and
// exact representability in the problem dtype (plx never rounds a user's inputs silently:
// the truth would then belong to other inputs than the kernel saw). dO may be omitted: it is
// then the generator's deterministic dO for the problem's seed (a note in the fixture says so).
#pragma once
#include <optional>
#include <string>

#include "reference/inputs.hpp"
#include "reference/problem.hpp"
#include "validation/fixture.hpp"

namespace plx {

// Inputs as given; an absent optional tensor is an empty Tensor (shape {}).
struct UserInputs {
  Tensor<double> q, k, v, r, dO, lambda;
};

// Check and complete (dO, r, lambda defaults) the user's inputs for problem p; throws plx::Error
// naming the tensor. `where` prefixes messages (e.g. "inputs 'my.h5', dataset").
Inputs complete_user_inputs(const Problem& p, UserInputs u, const std::string& where = "tensor");

// Read q, k, v, r, dO, lambda from an HDF5 file (float64, float32, or uint16 bf16/fp16 bit
// patterns with a 'format' attribute, as in fixtures and candidates).
UserInputs read_user_inputs(const std::string& path);

// complete_user_inputs + generate_fixture; the note on dO travels in reference_error.notes.
FixtureData fixture_from_user_inputs(const Problem& p, UserInputs u, const std::string& scalar = "dd",
                                     const std::string& where = "tensor");

}  // namespace plx
