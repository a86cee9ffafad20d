// tests/reference/test_split_kv.cpp — split-KV (flash-decoding) combines equal the single pass.
//
// Charter: for every row of random problems, the allowed keys are split into a random
// partition (random chunk count, uniformly random assignment, so empty chunks occur, in
// random order); the raw-accumulator combine (docs/math.md §6.2), the centred Chan combine (§6.3)
// and LLA's two-pass decode (§6.4) must reproduce attention_forward's row within a derived
// rounding bound. Empty rows (all chunks empty) must give exactly 0. Double precision.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "tests/reference/forward_bounds.hpp"
#include "tests/support.hpp"

using namespace plx;
using namespace plx::test;

namespace {

constexpr double u = 0x1p-53;

struct RowData {
  Vec<double> q, r;
  Mat<double> K, V;  // the (b, kv head) keys and values, all Lkv rows
};

RowData row_data(const Problem& p, const Inputs& in, int b, int h, int i) {
  const int g = h / p.group();
  RowData d{Vec<double>(p.D), Vec<double>(p.D), Mat<double>(p.Lkv, p.D), Mat<double>(p.Lkv, p.Dv)};
  for (int e = 0; e < p.D; ++e) d.q(e) = in.q(b, i, h, e), d.r(e) = in.r(b, i, h, e);
  for (int j = 0; j < p.Lkv; ++j) {
    for (int e = 0; e < p.D; ++e) d.K(j, e) = in.k(b, j, g, e);
    for (int e = 0; e < p.Dv; ++e) d.V(j, e) = in.v(b, j, g, e);
  }
  return d;
}

// Random partition of A_i = [lo, hi) into S in [1, 6] chunks, keys assigned uniformly (so
// chunks can be empty, and an empty row gives S empty chunks).
std::vector<std::vector<int>> partition(const Problem& p, RowRange R, std::uint64_t row_id) {
  CounterRng g = rng_for(p.seed, Stream::Partition, row_id);
  const int S = 1 + int(g.uniform(0) * 6);
  std::vector<std::vector<int>> chunks(S);
  for (int j = R.lo; j < R.hi; ++j) chunks[std::size_t(g.uniform(1 + j) * S)].push_back(j);
  return chunks;
}

}  // namespace

// The split paths sum each chunk with plain loops (O1, O2, vbar, M are not compensated), so
// their rounding is <= (n + 66 + D + 8) u scale_i with n = |A_i|; the single pass adds its
// own (66 + D + 8) u scale_i; solver probes multiply by (1 + kappa) (forward_bounds.hpp).
RC_GTEST_PROP(SplitKv, CombinesEqualSinglePass, ()) {
  const std::string member = *rc::gen::element<std::string>("softmax", "parallax", "parallax_centred", "lla", "lla_cov");
  Problem p = *gen_problem(member);
  p.anchor_knobs.delta_eps = 0;  // §6.4 is the delta_eps = 0 LLA
  Inputs in = make_inputs(p);
  auto F = attention_forward<double>(p, in, saved_diag());
  RowBounds rb = row_bounds(p, in, F);
  Tensor<double> raw(F.out.shape, std::nan("")), cen(F.out.shape, std::nan("")), lla(F.out.shape, std::nan(""));
  const double tau = p.tau();
  for (int b = 0; b < p.B; ++b)
    for (int h = 0; h < p.Hq; ++h)
      for (int i = 0; i < p.Lq; ++i) {
        const RowRange R = row_range(p, b, i);
        const RowData d = row_data(p, in, b, h, i);
        const auto chunks = partition(p, R, (std::uint64_t(b) * p.Hq + h) * p.Lq + i);
        std::vector<RawChunk<double>> rs;
        std::vector<CentredChunk<double>> cs;
        for (const auto& c : chunks) rs.push_back(raw_chunk(d.q, d.r, d.K, d.V, c, tau));
        for (const auto& c : chunks) cs.push_back(centred_chunk(d.q, d.r, d.K, d.V, c, tau));
        Vec<double> o_raw = combine_raw(rs, p.Dv), o_cen = combine_centred(cs, p.Dv);
        Vec<double> o_lla = p.probe == Probe::Solver
                                ? lla_decode_split(d.q, d.K, d.V, chunks, tau, in.lambda(b, h, i))
                                : Vec<double>(Vec<double>::Zero(p.Dv));
        for (int e = 0; e < p.Dv; ++e) raw(b, i, h, e) = o_raw(e), cen(b, i, h, e) = o_cen(e), lla(b, i, h, e) = o_lla(e);
        if (R.empty())  // docs/math.md §1.4 / §7.8: all chunks empty -> exactly 0, never -inf - -inf
          for (int e = 0; e < p.Dv; ++e) RC_ASSERT(o_raw(e) == 0.0 && o_cen(e) == 0.0 && o_lla(e) == 0.0);
      }
  auto lim = [&](int b, int h, int i) {
    return (2 * c_round(p) + rb.n_keys(b, h, i)) * u * (1 + rb.kappa(b, h, i)) * rb.scale(b, h, i);
  };
  const std::string why = "(2 (66 + D + 8) + |A_i|) u (1 + kappa_i) scale_i";
  if (p.probe == Probe::Solver) {
    // §6.4: pass 1 Chan-merges centred key moments and solves theta; pass 2 is Parallax(r = theta).
    auto f = check_rows("LLA two-pass split vs single pass", p, lla, F.out, lim, why);
    RC_ASSERT(f.empty());
  } else {
    // §6.2 and §6.3 with the row's learned probe (r = 0 for softmax).
    auto f1 = check_rows("raw combine vs single pass", p, raw, F.out, lim, why);
    RC_ASSERT(f1.empty());
    auto f2 = check_rows("centred combine vs single pass", p, cen, F.out, lim, why);
    RC_ASSERT(f2.empty());
  }
}

// Merging is order independent: the same chunks merged in reverse order agree to rounding,
// and a chunk list padded with empty chunks gives the identical result.
RC_GTEST_PROP(SplitKv, MergeOrderAndEmptyChunks, ()) {
  Problem p = *gen_problem("parallax_centred");
  p.causal = false, p.window = -1, p.start.clear(), p.used.clear();
  Inputs in = make_inputs(p);
  auto F = attention_forward<double>(p, in, saved_diag());
  RowBounds rb = row_bounds(p, in, F);
  const RowData d = row_data(p, in, 0, 0, p.Lq - 1);
  auto chunks = partition(p, RowRange{0, p.Lkv}, 12345);
  std::vector<CentredChunk<double>> cs, rev;
  for (const auto& c : chunks) cs.push_back(centred_chunk(d.q, d.r, d.K, d.V, c, p.tau()));
  rev.assign(cs.rbegin(), cs.rend());
  auto padded = cs;
  padded.insert(padded.begin(), centred_chunk(d.q, d.r, d.K, d.V, {}, p.tau()));
  padded.push_back(centred_chunk(d.q, d.r, d.K, d.V, {}, p.tau()));
  Vec<double> a = combine_centred(cs, p.Dv), b = combine_centred(rev, p.Dv), c = combine_centred(padded, p.Dv);
  RC_ASSERT(a == c);  // an empty chunk is skipped exactly (a_c = 0)
  const double lim = 2 * (c_round(p) + p.Lkv) * u * rb.scale(0, 0, p.Lq - 1);
  RC_ASSERT((a - b).cwiseAbs().maxCoeff() <= lim);
}
