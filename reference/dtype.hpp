// reference/dtype.hpp — input/candidate dtypes and exact rounding into them.
//
// Charter: round a double to bf16 / fp16 / fp32 with round-to-nearest-even, by bit
// manipulation (no FPU mode dependence), and convert bit patterns back. Used so a
// candidate and the reference see exactly the same input numbers. Overflow goes to
// +-inf; NaN stays NaN; fp16 subnormals are handled.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>
#include <string>

#include "reference/errors.hpp"

namespace plx {

enum class DType { F64, F32, BF16, F16 };

inline std::string to_string(DType t) {
  switch (t) {
    case DType::F64: return "float64";
    case DType::F32: return "float32";
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
  }
  return "?";
}
inline DType dtype_from_string(const std::string& s) {
  if (s == "float64" || s == "f64" || s == "fp64") return DType::F64;
  if (s == "float32" || s == "f32" || s == "fp32") return DType::F32;
  if (s == "bfloat16" || s == "bf16") return DType::BF16;
  if (s == "float16" || s == "f16" || s == "fp16" || s == "half") return DType::F16;
  fail("dtype: unknown name '" + s + "' (expected float64, float32, bfloat16, float16)");
}
// Unit roundoff of a dtype (half its machine epsilon).
inline double unit_roundoff(DType t) {
  switch (t) {
    case DType::F64: return 0x1p-53;
    case DType::F32: return 0x1p-24;
    case DType::BF16: return 0x1p-8;
    case DType::F16: return 0x1p-11;
  }
  return 0;
}

inline std::uint16_t bf16_bits(float f) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu))  // NaN: keep quiet NaN
    return static_cast<std::uint16_t>((u >> 16) | 0x0040u);
  std::uint32_t lsb = (u >> 16) & 1u;
  u += 0x7FFFu + lsb;
  return static_cast<std::uint16_t>(u >> 16);
}
inline float bf16_to_float(std::uint16_t b) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

inline std::uint16_t f16_bits(float f) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  std::uint32_t sign = (u >> 16) & 0x8000u;
  std::uint32_t a = u & 0x7FFFFFFFu;
  if (a >= 0x7F800000u) return static_cast<std::uint16_t>(sign | 0x7C00u | (a > 0x7F800000u ? 0x200u : 0u));
  if (a >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7C00u);  // rounds to >= 65520 -> inf
  if (a < 0x38800000u) {  // result is subnormal or zero in fp16: value * 2^24 rounded to an integer
    float mag = std::bit_cast<float>(a);
    float scaled = mag * 16777216.0f;  // exact (power of two)
    float r = std::nearbyint(scaled);  // default rounding mode is to-nearest-even
    return static_cast<std::uint16_t>(sign | static_cast<std::uint32_t>(r));
  }
  std::uint32_t lsb = (a >> 13) & 1u;
  a += 0xFFFu + lsb;
  a -= 0x38000000u;  // rebias exponent 127 -> 15
  return static_cast<std::uint16_t>(sign | (a >> 13));
}
inline float f16_to_float(std::uint16_t h) {
  std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  if (e == 0) {
    float v = std::ldexp(static_cast<float>(m), -24);
    return sign ? -v : v;
  }
  if (e == 31) return std::bit_cast<float>(sign | 0x7F800000u | (m << 13));
  return std::bit_cast<float>(sign | ((e + 112u) << 23) | (m << 13));
}

// Round a double to the nearest value representable in `t` (returned as double).
// Double rounding via float is harmless here: inputs are generated with at most
// 53 bits and bf16/fp16 rounding of the float result is exact-ties-to-even only
// when the float itself is exact; we therefore round to float first with RNE and
// accept the documented double-rounding corner (probability ~2^-29 per value).
inline double round_to(DType t, double x) {
  switch (t) {
    case DType::F64: return x;
    case DType::F32: return static_cast<double>(static_cast<float>(x));
    case DType::BF16: return bf16_to_float(bf16_bits(static_cast<float>(x)));
    case DType::F16: return f16_to_float(f16_bits(static_cast<float>(x)));
  }
  return x;
}

}  // namespace plx
