// validation/environment.cpp — read and apply the environment variables of environment.hpp.
#include "validation/environment.hpp"

#include <cmath>
#include <cstdlib>

#include "validation/candidates.hpp"
#include "reference/attention.hpp"
#include "validation/h5io.hpp"
#include "validation/limits.hpp"
#include "validation/sha256.hpp"

namespace plx {

namespace {
bool parse_bool(const std::string& var, const std::string& v) {
  if (v == "1") return true;
  if (v == "0") return false;
  throw Error(var + "='" + v + "': expected 0 or 1");
}
}  // namespace

std::vector<BackendSetting> environment_settings() {
  std::vector<BackendSetting> s = {
      {"PLX_SHA256_PORTABLE", "1: fixture checksums by the portable SHA-256 code, never the CPU's SHA extensions",
       [](const std::string& v) { set_sha256_portable(parse_bool("PLX_SHA256_PORTABLE", v)); }},
      {"PLX_MP_CASCADE", "0: multiprecision truths (bf50, MPFR) in the scalar's own arithmetic instead of the "
                         "four-double product cascade (for comparisons; docs/performance.md)",
       [](const std::string& v) { set_mp_cascade(parse_bool("PLX_MP_CASCADE", v)); }},
      {"PLX_MEMORY_LIMIT", "bytes plx may use (default: MemAvailable); a case whose estimate exceeds it is refused",
       [](const std::string& v) {
         char* end = nullptr;
         const unsigned long long b = std::strtoull(v.c_str(), &end, 10);
         if (v.empty() || *end != 0 || v[0] == '-' || b == 0)
           throw Error("PLX_MEMORY_LIMIT must be a number of bytes > 0, got '" + v + "'");
         set_memory_limit(b);
       }},
      {"PLX_HDF5_WATCHDOG_S", "seconds a single HDF5 read may take before plx exits 2 (default 30; 0: off)",
       [](const std::string& v) {
         char* end = nullptr;
         const double s = std::strtod(v.c_str(), &end);
         if (v.empty() || *end != 0 || !std::isfinite(s) || s < 0)
           throw Error("PLX_HDF5_WATCHDOG_S must be a number of seconds >= 0 (0: off), got '" + v + "'");
         h5::set_tool_watchdog_seconds(s);
       }},
  };
  for (const Backend& b : backends())
    for (const BackendSetting& x : b.settings) s.push_back(x);
  return s;
}

void apply_environment() {
  for (const BackendSetting& s : environment_settings())
    if (const char* v = std::getenv(s.env.c_str())) s.apply(v);
}

std::string environment_help() {
  std::string h = "Environment (read once at start-up):\n";
  for (const BackendSetting& s : environment_settings()) h += "  " + s.env + "\n      " + s.help + "\n";
  return h;
}

}  // namespace plx
