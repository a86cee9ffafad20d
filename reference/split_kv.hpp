// reference/split_kv.hpp — split-KV (flash-decoding) chunk states and their exact combines.
//
// Charter: for ONE query row, the per-chunk states of docs/math.md §6.2 (raw accumulators
// (m, d1, d2, O1, O2), Parallax/softmax) and §6.3 (centred statistics (lse, vbar, zbar, M)
// with Chan's parallel-axis rule, and the streaming merge), plus LLA's two-pass decode of
// §6.4 in the stable form (centred key moments merged with Chan's rule, then a Parallax
// pass with r = theta). Chunks are arbitrary key subsets; empty chunks are allowed and
// never produce -inf - -inf. These are the oracles for split-KV kernels, not fast code.
// Shapes: q, r [D]; K [n, D]; V [n, Dv]; keys = indices into K/V rows.
#pragma once
#include <limits>
#include <vector>

#include "reference/scalar.hpp"
#include "reference/solvers.hpp"

namespace plx {

template <class T> T neg_inf() { return T(-std::numeric_limits<double>::infinity()); }

// ---- docs/math.md §6.2: raw accumulators ------------------------------------------------
template <class T> struct RawChunk {
  bool empty = true;
  T m = neg_inf<T>();  // natural-log units: m = max tau q.k
  T d1 = T(0), d2 = T(0);
  Vec<T> O1, O2;
};

template <class T>
RawChunk<T> raw_chunk(const Vec<T>& q, const Vec<T>& r, const Mat<T>& K, const Mat<T>& V,
                      const std::vector<int>& keys, const T& tau) {
  using std::exp;
  RawChunk<T> c;
  c.O1 = Vec<T>::Zero(V.cols());
  c.O2 = Vec<T>::Zero(V.cols());
  if (keys.empty()) return c;
  c.empty = false;
  for (int j : keys) c.m = std::max(c.m, T(tau * q.dot(K.row(j).transpose())));
  Neumaier<T> d1, d2;
  for (int j : keys) {
    T w = exp(T(tau * q.dot(K.row(j).transpose()) - c.m)), z = r.dot(K.row(j).transpose());
    d1.add(w), d2.add(w * z);
    c.O1 += w * V.row(j).transpose();
    c.O2 += (w * z) * V.row(j).transpose();
  }
  c.d1 = d1.value(), c.d2 = d2.value();
  return c;
}

// out = (O1/d1)(1 + d2/d1) - O2/d1 after rescaling every chunk to the global pivot.
// Softmax is r = 0 (d2 = O2 = 0). Empty row (all chunks empty): 0.
template <class T> Vec<T> combine_raw(const std::vector<RawChunk<T>>& cs, int Dv) {
  using std::exp;
  T M = neg_inf<T>();
  for (const auto& c : cs)
    if (!c.empty) M = std::max(M, c.m);
  if (M == neg_inf<T>()) return Vec<T>::Zero(Dv);
  T d1 = T(0), d2 = T(0);
  Vec<T> O1 = Vec<T>::Zero(Dv), O2 = Vec<T>::Zero(Dv);
  for (const auto& c : cs) {
    if (c.empty) continue;  // a_c = 0: never evaluate exp(-inf - M)
    T a = exp(T(c.m - M));
    d1 += a * c.d1, d2 += a * c.d2, O1 += a * c.O1, O2 += a * c.O2;
  }
  return (O1 / d1) * (T(1) + d2 / d1) - O2 / d1;
}

// ---- docs/math.md §6.3: centred statistics ------------------------------------------------
template <class T> struct CentredChunk {
  bool empty = true;
  T m = neg_inf<T>(), omega = T(0);  // pivot and sum of exp(s - m): lse = m + log(omega)
  T zbar = T(0);
  Vec<T> vbar, M;                     // M = sum p (z - zbar)(v - vbar)
};

template <class T>
CentredChunk<T> centred_chunk(const Vec<T>& q, const Vec<T>& r, const Mat<T>& K, const Mat<T>& V,
                              const std::vector<int>& keys, const T& tau) {
  using std::exp;
  CentredChunk<T> c;
  c.vbar = Vec<T>::Zero(V.cols());
  c.M = Vec<T>::Zero(V.cols());
  if (keys.empty()) return c;
  c.empty = false;
  std::vector<T> w(keys.size()), z(keys.size());
  for (int j : keys) c.m = std::max(c.m, T(tau * q.dot(K.row(j).transpose())));
  Neumaier<T> om, zs;
  for (std::size_t t = 0; t < keys.size(); ++t) {
    w[t] = exp(T(tau * q.dot(K.row(keys[t]).transpose()) - c.m));
    z[t] = r.dot(K.row(keys[t]).transpose());
    om.add(w[t]);
  }
  c.omega = om.value();
  for (std::size_t t = 0; t < keys.size(); ++t) zs.add(w[t] / c.omega * z[t]), c.vbar += (w[t] / c.omega) * V.row(keys[t]).transpose();
  c.zbar = zs.value();
  for (std::size_t t = 0; t < keys.size(); ++t)
    c.M += (w[t] / c.omega) * (z[t] - c.zbar) * (V.row(keys[t]).transpose() - c.vbar);
  return c;
}

// Streaming merge of chunk t into the running state s (docs/math.md §6.3, Chan's rule).
template <class T> void merge_centred(CentredChunk<T>& s, const CentredChunk<T>& t) {
  using std::exp;
  if (t.empty) return;
  if (s.empty) { s = t; return; }
  const T m = std::max(s.m, t.m);
  const T A = s.omega * exp(T(s.m - m)), Bt = t.omega * exp(T(t.m - m));
  const T pi = Bt / (A + Bt);
  const T dz = t.zbar - s.zbar;
  const Vec<T> dv = t.vbar - s.vbar;
  s.M = (T(1) - pi) * s.M + pi * t.M + (pi * (T(1) - pi) * dz) * dv;
  s.vbar += pi * dv;
  s.zbar += pi * dz;
  s.omega = A + Bt;
  s.m = m;
}

// out = vbar - M of the merged state (0 for an empty row).
template <class T> Vec<T> combine_centred(const std::vector<CentredChunk<T>>& cs, int Dv) {
  CentredChunk<T> s;
  s.vbar = Vec<T>::Zero(Dv), s.M = Vec<T>::Zero(Dv);
  for (const auto& c : cs) merge_centred(s, c);
  return s.empty ? Vec<T>(Vec<T>::Zero(Dv)) : Vec<T>(s.vbar - s.M);
}

// ---- docs/math.md §6.4: LLA decode in two passes, stable (covariance) form ------------------
template <class T> struct KeyMomentChunk {
  bool empty = true;
  T m = neg_inf<T>(), omega = T(0);
  Vec<T> kbar;
  Mat<T> C;
};

template <class T>
KeyMomentChunk<T> key_moment_chunk(const Vec<T>& q, const Mat<T>& K, const std::vector<int>& keys, const T& tau) {
  using std::exp;
  KeyMomentChunk<T> c;
  const int D = int(K.cols());
  c.kbar = Vec<T>::Zero(D), c.C = Mat<T>::Zero(D, D);
  if (keys.empty()) return c;
  c.empty = false;
  for (int j : keys) c.m = std::max(c.m, T(tau * q.dot(K.row(j).transpose())));
  std::vector<T> w(keys.size());
  Neumaier<T> om;
  for (std::size_t t = 0; t < keys.size(); ++t) om.add(w[t] = exp(T(tau * q.dot(K.row(keys[t]).transpose()) - c.m)));
  c.omega = om.value();
  for (std::size_t t = 0; t < keys.size(); ++t) c.kbar += (w[t] / c.omega) * K.row(keys[t]).transpose();
  for (std::size_t t = 0; t < keys.size(); ++t) {
    Vec<T> e = K.row(keys[t]).transpose() - c.kbar;
    c.C += (w[t] / c.omega) * e * e.transpose();
  }
  return c;
}

template <class T> void merge_key_moments(KeyMomentChunk<T>& s, const KeyMomentChunk<T>& t) {
  using std::exp;
  if (t.empty) return;
  if (s.empty) { s = t; return; }
  const T m = std::max(s.m, t.m);
  const T A = s.omega * exp(T(s.m - m)), Bt = t.omega * exp(T(t.m - m));
  const T pi = Bt / (A + Bt);
  const Vec<T> dk = t.kbar - s.kbar;
  s.C = (T(1) - pi) * s.C + pi * t.C + (pi * (T(1) - pi)) * dk * dk.transpose();
  s.kbar += pi * dk;
  s.omega = A + Bt;
  s.m = m;
}

// Pass 1: merge centred key moments over the chunks; solve theta = (C + lambda I)^-1 (kbar - q).
// Pass 2: centred Parallax with r = theta over the same chunks.
template <class T>
Vec<T> lla_decode_split(const Vec<T>& q, const Mat<T>& K, const Mat<T>& V, const std::vector<std::vector<int>>& chunks,
                        const T& tau, const T& lambda) {
  const int D = int(K.cols()), Dv = int(V.cols());
  KeyMomentChunk<T> s;
  s.kbar = Vec<T>::Zero(D), s.C = Mat<T>::Zero(D, D);
  for (const auto& c : chunks) merge_key_moments(s, key_moment_chunk(q, K, c, tau));
  if (s.empty) return Vec<T>::Zero(Dv);
  Mat<T> Bm = s.C;
  Bm.diagonal().array() += lambda;
  Vec<T> theta = solve_cholesky<T>(Bm, Vec<T>(s.kbar - q), D, "lla_decode_split");
  std::vector<CentredChunk<T>> cs;
  for (const auto& c : chunks) cs.push_back(centred_chunk(q, theta, K, V, c, tau));
  return combine_centred(cs, Dv);
}

}  // namespace plx
