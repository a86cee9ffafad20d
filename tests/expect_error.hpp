// tests/expect_error.hpp — the GoogleTest helper for "this call throws plx::Error and the
// message names X", shared by the host-side checks of the CUDA tests (tests/kernels).
#pragma once
#include <gtest/gtest.h>

#include <string>

#include "reference/errors.hpp"

namespace plx::test {

// f() must throw plx::Error (or a subclass) whose what() contains `needle`.
template <class F> void expect_error(F f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no plx::Error thrown (expected one mentioning '" << needle << "')";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
  }
}

}  // namespace plx::test
