// validation/row_sample.cpp — see row_sample.hpp.
#include "validation/row_sample.hpp"

#include <algorithm>
#include <numeric>

#include "reference/rng.hpp"

namespace plx {
using nlohmann::json;

namespace {
constexpr std::uint64_t kRowStream = 0x726f7773;  // "rows": not one of the input streams
}

std::vector<int> select_rows(const Problem& p, const json& spec) {
  if (!spec.is_object()) throw Error("rows: expected an object {\"sample\": N, \"seed\": S, \"ranges\": [[a, b], ...]}, got " + spec.dump());
  for (auto it = spec.begin(); it != spec.end(); ++it)
    if (it.key() != "sample" && it.key() != "seed" && it.key() != "ranges" && it.key() != "block")
      throw Error("rows: unknown key '" + it.key() + "' (expected sample, seed, block, ranges)");
  if (!spec.contains("sample") && !spec.contains("ranges")) throw Error("rows: give 'sample' or 'ranges' (or both)");
  const int Lq = p.Lq;
  std::vector<char> take(std::size_t(Lq), 0);
  take[0] = take[std::size_t(Lq - 1)] = 1;  // the first and last rows, always
  if (spec.contains("ranges")) {
    const json& r = spec["ranges"];
    if (!r.is_array()) throw Error("rows.ranges: expected an array of [a, b] pairs, got " + r.dump());
    for (std::size_t i = 0; i < r.size(); ++i) {
      const std::string where = "rows.ranges[" + std::to_string(i) + "]";
      if (!r[i].is_array() || r[i].size() != 2 || !r[i][0].is_number_integer() || !r[i][1].is_number_integer())
        throw Error(where + ": expected [a, b] with integers a < b (half-open), got " + r[i].dump());
      const long a = r[i][0].get<long>(), b = r[i][1].get<long>();
      if (a < 0 || b > Lq || a >= b)
        throw Error(where + " = [" + std::to_string(a) + ", " + std::to_string(b) + "): needs 0 <= a < b <= Lq = " +
                    std::to_string(Lq));
      for (long k = a; k < b; ++k) take[std::size_t(k)] = 1;
    }
  }
  if (spec.contains("sample")) {
    if (!spec["sample"].is_number_integer()) throw Error("rows.sample: expected an integer, got " + spec["sample"].dump());
    const long n = spec["sample"].get<long>();
    const long need = Lq > 1 ? 2 : 1;
    if (n < need || n > Lq)
      throw Error("rows.sample = " + std::to_string(n) + ": needs " + std::to_string(need) + " <= sample <= Lq = " +
                  std::to_string(Lq) + " (the first and last rows are always among the sample)");
    std::uint64_t seed = p.seed;
    if (spec.contains("seed")) {
      if (!spec["seed"].is_number_integer() || (!spec["seed"].is_number_unsigned() && spec["seed"].get<long long>() < 0))
        throw Error("rows.seed: expected an unsigned integer, got " + spec["seed"].dump());
      seed = spec["seed"].get<std::uint64_t>();
    }
    long block = 1;
    if (spec.contains("block")) {
      if (!spec["block"].is_number_integer() || spec["block"].get<long>() < 1)
        throw Error("rows.block: expected an integer >= 1, got " + spec["block"].dump());
      block = spec["block"].get<long>();
    }
    if ((n - need) % block != 0)
      throw Error("rows.sample = " + std::to_string(n) + " with rows.block = " + std::to_string(block) + ": sample - " +
                  std::to_string(need) + " (the rows besides the first and last) must be a multiple of the block");
    // The inner rows 1 .. Lq - 2 as aligned blocks [1 + j block, 1 + (j + 1) block); the first
    // (n - 2) / block of a seeded Fisher-Yates shuffle of the blocks are taken.
    const long nb = std::max(0, Lq - 2) / block, m = (n - need) / block;  // m <= nb as n <= Lq
    std::vector<long> blocks(static_cast<std::size_t>(nb));
    std::iota(blocks.begin(), blocks.end(), 0L);
    const CounterRng g{seed, kRowStream};
    for (long t = 0; t < m; ++t) {
      const long j = t + long(g.uniform(std::uint64_t(t)) * double(nb - t));
      std::swap(blocks[std::size_t(t)], blocks[std::size_t(j)]);
      for (long k = 0; k < block; ++k) take[std::size_t(1 + blocks[std::size_t(t)] * block + k)] = 1;
    }
  }
  std::vector<int> rows;
  for (int i = 0; i < Lq; ++i)
    if (take[std::size_t(i)]) rows.push_back(i);
  check_row_set(p, rows);
  return rows;
}

void check_row_set(const Problem& p, const std::vector<int>& rows) {
  if (rows.empty()) throw Error("rows: the row list is empty");
  for (std::size_t k = 0; k < rows.size(); ++k) {
    if (rows[k] < 0 || rows[k] >= p.Lq)
      throw Error("rows: row " + std::to_string(rows[k]) + " is outside [0, Lq = " + std::to_string(p.Lq) + ")");
    if (k && rows[k] <= rows[k - 1]) throw Error("rows: the row list must be strictly increasing");
  }
  if (!p.causal && p.window >= 0) {
    // A non-causal window is anchored to the last query row: only a suffix of rows is a sub-problem.
    for (std::size_t k = 0; k < rows.size(); ++k)
      if (rows[k] != p.Lq - int(rows.size()) + int(k))
        throw Error("rows: a non-causal problem with a window cannot be row-sampled (its window is placed relative to "
                    "the last query row, so only a suffix of rows is a sub-problem, and a sample always holds the first "
                    "row); use a causal mask, no window, or every row");
  }
}

std::vector<RowRun> row_runs(const Problem& p, const std::vector<int>& rows) {
  std::vector<RowRun> runs;
  for (int b = 0; b < p.B; ++b) {
    for (std::size_t k = 0; k < rows.size();) {
      std::size_t e = k + 1;
      while (e < rows.size() && rows[e] == rows[e - 1] + 1) ++e;
      runs.push_back({b, rows[k], rows[e - 1] + 1, int(k)});
      k = e;
    }
  }
  return runs;
}

Problem row_problem(const Problem& p, const RowRun& r) {
  Problem s = p;
  s.B = 1, s.Lq = r.i1 - r.i0;
  const int used = p.used_of(r.b), start = p.start_of(r.b);
  if (p.causal) {
    // Row i sits at P_i = used - Lq + i; the run's last row sees keys below used - Lq + i1.
    const int u = std::max(0, used - p.Lq + r.i1);
    s.Lkv = std::max(1, u);
    s.used = {u};
    s.start = {std::min(start, s.Lkv)};
  } else {
    s.used = {used};
    s.start = {start};
  }
  if (p.decode) s.decode = s.Lq == 1;
  return s;
}

Inputs row_inputs(const Problem& p, const Inputs& in, const RowRun& r) {
  const Problem s = row_problem(p, r);
  auto rows4 = [&](const Tensor<double>& t) {  // [B, Lq, H, X] -> [1, i1 - i0, H, X]
    if (t.empty()) return Tensor<double>();
    const std::size_t n = std::size_t(r.i1 - r.i0), HX = t.shape[2] * t.shape[3];
    Tensor<double> o({1, n, t.shape[2], t.shape[3]});
    std::copy_n(&t(r.b, r.i0, 0, 0), n * HX, o.ptr());
    return o;
  };
  auto keys4 = [&](const Tensor<double>& t) {  // [B, Lkv, H, X] -> [1, Lkv', H, X]
    const std::size_t n = std::size_t(s.Lkv), HX = t.shape[2] * t.shape[3];
    Tensor<double> o({1, n, t.shape[2], t.shape[3]});
    std::copy_n(&t(r.b, 0, 0, 0), n * HX, o.ptr());
    return o;
  };
  Inputs o;
  o.q = rows4(in.q), o.r = rows4(in.r), o.dO = rows4(in.dO);
  o.k = keys4(in.k), o.v = keys4(in.v);
  if (!in.lambda.empty()) {
    const std::size_t H = in.lambda.shape[1], n = std::size_t(r.i1 - r.i0);
    o.lambda = Tensor<double>({1, H, n});
    for (std::size_t h = 0; h < H; ++h) std::copy_n(&in.lambda(r.b, h, r.i0), n, &o.lambda(0, h, 0));
  }
  return o;
}

Tensor<double> take_rows(const Tensor<double>& t, const std::vector<int>& rows) {
  const std::size_t R = rows.size();
  if (t.shape.size() == 3) {  // [B, H, Lq]
    Tensor<double> o({t.shape[0], t.shape[1], R});
    for (std::size_t b = 0; b < t.shape[0]; ++b)
      for (std::size_t h = 0; h < t.shape[1]; ++h)
        for (std::size_t k = 0; k < R; ++k) o(b, h, k) = t(b, h, std::size_t(rows[k]));
    return o;
  }
  const std::size_t HX = t.shape[2] * t.shape[3];
  Tensor<double> o({t.shape[0], R, t.shape[2], t.shape[3]});
  for (std::size_t b = 0; b < t.shape[0]; ++b)
    for (std::size_t k = 0; k < R; ++k) std::copy_n(&t(b, std::size_t(rows[k]), 0, 0), HX, &o(b, k, 0, 0));
  return o;
}

void put_run(Tensor<double>& t, const Tensor<double>& sub, const RowRun& r, int B, std::size_t R) {
  if (sub.empty()) return;
  const std::size_t n = std::size_t(r.i1 - r.i0);
  if (sub.shape.size() == 3) {  // [1, H, n]
    if (t.empty()) t = Tensor<double>({std::size_t(B), sub.shape[1], R});
    for (std::size_t h = 0; h < sub.shape[1]; ++h) std::copy_n(&sub(0, h, 0), n, &t(r.b, h, r.k0));
    return;
  }
  if (t.empty()) t = Tensor<double>({std::size_t(B), R, sub.shape[2], sub.shape[3]});
  std::copy_n(sub.ptr(), sub.size(), &t(r.b, r.k0, 0, 0));
}

std::map<std::string, Tensor<double>> over_rows(
    const Problem& p, const Inputs& in, const std::vector<int>& rows,
    const std::function<std::map<std::string, Tensor<double>>(const Problem&, const Inputs&)>& f) {
  std::map<std::string, Tensor<double>> out;
  for (const RowRun& r : row_runs(p, rows)) {
    auto m = f(row_problem(p, r), row_inputs(p, in, r));
    for (auto& [n, t] : m)
      if (n != "dk" && n != "dv") put_run(out[n], t, r, p.B, rows.size());
  }
  for (auto it = out.begin(); it != out.end();) it = it->second.empty() ? out.erase(it) : std::next(it);
  return out;
}

}  // namespace plx
