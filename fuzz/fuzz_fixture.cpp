// fuzz/fuzz_fixture.cpp — libFuzzer target: arbitrary bytes as a fixture file and as a
// candidate file. Contract: read_fixture / read_candidate either succeed or throw
// plx::Error; anything else (a crash, a sanitizer report, another exception type, a hang
// past libFuzzer's -timeout, an allocation past -rss_limit_mb) is a finding. A read that
// libhdf5 itself never finishes is ended by plx's watchdog (h5io.hpp), which prints
// "did not finish" and exits 2: .ci/fuzz.sh records such inputs and carries on.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "validation/check.hpp"
#include "validation/fixture.hpp"
#include "validation/h5io.hpp"

namespace {
std::string scratch_path() {
  const char* d = std::getenv("PLX_FUZZ_SCRATCH");
  return std::string(d && *d ? d : "/tmp") + "/plx-fuzz-" + std::to_string(::getpid()) + ".h5";
}
// The fixture candidates are read against: a committed one (PLX_FUZZ_FIXTURE), read once.
const plx::FixtureData* base_fixture() {
  static const plx::FixtureData* fx = [] {
    const char* p = std::getenv("PLX_FUZZ_FIXTURE");
    if (!p) return static_cast<plx::FixtureData*>(nullptr);
    return new plx::FixtureData(plx::read_fixture(p));
  }();
  return fx;
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  plx::h5::set_watchdog(5.0);
  plx::h5::set_max_read_bytes(std::uint64_t(256) << 20);  // stay within libFuzzer's -rss_limit_mb
  base_fixture();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = scratch_path();
  {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) std::abort();
    if (size) std::fwrite(data, 1, size, f);
    std::fclose(f);
  }
  try {
    plx::FixtureData fx = plx::read_fixture(path);
  } catch (const plx::Error&) {
  }
  if (const plx::FixtureData* fx = base_fixture()) {
    try {
      plx::Candidate c = plx::read_candidate(path, *fx, size % 2 == 1);
      (void)plx::check_candidate("fixture", *fx, c);
    } catch (const plx::Error&) {
    }
  }
  return 0;
}
