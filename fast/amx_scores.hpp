// fast/amx_scores.hpp — bf16 score tiles (q.k and r.k) on Intel AMX (TDPBF16PS).
//
// Charter: for bf16 storage, S[j][c] = sum_d K[j][d] * X[c][d] for a key tile of 48 keys
// (3 blocks of 16) and NQ lanes (query rows, then probe rows), written in the [key][lane]
// layout the flash step expects. bf16 x bf16 products are exact in fp32 and the tile unit
// accumulates in fp32, so the scores carry the same kind of error as the fp32 FMA product of
// the widened inputs (different summation order). The probe r (fp32: the learned r, or LLA's
// theta) is split exactly into up to three bf16 pieces r = r1 + r2 + r3 (RNE; 8 + 8 + 8
// significant bits cover fp32's 24) and the pieces are accumulated into the same tile, so z = r.k
// is not rounded to bf16 (SPEC §7.6). TDPBF16PS treats bf16 denormals as 0 and flushes
// denormal results, whatever MXCSR says: a score loses at most D * 2^-126 in absolute value and
// a piece r3 of |r| < 2^-109 is lost (relative 2^-17 of an already tiny r): both far below
// fp32 rounding for any input the tests or models produce. Compiled only into tiles_amx.cpp
// (-mamx-tile -mamx-bf16); the caller must hold the ARCH_REQ_XCOMP_PERM permission and load
// the tile configuration (amx_config) on each thread before use. Not here: the value product
// (stays fp32 FMA: P1, P2 are never rounded to bf16).
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "reference/dtype.hpp"

namespace plx::fast::PLX_FAST_ISA {

constexpr int kAmxKeys = 48;  // keys per score tile = 3 tile rows blocks of 16 (= kBK)

// Palette 1: tmm0-2 = C (16 keys x 16 fp32 lanes), tmm3-5 = A (16 keys x 32 bf16 of d),
// tmm6 = B (16 pairs of d x 16 lanes, VNNI). Must be loaded on every thread that computes.
struct alignas(64) AmxConfig {
  std::uint8_t palette = 1, start_row = 0, reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};
};
inline void amx_config() {
  AmxConfig c;
  for (int t = 0; t < 7; ++t) c.colsb[t] = 64, c.rows[t] = 16;
  // GCC 12's _tile_loadconfig tells the optimiser it reads one byte, which let it drop the
  // colsb / rows stores above (tilezero then raised #UD): pass the whole struct to the asm.
  __asm__ volatile("ldtilecfg %0" : : "m"(c) : "memory");
}

// Packed X (queries and probe pieces) of one query tile, in 16 x 32 bf16 VNNI tiles:
// tile(lb, s)[pr][cc][e] = X[lane 16 lb + cc][d = 32 (s / np) + 2 pr + e] of piece s % np.
struct AmxPackedX {
  int Dp = 0, nds = 0;     // D padded to 32, number of 32-wide steps of d
  int nlq = 0, nlr = 0;    // lane blocks of q and of r
  int np = 1;              // pieces of r (1: r is exactly bf16, up to 3)
  std::vector<std::uint16_t> buf;  // [nlq + nlr][3 nds][512]
  std::uint16_t* tile(int lb, int s) { return buf.data() + (std::size_t(lb) * 3 * nds + s) * 512; }
  void init(int D, int BQ, bool probe) {
    Dp = (D + 31) / 32 * 32, nds = Dp / 32, nlq = BQ / 16, nlr = probe ? BQ / 16 : 0;
    buf.assign(std::size_t(nlq + nlr) * 3 * nds * 512, 0);
  }
};

// Pack nr query rows (bf16 bits, row stride ld) into lane blocks [0, nlq); rows >= nr are 0.
inline void amx_pack_q(AmxPackedX& X, const std::uint16_t* q, std::size_t ld, int nr, int D) {
  for (int lb = 0; lb < X.nlq; ++lb)
    for (int s = 0; s < X.nds; ++s) {
      std::uint16_t* t = X.tile(lb, s);
      for (int cc = 0; cc < 16; ++cc) {
        const int c = 16 * lb + cc;
        for (int pr = 0; pr < 16; ++pr)
          for (int e = 0; e < 2; ++e) {
            const int d = 32 * s + 2 * pr + e;
            t[pr * 32 + cc * 2 + e] = (c < nr && d < D) ? q[std::size_t(c) * ld + d] : std::uint16_t(0);
          }
      }
    }
}

// Split the fp32 probe rows into bf16 pieces and pack them into lane blocks [nlq, nlq + nlr).
// np = the fewest pieces that represent every r of the tile exactly (1 for bf16-valued r).
// Piece k of x: p1 = bf16(x), p2 = bf16(x - p1), p3 = bf16(x - p1 - p2) (each residual exact).
inline std::uint16_t amx_piece(float x, int k) {
  std::uint16_t p = bf16_bits(x);
  for (int i = 0; i < k; ++i) x -= bf16_to_float(p), p = bf16_bits(x);
  return p;
}
inline void amx_pack_r(AmxPackedX& X, const float* r, std::size_t ld, int nr, int D) {
  int np = 1;
  for (int c = 0; c < nr && np < 3; ++c)
    for (int d = 0; d < D; ++d) {
      const float x = r[std::size_t(c) * ld + d], e1 = x - bf16_to_float(bf16_bits(x));
      if (e1 != 0.0f) np = std::max(np, e1 - bf16_to_float(bf16_bits(e1)) != 0.0f ? 3 : 2);
    }
  X.np = np;
  for (int lb = 0; lb < X.nlr; ++lb)
    for (int s = 0; s < X.nds; ++s)
      for (int k = 0; k < np; ++k) {
        std::uint16_t* t = X.tile(X.nlq + lb, s * np + k);
        for (int cc = 0; cc < 16; ++cc) {
          const int c = 16 * lb + cc;
          for (int pr = 0; pr < 16; ++pr)
            for (int e = 0; e < 2; ++e) {
              const int d = 32 * s + 2 * pr + e;
              t[pr * 32 + cc * 2 + e] = (c < nr && d < D) ? amx_piece(r[std::size_t(c) * ld + d], k) : std::uint16_t(0);
            }
        }
      }
}

// S[j][16 lb + cc] for j < 48 and every lane block: K rows (bf16, row stride ldk elements;
// 48 rows and Dp columns must be readable and finite — X is 0 in the padding, 0 * NaN is not)
// times the packed X. lds = row stride of S in floats. Rows of S past the tile's real keys
// hold products of whatever K rows were read; the caller ignores them.
inline void amx_scores(const std::uint16_t* K, std::size_t ldk, AmxPackedX& X, float* S, int lds) {
  const int ldkb = int(ldk * 2), ldsb = lds * 4;
  for (int lb = 0; lb < X.nlq + X.nlr; ++lb) {
    const int np = lb < X.nlq ? 1 : X.np;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    for (int s = 0; s < X.nds; ++s) {
      const std::uint16_t* a = K + 32 * s;
      _tile_loadd(3, a, ldkb);
      _tile_loadd(4, a + 16 * ldk, ldkb);
      _tile_loadd(5, a + 32 * ldk, ldkb);
      for (int k = 0; k < np; ++k) {
        _tile_loadd(6, X.tile(lb, s * np + k), 64);
        _tile_dpbf16ps(0, 3, 6);
        _tile_dpbf16ps(1, 4, 6);
        _tile_dpbf16ps(2, 5, 6);
      }
    }
    float* sp = S + 16 * lb;
    _tile_stored(0, sp, ldsb);
    _tile_stored(1, sp + std::size_t(16) * lds, ldsb);
    _tile_stored(2, sp + std::size_t(32) * lds, ldsb);
  }
}

}  // namespace plx::fast::PLX_FAST_ISA
