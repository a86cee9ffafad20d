// fast/attention_tiles.hpp — flash-style forward and backward drivers (one ISA per include).
//
// Charter: attention_forward_tiles streams key tiles of kBK against a query tile of up to
// kBQ rows (q and r stacked as 2 kBQ lanes: one scores product gives q.k and r.k, one pvt
// product gives O1 and O2, accumulated transposed with the online rescale folded in), with the online max of docs/math.md §4.1 in base 2 and the exact
// per-row shift z -> z - z0 of docs/math.md §7.1, z0 re-centred online on the running P1-weighted mean
// of z (fast/lane_steps.hpp fwd_step; split-KV chunks re-centred in the combine). Memory:
// per-thread tiles O((kBQ + kBK) D) plus the per-call packs below — never L x L. A single
// query tile with more than kSplitKeys keys (decode) is split over KV into chunks of fixed
// size and combined exactly (docs/math.md §6.2) in chunk order. Backward (docs/math.md §5.1/§5.2): one pass over query tiles; dk/dv
// partials per (head, fixed chunk of query tiles) reduced in a fixed order: no atomics, so
// results are bit-identical for any thread count. Forward and backward calls with several
// query tiles pack K and V per kv head once per call (pack_kv, O(L) memory). In the AMX build (PLX_FAST_AMX, bf16
// storage) the four products run on the tile unit (fast/amx_tiles.hpp) with 96-key tiles,
// from bf16 K and V^T packed once per call, and the accumulators are kept transposed.
#pragma once
#include <omp.h>

#include <type_traits>
#include <vector>

#include "fast/fast.hpp"
#include "fast/lane_steps.hpp"
#include "reference/dtype.hpp"
#if defined(PLX_FAST_AMX)
#include "fast/amx_tiles.hpp"
#endif

namespace plx::fast::PLX_FAST_ISA {

constexpr int kBQ = 64;          // query rows per tile
constexpr int kBK = 48;          // keys per tile (multiple of kMR)
constexpr int kSplitKeys = 512;  // keys per split-KV chunk (decode); fixed, so results do not depend on threads

template <class A> inline A to_acc(float x) { return A(x); }
template <class A> inline A to_acc(double x) { return A(x); }
template <class A> inline A to_acc(std::uint16_t x) { return A(bf16_to_float(x)); }

// Copy n rows of width w (row stride ld) into dst (row stride ldd), converting to A.
template <class S, class A> inline void load_rows(const S* src, std::size_t ld, int n, int w, A* dst, int ldd) {
  for (int j = 0; j < n; ++j) {
    const S* s = src + std::size_t(j) * ld;
    A* d = dst + std::size_t(j) * ldd;
    for (int c = 0; c < w; ++c) d[c] = to_acc<A>(s[c]);
  }
}
// Request the cache lines of n rows of w elements (row stride ld) at once: rows 4 KiB apart
// in the [B, L, H, D] layout are each a miss, and an element-wise copy waits for them in turn.
template <class S> inline void prefetch_rows(const S* src, std::size_t ld, int n, int w) {
  constexpr int step = int(64 / sizeof(S));
  for (int j = 0; j < n; ++j)
    for (int c = 0; c < w; c += step) __builtin_prefetch(src + std::size_t(j) * ld + c, 0, 3);
}
// Transposed copy: dst[c * ldd + j] = src[j][c] for j < n, c < w.
template <class S, class A> inline void load_rows_t(const S* src, std::size_t ld, int n, int w, A* dst, int ldd) {
  prefetch_rows(src, ld, n, w);
  for (int j = 0; j < n; ++j) {
    const S* s = src + std::size_t(j) * ld;
    for (int c = 0; c < w; ++c) dst[std::size_t(c) * ldd + j] = to_acc<A>(s[c]);
  }
}
// 16 partial sums in a fixed order (one running sum is a chain of n dependent adds; the
// partial sums vectorise), then the tail, then the partials in order.
template <class A, class B> inline A dot(const A* x, const B* y, int n) {
  A part[16] = {};
  int d = 0;
  for (; d + 16 <= n; d += 16)
    for (int l = 0; l < 16; ++l) part[l] += x[d + l] * to_acc<A>(y[d + l]);
  A s = 0;
  for (; d < n; ++d) s += x[d] * to_acc<A>(y[d]);
  for (int l = 0; l < 16; ++l) s += part[l];
  return s;
}

// Per-(row) flash state of one query tile against a key range, before normalisation.
template <class A> struct TileState {
  std::vector<A> m, d1, d2, O;  // lanes; O is [NQ x Dv] (rows < BQ: O1, rows >= BQ: O2)
};

template <class S, class A> struct FwdTile {
#if defined(PLX_FAST_AMX)
  // AMX build, bf16 storage: all four products on the tile unit (fast/amx_tiles.hpp) with the
  // accumulators kept transposed in Ot [Dvp][NQ]; K and V^T packed per call.
  static constexpr bool kAmx = std::is_same_v<S, std::uint16_t> && std::is_same_v<A, float>;
  AmxPackedX X;
  const AmxKV* kv = nullptr;
  std::vector<std::uint16_t> Pb;  // [3][3][2][512] weight tiles of one key tile and lane pair
  std::vector<float> alane, scratch;  // per-lane rescale factors, 32 x 32 (Ot: [Dvp][NQ] accumulators)
#else
  static constexpr bool kAmx = false;
#endif
  const FwdArgs<S, A>& a;
  const Problem& p;
  // Optional per-head packed copies [B][Hkv][Lkv][D or Dv] in A, made once per call: rows 4 KiB
  // apart in the [B,L,H,D] layout alias in L1 (every row of a tile in the same sets).
  const A* vpack = nullptr;
  const A* kpack = nullptr;
  int BQ, NQ, D, Dv;
  bool probe;
  // thread-local buffers; Ot [Dv][NQ] are the value accumulators with lanes contiguous (mk_pvt),
  // transposed into O [NQ][Dv] at the end of run
  avec<A> Qt, Kt, Vt, St, O, Ot, m, d1, d2, alpha, z0, dz;
  std::vector<int> lo, hi;
  FwdTile(const FwdArgs<S, A>& a_, int BQ_)
      : a(a_), p(*a_.p), BQ(BQ_), NQ(a_.r ? 2 * BQ_ : BQ_), D(a_.p->D), Dv(a_.p->Dv), probe(a_.r != nullptr) {
    St.assign(std::size_t(kAmx ? 2 * kBK : kBK) * NQ + kPvSlack, A(0));
    O.assign(std::size_t(NQ + kPvSlack) * Dv, A(0));
    m.resize(BQ), d1.resize(BQ), d2.resize(BQ), alpha.resize(BQ), z0.resize(BQ), dz.assign(BQ, A(0));
    lo.resize(BQ), hi.resize(BQ);
    if constexpr (kAmx) {
#if defined(PLX_FAST_AMX)
      static_assert(2 * kBK == kAmxTile && kBK == kAmxKeys, "St holds one AMX key tile");
      X.init(D, BQ, probe);
      Pb.assign(std::size_t(kAmxSteps * 3) * 2 * 512, 0);
      Ot.assign(std::size_t((Dv + 15) / 16 * 16) * NQ, 0.0f);
      alane.assign(NQ, 1.0f);
      scratch.assign(32 * 32, 0.0f);
      amx_config();  // tile configuration is per thread; FwdTile lives in one thread
#endif
    } else {
      Qt.assign(std::size_t(D) * NQ, A(0));
      Kt.assign(std::size_t(kBK) * D, A(0));
      Vt.assign(std::size_t(kBK) * Dv, A(0));
      Ot.assign(std::size_t(Dv) * NQ, A(0));
    }
  }
#if defined(PLX_FAST_AMX)
  ~FwdTile() {
    if constexpr (kAmx) _tile_release();
  }
#endif

  // O = Ot^T in blocks of 16 lanes: one line of Ot per column feeds 16 rows of O that stay
  // in L1 (a column walk over all NQ rows misses on every element).
  void ot_to_o() {
    for (int r0 = 0; r0 < NQ; r0 += 16)
      for (int c = 0; c < Dv; ++c)
        for (int rr = r0; rr < std::min(NQ, r0 + 16); ++rr) O[std::size_t(rr) * Dv + c] = Ot[std::size_t(c) * NQ + rr];
  }

  // q.k and r.k of nkp key rows (row stride D) into St [key][NQ lanes]. Qt holds the q and r
  // lanes as two [D][BQ] blocks: one [D][NQ] block with rows 2 BQ floats apart put each
  // half's 64-lane rows into half of the L1 sets.
  void scores(const A* K, int nkp) {
    mk_scores<A>(K, D, nkp, Qt.data(), BQ, BQ, D, St.data(), NQ);
    if (probe) mk_scores<A>(K, D, nkp, Qt.data() + std::size_t(D) * BQ, BQ, BQ, D, St.data() + BQ, NQ);
  }

  // Run query rows [i0, i0 + nr) of (b, h) over keys in [ks, ke) ∩ A_i. Leaves the state in m, d1, d2, O.
  void run(int b, int h, int i0, int nr, int ks, int ke) {
    const int Lq = p.Lq, Lkv = p.Lkv, Hq = p.Hq, Hkv = p.Hkv, g = h / p.group();
    const std::size_t ldq = std::size_t(Hq) * D, ldk = std::size_t(Hkv) * D, ldv = std::size_t(Hkv) * Dv;
    const S* qb = a.q + (std::size_t(b) * Lq * Hq + h) * D;
    const A* rb = probe ? a.r + (std::size_t(b) * Lq * Hq + h) * D : nullptr;
    const S* kb = a.k + (std::size_t(b) * Lkv * Hkv + g) * D;
    const S* vb = a.v + (std::size_t(b) * Lkv * Hkv + g) * Dv;
    int U0 = Lkv, U1 = 0;
    for (int c = 0; c < BQ; ++c) {
      lo[c] = hi[c] = 0, z0[c] = A(0);
      m[c] = ninf<A>(), d1[c] = d2[c] = A(0);
      if (c >= nr) continue;
      const RowRange R = row_range(p, b, i0 + c);
      if (R.empty()) continue;
      lo[c] = std::max(R.lo, ks), hi[c] = std::min(R.hi, ke);
      if (hi[c] > lo[c]) U0 = std::min(U0, lo[c]), U1 = std::max(U1, hi[c]);
    }
    std::fill(O.begin(), O.end(), A(0));
    if (U1 <= U0) return;
    const A sc = A(p.tau() * 1.4426950408889634);  // tau log2(e)
    if constexpr (kAmx) {
#if defined(PLX_FAST_AMX)
      run_amx(b * Hkv + g, qb + i0 * ldq, probe ? rb + i0 * ldq : nullptr, ldq, nr, U0, U1, sc);
#endif
      return;
    }
    std::fill(Qt.begin(), Qt.end(), A(0));
    std::fill(Ot.begin(), Ot.end(), A(0));
    load_rows_t(qb + i0 * ldq, ldq, nr, D, Qt.data(), BQ);
    if (probe) load_rows_t(rb + i0 * ldq, ldq, nr, D, Qt.data() + std::size_t(D) * BQ, BQ);
    for (int j0 = U0; j0 < U1; j0 += kBK) {
      const int nk = std::min(kBK, U1 - j0), nkp = round_up(nk, kMR);
      // V rows (and K rows for whole blocks of kMR keys) from the per-head packed copies made
      // once per call (forward_impl), else converted tile copies.
      const A* Vp = Vt.data();
      if (vpack) Vp = vpack + ((std::size_t(b) * Hkv + g) * Lkv + j0) * Dv;
      else load_rows(vb + j0 * ldv, ldv, nk, Dv, Vt.data(), Dv);
      if (kpack && nk == nkp) {
        scores(kpack + ((std::size_t(b) * Hkv + g) * Lkv + j0) * D, nkp);
      } else {
        load_rows(kb + j0 * ldk, ldk, nk, D, Kt.data(), D);
        std::fill(Kt.begin() + std::size_t(nk) * D, Kt.begin() + std::size_t(nkp) * D, A(0));
        scores(Kt.data(), nkp);
      }
      fwd_step<A>(St.data(), NQ, nk, BQ, probe ? BQ : -1, j0, lo.data(), hi.data(), z0.data(), sc, m.data(),
                  d1.data(), d2.data(), alpha.data(), dz.data());
      // O2 <- alpha (O2 - dz O1) + P2 V, O1 <- alpha O1 + P1 V (the re-centre and rescale of
      // fwd_step folded into the value product)
      mk_pvt<A>(St.data(), NQ, BQ, probe ? BQ : -1, nk, Vp, Dv, Dv, Ot.data(), NQ, alpha.data(), dz.data());
    }
    ot_to_o();
  }

#if defined(PLX_FAST_AMX)
  // The AMX key loop over 96-key tiles: scores (amx_scores, 2 x 2 tile blocks), the online step of the
  // FMA path (fwd_step), the weights as tiles (amx_pack_p), and the value products merged into
  // the transposed accumulators with the rescale (amx_pv); O is the transpose of Ot at the end.
  void run_amx(int bg, const S* q, const A* r, std::size_t ldq, int nr, int U0, int U1, A sc) {
    const int nlb = NQ / 16, Dvp = kv->Dvp, ncb = Dvp / 16;
    X.npq = amx_pack_lanes(X, 0, X.nlq, q, ldq, nr, D);
    if (probe) X.npr = amx_pack_lanes(X, X.nlq, X.nlr, r, ldq, nr, D);
    std::fill(Ot.begin(), Ot.end(), 0.0f);
    // Key tiles start on multiples of 32 (the V^T pack is blocked by 32 keys, AmxKV): keys below
    // U0 are masked for every lane by fwd_step and carry zero weights. For split-KV chunks the
    // chunk start (a multiple of 512) bounds U0, so no key of another chunk enters.
    for (int j0 = U0 / 32 * 32; j0 < U1; j0 += kAmxTile) {
      const int nk = std::min(kAmxTile, U1 - j0);
      amx_scores(kv->k(bg, j0), kv->ldk, X, St.data(), NQ, nk);
      fwd_step<A>(St.data(), NQ, nk, BQ, probe ? BQ : -1, j0, lo.data(), hi.data(), z0.data(), sc, m.data(),
                  d1.data(), d2.data(), alpha.data(), dz.data());
      std::copy(alpha.begin(), alpha.end(), alane.begin());
      if (probe) std::copy(alpha.begin(), alpha.end(), alane.begin() + BQ);
      // the re-centre of O2 with the shift (fwd_step), Ot2 -= dz Ot1, is done in the merge
      amx_pv(kv->vt(bg, j0), St.data(), NQ, nk, Pb.data(), nlb, Ot.data(), NQ, ncb, alane.data(), dz.data(),
             probe ? BQ / 16 : nlb, scratch.data());
    }
    ot_to_o();
  }
#endif
};

// Normalise one row: out = vbar - (O2/d1 - zb' vbar), zb' = d2/d1 (shifted); empty -> zeros.
template <class A>
inline void finalize_row(const A* O1, const A* O2, A m2, A d1, A d2, A z0, int Dv, A* out, A* vbar, A* m2o, A* d1o,
                         A* zbo, A* z0o, A* zbso) {
  const bool empty = !(d1 > A(0));
  const A inv = empty ? A(0) : A(1) / d1, zb = d2 * inv;
  for (int c = 0; c < Dv; ++c) {
    const A vb = O1[c] * inv;
    out[c] = O2 ? vb - (O2[c] * inv - zb * vb) : vb;
    if (vbar) vbar[c] = vb;
  }
  if (m2o) *m2o = empty ? A(0) : m2;
  if (d1o) *d1o = empty ? A(0) : d1;
  if (zbo) *zbo = empty ? A(0) : zb + z0;
  if (z0o) *z0o = z0;
  if (zbso) *zbso = empty ? A(0) : zb;
}


// ------------------------------------------------------------------ decode
// One query row (Lq = 1) against keys [lo, hi) of one split: the §4.1 accumulators with the
// shift z0 (in/out), re-centred online on the running p1-weighted mean of z after every block
// of 16 keys (d2 -= dz d1, O2 -= dz O1, as fwd_step), streamed over blocks of 16 keys (dot
// products per key, one exp2 per block). State out: m2 (base 2), d1, d2, O1, O2 (pre-zeroed by
// the caller, O2 unused for softmax), z0.
template <class S, class A>
void decode_chunk(const A* q, const A* r, const S* kb, std::size_t ldk, const S* vb, std::size_t ldv, int D, int Dv,
                  int lo, int hi, A& z0, A sc, A& m, A& d1, A& d2, A* O1, A* O2) {
  A s[16], z[16];
  for (int j0 = lo; j0 < hi; j0 += 16) {
    const int n = std::min(16, hi - j0);
    A mx = m;
    for (int jj = 0; jj < n; ++jj) {
      const S* kr = kb + std::size_t(j0 + jj) * ldk;
      A a = 0, c = 0;
      for (int d = 0; d < D; ++d) a += q[d] * to_acc<A>(kr[d]);
      if (r)
        for (int d = 0; d < D; ++d) c += r[d] * to_acc<A>(kr[d]);
      s[jj] = a * sc, z[jj] = c, mx = std::max(mx, s[jj]);
    }
    const A al = std::exp2(m - mx);  // m = -inf at the start: 0
    A l1 = 0, wz = 0;
    for (int jj = 0; jj < n; ++jj) s[jj] = std::exp2(s[jj] - mx), l1 += s[jj], wz += s[jj] * z[jj];
    const A d1n = al * d1 + l1;
    A dz = 0;
    if (r) {
      const A zn = d1n > A(0) ? (al * (d1 * z0 + d2) + wz) / d1n : z0;
      dz = zn - z0, z0 = zn;
      d2 = al * (d2 - dz * d1);
    }
    d1 = d1n, m = mx;
    if (r && dz != A(0))
      for (int c = 0; c < Dv; ++c) O2[c] -= dz * O1[c];
    if (al != A(1))
      for (int c = 0; c < Dv; ++c) O1[c] *= al, O2[c] *= al;
    for (int jj = 0; jj < n; ++jj) {
      const A p1 = s[jj], p2 = r ? p1 * (z[jj] - z0) : A(0);
      d2 += p2;
      const S* vr = vb + std::size_t(j0 + jj) * ldv;
      for (int c = 0; c < Dv; ++c) O1[c] += p1 * to_acc<A>(vr[c]);
      if (r)
        for (int c = 0; c < Dv; ++c) O2[c] += p2 * to_acc<A>(vr[c]);
    }
  }
}

#if defined(__AVX512F__)
inline __m512 load16(const float* p, __mmask16 k) { return _mm512_maskz_loadu_ps(k, p); }
inline __m512 load16(const std::uint16_t* p, __mmask16 k) {
  const __m256i h = _mm256_maskz_loadu_epi16(k, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
template <class S>
void decode_chunk_avx(const float* q, const float* r, const S* kb, std::size_t ldk, const S* vb, std::size_t ldv,
                      int D, int Dv, int lo, int hi, float& z0, float sc, float& m, float& d1, float& d2, float* O1,
                      float* O2) {
  alignas(64) float s[16], z[16], p1[16], p2[16];
  const int nvd = (D + 15) / 16, nvv = (Dv + 15) / 16;
  auto mask = [](int rem) { return rem >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rem) - 1); };
  for (int j0 = lo; j0 < hi; j0 += 16) {
    const int n = std::min(16, hi - j0);
    for (int jj = 0; jj < 16; ++jj) {
      if (jj >= n) { s[jj] = -std::numeric_limits<float>::infinity(), z[jj] = 0; continue; }
      const S* kr = kb + std::size_t(j0 + jj) * ldk;
      __m512 a = _mm512_setzero_ps(), c = _mm512_setzero_ps();
      for (int v = 0; v < nvd; ++v) {
        const __mmask16 k = mask(D - 16 * v);
        const __m512 kv = load16(kr + 16 * v, k);
        a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, q + 16 * v), kv, a);
        if (r) c = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, r + 16 * v), kv, c);
      }
      s[jj] = _mm512_reduce_add_ps(a) * sc, z[jj] = r ? _mm512_reduce_add_ps(c) : 0.0f;
    }
    const __m512 vs = _mm512_load_ps(s);
    const float mx = std::max(m, _mm512_reduce_max_ps(vs));
    const float al = std::exp2(m - mx);
    const __m512 vp = exp2_ps(_mm512_sub_ps(vs, _mm512_set1_ps(mx)));
    _mm512_store_ps(p1, vp);
    float l1 = 0.0f, wz = 0.0f;
    for (int jj = 0; jj < n; ++jj) l1 += p1[jj], wz += p1[jj] * z[jj];
    const float d1n = al * d1 + l1;
    float dz = 0.0f;
    if (r) {  // re-centre the shift on the running p1-weighted mean of z (see decode_chunk)
      const float zn = d1n > 0.0f ? (al * (d1 * z0 + d2) + wz) / d1n : z0;
      dz = zn - z0, z0 = zn;
      d2 = al * (d2 - dz * d1);
    }
    d1 = d1n, m = mx;
    if (dz != 0.0f || al != 1.0f)
      for (int v = 0; v < nvv; ++v) {
        const __mmask16 k = mask(Dv - 16 * v);
        const __m512 o1 = _mm512_maskz_loadu_ps(k, O1 + 16 * v), o2 = _mm512_maskz_loadu_ps(k, O2 + 16 * v);
        const __m512 va = _mm512_set1_ps(al);
        _mm512_mask_storeu_ps(O2 + 16 * v, k, _mm512_mul_ps(va, _mm512_fnmadd_ps(_mm512_set1_ps(dz), o1, o2)));
        _mm512_mask_storeu_ps(O1 + 16 * v, k, _mm512_mul_ps(va, o1));
      }
    const __m512 vp2 = _mm512_mul_ps(vp, _mm512_sub_ps(_mm512_load_ps(z), _mm512_set1_ps(z0)));
    _mm512_store_ps(p2, vp2);
    for (int jj = 0; jj < n; ++jj) d2 += p2[jj];
    for (int v = 0; v < nvv; ++v) {
      const __mmask16 k = mask(Dv - 16 * v);
      __m512 o1 = _mm512_maskz_loadu_ps(k, O1 + 16 * v), o2 = _mm512_maskz_loadu_ps(k, O2 + 16 * v);
      for (int jj = 0; jj < n; ++jj) {
        const __m512 vv = load16(vb + std::size_t(j0 + jj) * ldv + 16 * v, k);
        o1 = _mm512_fmadd_ps(_mm512_set1_ps(p1[jj]), vv, o1);
        if (r) o2 = _mm512_fmadd_ps(_mm512_set1_ps(p2[jj]), vv, o2);
      }
      _mm512_mask_storeu_ps(O1 + 16 * v, k, o1), _mm512_mask_storeu_ps(O2 + 16 * v, k, o2);
    }
  }
}
template <>
inline void decode_chunk<float, float>(const float* q, const float* r, const float* kb, std::size_t ldk, const float* vb,
                                       std::size_t ldv, int D, int Dv, int lo, int hi, float& z0, float sc, float& m,
                                       float& d1, float& d2, float* O1, float* O2) {
  decode_chunk_avx(q, r, kb, ldk, vb, ldv, D, Dv, lo, hi, z0, sc, m, d1, d2, O1, O2);
}
template <>
inline void decode_chunk<std::uint16_t, float>(const float* q, const float* r, const std::uint16_t* kb, std::size_t ldk,
                                               const std::uint16_t* vb, std::size_t ldv, int D, int Dv, int lo, int hi,
                                               float& z0, float sc, float& m, float& d1, float& d2, float* O1,
                                               float* O2) {
  decode_chunk_avx(q, r, kb, ldk, vb, ldv, D, Dv, lo, hi, z0, sc, m, d1, d2, O1, O2);
}
#endif

// Decode (Lq = 1) split-KV tasks: one task per (batch, split) walks its keys in blocks of 16
// and, inside each block, every head: with the [B, L, H, D] layout this reads K and V
// contiguously (a per-head walk would jump H*D elements per key). Writes the per-(b, h, split)
// states in the layout of the tiled path (lane 0 of m, d1, d2; rows 0 and BQ of O).
template <class S, class A>
void decode_splits(const FwdArgs<S, A>& a, int nsplit, int BQ, int NQ, std::vector<A>& ws_s, std::vector<A>& ws_o) {
  const Problem& p = *a.p;
  const int Hq = p.Hq, Hkv = p.Hkv, Lkv = p.Lkv, D = p.D, Dv = p.Dv, G = p.group();
  const bool probe = a.r != nullptr;
  const std::size_t ldk = std::size_t(Hkv) * D, ldv = std::size_t(Hkv) * Dv;
  const A sc = A(p.tau() * 1.4426950408889634);
#pragma omp parallel
  {
    std::vector<A> m(Hq), d1(Hq), d2(Hq), z0(Hq), O(std::size_t(Hq) * 2 * Dv), qf(std::size_t(Hq) * D);
#pragma omp for schedule(dynamic, 1)
    for (long task = 0; task < long(p.B) * nsplit; ++task) {
      const int sp = int(task % nsplit), b = int(task / nsplit);
      const int ks = sp * kSplitKeys, ke = std::min(Lkv, ks + kSplitKeys);
      const RowRange R = row_range(p, b, 0);
      const int lo = std::max(R.lo, ks), hi = std::min(R.hi, ke);
      const S* kb = a.k + std::size_t(b) * Lkv * ldk;
      const S* vb = a.v + std::size_t(b) * Lkv * ldv;
      std::fill(O.begin(), O.end(), A(0));
      for (int h = 0; h < Hq; ++h) {
        m[h] = ninf<A>(), d1[h] = d2[h] = z0[h] = A(0);
        const std::size_t qo = (std::size_t(b) * Hq + h) * D;
        for (int d = 0; d < D; ++d) qf[std::size_t(h) * D + d] = to_acc<A>(a.q[qo + d]);
      }
      for (int j0 = lo - (lo % 16 + 16) % 16; j0 < hi; j0 += 16) {
        const int bl = std::max(lo, j0), bh = std::min(hi, j0 + 16);
        if (bh <= bl) continue;
        for (int h = 0; h < Hq; ++h) {
          const int g = h / G;
          A* o = O.data() + std::size_t(h) * 2 * Dv;
          decode_chunk<S, A>(qf.data() + std::size_t(h) * D, probe ? a.r + (std::size_t(b) * Hq + h) * D : nullptr,
                             kb + std::size_t(g) * D, ldk, vb + std::size_t(g) * Dv, ldv, D, Dv, bl, bh, z0[h], sc,
                             m[h], d1[h], d2[h], o, o + Dv);
        }
      }
      for (int h = 0; h < Hq; ++h) {
        A* st = ws_s.data() + ((std::size_t(b) * Hq + h) * nsplit + sp) * 4 * BQ;
        st[0] = m[h], st[BQ] = d1[h], st[2 * BQ] = d2[h], st[3 * BQ] = z0[h];
        A* wo = ws_o.data() + ((std::size_t(b) * Hq + h) * nsplit + sp) * NQ * Dv;
        std::copy(O.begin() + std::size_t(h) * 2 * Dv, O.begin() + std::size_t(h) * 2 * Dv + Dv, wo);
        if (probe)
          std::copy(O.begin() + std::size_t(h) * 2 * Dv + Dv, O.begin() + std::size_t(h + 1) * 2 * Dv,
                    wo + std::size_t(BQ) * Dv);
      }
    }
  }
}

// K and V of every kv head as contiguous rows [B][Hkv][Lkv][D or Dv] in A, made once per call
// by the multi-tile forward and backward (see forward_impl).
template <class S, class A>
void pack_kv(const Problem& p, const S* k, const S* v, avec_noinit<A>& kpack, avec_noinit<A>& vpack) {
  const int B = p.B, Hkv = p.Hkv, Lkv = p.Lkv, D = p.D, Dv = p.Dv;
  vpack.resize(std::size_t(B) * Hkv * Lkv * Dv);
  kpack.resize(std::size_t(B) * Hkv * Lkv * D);
#pragma omp parallel for schedule(static)
  for (long t = 0; t < long(B) * Hkv * Lkv; ++t) {
    const int j = int(t % Lkv), g = int((t / Lkv) % Hkv), b = int(t / (long(Lkv) * Hkv));
    const std::size_t src = (std::size_t(b) * Lkv + j) * Hkv + g;
    for (int c = 0; c < Dv; ++c) vpack[std::size_t(t) * Dv + c] = to_acc<A>(v[src * Dv + c]);
    for (int c = 0; c < D; ++c) kpack[std::size_t(t) * D + c] = to_acc<A>(k[src * D + c]);
  }
}

template <class S, class A> void forward_impl(const FwdArgs<S, A>& a) {
  const Problem& p = *a.p;
  const int B = p.B, Hq = p.Hq, Lq = p.Lq, Lkv = p.Lkv, Dv = p.Dv;
  const bool probe = a.r != nullptr;
  const int BQ = std::min(kBQ, round_up(Lq, 16));
  const int nqt = (Lq + BQ - 1) / BQ;
  const int nsplit = (nqt == 1 && Lkv > 2 * kSplitKeys) ? (Lkv + kSplitKeys - 1) / kSplitKeys : 1;
  const long ntask = long(B) * Hq * nqt * nsplit;
  const int NQ = probe ? 2 * BQ : BQ;
  // split workspace: per (b, h, split): BQ x (m, d1, d2, z0) and NQ x Dv
  std::vector<A> ws_s, ws_o;
  if (nsplit > 1) {
    ws_s.assign(std::size_t(B) * Hq * nsplit * 4 * BQ, A(0));
    ws_o.assign(std::size_t(B) * Hq * nsplit * NQ * Dv, A(0));
  }
  auto row_ptr = [&](A* t, int b, int i, int h, int w) { return t ? t + ((std::size_t(b) * Lq + i) * Hq + h) * w : nullptr; };
  auto per_row = [&](A* t, int b, int h, int i) { return t ? t + (std::size_t(b) * Hq + h) * Lq + i : nullptr; };
  // FMA kernels with several query tiles: V and K packed per kv head and converted to A once
  // per call — O(L) memory (the size of V, K in A) instead of a conversion per (query tile, key
  // tile) — contiguous rows for the micro-kernels. The AMX build packs bf16 K and V^T instead.
  avec_noinit<A> vpack, kpack;
  const bool tiled = !(nsplit > 1 && Lq == 1);  // else decode_splits
#if defined(PLX_FAST_AMX)
  AmxKV kv;  // the AMX build packs K and V^T for every tiled call
  if constexpr (FwdTile<S, A>::kAmx)
    if (tiled) amx_pack_kv(kv, a.k, a.v, B, Lkv, p.Hkv, p.D, Dv);
#endif
  if (nqt > 1 && !FwdTile<S, A>::kAmx) pack_kv(p, a.k, a.v, kpack, vpack);
  if (nsplit > 1 && Lq == 1) {
    decode_splits(a, nsplit, BQ, NQ, ws_s, ws_o);
  } else {
#pragma omp parallel
  {
    FwdTile<S, A> T(a, BQ);
    if (!vpack.empty()) T.vpack = vpack.data();
    if (!kpack.empty()) T.kpack = kpack.data();
#if defined(PLX_FAST_AMX)
    if constexpr (FwdTile<S, A>::kAmx) T.kv = &kv;
#endif
#pragma omp for schedule(dynamic, 1)
    for (long task = 0; task < ntask; ++task) {
      // Largest query tiles first (causal balance): qt runs from the last tile down.
      const int sp = int(task % nsplit);
      const int qt = nqt - 1 - int((task / nsplit) % nqt);
      const int h = int((task / (long(nsplit) * nqt)) % Hq), b = int(task / (long(nsplit) * nqt * Hq));
      const int i0 = qt * BQ, nr = std::min(BQ, Lq - i0);
      const int ks = nsplit > 1 ? sp * kSplitKeys : 0, ke = nsplit > 1 ? std::min(Lkv, ks + kSplitKeys) : Lkv;
      T.run(b, h, i0, nr, ks, ke);
      if (nsplit > 1) {
        A* s = ws_s.data() + ((std::size_t(b) * Hq + h) * nsplit + sp) * 4 * BQ;
        std::copy(T.m.begin(), T.m.end(), s);
        std::copy(T.d1.begin(), T.d1.end(), s + BQ);
        std::copy(T.d2.begin(), T.d2.end(), s + 2 * BQ);
        std::copy(T.z0.begin(), T.z0.end(), s + 3 * BQ);  // each split's own shift (re-centred online)
        std::copy(T.O.begin(), T.O.begin() + std::size_t(NQ) * Dv, ws_o.data() + ((std::size_t(b) * Hq + h) * nsplit + sp) * NQ * Dv);
        continue;
      }
      for (int c = 0; c < nr; ++c) {
        const int i = i0 + c;
        finalize_row<A>(T.O.data() + std::size_t(c) * Dv, probe ? T.O.data() + std::size_t(BQ + c) * Dv : nullptr,
                        T.m[c], T.d1[c], T.d2[c], T.z0[c], Dv, row_ptr(a.out, b, i, h, Dv),
                        row_ptr(a.vbar, b, i, h, Dv), per_row(a.m2, b, h, i), per_row(a.d1, b, h, i),
                        per_row(a.zbar, b, h, i), per_row(a.z0, b, h, i), per_row(a.zbar_shifted, b, h, i));
      }
    }
  }
  }  // tiled path
  if (nsplit == 1) return;
  // Exact combine of the chunk states (docs/math.md §6.2) in chunk order, then normalise.
  const long nrow = long(B) * Hq * Lq;
#pragma omp parallel
  {
    std::vector<A> O1(Dv), O2(Dv);
#pragma omp for schedule(static)
    for (long t = 0; t < nrow; ++t) {
      const int i = int(t % Lq), h = int((t / Lq) % Hq), b = int(t / (long(Lq) * Hq));
      const std::size_t base = (std::size_t(b) * Hq + h) * nsplit;
      // Exact combine (docs/math.md §6.2) with the shifts re-centred on the heaviest split's z0 (C):
      // sum p (z - C) = d2_s + (z0_s - C) d1_s, and the same for O2 with O1.
      A M = ninf<A>(), C = A(0);
      for (int s = 0; s < nsplit; ++s) {
        const A* st = ws_s.data() + (base + s) * 4 * BQ;
        if (st[i] > M) M = st[i], C = st[3 * BQ + i];
      }
      A d1 = 0, d2 = 0;
      std::fill(O1.begin(), O1.end(), A(0)), std::fill(O2.begin(), O2.end(), A(0));
      if (M != ninf<A>())
        for (int s = 0; s < nsplit; ++s) {
          const A* st = ws_s.data() + (base + s) * 4 * BQ;
          if (st[i] == ninf<A>()) continue;  // empty chunk: a_c = 0, never -inf - -inf
          const A ac = std::exp2(st[i] - M), dz = st[3 * BQ + i] - C;
          d1 += ac * st[BQ + i], d2 += ac * (st[2 * BQ + i] + dz * st[BQ + i]);
          const A* o = ws_o.data() + (base + s) * NQ * Dv;
          for (int c = 0; c < Dv; ++c) {
            O1[c] += ac * o[std::size_t(i) * Dv + c];
            if (probe) O2[c] += ac * (o[std::size_t(BQ + i) * Dv + c] + dz * o[std::size_t(i) * Dv + c]);
          }
        }
      const A z0k = C;
      finalize_row<A>(O1.data(), probe ? O2.data() : nullptr, M, d1, d2, z0k, Dv, row_ptr(a.out, b, i, h, Dv),
                      row_ptr(a.vbar, b, i, h, Dv), per_row(a.m2, b, h, i), per_row(a.d1, b, h, i),
                      per_row(a.zbar, b, h, i), per_row(a.z0, b, h, i), per_row(a.zbar_shifted, b, h, i));
    }
  }
}

// ------------------------------------------------------------------ backward
// One pass over query tiles (lanes = queries): recompute s, z and a = g.v per key tile, form
// tau gl, gu and the dv weight W (docs/math.md §5.2), then dq/dr += G K (pv), and dk/dv partials +=
// G^T [q; r], W^T dO (nn) into a buffer owned by the task. Tasks are (b, h, chunk), chunk =
// a fixed interleaved subset of the head's query tiles whose count depends only on the
// problem; partials are summed over chunks and the G heads of a group in a fixed order.
template <class S, class A> void backward_impl(const BwdArgs<S, A>& a) {
  const Problem& p = *a.p;
  const int B = p.B, Hq = p.Hq, Hkv = p.Hkv, G = p.group(), Lq = p.Lq, Lkv = p.Lkv, D = p.D, Dv = p.Dv;
  const bool probe = a.r != nullptr;
  const A sc = A(p.tau() * 1.4426950408889634), tau = A(p.tau());
  const std::size_t ldq = std::size_t(Hq) * D, ldo = std::size_t(Hq) * Dv, ldk = std::size_t(Hkv) * D,
                    ldv = std::size_t(Hkv) * Dv;
  // Preprocessing (docs/math.md §5.2): per row t = g.out, b = g.vbar, 1/d1 (0 for empty rows).
  const std::size_t nrow = std::size_t(B) * Hq * Lq;
  std::vector<A> tt(nrow), bb(nrow), inv(nrow);
#pragma omp parallel for schedule(static)
  for (long t = 0; t < long(nrow); ++t) {
    const int i = int(t % Lq), h = int((t / Lq) % Hq), b = int(t / (long(Lq) * Hq));
    const std::size_t ro = (std::size_t(b) * Lq + i) * ldo + std::size_t(h) * Dv;
    tt[t] = dot<A>(a.out + ro, a.dO + ro, Dv);
    bb[t] = probe ? dot<A>(a.vbar + ro, a.dO + ro, Dv) : A(0);
    inv[t] = a.d1[t] > A(0) ? A(1) / a.d1[t] : A(0);
  }
  std::vector<A> zb0(probe ? 0 : nrow, A(0));
  const A* zbar = probe ? a.zbar : zb0.data();

  const int BQ = std::min(kBQ, round_up(Lq, 16)), NQ = probe ? 2 * BQ : BQ, nqt = (Lq + BQ - 1) / BQ;
  const int NCH = std::max(1, std::min(nqt, (8 + B * Hq - 1) / (B * Hq)));  // chunks per head (not per thread)
  const std::size_t Lpad = std::size_t(Lkv) + 8;                             // nn writes whole groups of 4 rows
  avec<A> pk(std::size_t(B) * Hq * NCH * Lpad * D, A(0)), pv(std::size_t(B) * Hq * NCH * Lpad * Dv, A(0));
  // K and V packed per kv head as in the forward: the tile copies from rows 4 KiB apart took
  // ~9 % of the backward (one per query tile and key tile).
  avec_noinit<A> kpack, vpack;
  if (nqt > 1) pack_kv(p, a.k, a.v, kpack, vpack);
  // dq = tau sum_j gl_j k_j and dr = sum_j gu_j k_j with sum_j gl_j = sum_j gu_j = 0 for every
  // row (docs/math.md §5.2: sum p (G - b) = 0 and sum p [G - t + (zbar - z)(G - b)] = b - t + (t - b)).
  // So both equal the same sums over k_j - kref for any kref, and that is how they are formed:
  // with kref = the mean of the keys the batch's rows can see, per kv head. Keys with a large
  // common offset (gen z_cancel) otherwise turn the rounding of gl, gu (from the saved out,
  // vbar, zbar) into an error ~ u |offset| sum |g|: measured 9x the fp32 baseline for dr at an
  // offset of 256 (D = 64), and a one-key row, whose exact dr is 0, came out as -2.9e-4.
  avec<A> kref(std::size_t(B) * Hkv * D, A(0));
  avec_noinit<A> kcpack;  // packed K minus kref (nqt > 1)
  {
    std::vector<int> klo(B, Lkv), khi(B, 0);
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < Lq; ++i) {
        const RowRange R = row_range(p, b, i);
        if (!R.empty()) klo[b] = std::min(klo[b], R.lo), khi[b] = std::max(khi[b], R.hi);
      }
#pragma omp parallel for schedule(static)
    for (long t = 0; t < long(B) * Hkv; ++t) {
      const int g = int(t % Hkv), b = int(t / Hkv);
      std::vector<double> acc(D, 0.0);
      for (int j = klo[b]; j < khi[b]; ++j)
        for (int c = 0; c < D; ++c) acc[c] += double(to_acc<A>(a.k[((std::size_t(b) * Lkv + j) * Hkv + g) * D + c]));
      for (int c = 0; c < D; ++c) kref[std::size_t(t) * D + c] = khi[b] > klo[b] ? A(acc[c] / (khi[b] - klo[b])) : A(0);
    }
    if (nqt > 1) {
      kcpack.resize(kpack.size());
#pragma omp parallel for schedule(static)
      for (long t = 0; t < long(B) * Hkv * Lkv; ++t) {
        const A* kr = kref.data() + std::size_t(t / Lkv) * D;
        for (int c = 0; c < D; ++c) kcpack[std::size_t(t) * D + c] = kpack[std::size_t(t) * D + c] - kr[c];
      }
    }
  }
#pragma omp parallel
  {
    avec<A> Qt(std::size_t(D) * NQ), Qn(std::size_t(NQ) * D), dOt(std::size_t(Dv) * BQ),
        dOn(std::size_t(BQ) * Dv), Kt(std::size_t(kBK) * D), Vt(std::size_t(kBK) * Dv),
        St(std::size_t(kBK) * NQ + kPvSlack), At(std::size_t(kBK) * BQ), W(std::size_t(kBK) * BQ),
        dQ(std::size_t(NQ + kPvSlack) * D), Kct(std::size_t(kBK) * D);
    std::vector<int> lo(BQ), hi(BQ);
    std::vector<A> m2(BQ), iv(BQ), zb(BQ), t1(BQ), b1(BQ);
#pragma omp for schedule(dynamic, 1)
    for (long task = 0; task < long(B) * Hq * NCH; ++task) {
      const int ch = int(task % NCH), h = int((task / NCH) % Hq), b = int(task / (long(NCH) * Hq));
      const int g = h / G;
      A* dK = pk.data() + ((std::size_t(b) * Hq + h) * NCH + ch) * Lpad * D;
      A* dV = pv.data() + ((std::size_t(b) * Hq + h) * NCH + ch) * Lpad * Dv;
      const S* kb = a.k + std::size_t(b) * Lkv * ldk + std::size_t(g) * D;
      const S* vb = a.v + std::size_t(b) * Lkv * ldv + std::size_t(g) * Dv;
      for (int qt = ch; qt < nqt; qt += NCH) {
        const int i0 = qt * BQ, nr = std::min(BQ, Lq - i0);
        const std::size_t rowbase = (std::size_t(b) * Hq + h) * Lq + i0;
        int U0 = Lkv, U1 = 0;
        for (int c = 0; c < BQ; ++c) {
          lo[c] = hi[c] = 0, m2[c] = iv[c] = zb[c] = t1[c] = b1[c] = A(0);
          if (c >= nr) continue;
          m2[c] = a.m2[rowbase + c], iv[c] = inv[rowbase + c], zb[c] = zbar[rowbase + c], t1[c] = tt[rowbase + c];
          b1[c] = bb[rowbase + c];
          const RowRange R = row_range(p, b, i0 + c);
          if (R.empty()) continue;
          lo[c] = R.lo, hi[c] = R.hi, U0 = std::min(U0, R.lo), U1 = std::max(U1, R.hi);
        }
        std::fill(dQ.begin(), dQ.end(), A(0));
        std::fill(Qt.begin(), Qt.end(), A(0)), std::fill(Qn.begin(), Qn.end(), A(0));
        std::fill(dOt.begin(), dOt.end(), A(0)), std::fill(dOn.begin(), dOn.end(), A(0));
        const std::size_t qoff = std::size_t(b) * Lq * ldq + std::size_t(i0) * ldq + std::size_t(h) * D;
        const std::size_t ooff = std::size_t(b) * Lq * ldo + std::size_t(i0) * ldo + std::size_t(h) * Dv;
        load_rows_t(a.q + qoff, ldq, nr, D, Qt.data(), BQ);  // q and r lanes as two [D][BQ] blocks (see FwdTile::scores)
        load_rows(a.q + qoff, ldq, nr, D, Qn.data(), D);
        if (probe) {
          load_rows_t(a.r + qoff, ldq, nr, D, Qt.data() + std::size_t(D) * BQ, BQ);
          load_rows(a.r + qoff, ldq, nr, D, Qn.data() + std::size_t(BQ) * D, D);
        }
        load_rows_t(a.dO + ooff, ldo, nr, Dv, dOt.data(), BQ);
        load_rows(a.dO + ooff, ldo, nr, Dv, dOn.data(), Dv);
        for (int j0 = U0; j0 < U1; j0 += kBK) {
          const int nk = std::min(kBK, U1 - j0), nkp = round_up(nk, kMR), nk4 = round_up(nk, 4);
          const A *Kp = Kt.data(), *Vp = Vt.data(), *Kc = Kct.data();
          if (!kpack.empty() && nk == nkp) {
            Kp = kpack.data() + ((std::size_t(b) * Hkv + g) * Lkv + j0) * D;
            Kc = kcpack.data() + ((std::size_t(b) * Hkv + g) * Lkv + j0) * D;
            Vp = vpack.data() + ((std::size_t(b) * Hkv + g) * Lkv + j0) * Dv;
          } else {  // a partial tile: zero rows up to a whole block of kMR keys
            load_rows(kb + j0 * ldk, ldk, nk, D, Kt.data(), D);
            std::fill(Kt.begin() + std::size_t(nk) * D, Kt.begin() + std::size_t(nkp) * D, A(0));
            load_rows(vb + j0 * ldv, ldv, nk, Dv, Vt.data(), Dv);
            std::fill(Vt.begin() + std::size_t(nk) * Dv, Vt.begin() + std::size_t(nkp) * Dv, A(0));
            const A* kr = kref.data() + (std::size_t(b) * Hkv + g) * D;
            for (int j = 0; j < nk; ++j)
              for (int c = 0; c < D; ++c) Kct[std::size_t(j) * D + c] = Kt[std::size_t(j) * D + c] - kr[c];
            std::fill(Kct.begin() + std::size_t(nk) * D, Kct.begin() + std::size_t(nkp) * D, A(0));
          }
          mk_scores<A>(Kp, D, nkp, Qt.data(), BQ, BQ, D, St.data(), NQ);
          if (probe) mk_scores<A>(Kp, D, nkp, Qt.data() + std::size_t(D) * BQ, BQ, BQ, D, St.data() + BQ, NQ);
          mk_scores<A>(Vp, Dv, nkp, dOt.data(), BQ, BQ, Dv, At.data(), BQ);
          bwdq_step<A>(St.data(), NQ, At.data(), BQ, W.data(), nk, BQ, probe ? BQ : -1, j0, lo.data(), hi.data(),
                       m2.data(), iv.data(), zb.data(), t1.data(), b1.data(), sc, tau);
          std::fill(St.begin() + std::size_t(nk) * NQ, St.begin() + std::size_t(nk4) * NQ, A(0));
          std::fill(W.begin() + std::size_t(nk) * BQ, W.begin() + std::size_t(nk4) * BQ, A(0));
          mk_pv<A>(St.data(), NQ, nk, NQ, Kc, D, D, dQ.data(), D);  // [tau gl; gu] (K - kref)
          mk_nn<A>(W.data(), BQ, BQ, nk4, dOn.data(), Dv, Dv, dV + std::size_t(j0) * Dv, Dv);
          mk_nn<A>(St.data(), NQ, NQ, nk4, Qn.data(), D, D, dK + std::size_t(j0) * D, D);
        }
        for (int c = 0; c < nr; ++c) {
          std::copy(dQ.begin() + std::size_t(c) * D, dQ.begin() + std::size_t(c + 1) * D, a.dq + qoff + c * ldq);
          if (probe)
            std::copy(dQ.begin() + std::size_t(BQ + c) * D, dQ.begin() + std::size_t(BQ + c + 1) * D,
                      a.dr + qoff + c * ldq);
        }
      }
    }
  }
  // Fixed-order reduction: dk, dv of kv head g = sum over its G query heads, then over chunks.
#pragma omp parallel for schedule(static)
  for (long t = 0; t < long(B) * Hkv * Lkv; ++t) {
    const int j = int(t % Lkv), g = int((t / Lkv) % Hkv), b = int(t / (long(Lkv) * Hkv));
    A* dk = a.dk + (std::size_t(b) * Lkv + j) * ldk + std::size_t(g) * D;
    A* dv = a.dv + (std::size_t(b) * Lkv + j) * ldv + std::size_t(g) * Dv;
    std::fill(dk, dk + D, A(0)), std::fill(dv, dv + Dv, A(0));
    for (int h = g * G; h < (g + 1) * G; ++h)
      for (int ch = 0; ch < NCH; ++ch) {
        const std::size_t base = (std::size_t(b) * Hq + h) * NCH + ch;
        const A* sk = pk.data() + (base * Lpad + j) * D;
        const A* sv = pv.data() + (base * Lpad + j) * Dv;
        for (int c = 0; c < D; ++c) dk[c] += sk[c];
        for (int c = 0; c < Dv; ++c) dv[c] += sv[c];
      }
  }
}

}  // namespace plx::fast::PLX_FAST_ISA
