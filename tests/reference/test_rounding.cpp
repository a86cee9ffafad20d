// tests/reference/test_rounding.cpp — reference/rounding.hpp is bit-exact round-to-nearest-even.
//
// Every expectation is derived independently of the code under test:
//   - hand-computed boundary bit patterns (ties, subnormals, the overflow threshold, signed zero,
//     NaN payloads), written out below with the arithmetic that gives them;
//   - the hardware's own conversions: double -> float (cvtsd2ss, default round-to-nearest-even)
//     and GCC's _Float16 conversions (libgcc's soft-float truncdfhf2 / truncsfhf2 on x86-64
//     without AVX512-FP16). GCC 12 has no __bf16 conversions on this target, so bf16 and tf32
//     are checked against the table oracle instead;
//   - a table oracle: every non-negative finite value of the format decoded from its bit pattern
//     by the hardware (float bit patterns; bf16 = the top half of a float, tf32 = a float with the
//     low 13 bits zero; fp16 through _Float16), then "nearest value, ties to the even pattern,
//     |x| >= max + ulp(max)/2 overflows" by binary search.
// Sweeps: every fp16 and bf16 value, every midpoint between neighbours, and one double ulp
// either side of each midpoint, both signs; random doubles over the whole exponent range.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <vector>

#include "reference/rng.hpp"
#include "reference/rounding.hpp"
#include "tests/support.hpp"

namespace plx {
namespace {

std::uint64_t dbits(double x) { return std::bit_cast<std::uint64_t>(x); }
double ld(double m, int e) { return std::ldexp(m, e); }

// ---- the table oracle ------------------------------------------------------------------
struct Table {
  RoundFmt f;
  std::vector<double> v;            // non-negative finite values, increasing
  std::vector<std::uint32_t> bits;  // their patterns
  std::uint32_t inf_bits, sign_bit;
};
Table make_table(RoundFmt f) {
  Table t;
  t.f = f;
  if (f == RoundFmt::F16) {
    for (std::uint32_t b = 0; b < 0x7C00u; ++b) {
      t.v.push_back(double(std::bit_cast<_Float16>(std::uint16_t(b)))), t.bits.push_back(b);
    }
    t.inf_bits = 0x7C00u, t.sign_bit = 0x8000u;
  } else if (f == RoundFmt::BF16) {
    for (std::uint32_t b = 0; b < 0x7F80u; ++b) t.v.push_back(double(std::bit_cast<float>(b << 16))), t.bits.push_back(b);
    t.inf_bits = 0x7F80u, t.sign_bit = 0x8000u;
  } else {  // TF32: fp32 patterns with the low 13 bits zero
    for (std::uint32_t b = 0; b < (0x7F800000u >> 13); ++b)
      t.v.push_back(double(std::bit_cast<float>(b << 13))), t.bits.push_back(b << 13);
    t.inf_bits = 0x7F800000u, t.sign_bit = 0x80000000u;
  }
  return t;
}
// The oracle's bit pattern for a finite double x.
std::uint32_t oracle_bits(const Table& t, double x) {
  const std::uint32_t s = std::signbit(x) ? t.sign_bit : 0u;
  const double a = std::fabs(x);
  const double mx = t.v.back(), thresh = mx + (mx - t.v[t.v.size() - 2]) / 2;
  if (a >= thresh) return s | t.inf_bits;
  auto it = std::lower_bound(t.v.begin(), t.v.end(), a);
  if (it == t.v.end()) return s | t.bits.back();
  std::size_t hi = std::size_t(it - t.v.begin());
  if (t.v[hi] == a || hi == 0) return s | t.bits[hi];
  const std::size_t lo = hi - 1;
  const double mid = (t.v[lo] + t.v[hi]) / 2;  // exact: the formats have at most 24 significant bits
  if (a < mid) return s | t.bits[lo];
  if (a > mid) return s | t.bits[hi];
  const std::uint32_t lsb = t.f == RoundFmt::TF32 ? 13u : 0u;
  return s | (((t.bits[lo] >> lsb) & 1u) ? t.bits[hi] : t.bits[lo]);
}

// All values, all midpoints and one double ulp either side of each midpoint, both signs.
void sweep_against_table(RoundFmt f, std::size_t stride) {
  const Table t = make_table(f);
  long checked = 0, bad = 0;
  auto one = [&](double x) {
    for (double y : {x, -x}) {
      const std::uint32_t want = oracle_bits(t, y), got = fmt_bits(f, y);
      ++checked;
      if (want != got && ++bad <= 10)
        ADD_FAILURE() << to_string(f) << " x=" << std::hexfloat << y << " want 0x" << std::hex << want << " got 0x" << got;
    }
  };
  for (std::size_t i = 0; i < t.v.size(); i += stride) {
    one(t.v[i]);
    const double next = i + 1 < t.v.size() ? t.v[i + 1] : t.v[i] + (t.v[i] - t.v[i - 1]);  // for the last: max + ulp
    const double mid = (t.v[i] + next) / 2;  // exact in double
    one(mid), one(std::nextafter(mid, 0.0)), one(std::nextafter(mid, INFINITY));
  }
  EXPECT_EQ(bad, 0) << "of " << checked;
  EXPECT_GT(checked, long(t.v.size() / stride) * 8 - 8);
}

TEST(Rounding, Fp16EveryValueAndMidpointMatchesTheTableOracle) { sweep_against_table(RoundFmt::F16, 1); }
TEST(Rounding, Bf16EveryValueAndMidpointMatchesTheTableOracle) { sweep_against_table(RoundFmt::BF16, 1); }
TEST(Rounding, Tf32EveryValueAndMidpointMatchesTheTableOracle) { sweep_against_table(RoundFmt::TF32, 1); }

// ---- hardware conversions ------------------------------------------------------------------
// Random doubles: a random 52-bit fraction and an exponent spread over [emin - 30, emax + 3] of
// the target, so subnormals, underflow to zero and overflow all occur.
double random_double(CounterRng& g, std::uint64_t i, int elo, int ehi) {
  const std::uint64_t frac = std::uint64_t(g.uniform(2 * i) * 0x1p52);
  const int e = elo + int(g.uniform(2 * i + 1) * (ehi - elo + 1));
  double x = std::ldexp(1.0 + std::ldexp(double(frac), -52), e);
  return (frac & 1) ? -x : x;
}

TEST(Rounding, Fp32MatchesTheHardwareDoubleToFloatConversion) {
  CounterRng g = rng_for(test::seed(), Stream::Aux, 71);
  long bad = 0;
  for (std::uint64_t i = 0; i < 400000; ++i) {
    const double x = random_double(g, i, -160, 130);
    const float hw = static_cast<float>(x);
    const std::uint32_t got = fmt_bits(RoundFmt::F32, x);
    if (got != std::bit_cast<std::uint32_t>(hw) && ++bad <= 10)
      ADD_FAILURE() << std::hexfloat << x << " hw " << hw << " got 0x" << std::hex << got;
    // and the value path
    if (dbits(round_fmt(RoundFmt::F32, x)) != dbits(double(hw)) && ++bad <= 10) ADD_FAILURE() << std::hexfloat << x;
  }
  // Ties between neighbouring floats, including subnormal ones and the top binade.
  for (std::uint32_t b : {0x00000001u, 0x00000002u, 0x007FFFFEu, 0x00800000u, 0x3F800000u, 0x3F800001u, 0x7F7FFFFEu}) {
    const double lo = std::bit_cast<float>(b), hi = std::bit_cast<float>(b + 1);
    const double mid = (lo + hi) / 2;
    for (double y : {mid, -mid, std::nextafter(mid, 0.0), std::nextafter(mid, 1e300)})
      EXPECT_EQ(fmt_bits(RoundFmt::F32, y), std::bit_cast<std::uint32_t>(static_cast<float>(y))) << std::hexfloat << y;
  }
  EXPECT_EQ(bad, 0);
}

TEST(Rounding, Fp16MatchesGccFloat16ConversionsFromDoubleAndFloat) {
  CounterRng g = rng_for(test::seed(), Stream::Aux, 72);
  long bad = 0;
  for (std::uint64_t i = 0; i < 200000; ++i) {
    const double x = random_double(g, i, -40, 17);
    const _Float16 hw = static_cast<_Float16>(x);
    if (fmt_bits(RoundFmt::F16, x) != std::bit_cast<std::uint16_t>(hw) && ++bad <= 10)
      ADD_FAILURE() << "from double " << std::hexfloat << x;
    const float xf = static_cast<float>(x);
    const _Float16 hwf = static_cast<_Float16>(xf);
    if (fmt_bits(RoundFmt::F16, xf) != std::bit_cast<std::uint16_t>(hwf) && ++bad <= 10)
      ADD_FAILURE() << "from float " << std::hexfloat << xf;
  }
  EXPECT_EQ(bad, 0);
}

// ---- hand-computed boundaries ---------------------------------------------------------------
TEST(Rounding, Fp16Boundaries) {
  const RoundFmt H = RoundFmt::F16;
  EXPECT_EQ(fmt_bits(H, 1.0), 0x3C00u);
  EXPECT_EQ(fmt_bits(H, 1 + ld(1, -11)), 0x3C00u);      // tie between 1 (even) and 1 + 2^-10
  EXPECT_EQ(fmt_bits(H, 1 + ld(3, -11)), 0x3C02u);      // tie between 0x3C01 (odd) and 0x3C02
  EXPECT_EQ(fmt_bits(H, 1 + ld(1, -11) + ld(1, -40)), 0x3C01u);  // just above the tie
  EXPECT_EQ(fmt_bits(H, 65504.0), 0x7BFFu);             // max finite (2 - 2^-10) 2^15
  EXPECT_EQ(fmt_bits(H, std::nextafter(65520.0, 0.0)), 0x7BFFu);  // below max + ulp/2 = 65520
  EXPECT_EQ(fmt_bits(H, 65520.0), 0x7C00u);             // the tie goes to the even 2^16: overflow
  EXPECT_EQ(fmt_bits(H, -65520.0), 0xFC00u);
  EXPECT_EQ(fmt_bits(H, ld(1, -24)), 0x0001u);          // smallest subnormal
  EXPECT_EQ(fmt_bits(H, ld(1, -25)), 0x0000u);          // half of it: tie to the even zero
  EXPECT_EQ(fmt_bits(H, std::nextafter(ld(1, -25), 1.0)), 0x0001u);
  EXPECT_EQ(fmt_bits(H, ld(3, -25)), 0x0002u);          // 1.5 subnormal units: tie to even 2
  EXPECT_EQ(fmt_bits(H, ld(5, -25)), 0x0002u);          // 2.5 units: tie to even 2
  EXPECT_EQ(fmt_bits(H, ld(1023, -24) + ld(1, -25)), 0x0400u);  // largest subnormal + half: to 2^-14 (normal)
  EXPECT_EQ(fmt_bits(H, -ld(1, -26)), 0x8000u);         // negative underflow keeps the sign
  EXPECT_EQ(fmt_bits(H, -0.0), 0x8000u);
  EXPECT_EQ(fmt_bits(H, 0.0), 0x0000u);
  EXPECT_EQ(fmt_bits(H, INFINITY), 0x7C00u);
  EXPECT_TRUE(std::signbit(round_fmt(H, -ld(1, -30))));
  EXPECT_EQ(round_fmt(H, -ld(1, -30)), 0.0);
}

TEST(Rounding, Bf16Fp32Tf32Boundaries) {
  const RoundFmt B = RoundFmt::BF16, F = RoundFmt::F32, T = RoundFmt::TF32;
  EXPECT_EQ(fmt_bits(B, 1 + ld(1, -8)), 0x3F80u);       // tie to even 1.0
  EXPECT_EQ(fmt_bits(B, 1 + ld(3, -8)), 0x3F82u);       // tie to even 1 + 2^-6
  EXPECT_EQ(fmt_bits(B, ld(255, 120)), 0x7F7Fu);        // max finite (2 - 2^-7) 2^127 = 255 2^120
  EXPECT_EQ(fmt_bits(B, std::nextafter(ld(511, 119), 0.0)), 0x7F7Fu);  // max + ulp/2 = 511 2^119
  EXPECT_EQ(fmt_bits(B, ld(511, 119)), 0x7F80u);        // overflow threshold: inf
  EXPECT_EQ(fmt_bits(B, ld(1, -133)), 0x0001u);         // smallest bf16 subnormal 2^(-126-7)
  EXPECT_EQ(fmt_bits(B, ld(1, -134)), 0x0000u);         // tie to zero
  EXPECT_EQ(fmt_bits(B, ld(3, -134)), 0x0002u);
  EXPECT_EQ(fmt_bits(B, -ld(1, -140)), 0x8000u);
  EXPECT_EQ(fmt_bits(F, ld(0xFFFFFF, 104)), 0x7F7FFFFFu);  // FLT_MAX = (2^24 - 1) 2^104
  EXPECT_EQ(fmt_bits(F, ld(0x1FFFFFF, 103)), 0x7F800000u); // FLT_MAX + ulp/2: inf
  EXPECT_EQ(fmt_bits(F, ld(1, -149)), 0x00000001u);
  EXPECT_EQ(fmt_bits(F, ld(1, -150)), 0x00000000u);
  EXPECT_EQ(fmt_bits(F, ld(3, -150)), 0x00000002u);
  EXPECT_EQ(fmt_bits(T, 1 + ld(1, -11)), 0x3F800000u);     // tf32: 10 stored bits, tie to even
  EXPECT_EQ(fmt_bits(T, 1 + ld(3, -11)), 0x3F804000u);     // to 1 + 2^-9 (pattern bit 14)
  EXPECT_EQ(fmt_bits(T, ld(2047, 117)), 0x7F7FE000u);      // tf32 max (2 - 2^-10) 2^127
  EXPECT_EQ(fmt_bits(T, ld(4095, 116)), 0x7F800000u);      // its overflow threshold
  EXPECT_EQ(fmt_bits(T, ld(1, -136)), 0x00002000u);        // smallest tf32 subnormal 2^(-126-10)
  EXPECT_EQ(fmt_bits(T, ld(1, -137)), 0x00000000u);
  // Values round-trip through their patterns.
  for (RoundFmt f : {B, F, T, RoundFmt::F16})
    for (double x : {1.0, -3.5, ld(1, -133), 65504.0, -0.0})
      EXPECT_EQ(dbits(fmt_value(f, fmt_bits(f, x))), dbits(round_fmt(f, x))) << to_string(f) << " " << x;
}

TEST(Rounding, NaNStaysNaNQuietWithTheTopPayloadBits) {
  // A signalling double NaN (quiet bit 51 clear) with payload bits 50 and 45 set, and bit 28 set.
  const double snan = std::bit_cast<double>(0x7FF0000000000000ull | (1ull << 50) | (1ull << 45) | (1ull << 28));
  const double nneg = std::bit_cast<double>(0xFFF0000000000000ull | (1ull << 50) | (1ull << 45) | (1ull << 28));
  // bf16 keeps fraction bits 51..45 -> stored 7 bits: quiet (0x40) | bit 50 (0x20) | bit 45 (0x01).
  EXPECT_EQ(fmt_bits(RoundFmt::BF16, snan), 0x7FE1u);
  EXPECT_EQ(fmt_bits(RoundFmt::BF16, nneg), 0xFFE1u);
  // fp16 keeps bits 51..42 -> 10 bits: quiet 0x200 | bit 50 0x100 | bit 45 0x008.
  EXPECT_EQ(fmt_bits(RoundFmt::F16, snan), 0x7F08u);
  // tf32 keeps bits 51..42 in fp32 pattern positions 22..13.
  EXPECT_EQ(fmt_bits(RoundFmt::TF32, snan), 0x7F800000u | (1u << 22) | (1u << 21) | (1u << 16));
  // fp32 keeps bits 51..29 (bit 28 is lost): as the hardware conversion does.
  EXPECT_EQ(fmt_bits(RoundFmt::F32, snan), 0x7F800000u | (1u << 22) | (1u << 21) | (1u << 16));
  EXPECT_EQ(fmt_bits(RoundFmt::F32, snan), std::bit_cast<std::uint32_t>(static_cast<float>(snan)));
  EXPECT_EQ(fmt_bits(RoundFmt::F32, nneg), std::bit_cast<std::uint32_t>(static_cast<float>(nneg)));
  for (RoundFmt f : {RoundFmt::F32, RoundFmt::TF32, RoundFmt::BF16, RoundFmt::F16}) {
    EXPECT_TRUE(std::isnan(round_fmt(f, snan)));
    EXPECT_TRUE(std::signbit(round_fmt(f, nneg)));
  }
}

}  // namespace
}  // namespace plx
