// reference/rounding.hpp — bit-exact rounding of a double (or float) into fp32, tf32, bf16, fp16.
//
// Charter: one rounding routine for every narrow format the project stores or emulates, by
// integer manipulation of the double's bits (no dependence on the FPU rounding mode, no
// intermediate rounding through float, so no double-rounding corner). Rules, identical to
// IEEE 754 round-to-nearest-even as the x86 and CUDA conversion instructions apply it:
//   - the result is the representable value nearest to x; on an exact tie the one whose
//     significand is even (last stored bit 0);
//   - subnormals of the target are produced (fp32 down to 2^-149, tf32 to 2^-136, bf16 to
//     2^-133, fp16 to 2^-24); a value at most half the smallest subnormal rounds to zero
//     (exactly half: to zero, the even neighbour);
//   - overflow: |x| >= max_finite + ulp(max_finite) / 2 gives +-inf (the tie goes to the
//     even neighbour, which is 2^(emax+1), i.e. infinity); below that, max_finite;
//   - signed zero: -0.0 stays -0.0, and a negative value that rounds to zero gives -0.0;
//   - NaN: the result is a quiet NaN with the same sign; the target keeps the top (p - 2)
//     payload bits of the double's payload below the quiet bit (truncated, as x86 cvtsd2ss
//     does), and the quiet bit is set (a signalling NaN becomes quiet). Returned as a double,
//     the NaN is that narrow NaN widened back exactly (payload bits in the same positions).
// tf32 is fp32's range with a 10-bit stored significand, rounded to nearest-even here (note:
// CUDA's cvt.rna.tf32.f32 rounds ties away from zero; cuBLAS/cuDNN paths differ by architecture).
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

namespace plx {

// A storage / rounding format. None = keep the value (no rounding point).
enum class RoundFmt { None, F32, TF32, BF16, F16 };

struct FmtInfo {
  int p;     // significand precision in bits, including the implicit bit
  int emin;  // exponent of the smallest normal number
  int emax;  // exponent of the largest finite number
  int ebits; // stored exponent bits (for bit encoding)
};
inline constexpr FmtInfo fmt_info(RoundFmt f) {
  switch (f) {
    case RoundFmt::F32: return {24, -126, 127, 8};
    case RoundFmt::TF32: return {11, -126, 127, 8};
    case RoundFmt::BF16: return {8, -126, 127, 8};
    case RoundFmt::F16: return {11, -14, 15, 5};
    case RoundFmt::None: break;
  }
  return {53, -1022, 1023, 11};
}
inline std::string to_string(RoundFmt f) {
  switch (f) {
    case RoundFmt::None: return "none";
    case RoundFmt::F32: return "fp32";
    case RoundFmt::TF32: return "tf32";
    case RoundFmt::BF16: return "bf16";
    case RoundFmt::F16: return "fp16";
  }
  return "?";
}
// Unit roundoff 2^-p of a format (0 for None).
inline double fmt_unit_roundoff(RoundFmt f) { return f == RoundFmt::None ? 0.0 : std::ldexp(1.0, -fmt_info(f).p); }

// Round x to format f (returned as the exactly representable double). See the charter.
inline double round_fmt(RoundFmt f, double x) {
  if (f == RoundFmt::None) return x;
  const FmtInfo fi = fmt_info(f);
  const std::uint64_t u = std::bit_cast<std::uint64_t>(x);
  const std::uint64_t sign = u & 0x8000000000000000ull;
  const std::uint64_t a = u & 0x7FFFFFFFFFFFFFFFull;
  const std::uint64_t frac = a & 0x000FFFFFFFFFFFFFull;
  const int bexp = int(a >> 52);
  if (bexp == 0x7FF) {
    if (frac == 0) return x;  // +-inf
    // NaN: keep the top p - 2 payload bits below the quiet bit (bit 51), set the quiet bit.
    const int keep = fi.p - 1;  // stored significand bits of the target (quiet bit + p - 2 payload)
    const std::uint64_t mask = ((1ull << keep) - 1) << (52 - keep);
    return std::bit_cast<double>(sign | 0x7FF0000000000000ull | (frac & mask) | (1ull << 51));
  }
  if (bexp == 0) return std::bit_cast<double>(sign);  // zero or a double subnormal (< 2^-1022): +-0
  const int e = bexp - 1023;                          // 2^e <= |x| < 2^(e+1)
  const std::uint64_t M = frac | (1ull << 52);        // |x| = M 2^(e-52)
  const int q = (e > fi.emin ? e : fi.emin) - (fi.p - 1);  // quantum (ulp) exponent at |x|
  const int shift = q - (e - 52);                     // bits of M below the quantum (>= 29 here)
  std::uint64_t kept;
  if (shift >= 54) {
    kept = 0;  // |x| < 2^(q-1): below half a quantum
  } else {
    kept = M >> shift;
    const std::uint64_t rem = M & ((1ull << shift) - 1), half = 1ull << (shift - 1);
    if (rem > half || (rem == half && (kept & 1))) ++kept;
  }
  const double mag = std::ldexp(double(kept), q);  // exact: kept <= 2^p
  const double maxf = std::ldexp(double((1ull << fi.p) - 1), fi.emax - (fi.p - 1));
  const double r = mag > maxf ? std::numeric_limits<double>::infinity() : mag;
  return sign ? -r : r;
}
// From float: the widening float -> double is exact, so this is a single rounding.
inline double round_fmt(RoundFmt f, float x) { return round_fmt(f, double(x)); }

// Bit pattern of round_fmt(f, x) in the target's own encoding (fp32/tf32 as 32-bit fp32
// patterns with the low 13 bits zero for tf32; bf16/fp16 in 16 bits).
inline std::uint32_t fmt_bits(RoundFmt f, double x) {
  const FmtInfo fi = fmt_info(f);
  const double r = round_fmt(f, x);
  const std::uint64_t u = std::bit_cast<std::uint64_t>(r);
  const int width = f == RoundFmt::F32 || f == RoundFmt::TF32 ? 32 : 16;
  const int mbits = width - 1 - fi.ebits;  // stored significand field width (tf32 uses fp32's 23)
  const std::uint32_t sign = std::uint32_t(u >> 63) << (width - 1);
  const std::uint32_t emask = (1u << fi.ebits) - 1;
  const std::uint64_t a = u & 0x7FFFFFFFFFFFFFFFull;
  if ((a >> 52) == 0x7FF)  // inf or NaN: top payload bits move down
    return sign | (emask << mbits) | std::uint32_t((a & 0x000FFFFFFFFFFFFFull) >> (52 - mbits));
  if (a == 0) return sign;
  const int bias = (1 << (fi.ebits - 1)) - 1;
  int e;
  const double m = std::frexp(std::fabs(r), &e);  // |r| = m 2^e, m in [0.5, 1)
  if (e - 1 >= fi.emin) {
    const std::uint64_t sig = std::uint64_t(std::ldexp(m, mbits + 1));  // with the implicit bit
    return sign | (std::uint32_t(e - 1 + bias) << mbits) | std::uint32_t(sig & ((1ull << mbits) - 1));
  }
  return sign | std::uint32_t(std::ldexp(std::fabs(r), -(fi.emin - mbits)));  // subnormal: |r| / 2^(emin - mbits)
}
// The value of a bit pattern of format f (inverse of fmt_bits; exact).
inline double fmt_value(RoundFmt f, std::uint32_t bits) {
  const FmtInfo fi = fmt_info(f);
  const int width = f == RoundFmt::F32 || f == RoundFmt::TF32 ? 32 : 16;
  const int mbits = width - 1 - fi.ebits;
  const bool neg = (bits >> (width - 1)) & 1u;
  const std::uint32_t emask = (1u << fi.ebits) - 1;
  const std::uint32_t ef = (bits >> mbits) & emask, mf = bits & ((1u << mbits) - 1);
  double v;
  if (ef == emask) {
    if (mf == 0) v = std::numeric_limits<double>::infinity();
    else
      return std::bit_cast<double>((std::uint64_t(neg) << 63) | 0x7FF0000000000000ull | (std::uint64_t(mf) << (52 - mbits)));
  } else if (ef == 0) {
    v = std::ldexp(double(mf), fi.emin - mbits);
  } else {
    const int bias = (1 << (fi.ebits - 1)) - 1;
    v = std::ldexp(double(mf | (1u << mbits)), int(ef) - bias - mbits);
  }
  return neg ? -v : v;
}

}  // namespace plx
