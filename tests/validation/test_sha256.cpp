// tests/validation/test_sha256.cpp — SHA-256 against FIPS 180-4 / NIST known answers.
#include <gtest/gtest.h>

#include <string>

#include "validation/sha256.hpp"

using namespace plx;

// Every case runs twice: the CPU's SHA extensions (where present) and the portable compression.
class Sha256Modes : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { set_sha256_portable(GetParam()); }
  void TearDown() override { set_sha256_portable(false); }
};
INSTANTIATE_TEST_SUITE_P(Modes, Sha256Modes, ::testing::Values(false, true),
                         [](const auto& i) { return i.param ? "portable" : "cpu_extensions"; });

TEST_P(Sha256Modes, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // One million 'a' (FIPS 180-2 appendix B.3), fed in uneven pieces to exercise buffering.
  plx::Sha256 h;
  std::string chunk(997, 'a');
  std::size_t left = 1000000;
  while (left) {
    std::size_t n = std::min(left, chunk.size());
    h.update(chunk.data(), n);
    left -= n;
  }
  EXPECT_EQ(h.hex(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_P(Sha256Modes, PaddingBoundaries) {
  // Lengths 55, 56, 63, 64 straddle the padding block boundary; streaming == one-shot.
  for (std::size_t n : {55u, 56u, 63u, 64u, 65u, 119u, 120u}) {
    std::string s(n, 'x');
    plx::Sha256 a;
    for (char c : s) a.update(&c, 1);
    EXPECT_EQ(a.hex(), sha256_hex(s)) << n;
  }
  EXPECT_NE(sha256_hex(std::string(55, 'x')), sha256_hex(std::string(56, 'x')));
}
