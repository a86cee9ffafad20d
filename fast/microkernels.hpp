// fast/microkernels.hpp — register-blocked tile products and the per-lane online-softmax
// steps used by fast/attention_tiles.hpp, for one instruction set (PLX_FAST_ISA).
//
// Charter: four products cover every matmul of the forward and backward:
//   scores:  S[x][c]  = sum_d X[x][d] * Yt[d][c]        (X rows broadcast, Yt rows = lanes)
//   pv:      O[i][c] += sum_j P[j][i] * V[j][c]          (P read transposed, V rows loaded)
//   pvt:     Ot[c][l] = al[l] Ot[c][l] + sum_j V[j][c] * P[j][l]   (forward values, lanes kept)
//   nn:      O[i][c] += sum_j P[i][j] * V[j][c]          (backward dk, dv from lane-major weights)
// fp32 on AVX-512 uses intrinsics (6x64 register blocks for scores and pvt, 4x64 for pv and
// nn, FMA); every other case (double = debug mode, or a CPU without AVX-512) uses plain loops
// with the same order of summation over d / j. exp2 on AVX-512 is a degree-7 polynomial
// (<= 2 ulp), -inf -> 0.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <utility>
#include <vector>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace plx::fast::PLX_FAST_ISA {

constexpr int kMR = 6;     // rows of X per scores block (tiles are padded to a multiple)
constexpr int kPvRows = 4;   // rows per pv block (4 x 64 columns)
constexpr int kPvSlack = 8;  // extra rows / elements callers of mk_pv allocate (row blocks of 6)

inline int round_up(int x, int m) { return (x + m - 1) / m * m; }

// Tile buffers start on a cache line: malloc gives 16-byte alignment, and with it every
// 64-byte vector load or store of a lane row (rows are multiples of 64 bytes) spans two lines.
// Init = false leaves elements default-initialised (no zeroing pass: the per-call K and V
// packs are written in full by a parallel loop, which then also takes the first-touch page
// faults on both threads instead of a serial memset); buffers of 4 MiB and more are aligned to
// 2 MiB and offered to transparent huge pages (Linux, THP in "madvise" mode): a 4 KiB page
// fault per 4 KiB of the packs cost a few per cent of an L = 4096 forward.
template <class T, bool Init = true> struct Aligned64 {
  using value_type = T;
  template <class U> struct rebind { using other = Aligned64<U, Init>; };
  static constexpr std::size_t kHuge = std::size_t(2) << 20;
  Aligned64() = default;
  template <class U> Aligned64(const Aligned64<U, Init>&) {}
  static std::size_t align_for(std::size_t bytes) { return bytes >= 2 * kHuge ? kHuge : 64; }
  T* allocate(std::size_t n) {
    const std::size_t bytes = n * sizeof(T), al = align_for(bytes);
    void* p = ::operator new(bytes, std::align_val_t(al));
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (al == kHuge) madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t n) { ::operator delete(p, std::align_val_t(align_for(n * sizeof(T)))); }
  template <class U, class... Args> void construct(U* p, Args&&... args) {
    if constexpr (!Init && sizeof...(Args) == 0) ::new (static_cast<void*>(p)) U;
    else ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
  template <class U> bool operator==(const Aligned64<U, Init>&) const { return true; }
};
template <class T> using avec = std::vector<T, Aligned64<T>>;
template <class T> using avec_noinit = std::vector<T, Aligned64<T, false>>;

// ---------------------------------------------------------------- generic
template <class A>
void mk_scores(const A* X, int ldx, int nx, const A* Yt, int ldy, int ny, int kd, A* S, int lds) {
  for (int x = 0; x < nx; ++x) {
    A* s = S + std::size_t(x) * lds;
    for (int c = 0; c < ny; ++c) s[c] = A(0);
    for (int d = 0; d < kd; ++d) {
      const A xv = X[std::size_t(x) * ldx + d];
      const A* y = Yt + std::size_t(d) * ldy;
      for (int c = 0; c < ny; ++c) s[c] += xv * y[c];
    }
  }
}
template <class A>
void mk_pv(const A* P, int ldp, int nj, int ni, const A* V, int ldv, int nc, A* O, int ldo) {
  for (int i = 0; i < ni; ++i) {
    A* o = O + std::size_t(i) * ldo;
    for (int j = 0; j < nj; ++j) {
      const A pv = P[std::size_t(j) * ldp + i];
      const A* v = V + std::size_t(j) * ldv;
      for (int c = 0; c < nc; ++c) o[c] += pv * v[c];
    }
  }
}

// pvt: the forward's value products with the accumulators transposed (Ot [c][lane], lanes
// l < nl; with zoff >= 0 the P2 lanes are at zoff + l in both P and Ot) and the online
// rescale and re-centre of the key tile folded in before the sum (fast/lane_steps.hpp
// fwd_step): O1 <- al O1, O2 <- al (O2 - dz O1), then += P V summed over j in order. Lanes as
// the vector dimension make the rescale a per-lane vector product instead of a separate pass
// over O, and P rows are loaded as they are left by the online step.
template <class A>
void mk_pvt(const A* P, int ldp, int nl, int zoff, int nj, const A* V, int ldv, int nc, A* Ot, int ldo, const A* al,
            const A* dz) {
  for (int c = 0; c < nc; ++c) {
    A* o = Ot + std::size_t(c) * ldo;
    for (int l = 0; l < nl; ++l) {
      const A o1 = o[l];
      o[l] = al[l] * o1;
      if (zoff >= 0) o[zoff + l] = al[l] * (o[zoff + l] - dz[l] * o1);
    }
    for (int j = 0; j < nj; ++j) {
      const A v = V[std::size_t(j) * ldv + c];
      const A* pr = P + std::size_t(j) * ldp;
      for (int l = 0; l < nl; ++l) o[l] += v * pr[l];
      if (zoff >= 0)
        for (int l = 0; l < nl; ++l) o[zoff + l] += v * pr[zoff + l];
    }
  }
}

// nn:  O[i][c] += sum_j P[i][j] * V[j][c]   (P row-major, rows i = output rows)
template <class A>
void mk_nn(const A* P, int ldp, int nj, int ni, const A* V, int ldv, int nc, A* O, int ldo) {
  for (int i = 0; i < ni; ++i) {
    A* o = O + std::size_t(i) * ldo;
    for (int j = 0; j < nj; ++j) {
      const A pv = P[std::size_t(i) * ldp + j];
      const A* v = V + std::size_t(j) * ldv;
      for (int c = 0; c < nc; ++c) o[c] += pv * v[c];
    }
  }
}

#if defined(__AVX512F__)
// A software prefetch of `bytes` past p. The address is formed as an integer: it may lie past
// the end of the buffer (the next block of the last block), where pointer arithmetic would be
// undefined; prefetching it is harmless (no fault, no access to the data).
inline void prefetch_at(const void* p, std::size_t bytes) {
  _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(p) + bytes), _MM_HINT_T0);
}
// ---------------------------------------------------------------- AVX-512 fp32
template <int NV>
inline void scores_block(const float* X, int ldx, const float* Yt, int ldy, int kd, float* S, int lds) {
  __m512 acc[kMR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < kMR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int d = 0; d < kd; ++d) {
    __m512 y[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) y[v] = _mm512_loadu_ps(Yt + std::size_t(d) * ldy + 16 * v);
#pragma GCC unroll 8
    for (int r = 0; r < kMR; ++r) {
      const __m512 xb = _mm512_set1_ps(X[std::size_t(r) * ldx + d]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(xb, y[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < kMR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(S + std::size_t(r) * lds + 16 * v, acc[r][v]);
}
// nx must be a multiple of kMR and ny of 16.
template <>
inline void mk_scores<float>(const float* X, int ldx, int nx, const float* Yt, int ldy, int ny, int kd, float* S,
                             int lds) {
  for (int c0 = 0; c0 < ny; c0 += 64) {
    const int nv = std::min(4, (ny - c0) / 16);
    for (int x0 = 0; x0 < nx; x0 += kMR) {
      const float* Xb = X + std::size_t(x0) * ldx;
      float* Sb = S + std::size_t(x0) * lds + c0;
      switch (nv) {
        case 4: scores_block<4>(Xb, ldx, Yt + c0, ldy, kd, Sb, lds); break;
        case 3: scores_block<3>(Xb, ldx, Yt + c0, ldy, kd, Sb, lds); break;
        case 2: scores_block<2>(Xb, ldx, Yt + c0, ldy, kd, Sb, lds); break;
        default: scores_block<1>(Xb, ldx, Yt + c0, ldy, kd, Sb, lds); break;
      }
    }
  }
}

template <int NV, bool PT, int MR>
inline void pv_block(const float* P, int ldp, int nj, const float* V, int ldv, float* O, int ldo, __mmask16 last) {
  __m512 acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      acc[r][v] = _mm512_maskz_loadu_ps(v == NV - 1 ? last : __mmask16(0xFFFF), O + std::size_t(r) * ldo + 16 * v);
  // The next row block's accumulators: in the backward they are rows of the dk / dv partials
  // (megabytes per task, not in L2), and their load at the block start waits on L3.
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      prefetch_at(O, (std::size_t(MR + r) * ldo + 16 * v) * sizeof(float));
  for (int j = 0; j < nj; ++j) {
    __m512 y[NV];
    const float* vr = V + std::size_t(j) * ldv;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) y[v] = _mm512_maskz_loadu_ps(v == NV - 1 ? last : __mmask16(0xFFFF), vr + 16 * v);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 pb = _mm512_set1_ps(PT ? P[std::size_t(r) * ldp + j] : P[std::size_t(j) * ldp + r]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(pb, y[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      _mm512_mask_storeu_ps(O + std::size_t(r) * ldo + 16 * v, v == NV - 1 ? last : __mmask16(0xFFFF), acc[r][v]);
}
// Rows are done in blocks of kPvRows: the caller's O must have round_up(ni, kPvRows) rows and
// P must be readable up to column round_up(ni, kPvRows) of its last row (kPvSlack extra
// elements); the extra rows of O are scratch. (6 rows measured no faster than 4.)
template <>
inline void mk_pv<float>(const float* P, int ldp, int nj, int ni, const float* V, int ldv, int nc, float* O, int ldo) {
  for (int c0 = 0; c0 < nc; c0 += 64) {
    const int rem = nc - c0, nv = std::min(4, (rem + 15) / 16);
    const int tail = rem - 16 * (nv - 1);
    const __mmask16 last = tail >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << tail) - 1);
    for (int i0 = 0; i0 < ni; i0 += kPvRows) {
      const float* Pb = P + i0;
      float* Ob = O + std::size_t(i0) * ldo + c0;
      switch (nv) {
        case 4: pv_block<4, false, kPvRows>(Pb, ldp, nj, V + c0, ldv, Ob, ldo, last); break;
        case 3: pv_block<3, false, kPvRows>(Pb, ldp, nj, V + c0, ldv, Ob, ldo, last); break;
        case 2: pv_block<2, false, kPvRows>(Pb, ldp, nj, V + c0, ldv, Ob, ldo, last); break;
        default: pv_block<1, false, kPvRows>(Pb, ldp, nj, V + c0, ldv, Ob, ldo, last); break;
      }
    }
  }
}

// MR value columns x NL lane vectors (NV of P1 lanes, and as many of P2 lanes at zoff when
// PR): each P row load feeds MR columns, each broadcast V element NL lane vectors, as in
// scores_block. The accumulators start from the rescaled (and re-centred) Ot.
template <int NV, bool PR, int MR>
inline void pvt_block(const float* P, int ldp, int zoff, int nj, const float* V, int ldv, float* Ot, int ldo,
                      const float* al, const float* dz) {
  constexpr int NL = PR ? 2 * NV : NV;
  __m512 acc[MR][NL];
  {
    __m512 a[NV], d[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) a[v] = _mm512_loadu_ps(al + 16 * v), d[v] = PR ? _mm512_loadu_ps(dz + 16 * v) : a[v];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const __m512 o1 = _mm512_loadu_ps(Ot + std::size_t(r) * ldo + 16 * v);
        acc[r][v] = _mm512_mul_ps(a[v], o1);
        if constexpr (PR)
          acc[r][NV + v] =
              _mm512_mul_ps(a[v], _mm512_fnmadd_ps(d[v], o1, _mm512_loadu_ps(Ot + std::size_t(r) * ldo + zoff + 16 * v)));
      }
  }
  for (int j = 0; j < nj; ++j) {
    __m512 y[NL];
    const float* pr = P + std::size_t(j) * ldp;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      y[v] = _mm512_loadu_ps(pr + 16 * v);
      if constexpr (PR) y[NV + v] = _mm512_loadu_ps(pr + zoff + 16 * v);
    }
    const float* vr = V + std::size_t(j) * ldv;
    // The column blocks walk V by columns (one line per row): fetch the line of the next 16
    // columns of this row ahead, which the hardware prefetchers do not.
    prefetch_at(vr, 16 * sizeof(float));
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 vb = _mm512_set1_ps(vr[r]);
#pragma GCC unroll 8
      for (int v = 0; v < NL; ++v) acc[r][v] = _mm512_fmadd_ps(vb, y[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      _mm512_storeu_ps(Ot + std::size_t(r) * ldo + 16 * v, acc[r][v]);
      if constexpr (PR) _mm512_storeu_ps(Ot + std::size_t(r) * ldo + zoff + 16 * v, acc[r][NV + v]);
    }
}
template <int NV, bool PR>
inline void pvt_cols(const float* P, int ldp, int zoff, int nj, const float* V, int ldv, int nc, float* Ot, int ldo,
                     const float* al, const float* dz) {
  int c0 = 0;
  for (; c0 + kMR <= nc; c0 += kMR)
    pvt_block<NV, PR, kMR>(P, ldp, zoff, nj, V + c0, ldv, Ot + std::size_t(c0) * ldo, ldo, al, dz);
  float* O = Ot + std::size_t(c0) * ldo;
  switch (nc - c0) {
    case 5: pvt_block<NV, PR, 5>(P, ldp, zoff, nj, V + c0, ldv, O, ldo, al, dz); break;
    case 4: pvt_block<NV, PR, 4>(P, ldp, zoff, nj, V + c0, ldv, O, ldo, al, dz); break;
    case 3: pvt_block<NV, PR, 3>(P, ldp, zoff, nj, V + c0, ldv, O, ldo, al, dz); break;
    case 2: pvt_block<NV, PR, 2>(P, ldp, zoff, nj, V + c0, ldv, O, ldo, al, dz); break;
    case 1: pvt_block<NV, PR, 1>(P, ldp, zoff, nj, V + c0, ldv, O, ldo, al, dz); break;
    default: break;
  }
}
// nl must be a multiple of 16. Blocks of 6 columns x 64 lanes (32 P1 + 32 P2 lanes for
// Parallax); the lane slice is the outer loop, so its P rows stay in L1 while V streams.
template <>
inline void mk_pvt<float>(const float* P, int ldp, int nl, int zoff, int nj, const float* V, int ldv, int nc,
                          float* Ot, int ldo, const float* al, const float* dz) {
  for (int l0 = 0; l0 < nl;) {
    const int nv = (nl - l0) / 16;
    const float* Pl = P + l0;
    float* Ol = Ot + l0;
    if (zoff >= 0) {
      if (nv >= 2) pvt_cols<2, true>(Pl, ldp, zoff, nj, V, ldv, nc, Ol, ldo, al + l0, dz + l0), l0 += 32;
      else pvt_cols<1, true>(Pl, ldp, zoff, nj, V, ldv, nc, Ol, ldo, al + l0, dz + l0), l0 += 16;
    } else {
      switch (std::min(nv, 4)) {
        case 4: pvt_cols<4, false>(Pl, ldp, zoff, nj, V, ldv, nc, Ol, ldo, al + l0, dz), l0 += 64; break;
        case 3: pvt_cols<3, false>(Pl, ldp, zoff, nj, V, ldv, nc, Ol, ldo, al + l0, dz), l0 += 48; break;
        case 2: pvt_cols<2, false>(Pl, ldp, zoff, nj, V, ldv, nc, Ol, ldo, al + l0, dz), l0 += 32; break;
        default: pvt_cols<1, false>(Pl, ldp, zoff, nj, V, ldv, nc, Ol, ldo, al + l0, dz), l0 += 16; break;
      }
    }
  }
}

// ni must be a multiple of 4.
template <>
inline void mk_nn<float>(const float* P, int ldp, int nj, int ni, const float* V, int ldv, int nc, float* O, int ldo) {
  for (int c0 = 0; c0 < nc; c0 += 64) {
    const int rem = nc - c0, nv = std::min(4, (rem + 15) / 16);
    const int tail = rem - 16 * (nv - 1);
    const __mmask16 last = tail >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << tail) - 1);
    for (int i0 = 0; i0 < ni; i0 += 4) {
      const float* Pb = P + std::size_t(i0) * ldp;
      float* Ob = O + std::size_t(i0) * ldo + c0;
      switch (nv) {
        case 4: pv_block<4, true, 4>(Pb, ldp, nj, V + c0, ldv, Ob, ldo, last); break;
        case 3: pv_block<3, true, 4>(Pb, ldp, nj, V + c0, ldv, Ob, ldo, last); break;
        case 2: pv_block<2, true, 4>(Pb, ldp, nj, V + c0, ldv, Ob, ldo, last); break;
        default: pv_block<1, true, 4>(Pb, ldp, nj, V + c0, ldv, Ob, ldo, last); break;
      }
    }
  }
}

// 2^x for x <= 0 (and -inf -> +0): x = n + f, |f| <= 1/2, 2^f by its degree-7 Taylor
// polynomial (truncation 5e-9 relative), scaled by 2^n with vscalefps.
inline __m512 exp2_ps(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-200.0f));  // 2^-200 underflows to exactly 0
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(1.5252733804059840e-5f);            // ln2^7/7!
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.5403530393381609e-4f));  // ln2^6/6!
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-3f));  // ln2^5/5!
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284772e-3f));  // ln2^4/4!
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821580e-2f));  // ln2^3/3!
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071e-1f));  // ln2^2/2
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994531e-1f));  // ln2
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}
#endif

}  // namespace plx::fast::PLX_FAST_ISA
