// validation/environment.cpp — read and apply the environment variables of environment.hpp.
#include "validation/environment.hpp"

#include <cstdlib>

#include "validation/candidates.hpp"
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
