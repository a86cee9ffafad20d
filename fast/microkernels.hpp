// fast/microkernels.hpp — register-blocked tile products and the per-lane online-softmax
// steps used by fast/attention_tiles.hpp, for one instruction set (PLX_FAST_ISA).
//
// Charter: three products cover every matmul of the forward and backward:
//   scores:  S[x][c]  = sum_d X[x][d] * Yt[d][c]        (X rows broadcast, Yt rows = lanes)
//   pv:      O[i][c] += sum_j P[j][i] * V[j][c]          (P read transposed, V rows loaded)
//   nn:      O[i][c] += sum_j P[i][j] * V[j][c]          (backward dk, dv from lane-major weights)
// fp32 on AVX-512 uses intrinsics (6x64 and 4x64 register blocks, FMA); every other case
// (double = debug mode, or a CPU without AVX-512) uses plain loops with the same order of
// summation over d / j. exp2 on AVX-512 is a degree-7 polynomial (<= 2 ulp), -inf -> 0.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace plx::fast::PLX_FAST_ISA {

constexpr int kMR = 6;     // rows of X per scores block (tiles are padded to a multiple)
constexpr int kPvRows = 4;   // rows per pv block (4 x 64 columns)
constexpr int kPvSlack = 8;  // extra rows / elements callers of mk_pv allocate (row blocks of 6)

inline int round_up(int x, int m) { return (x + m - 1) / m * m; }

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
