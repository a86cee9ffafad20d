// reference/errors.hpp — the one exception type plx throws for bad input.
//
// Charter: every rejection (invalid problem, wrong shape, NaN/Inf input, singular
// system, bad file) is a plx::Error whose message names the field, tensor or index.
// Callers (CLI, tests) map it to exit code 2. Nothing here computes.
#pragma once
#include <stdexcept>
#include <string>

namespace plx {
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// Thrown when the mathematics is undefined for the given data (e.g. singular
// Sigma at lambda = 0); distinct so tests can tell it from a malformed request.
struct NumericalError : Error {
  using Error::Error;
};
[[noreturn]] inline void fail(const std::string& msg) { throw Error(msg); }
inline void require(bool ok, const std::string& msg) {
  if (!ok) throw Error(msg);
}
}  // namespace plx
