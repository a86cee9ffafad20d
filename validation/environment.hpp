// validation/environment.hpp — the tool's edge: every environment variable plx reads, in one place.
//
// Charter: the library below takes options (structs, setters); only executables (the `plx` tool,
// benchmarks) call apply_environment() once at start-up, which reads each variable listed here
// and applies it: the backends' settings (Backend::settings, e.g. PLX_CUDA_FORWARD) and the
// process-wide switches PLX_MP_CASCADE (the reference's multiprecision product cascade),
// PLX_SHA256_PORTABLE (the portable SHA-256 compression), PLX_MEMORY_LIMIT (the memory budget of
// validation/limits.hpp) and PLX_HDF5_WATCHDOG_S (the tool's HDF5 watchdog, h5io.hpp). A bad value
// is a plx::Error naming it.
#pragma once
#include <string>
#include <vector>

#include "reference/candidate.hpp"

namespace plx {

std::vector<BackendSetting> environment_settings();  // every variable, with its help line
void apply_environment();                             // read and apply each one that is set
std::string environment_help();                       // the list for --help

}  // namespace plx
