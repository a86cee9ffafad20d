// reference/rng.hpp — plx's portable counter-based random numbers.
//
// Charter: value number `i` of stream `s` under seed `seed` is a pure function of
// (seed, s, i), computed with 64-bit integer arithmetic only, so every platform,
// compiler and thread count gets the same bits. Normals are Irwin–Hall(12) sums of
// 32-bit dyadic uniforms: exact in double (no libm call), unit variance, support
// [-6, 6]. This is deliberate: std::normal_distribution and libm's log/cos differ
// between platforms. Do not use for statistics that need true Gaussian tails.
#pragma once
#include <cstdint>

namespace plx {

// SplitMix64's finaliser: a bijection on 64-bit words with full avalanche.
constexpr std::uint64_t mix64(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

struct CounterRng {
  std::uint64_t seed;
  std::uint64_t stream;
  // 64 random bits for counter i.
  constexpr std::uint64_t bits(std::uint64_t i) const {
    return mix64(mix64(seed ^ mix64(stream * 0xD1B54A32D192ED03ull + 1)) + i);
  }
  // Uniform on [0, 1) with 53 random bits (exact dyadic).
  double uniform(std::uint64_t i) const { return double(bits(i) >> 11) * 0x1p-53; }
  // Approximately standard normal (Irwin–Hall n = 12, exact in double).
  double normal(std::uint64_t i) const {
    std::uint64_t acc = 0;
    for (std::uint64_t t = 0; t < 6; ++t) {
      std::uint64_t b = bits(6 * i + t);
      acc += (b & 0xFFFFFFFFull) + (b >> 32);
    }
    return (double(acc) - 6.0 * 4294967296.0) * 0x1p-32;
  }
};

// Named streams, so adding a tensor never shifts another tensor's numbers.
enum class Stream : std::uint64_t {
  Q = 1, K = 2, V = 3, R = 4, dO = 5, Lambda = 6, Aux = 7, Lengths = 8, Partition = 9
};
inline CounterRng rng_for(std::uint64_t seed, Stream s, std::uint64_t sub = 0) {
  return CounterRng{seed, (static_cast<std::uint64_t>(s) << 32) ^ sub};
}

}  // namespace plx
