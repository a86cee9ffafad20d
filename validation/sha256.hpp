// validation/sha256.hpp — SHA-256 (FIPS 180-4) of a byte buffer, as lowercase hex.
//
// Charter: fixtures carry a SHA-256 of every dataset's raw bytes so that corruption is
// detected and regeneration can be compared dataset by dataset. A small, portable,
// single-shot-or-streaming implementation; no dependency on OpenSSL. Not constant-time
// (nothing secret is hashed here). Tested against the FIPS known-answer vectors.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace plx {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, std::size_t n);
  std::array<std::uint8_t, 32> digest();  // finalises; the object must not be updated afterwards
  std::string hex();                      // digest() as 64 lowercase hex characters

 private:
  void block(const std::uint8_t* p);
  std::uint32_t h_[8];
  std::uint8_t buf_[64];
  std::size_t fill_ = 0;
  std::uint64_t bits_ = 0;
};

std::string sha256_hex(const void* data, std::size_t n);
inline std::string sha256_hex(std::string_view s) { return sha256_hex(s.data(), s.size()); }

// The compression runs on the CPU's SHA extensions where present; set_sha256_portable(true)
// forces the portable code everywhere (tests run both; the `plx` tool maps the environment
// variable PLX_SHA256_PORTABLE onto it). Process-wide.
void set_sha256_portable(bool on);
bool sha256_uses_cpu_extensions();

}  // namespace plx
