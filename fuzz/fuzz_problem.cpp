// fuzz/fuzz_problem.cpp — libFuzzer target: arbitrary bytes as a problem JSON (the fixture's
// `problem` attribute, a suite case). Contract: plx::Error or a valid problem that survives a
// JSON round trip unchanged; huge dims are refused (range, element cap) or estimated without
// overflow.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "validation/limits.hpp"
#include "validation/problem_json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    plx::Problem p = plx::problem_from_json_text(text);
    const nlohmann::json j = plx::problem_to_json(p);
    if (plx::problem_to_json(plx::problem_from_json(j)) != j) std::abort();  // round trip
    const double b = plx::estimate_check_memory(p).bytes + plx::estimate_gen_memory(p, "dd").bytes;
    if (!(std::isfinite(b) && b > 0)) std::abort();
  } catch (const plx::Error&) {
  }
  return 0;
}
