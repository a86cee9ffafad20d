// fast/amx_tiles.hpp — the bf16 forward's four products on Intel AMX (TDPBF16PS): the scores
// q.k, r.k and the value products P1 V, P2 V.
//
// Charter: q, k, v are bf16 (one piece each). Every fp32 operand — the probe r (Parallax r or
// LLA theta) and the weights P1, P2 — is split exactly into up to three bf16 pieces
// x = x1 + x2 + x3 (by truncation, amx_split3: 8 + 8 + 8 significant bits cover fp32's 24 and
// every residual is exact in fp32), and the pieces' products are accumulated into the same tile. A bf16 x bf16
// product is exact in fp32 and the tile unit accumulates in fp32, so z = r.k and P V carry the
// error of an fp32 FMA computation on the same inputs (different summation order), never the
// 2^-9 of rounding r or P to bf16 (docs/math.md §7.6; tests/fast/test_forward.cpp checks both).
// Hardware caveats: TDPBF16PS treats bf16 denormals as 0 and flushes denormal results, whatever
// MXCSR says: a piece below 2^-126 is lost
// (absolute error < 2^-126 per entry, invisible next to the fp32 rounding of any O(1) value; a
// bf16 input below 2^-126 counts as 0 in the products).
// Layouts (every tile 16 rows x 64 bytes, palette 1; scores and values: tmm0-3 C, tmm4-5 A,
// tmm6-7 B, 2 x 2 blocks):
//   scores  C = S[key][lane]  (16 keys x 16 lanes),  A = K rows [key][32 d] (packed per call),
//           B = X in VNNI pairs [d/2][lane][2] (AmxPackedX: q lanes, then probe lanes).
//   values  C = the accumulators transposed, Ot[col][lane] (16 value columns x 16 lanes),
//           A = V^T [col][32 keys] (packed per call tile by tile), B = P in VNNI pairs [key/2][lane][2],
//           made from the weights the online-softmax step leaves in St (amx_pack_p): no transpose.
// fp32 storage stays on the FMA kernels: the same scheme with fp32 k and v needs six piece
// products per product ("bf16x6") and measured slower than FMA here (docs/performance-fast.md).
// Compiled only into tiles_amx.cpp (-mamx-tile -mamx-bf16 -mavx512bf16); the caller holds the
// ARCH_REQ_XCOMP_PERM permission and loads the tile configuration (amx_config) per thread.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fast/microkernels.hpp"
#include "reference/dtype.hpp"

namespace plx::fast::PLX_FAST_ISA {

constexpr int kAmxKeys = 48;                 // key rows of padding per head in the K pack (kBK)
constexpr int kAmxSteps = 3;                 // 32-key steps of one value product
constexpr int kAmxTile = 32 * kAmxSteps;     // keys per AMX key tile (one amx_scores, one amx_pv call):
                                             // 96, not 48, halves the accumulator merges per key

struct alignas(64) AmxConfig {
  std::uint8_t palette = 1, start_row = 0, reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};
};
inline void amx_config() {
  AmxConfig c;
  for (int t = 0; t < 8; ++t) c.colsb[t] = 64, c.rows[t] = 16;
  // GCC 12's _tile_loadconfig tells the optimiser it reads one byte, which let it drop the
  // colsb / rows stores above (tilezero then raised #UD): pass the whole struct to the asm.
  __asm__ volatile("ldtilecfg %0" : : "m"(c) : "memory");
}

// Vector split of 16 fp32 values into three pieces by truncation: p1 = x with its low 16 bits
// cleared (the top 8 significant bits: a bf16 value), p2 = the same for x - p1 (exact in fp32:
// the low 16 bits of the significand), p3 = the same for x - p1 - p2 (for normal x that
// residual has at most 8 significant bits, so the mask clears nothing and the split is exact).
// Each piece is fp32 with a zero low half, so its bf16 bits are the high half. For fp32
// denormals (|x| < 2^-126: weights of keys more than 126 binary orders below the row maximum)
// the last mask drops bits below 2^-133 — and the tile unit reads bf16 denormals as 0 anyway —
// but it keeps the low half zero: the pair packing below ORs two pieces together, and a stray
// low half would land in the other key's bf16 (found by the hazard property test: garbage
// weights up to 1e38 with outlier tokens, whose weights underflow to denormals).
inline void amx_split3(__m512 x, __m512 p[3]) {
  const __m512i hi = _mm512_set1_epi32(int(0xFFFF0000u));
  p[0] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), hi));
  x = _mm512_sub_ps(x, p[0]);
  p[1] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), hi));
  x = _mm512_sub_ps(x, p[1]);
  p[2] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), hi));
}
// VNNI pairs of two rows of pieces: dword l = bf16(b_l) << 16 | bf16(a_l) (a = the even key);
// a and b have zero low halves (amx_split3).
inline __m512i amx_pairs(__m512 a, __m512 b) {
  return _mm512_or_si512(_mm512_castps_si512(b), _mm512_srli_epi32(_mm512_castps_si512(a), 16));
}

// Packed lanes X (queries, then probe rows) of one query tile in 16 x 32 VNNI tiles:
// tile(lb, s, k)[pr][cc][e] = piece k of X[lane 16 lb + cc][d = 32 s + 2 pr + e].
struct AmxPackedX {
  int Dp = 0, nds = 0;   // D padded to 32, number of 32-wide steps of d
  int nlq = 0, nlr = 0;  // lane blocks of q and of r
  int npq = 1, npr = 1;  // pieces of q and of r (1 when the values are bf16)
  std::vector<std::uint16_t> buf;  // [nlq + nlr][nds][3][512]
  std::uint16_t* tile(int lb, int s, int k) { return buf.data() + ((std::size_t(lb) * nds + s) * 3 + k) * 512; }
  void init(int D, int BQ, bool probe) {
    Dp = (D + 31) / 32 * 32, nds = Dp / 32, nlq = BQ / 16, nlr = probe ? BQ / 16 : 0;
    buf.assign(std::size_t(nlq + nlr) * nds * 3 * 512, 0);
  }
};

// In-place transpose of a 16 x 16 matrix of dwords (r[i] = row i).
inline void amx_transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {  // per 128-bit lane: (r_i[4l + e], r_i+1[4l + e]) pairs
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int g = 0; g < 4; ++g) {  // r[4 g + e], lane l: rows 4 g .. 4 g + 3 of column 4 l + e
    const __m512i* u = t + 4 * g;
    r[4 * g] = _mm512_unpacklo_epi64(u[0], u[2]);
    r[4 * g + 1] = _mm512_unpackhi_epi64(u[0], u[2]);
    r[4 * g + 2] = _mm512_unpacklo_epi64(u[1], u[3]);
    r[4 * g + 3] = _mm512_unpackhi_epi64(u[1], u[3]);
  }
  for (int e = 0; e < 4; ++e) {  // column 4 l + e = lane l of r[e], r[4 + e], r[8 + e], r[12 + e]
    const __m512i v = _mm512_shuffle_i32x4(r[e], r[4 + e], 0x88), w = _mm512_shuffle_i32x4(r[e], r[4 + e], 0xDD);
    const __m512i x = _mm512_shuffle_i32x4(r[8 + e], r[12 + e], 0x88), y = _mm512_shuffle_i32x4(r[8 + e], r[12 + e], 0xDD);
    t[e] = _mm512_shuffle_i32x4(v, x, 0x88), t[4 + e] = _mm512_shuffle_i32x4(w, y, 0x88);
    t[8 + e] = _mm512_shuffle_i32x4(v, x, 0xDD), t[12 + e] = _mm512_shuffle_i32x4(w, y, 0xDD);
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

// 32 elements of one row (d = d0 .. d0 + 31, zero from D on) as 32 bf16 pieces k in order,
// i.e. 16 VNNI dwords: bf16 rows are one piece; fp32 rows are split by truncation (amx_split3,
// exact) and the pieces' high halves gathered. np: the fewest pieces that represent every
// value seen so far (raised here; 1 for bf16-valued data).
inline __m512i amx_row_piece(const std::uint16_t* x, int d0, int D, int, int&) {
  const __mmask32 in = D - d0 >= 32 ? ~__mmask32(0) : (__mmask32(1) << (D - d0)) - 1;
  return _mm512_maskz_loadu_epi16(in, x + d0);
}
inline __m512i amx_row_piece(const float* x, int d0, int D, int k, int& np) {
  const int n = std::min(32, D - d0);
  const __mmask16 in0 = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1);
  const __mmask16 in1 = n >= 32 ? __mmask16(0xFFFF) : n > 16 ? __mmask16((1u << (n - 16)) - 1) : __mmask16(0);
  __m512 a[3], b[3];
  amx_split3(_mm512_maskz_loadu_ps(in0, x + d0), a);
  amx_split3(_mm512_maskz_loadu_ps(in1, x + d0 + 16), b);
  // residuals after one and two pieces are b[1] + b[2] and b[2] (a likewise)
  const __m512i r1 = _mm512_or_si512(_mm512_or_si512(_mm512_castps_si512(a[1]), _mm512_castps_si512(a[2])),
                                     _mm512_or_si512(_mm512_castps_si512(b[1]), _mm512_castps_si512(b[2])));
  const __m512i r2 = _mm512_or_si512(_mm512_castps_si512(a[2]), _mm512_castps_si512(b[2]));
  if (_mm512_test_epi32_mask(r2, r2)) np = 3;
  else if (np < 2 && _mm512_test_epi32_mask(r1, r1)) np = 2;
  const __m512i odd = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27,
                                       25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  return _mm512_permutex2var_epi16(_mm512_castps_si512(a[k]), odd, _mm512_castps_si512(b[k]));
}

// Pack nr rows (row stride ld) into lane blocks [lb0, lb0 + nlb); rows >= nr and d >= D are 0.
// Returns the number of pieces used. Each tile is the transpose of 16 rows' 16 VNNI dwords.
template <class T>
int amx_pack_lanes(AmxPackedX& X, int lb0, int nlb, const T* src, std::size_t ld, int nr, int D) {
  int np = 1;
  __m512i r[16];
  for (int pass = 0; pass < 2; ++pass)  // fp32: the first pass finds np, the second stores pieces 1, 2
    for (int lb = 0; lb < nlb; ++lb)
      for (int s = 0; s < X.nds; ++s)
        for (int k = pass; k < (pass == 0 ? 1 : np); ++k) {
          for (int cc = 0; cc < 16; ++cc) {
            const int c = 16 * lb + cc;
            r[cc] = c < nr ? amx_row_piece(src + std::size_t(c) * ld, 32 * s, D, k, np) : _mm512_setzero_si512();
          }
          amx_transpose16(r);
          std::uint16_t* t = X.tile(lb0 + lb, s, k);
          for (int pr = 0; pr < 16; ++pr) _mm512_storeu_si512(t + 32 * pr, r[pr]);
        }
  return np;
}

// One 2 x 2 block of scores: S[16 kb + m][16 (lb0 + i) + n] for the 32 key rows at K (kb = 0, 1)
// and NL lane blocks from lb0 (C: tmm0-3, A = K: tmm4-5, B = X: tmm6-7; every loaded tile feeds
// two products: per step 4 loads for 4 products, where 3 key blocks x 1 lane block needed 4 for
// 3). The products are ordered so that every register's last reader is followed by at least one
// product that does not read it: perf put ~35 % of the old loop's samples on its A loads, as if
// a tile load waits for the products that still read the register it overwrites (the next
// step's load then overlaps the remaining product instead of following it).
// Lane blocks may differ in their number of pieces (query and probe lanes): piece k of a lane
// block with fewer is skipped. The sums run over (d step, piece) in the same order as before.
template <int NL>
inline void amx_scores_block(const std::uint16_t* K, int ldkb, std::size_t ldk, AmxPackedX& X, int lb0, float* S,
                             int lds) {
  const int np0 = lb0 < X.nlq ? X.npq : X.npr, np1 = NL > 1 ? (lb0 + 1 < X.nlq ? X.npq : X.npr) : 0;
  const int np = std::max(np0, np1);
  _tile_zero(0);
  _tile_zero(2);
  if constexpr (NL > 1) {
    _tile_zero(1);
    _tile_zero(3);
  }
  for (int s = 0; s < X.nds; ++s) {
    const std::uint16_t* a = K + 32 * s;
    for (int k = 0; k < np; ++k) {
      if (k == 0) _tile_loadd(4, a, ldkb);
      if (k < np0) {
        _tile_loadd(6, X.tile(lb0, s, k), 64);
        _tile_dpbf16ps(0, 4, 6);
      }
      if (NL > 1 && k < np1) {
        _tile_loadd(7, X.tile(lb0 + 1, s, k), 64);
        _tile_dpbf16ps(1, 4, 7);
      }
      if (k == 0) _tile_loadd(5, a + 16 * ldk, ldkb);
      if (k < np0) _tile_dpbf16ps(2, 5, 6);
      if (NL > 1 && k < np1) _tile_dpbf16ps(3, 5, 7);
    }
  }
  const int ldsb = lds * 4;
  float* sp = S + 16 * lb0;
  _tile_stored(0, sp, ldsb);
  _tile_stored(2, sp + std::size_t(16) * lds, ldsb);
  if constexpr (NL > 1) {
    _tile_stored(1, sp + 16, ldsb);
    _tile_stored(3, sp + std::size_t(16) * lds + 16, ldsb);
  }
}
// S[j][16 lb + cc] for j < 32 ceil(nk / 32) and every lane block. K: the key tile's rows (bf16,
// row stride ldk, Dp columns, readable and finite: X is 0 in the padding, 0 * NaN is not; rows
// up to 32 ceil(nk / 32) - 1 are read). lds = row stride of S in floats. Rows of S past the
// tile's real keys hold products of whatever K rows were read; the caller ignores them.
inline void amx_scores(const std::uint16_t* K, std::size_t ldk, AmxPackedX& X, float* S, int lds, int nk) {
  const int ldkb = int(ldk * 2), nlb = X.nlq + X.nlr;
  for (int j = 0; j < nk; j += 32)
    for (int lb = 0; lb < nlb; lb += 2) {
      if (lb + 1 < nlb) amx_scores_block<2>(K + std::size_t(j) * ldk, ldkb, ldk, X, lb, S + std::size_t(j) * lds, lds);
      else amx_scores_block<1>(K + std::size_t(j) * ldk, ldkb, ldk, X, lb, S + std::size_t(j) * lds, lds);
    }
}

// The weights of one key tile (left in St by fwd_step<float> of fast/lane_steps.hpp: P1 in the
// score lanes, P2 in the probe lanes) for the nl lane blocks from lb0 as the B tiles of the value
// product: three exact pieces in VNNI pairs, Pb[((ks * 3 + k) * nl + i) * 512 + 32 pr + 2 l + e]
// = piece k of St[32 ks + 2 pr + e][16 (lb0 + i) + l]; keys past nk (up to kAmxTile) are 0.
inline void amx_pack_p(const float* St, int lds, int nk, int lb0, int nl, std::uint16_t* Pb) {
  const __m512 zero = _mm512_setzero_ps();
  for (int j = 0; j < kAmxTile; j += 2) {
    const int ks = j / 32, pr = (j % 32) / 2;
    for (int i = 0; i < nl; ++i) {
      std::uint16_t* dst = Pb + (std::size_t(ks * 3) * nl + i) * 512 + 32 * pr;
      if (j >= nk) {
        for (int k = 0; k < 3; ++k) _mm512_storeu_si512(dst + std::size_t(k) * nl * 512, _mm512_setzero_si512());
        continue;
      }
      const float* sp = St + std::size_t(j) * lds + 16 * (lb0 + i);
      __m512 a[3], b[3];
      amx_split3(_mm512_loadu_ps(sp), a);
      amx_split3(j + 1 < nk ? _mm512_loadu_ps(sp + lds) : zero, b);
      for (int k = 0; k < 3; ++k) _mm512_storeu_si512(dst + std::size_t(k) * nl * 512, amx_pairs(a[k], b[k]));
    }
  }
}

// One block of NL x NC accumulator tiles of the value product (NL lane blocks from lb0, NC
// column blocks from cb0): C(i, j) = sum over the kAmxTile keys of V^T[16 (cb0 + j) + m][key]
// times P[key][16 (lb0 + i) + n] (Vt: the key tile's V^T tiles, AmxKV::vt; Pb: the three pieces
// of P for these NL lane blocks, amx_pack_p), computed from zero in tmm0-3 (A = tmm4-5, B =
// tmm6-7: 2 x 2 blocking, every loaded tile feeds two products) and merged into the transposed
// accumulators as Ot = alpha Ot + C (the online rescale of docs/math.md §4.1 folded into the merge: an
// accumulator tile is never loaded back into the tile unit, whose store -> load round trip
// costs about as much as a dozen products).
// Lane blocks lb >= zlb are O2: their merge also re-centres, O2 = alpha (O2 - dz O1) + C with
// O1 = the lanes 16 zlb lower, which must not be merged yet (amx_pv walks lane blocks downwards).
// Each B register's two products are issued back to back, tmm6's first, so that the reload of
// tmm6 for the next piece can overlap tmm7's products (see amx_scores_block).
template <int NL, int NC>
inline void amx_pv_block(const std::uint16_t* Vt, int ncb, const std::uint16_t* Pb, int lb0, int cb0, float* Ot,
                         int ldo, const float* alane, const float* dzl, int zlb, float* scratch) {
  _tile_zero(0);
  if constexpr (NL > 1) _tile_zero(1);
  if constexpr (NC > 1) _tile_zero(2);
  if constexpr (NL > 1 && NC > 1) _tile_zero(3);
  for (int ks = 0; ks < kAmxSteps; ++ks) {
    const std::uint16_t* a = Vt + (std::size_t(ks) * ncb + cb0) * 512;
    _tile_loadd(4, a, 64);
    if constexpr (NC > 1) _tile_loadd(5, a + 512, 64);
    for (int k = 0; k < 3; ++k) {
      const std::uint16_t* pb = Pb + std::size_t(ks * 3 + k) * NL * 512;
      _tile_loadd(6, pb, 64);
      if constexpr (NL > 1) _tile_loadd(7, pb + 512, 64);
      _tile_dpbf16ps(0, 4, 6);
      if constexpr (NC > 1) _tile_dpbf16ps(2, 5, 6);
      if constexpr (NL > 1) _tile_dpbf16ps(1, 4, 7);
      if constexpr (NL > 1 && NC > 1) _tile_dpbf16ps(3, 5, 7);
    }
  }
  // scratch [32 columns][32 lanes]: tile (i, j) at rows 16 j, columns 16 i
  _tile_stored(0, scratch, 128);
  if constexpr (NL > 1) _tile_stored(1, scratch + 16, 128);
  if constexpr (NC > 1) _tile_stored(2, scratch + 16 * 32, 128);
  if constexpr (NL > 1 && NC > 1) _tile_stored(3, scratch + 16 * 32 + 16, 128);
  for (int i = NL - 1; i >= 0; --i) {
    const int lb = lb0 + i;
    const __m512 al = _mm512_loadu_ps(alane + 16 * lb);
    const __m512 dz = lb >= zlb ? _mm512_loadu_ps(dzl + 16 * (lb - zlb)) : _mm512_setzero_ps();
    const bool rc = _mm512_cmpneq_ps_mask(dz, _mm512_setzero_ps()) != 0;
    for (int m = 0; m < 16 * NC; ++m) {
      float* o = Ot + std::size_t(16 * cb0 + m) * ldo + 16 * lb;
      __m512 x = _mm512_loadu_ps(o);
      if (rc) x = _mm512_fnmadd_ps(dz, _mm512_loadu_ps(o - 16 * zlb), x);
      _mm512_storeu_ps(o, _mm512_fmadd_ps(al, x, _mm512_loadu_ps(scratch + m * 32 + 16 * i)));
    }
  }
}
// Ot[col][lane] = alane[lane] Ot[col][lane] + sum over the tile's kAmxTile keys of V[key][col] P[key][lane],
// for nlb lane blocks and ncb column blocks (Dv padded to 16); lane blocks from zlb on are
// first re-centred, Ot2 -= dz Ot1 (dzl: one dz per O2 lane; zlb = nlb when there is no probe).
// The weights P are packed from St (lds, nk: amx_pack_p) one lane pair at a time into Pb
// (3 x 3 x 2 x 512 bf16 = 18 KiB), which the pair's column blocks then read from L1 (the whole
// key tile's pieces, 72 KiB, went through L2 twice). Lane blocks are walked downwards so that
// every O2 block is merged before the O1 block it reads. scratch: 32 x 32 floats.
inline void amx_pv(const std::uint16_t* Vt, const float* St, int lds, int nk, std::uint16_t* Pb, int nlb, float* Ot,
                   int ldo, int ncb, const float* alane, const float* dzl, int zlb, float* scratch) {
  for (int lb = (nlb - 1) / 2 * 2; lb >= 0; lb -= 2) {
    const bool l2 = lb + 1 < nlb;
    amx_pack_p(St, lds, nk, lb, l2 ? 2 : 1, Pb);
    for (int cb = 0; cb < ncb; cb += 2) {
      const bool c2 = cb + 1 < ncb;
      if (l2 && c2) amx_pv_block<2, 2>(Vt, ncb, Pb, lb, cb, Ot, ldo, alane, dzl, zlb, scratch);
      else if (l2) amx_pv_block<2, 1>(Vt, ncb, Pb, lb, cb, Ot, ldo, alane, dzl, zlb, scratch);
      else if (c2) amx_pv_block<1, 2>(Vt, ncb, Pb, lb, cb, Ot, ldo, alane, dzl, zlb, scratch);
      else amx_pv_block<1, 1>(Vt, ncb, Pb, lb, cb, Ot, ldo, alane, dzl, zlb, scratch);
    }
  }
}

// Per-call packs of bf16 K and V for the tile products (forward_impl builds them once per call):
// k16 = [B Hkv][Lkv + 48][Dp] K rows (rows past Lkv and columns past D are 0; 4 KiB-apart rows
// of the [B, L, H, D] layout measured 2.3x slower tile loads), vt16 = [B Hkv][nkb][Dvp / 16]
// [16 columns][32 keys]: V^T as whole A tiles of 1 KiB, key block kb = key / 32 outermost, so
// that the 24 tiles of a 96-key tile are contiguous (V^T rows of Lkv keys, 8 KiB apart, cost a
// cache and a TLB miss per tile row: their loads were ~40 % of amx_pv's samples; padding 0).
// O(L) memory: the size of K and V.
// Bounds (tile accesses are not seen by ASan): a key tile starts at j0 < Lkv, a multiple of 32
// (run_amx), and has nk <= Lkv - j0 keys; amx_scores reads K rows j0 .. j0 + 32 ceil(nk / 32) - 1
// <= j0 + nk + 30 < Lkv + 48 = the rows of a head; amx_pv reads key blocks
// j0 / 32 .. j0 / 32 + 2 <= (Lkv - 1) / 32 + 2 < nkb = (Lkv + 31) / 32 + 2 of the head.
struct AmxKV {
  int Dp = 0, Dvp = 0, nkb = 0;
  std::size_t ldk = 0, khead = 0, vhead = 0;
  avec_noinit<std::uint16_t> k16, vt16;  // written in full by amx_pack_kv's parallel loops (no memset)
  const std::uint16_t* k(int bg, int j0) const { return k16.data() + bg * khead + std::size_t(j0) * ldk; }
  const std::uint16_t* vt(int bg, int j0) const {
    return vt16.data() + bg * vhead + std::size_t(j0 / 32) * (Dvp / 16) * 512;
  }
};
inline void amx_pack_kv(AmxKV& P, const std::uint16_t* k, const std::uint16_t* v, int B, int Lkv, int Hkv, int D,
                        int Dv) {
  const std::size_t nbg = std::size_t(B) * Hkv;
  P.Dp = (D + 31) / 32 * 32, P.Dvp = (Dv + 15) / 16 * 16, P.nkb = (Lkv + 31) / 32 + kAmxSteps - 1;
  P.ldk = P.Dp;
  const int nrow = Lkv + kAmxKeys;
  P.khead = std::size_t(nrow) * P.Dp, P.vhead = std::size_t(P.nkb) * P.Dvp * 32;
  P.k16.resize(nbg * P.khead);
  P.vt16.resize(nbg * P.vhead);
#pragma omp parallel for schedule(static)
  for (long t = 0; t < long(nbg) * nrow; ++t) {  // K rows: t = (b, g, j); padding rows and columns 0
    const int j = int(t % nrow);
    const std::size_t bg = std::size_t(t / nrow), b = bg / Hkv, g = bg % Hkv;
    std::uint16_t* dst = P.k16.data() + bg * P.khead + std::size_t(j) * P.ldk;
    if (j < Lkv) std::memcpy(dst, k + ((b * Lkv + j) * Hkv + g) * D, 2 * std::size_t(D));
    else std::memset(dst, 0, 2 * std::size_t(D));
    std::memset(dst + D, 0, 2 * std::size_t(P.Dp - D));
  }
  const std::size_t ld = std::size_t(Hkv) * Dv;
  const int ncb = P.Dvp / 16;
#pragma omp parallel for schedule(static)
  for (long t = 0; t < long(nbg) * P.nkb; ++t) {  // V^T: one key block (32 keys x Dvp) per task; padding 0
    const int kb = int(t % P.nkb), j0 = 32 * kb, jn = std::clamp(Lkv - j0, 0, 32);
    const std::size_t bg = std::size_t(t / P.nkb), b = bg / Hkv, g = bg % Hkv;
    const std::uint16_t* src = jn > 0 ? v + ((b * Lkv + j0) * Hkv + g) * Dv : nullptr;
    std::uint16_t* dst = P.vt16.data() + bg * P.vhead + std::size_t(kb) * ncb * 512;
    for (int c = 0; c < P.Dvp; ++c) {
      std::uint16_t* d = dst + std::size_t(c / 16) * 512 + (c % 16) * 32;
      const int n = c < Dv ? jn : 0;
      for (int j = 0; j < n; ++j) d[j] = src[std::size_t(j) * ld + c];
      std::fill(d + n, d + 32, std::uint16_t(0));
    }
  }
}

}  // namespace plx::fast::PLX_FAST_ISA
