// fast/amx_tiles.hpp — the bf16 forward's four products on Intel AMX (TDPBF16PS): the scores
// q.k, r.k and the value products P1 V, P2 V.
//
// Charter: q, k, v are bf16 (one piece each). Every fp32 operand — the probe r (Parallax r or
// LLA theta) and the weights P1, P2 — is split exactly into up to three bf16 pieces
// x = x1 + x2 + x3 (RNE each; 8 + 8 + 8 significant bits cover fp32's 24 and every residual is
// exact in fp32), and the pieces' products are accumulated into the same tile. A bf16 x bf16
// product is exact in fp32 and the tile unit accumulates in fp32, so z = r.k and P V carry the
// error of an fp32 FMA computation on the same inputs (different summation order), never the
// 2^-9 of rounding r or P to bf16 (SPEC §7.6; tests/fast/test_forward.cpp checks both).
// Hardware caveats: TDPBF16PS treats bf16 denormals as 0 and flushes denormal results, whatever
// MXCSR says, and VCVTNEPS2BF16 reads fp32 denormals as 0: a piece below 2^-126 is lost
// (absolute error < 2^-126 per entry, invisible next to the fp32 rounding of any O(1) value; a
// bf16 input below 2^-126 counts as 0 in the products).
// Layouts (every tile 16 rows x 64 bytes, palette 1; scores: tmm0-2 C, tmm3-5 A, tmm6 B;
// values: tmm0-3 C, tmm4-5 A, tmm6-7 B):
//   scores  C = S[key][lane]  (16 keys x 16 lanes),  A = K rows [key][32 d] (packed per call),
//           B = X in VNNI pairs [d/2][lane][2] (AmxPackedX: q lanes, then probe lanes).
//   values  C = the accumulators transposed, Ot[col][lane] (16 value columns x 16 lanes),
//           A = V^T rows [col][32 keys] (packed per call), B = P in VNNI pairs [key/2][lane][2],
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
#include <type_traits>
#include <vector>

#include "reference/dtype.hpp"

namespace plx::fast::PLX_FAST_ISA {

constexpr int kAmxKeys = 48;                 // keys per amx_scores call = 3 tile row blocks of 16
constexpr int kAmxSteps = 3;                 // 32-key steps of one value product
constexpr int kAmxTile = 32 * kAmxSteps;     // keys per AMX key tile (two score calls, one value product):
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

// Piece k (0, 1, 2) of x: p1 = bf16(x), p2 = bf16(x - p1), p3 = bf16(x - p1 - p2).
inline std::uint16_t amx_piece(float x, int k) {
  std::uint16_t p = bf16_bits(x);
  for (int i = 0; i < k; ++i) x -= bf16_to_float(p), p = bf16_bits(x);
  return p;
}
inline std::uint16_t amx_piece(std::uint16_t x, int) { return x; }
// The fewest pieces that represent every one of n values exactly (1 for bf16-valued data).
inline int amx_pieces_needed(const float* x, int n) {
  int np = 1;
  for (int i = 0; i < n && np < 3; ++i) {
    const float e1 = x[i] - bf16_to_float(bf16_bits(x[i]));
    if (e1 != 0.0f) np = std::max(np, e1 - bf16_to_float(bf16_bits(e1)) != 0.0f ? 3 : 2);
  }
  return np;
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

// Pack nr rows (row stride ld) into lane blocks [lb0, lb0 + nlb); rows >= nr and d >= D are 0.
// Returns the number of pieces used.
template <class T>
int amx_pack_lanes(AmxPackedX& X, int lb0, int nlb, const T* src, std::size_t ld, int nr, int D) {
  int np = 1;
  if constexpr (std::is_same_v<T, float>)
    for (int c = 0; c < nr && np < 3; ++c) np = std::max(np, amx_pieces_needed(src + std::size_t(c) * ld, D));
  for (int lb = 0; lb < nlb; ++lb)
    for (int s = 0; s < X.nds; ++s)
      for (int k = 0; k < np; ++k) {
        std::uint16_t* t = X.tile(lb0 + lb, s, k);
        for (int cc = 0; cc < 16; ++cc) {
          const int c = 16 * lb + cc;
          for (int pr = 0; pr < 16; ++pr)
            for (int e = 0; e < 2; ++e) {
              const int d = 32 * s + 2 * pr + e;
              t[pr * 32 + cc * 2 + e] = (c < nr && d < D) ? amx_piece(src[std::size_t(c) * ld + d], k) : std::uint16_t(0);
            }
        }
      }
  return np;
}

// S[j][16 lb + cc] for j < 48 and every lane block. K: 48 key rows (bf16, row stride ldk, Dp
// columns, readable and finite: X is 0 in the padding, 0 * NaN is not). lds = row stride of S
// in floats. Rows of S past the tile's real keys hold
// products of whatever K rows were read; the caller ignores them.
inline void amx_scores(const std::uint16_t* K, std::size_t ldk, AmxPackedX& X, float* S, int lds) {
  const int ldkb = int(ldk * 2), ldsb = lds * 4;
  for (int lb = 0; lb < X.nlq + X.nlr; ++lb) {
    const int np = lb < X.nlq ? X.npq : X.npr;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    for (int s = 0; s < X.nds; ++s) {
      const std::uint16_t* a = K + 32 * s;
      _tile_loadd(3, a, ldkb);
      _tile_loadd(4, a + 16 * ldk, ldkb);
      _tile_loadd(5, a + 32 * ldk, ldkb);
      for (int k = 0; k < np; ++k) {
        _tile_loadd(6, X.tile(lb, s, k), 64);
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

// The weights of one key tile (left in St by fwd_step<float> of fast/lane_steps.hpp: P1 in the
// score lanes, P2 in the probe lanes, nlb lane blocks in all) as the B tiles of the value
// product: three exact pieces in VNNI pairs, Pb[((ks * 3 + k) * nlb + lb) * 512 + 32 pr + 2 l + e]
// = piece k of St[32 ks + 2 pr + e][16 lb + l]; keys past nk (up to kAmxTile) are 0.
inline void amx_pack_p(const float* St, int lds, int nk, int nlb, std::uint16_t* Pb) {
  const __m512 zero = _mm512_setzero_ps();
  for (int j = 0; j < kAmxTile; j += 2) {
    const int ks = j / 32, pr = (j % 32) / 2;
    for (int lb = 0; lb < nlb; ++lb) {
      std::uint16_t* dst = Pb + (std::size_t(ks * 3) * nlb + lb) * 512 + 32 * pr;
      if (j >= nk) {
        for (int k = 0; k < 3; ++k) _mm512_storeu_si512(dst + std::size_t(k) * nlb * 512, _mm512_setzero_si512());
        continue;
      }
      __m512 a[3], b[3];
      amx_split3(_mm512_loadu_ps(St + std::size_t(j) * lds + 16 * lb), a);
      amx_split3(j + 1 < nk ? _mm512_loadu_ps(St + std::size_t(j + 1) * lds + 16 * lb) : zero, b);
      for (int k = 0; k < 3; ++k) _mm512_storeu_si512(dst + std::size_t(k) * nlb * 512, amx_pairs(a[k], b[k]));
    }
  }
}

// One block of NL x NC accumulator tiles of the value product (NL lane blocks from lb0, NC
// column blocks from cb0): C(i, j) = sum over the kAmxTile keys of V^T[16 (cb0 + j) + m][key]
// times P[key][16 (lb0 + i) + n] (Vt: the V^T rows at the tile's first key, row stride ldvt,
// kAmxTile columns readable and finite; the three pieces of P), computed from zero in tmm0-3
// (A = tmm4-5, B = tmm6-7: 2 x 2 blocking, every loaded tile feeds two products) and merged
// into the transposed accumulators as Ot = alpha Ot + C (the online rescale of SPEC §4.1 folded
// into the merge: an accumulator tile is never loaded back into the tile unit, whose store ->
// load round trip costs about as much as a dozen products).
template <int NL, int NC>
inline void amx_pv_block(const std::uint16_t* Vt, std::size_t ldvt, const std::uint16_t* Pb,
                         int nlb, int lb0, int cb0, float* Ot, int ldo, const float* alane, float* scratch) {
  const int ldvb = int(ldvt * 2);
  _tile_zero(0);
  if constexpr (NL > 1) _tile_zero(1);
  if constexpr (NC > 1) _tile_zero(2);
  if constexpr (NL > 1 && NC > 1) _tile_zero(3);
  for (int ks = 0; ks < kAmxSteps; ++ks) {
    const std::uint16_t* a = Vt + std::size_t(16 * cb0) * ldvt + 32 * ks;
    _tile_loadd(4, a, ldvb);
    if constexpr (NC > 1) _tile_loadd(5, a + 16 * ldvt, ldvb);
    for (int k = 0; k < 3; ++k) {
      const std::uint16_t* pb = Pb + (std::size_t(ks * 3 + k) * nlb + lb0) * 512;
      _tile_loadd(6, pb, 64);
      if constexpr (NL > 1) _tile_loadd(7, pb + 512, 64);
      _tile_dpbf16ps(0, 4, 6);
      if constexpr (NL > 1) _tile_dpbf16ps(1, 4, 7);
      if constexpr (NC > 1) _tile_dpbf16ps(2, 5, 6);
      if constexpr (NL > 1 && NC > 1) _tile_dpbf16ps(3, 5, 7);
    }
  }
  // scratch [32 columns][32 lanes]: tile (i, j) at rows 16 j, columns 16 i
  _tile_stored(0, scratch, 128);
  if constexpr (NL > 1) _tile_stored(1, scratch + 16, 128);
  if constexpr (NC > 1) _tile_stored(2, scratch + 16 * 32, 128);
  if constexpr (NL > 1 && NC > 1) _tile_stored(3, scratch + 16 * 32 + 16, 128);
  for (int i = 0; i < NL; ++i) {
    const __m512 al = _mm512_loadu_ps(alane + 16 * (lb0 + i));
    for (int m = 0; m < 16 * NC; ++m) {
      float* o = Ot + std::size_t(16 * cb0 + m) * ldo + 16 * (lb0 + i);
      _mm512_storeu_ps(o, _mm512_fmadd_ps(al, _mm512_loadu_ps(o), _mm512_loadu_ps(scratch + m * 32 + 16 * i)));
    }
  }
}
// Ot[col][lane] = alane[lane] Ot[col][lane] + sum over the tile's kAmxTile keys of V[key][col] P[key][lane],
// for nlb lane blocks and ncb column blocks (Dv padded to 16). scratch: 32 x 32 floats.
inline void amx_pv(const std::uint16_t* Vt, std::size_t ldvt, const std::uint16_t* Pb, int nlb, float* Ot, int ldo,
                   int ncb, const float* alane, float* scratch) {
  for (int lb = 0; lb < nlb; lb += 2)
    for (int cb = 0; cb < ncb; cb += 2) {
      const bool l2 = lb + 1 < nlb, c2 = cb + 1 < ncb;
      if (l2 && c2) amx_pv_block<2, 2>(Vt, ldvt, Pb, nlb, lb, cb, Ot, ldo, alane, scratch);
      else if (l2) amx_pv_block<2, 1>(Vt, ldvt, Pb, nlb, lb, cb, Ot, ldo, alane, scratch);
      else if (c2) amx_pv_block<1, 2>(Vt, ldvt, Pb, nlb, lb, cb, Ot, ldo, alane, scratch);
      else amx_pv_block<1, 1>(Vt, ldvt, Pb, nlb, lb, cb, Ot, ldo, alane, scratch);
    }
}

// Per-call packs of bf16 K and V for the tile products (forward_impl builds them once per call):
// k16 = [B Hkv][Lkv + 48][Dp] K rows (rows past Lkv and columns past D are 0; 4 KiB-apart rows
// of the [B, L, H, D] layout measured 2.3x slower tile loads), vt16 = [B Hkv][Dvp][Lkv + 96]
// V^T rows (Dvp = Dv padded to 16; padding 0). O(L) memory: the size of K and V.
// Bounds (tile accesses are not seen by ASan): a key tile starts at j0 < Lkv; amx_scores reads
// K rows j0 .. j0 + 47, and j0 + 48 .. j0 + 95 only when j0 + 48 < Lkv, so always rows < Lkv + 48
// = the rows of a head; amx_pv reads V^T columns j0 .. j0 + 95 < Lkv + 96 = ldvt.
struct AmxKV {
  int Dp = 0, Dvp = 0;
  std::size_t ldk = 0, ldvt = 0, khead = 0, vhead = 0;
  std::vector<std::uint16_t> k16, vt16;
  const std::uint16_t* k(int bg, int j0) const { return k16.data() + bg * khead + std::size_t(j0) * ldk; }
  const std::uint16_t* vt(int bg, int j0) const { return vt16.data() + bg * vhead + j0; }
};
inline void amx_pack_kv(AmxKV& P, const std::uint16_t* k, const std::uint16_t* v, int B, int Lkv, int Hkv, int D,
                        int Dv) {
  const std::size_t nbg = std::size_t(B) * Hkv;
  P.Dp = (D + 31) / 32 * 32, P.Dvp = (Dv + 15) / 16 * 16;
  P.ldk = P.Dp, P.ldvt = std::size_t(Lkv) + kAmxTile;
  P.khead = std::size_t(Lkv + kAmxKeys) * P.Dp, P.vhead = std::size_t(P.Dvp) * P.ldvt;
  P.k16.assign(nbg * P.khead, 0);
  P.vt16.assign(nbg * P.vhead, 0);
#pragma omp parallel for schedule(static)
  for (long t = 0; t < long(nbg) * Lkv; ++t) {  // K rows: t = (b, g, j)
    const int j = int(t % Lkv);
    const std::size_t bg = std::size_t(t / Lkv), b = bg / Hkv, g = bg % Hkv;
    std::memcpy(P.k16.data() + bg * P.khead + std::size_t(j) * P.ldk, k + ((b * Lkv + j) * Hkv + g) * D, 2 * std::size_t(D));
  }
  const std::size_t ld = std::size_t(Hkv) * Dv;
#pragma omp parallel for schedule(static)
  for (long t = 0; t < long(nbg) * ((Lkv + 15) / 16); ++t) {  // V^T: 16 keys x Dv per task
    const int nb = (Lkv + 15) / 16, j0 = int(t % nb) * 16, jn = std::min(16, Lkv - j0);
    const std::size_t bg = std::size_t(t / nb), b = bg / Hkv, g = bg % Hkv;
    const std::uint16_t* src = v + ((b * Lkv + j0) * Hkv + g) * Dv;
    std::uint16_t* dst = P.vt16.data() + bg * P.vhead + j0;
    for (int c = 0; c < Dv; ++c)
      for (int j = 0; j < jn; ++j) dst[std::size_t(c) * P.ldvt + j] = src[std::size_t(j) * ld + c];
  }
}

}  // namespace plx::fast::PLX_FAST_ISA
