// fast/lane_steps.hpp — the element-wise parts of the flash loops, vectorised over lanes.
//
// Charter: masking (from per-lane or per-row [lo, hi) key ranges given by row_range), the
// online max / rescale of docs/math.md §2 and §4.1 in base 2 (s2 = (q.k) tau log2 e), the Parallax
// weights P1 = 2^(s2 - m2), P2 = P1 (z - z0) with the per-row shift z0 (docs/math.md §7.1), and the
// backward weights gl, gu, S of docs/math.md §5.1/§5.2. Generic loops for any A; AVX-512 fp32
// specialisations. Masked entries become exact zeros; s2 = -inf only on the score lanes.
#pragma once
#include "fast/microkernels.hpp"

namespace plx::fast::PLX_FAST_ISA {

template <class A> constexpr A ninf() { return -std::numeric_limits<A>::infinity(); }

// Forward step over one key tile (keys j0 + j, j < nk; lanes c < nl are query rows).
// St[j][c] holds q.k on entry and P1 on exit; if zoff >= 0, St[j][zoff + c] holds z = r.k
// on entry and P2 = P1 (z - z0'[c]) on exit. m, d1, d2 are the running state; alpha the
// rescale factor 2^(m_old - m_new) for the accumulated rows. z0 is the shift of docs/math.md §7.1,
// re-centred online: z0' = the running P1-weighted mean of z including this tile (d2 is kept
// relative to it: d2 <- alpha (d2 - dz d1) + sum P2), and dz = z0' - z0 is returned so the
// caller moves O2 the same way (O2 <- alpha (O2 - dz O1) + P2 V) before adding this tile.
// With z0 fixed at one key's z, dominant keys far from it (outlier tokens) made P2 and the
// closed form out = vbar - (O2/d1 - zb vbar) cancel; the running mean keeps P2 ~ P1 (z - zbar).
template <class A>
void fwd_step(A* St, int lds, int nk, int nl, int zoff, int j0, const int* lo, const int* hi, A* z0, A sc, A* m,
              A* d1, A* d2, A* alpha, A* dz) {
  for (int c = 0; c < nl; ++c) {
    A mx = m[c];
    for (int j = 0; j < nk; ++j) {
      A& s = St[std::size_t(j) * lds + c];
      const int jj = j0 + j;
      s = (jj >= lo[c] && jj < hi[c]) ? s * sc : ninf<A>();
      mx = std::max(mx, s);
    }
    const A ms = mx == ninf<A>() ? A(0) : mx;
    const A al = std::exp2(m[c] - ms);
    A l1 = 0, wz = 0;
    for (int j = 0; j < nk; ++j) {
      A& s = St[std::size_t(j) * lds + c];
      s = std::exp2(s - ms), l1 += s;
      if (zoff >= 0) wz += s * St[std::size_t(j) * lds + zoff + c];
    }
    const A d1n = al * d1[c] + l1;
    if (zoff >= 0) {
      const A zn = d1n > A(0) ? (al * (d1[c] * z0[c] + d2[c]) + wz) / d1n : z0[c];
      const A dzc = zn - z0[c];
      A l2 = 0;
      for (int j = 0; j < nk; ++j) {
        A& z = St[std::size_t(j) * lds + zoff + c];
        z = St[std::size_t(j) * lds + c] * (z - zn);
        l2 += z;
      }
      d2[c] = al * (d2[c] - dzc * d1[c]) + l2;
      z0[c] = zn, dz[c] = dzc;
    }
    d1[c] = d1n, m[c] = mx, alpha[c] = al;
  }
}

// Backward step, lanes = query rows. St[j][c] = q.k -> tau gl; St[j][zoff + c] = z -> gu;
// At[j][c] = g.v_j; W[j][c] <- dv weight S_ij = p (1 + zbar - z) (p for softmax), same stride as At.
// Per-lane saved m2, 1/d1, zbar, t = g.out, b = g.vbar.
template <class A>
void bwdq_step(A* St, int lds, const A* At, int lda, A* W, int nk, int nl, int zoff, int j0, const int* lo,
               const int* hi, const A* m2, const A* invd1, const A* zbar, const A* t, const A* bb, A sc, A tau) {
  for (int j = 0; j < nk; ++j)
    for (int c = 0; c < nl; ++c) {
      const int jj = j0 + j;
      A& s = St[std::size_t(j) * lds + c];
      const A p = (jj >= lo[c] && jj < hi[c]) ? std::exp2(s * sc - m2[c]) * invd1[c] : A(0);
      const A a = At[std::size_t(j) * lda + c];
      if (zoff >= 0) {
        A& z = St[std::size_t(j) * lds + zoff + c];
        const A zc = zbar[c] - z;
        W[std::size_t(j) * lda + c] = p * (A(1) + zc);
        s = tau * (p * (a - t[c] + zc * (a - bb[c])));
        z = -p * (a - bb[c]);
      } else {
        W[std::size_t(j) * lda + c] = p;
        s = tau * (p * (a - t[c]));
      }
    }
}

#if defined(__AVX512F__)
inline __mmask16 valid_mask(__m512i jj, __m512i lo, __m512i hi) {
  return _mm512_cmpge_epi32_mask(jj, lo) & _mm512_cmplt_epi32_mask(jj, hi);
}

template <>
inline void fwd_step<float>(float* St, int lds, int nk, int nl, int zoff, int j0, const int* lo, const int* hi,
                            float* z0, float sc, float* m, float* d1, float* d2, float* alpha, float* dz) {
  const __m512 vsc = _mm512_set1_ps(sc), vninf = _mm512_set1_ps(ninf<float>()), zero = _mm512_setzero_ps();
  for (int c = 0; c < nl; c += 16) {
    const __m512i vlo = _mm512_loadu_si512(lo + c), vhi = _mm512_loadu_si512(hi + c);
    const __m512 mold = _mm512_loadu_ps(m + c);
    __m512 mx = mold;
    for (int j = 0; j < nk; ++j) {
      float* sp = St + std::size_t(j) * lds + c;
      const __mmask16 ok = valid_mask(_mm512_set1_epi32(j0 + j), vlo, vhi);
      const __m512 s = _mm512_mask_mul_ps(vninf, ok, _mm512_loadu_ps(sp), vsc);
      _mm512_storeu_ps(sp, s);
      mx = _mm512_max_ps(mx, s);
    }
    const __m512 ms = _mm512_mask_mov_ps(mx, _mm512_cmpeq_ps_mask(mx, vninf), zero);
    const __m512 al = exp2_ps(_mm512_sub_ps(mold, ms));
    __m512 l1 = zero, wz = zero;
    for (int j = 0; j < nk; ++j) {
      float* sp = St + std::size_t(j) * lds + c;
      const __m512 pp = exp2_ps(_mm512_sub_ps(_mm512_loadu_ps(sp), ms));
      _mm512_storeu_ps(sp, pp);
      l1 = _mm512_add_ps(l1, pp);
      if (zoff >= 0) wz = _mm512_fmadd_ps(pp, _mm512_loadu_ps(sp + zoff), wz);
    }
    const __m512 d1o = _mm512_loadu_ps(d1 + c), d1n = _mm512_fmadd_ps(al, d1o, l1);
    if (zoff >= 0) {
      const __m512 zo = _mm512_loadu_ps(z0 + c), d2o = _mm512_loadu_ps(d2 + c);
      const __m512 num = _mm512_fmadd_ps(al, _mm512_fmadd_ps(d1o, zo, d2o), wz);
      const __mmask16 pos = _mm512_cmp_ps_mask(d1n, zero, _CMP_GT_OQ);
      const __m512 zn = _mm512_mask_div_ps(zo, pos, num, d1n);
      const __m512 dzc = _mm512_sub_ps(zn, zo);
      __m512 l2 = zero;
      for (int j = 0; j < nk; ++j) {
        float* sp = St + std::size_t(j) * lds + c;
        const __m512 p2 = _mm512_mul_ps(_mm512_loadu_ps(sp), _mm512_sub_ps(_mm512_loadu_ps(sp + zoff), zn));
        _mm512_storeu_ps(sp + zoff, p2);
        l2 = _mm512_add_ps(l2, p2);
      }
      _mm512_storeu_ps(d2 + c, _mm512_fmadd_ps(al, _mm512_fnmadd_ps(dzc, d1o, d2o), l2));
      _mm512_storeu_ps(z0 + c, zn);
      _mm512_storeu_ps(dz + c, dzc);
    }
    _mm512_storeu_ps(d1 + c, d1n);
    _mm512_storeu_ps(m + c, mx);
    _mm512_storeu_ps(alpha + c, al);
  }
}

template <>
inline void bwdq_step<float>(float* St, int lds, const float* At, int lda, float* W, int nk, int nl, int zoff, int j0,
                             const int* lo, const int* hi, const float* m2, const float* invd1, const float* zbar,
                             const float* t, const float* bb, float sc, float tau) {
  const __m512 vsc = _mm512_set1_ps(sc), vtau = _mm512_set1_ps(tau), one = _mm512_set1_ps(1.0f);
  for (int c = 0; c < nl; c += 16) {
    const __m512i vlo = _mm512_loadu_si512(lo + c), vhi = _mm512_loadu_si512(hi + c);
    const __m512 vm = _mm512_loadu_ps(m2 + c), vinv = _mm512_loadu_ps(invd1 + c), vzb = _mm512_loadu_ps(zbar + c);
    const __m512 vt = _mm512_loadu_ps(t + c), vb = _mm512_loadu_ps(bb + c);
    for (int j = 0; j < nk; ++j) {
      float* sp = St + std::size_t(j) * lds + c;
      const __mmask16 ok = valid_mask(_mm512_set1_epi32(j0 + j), vlo, vhi);
      const __m512 e = exp2_ps(_mm512_fmsub_ps(_mm512_loadu_ps(sp), vsc, vm));
      const __m512 p = _mm512_maskz_mul_ps(ok, e, vinv);
      const __m512 a = _mm512_loadu_ps(At + std::size_t(j) * lda + c);
      const __m512 at = _mm512_sub_ps(a, vt);
      if (zoff >= 0) {
        const __m512 zc = _mm512_sub_ps(vzb, _mm512_loadu_ps(sp + zoff));
        const __m512 ab = _mm512_sub_ps(a, vb);
        _mm512_storeu_ps(W + std::size_t(j) * lda + c, _mm512_mul_ps(p, _mm512_add_ps(one, zc)));
        _mm512_storeu_ps(sp, _mm512_mul_ps(vtau, _mm512_mul_ps(p, _mm512_fmadd_ps(zc, ab, at))));
        _mm512_storeu_ps(sp + zoff, _mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), p), ab));
      } else {
        _mm512_storeu_ps(W + std::size_t(j) * lda + c, p);
        _mm512_storeu_ps(sp, _mm512_mul_ps(vtau, _mm512_mul_ps(p, at)));
      }
    }
  }
}

#endif

}  // namespace plx::fast::PLX_FAST_ISA
