// tests/validation/test_sweep.cpp — `plx sweep`: bad descriptions are refused before any work and
// name the point; the CSV is byte-identical for any thread count and across an interruption and
// resume; a CSV of another format or description is refused; the per-row statistics agree with a
// direct computation; the condition-aware row bound covers >= 99.9 % of rows of a freshly
// generated sweep while staying <= 10x loose on the median row.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include "reference/all.hpp"
#include "tests/expect_error.hpp"
#include "tests/support.hpp"
#include "tests/validation/fixture_support.hpp"
#include "validation/row_bound.hpp"
#include "validation/sweep.hpp"

using namespace plx;
using namespace plx::test;
using nlohmann::json;

namespace {
std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}
std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  bool q = false;
  for (char c : line) {
    if (c == '"') q = !q;
    else if (c == ',' && !q) out.push_back(cur), cur.clear();
    else cur += c;
  }
  out.push_back(cur);
  return out;
}
// Rows of a sweep CSV as column -> text.
std::vector<std::map<std::string, std::string>> read_rows(const std::string& path) {
  std::ifstream f(path);
  std::string l;
  std::getline(f, l);  // format line
  std::getline(f, l);
  const auto cols = split_csv(l);
  std::vector<std::map<std::string, std::string>> rows;
  while (std::getline(f, l)) {
    const auto v = split_csv(l);
    EXPECT_EQ(v.size(), cols.size()) << l;
    std::map<std::string, std::string> r;
    for (std::size_t i = 0; i < cols.size() && i < v.size(); ++i) r[cols[i]] = v[i];
    rows.push_back(r);
  }
  return rows;
}

SweepSpec small_spec() {
  return parse_sweep(json::parse(R"({
    "name": "t", "base": {"B": 1, "Hq": 2, "Hkv": 1, "Lq": 9, "Lkv": 9, "D": 4, "Dv": 3, "dtype": "float32"},
    "axes": [{"name": "member", "values": ["softmax", "parallax", "lla"]},
             {"name": "key_offset", "values": [0, 64]},
             {"name": "candidate", "values": ["fp32", "fp64"]}],
    "seeds": [3, 4]})"));
}
}  // namespace

TEST(Sweep, BadDescriptionsNameThePointBeforeAnyWork) {
  auto bad = [](const std::string& text) { return parse_sweep(json::parse(text)); };
  expect_error([&] { bad(R"({"axes": [{"name": "L", "values": []}]})"); }, "range is empty");
  expect_error([&] { bad(R"({"axes": [{"name": "L", "geom": [64, 32, 2]}]})"); }, "range is empty");
  expect_error([&] { bad(R"({"axes": [{"name": "L", "values": [1]}, {"name": "L", "values": [2]}]})"); }, "appears twice");
  expect_error([&] { bad(R"({"seeds": []})"); }, "'seeds' is empty");
  expect_error([&] { bad(R"({"color": 1})"); }, "unknown key 'color'");
  {
    SweepSpec s = bad(R"({"axes": [{"name": "Lqq", "values": [4]}]})");
    expect_error([&] { expand_sweep(s); }, "sweep point 0 (Lqq=4)");
    expect_error([&] { expand_sweep(s); }, "unknown field");
  }
  {  // the third point is invalid: the error names it, and nothing was written
    TempDir d;
    SweepSpec s = bad(R"({"base": {"D": 4, "Dv": 4}, "axes": [{"name": "L", "values": [4, 8, 0]}]})");
    expect_error([&] { run_sweep(s, d.file("x.csv"), SweepOptions{}); }, "sweep point 2 (L=0)");
    EXPECT_FALSE(std::ifstream(d.file("x.csv")).good());
  }
  {
    SweepSpec s = bad(R"({"base": {"D": 4, "Dv": 4, "member": "lla", "solver": {"block": 3}}})");
    expect_error([&] { expand_sweep(s); }, "solver.block");
  }
  expect_error([&] { expand_sweep(bad(R"({"axes": [{"name": "candidate", "values": ["fp8"]}]})")); }, "unknown kind");
  expect_error([&] { expand_sweep(bad(R"({"base": {"member": "lla", "D": 4, "Dv": 4}, "axes": [{"name": "candidate", "values": ["fp32-saved"]}]})")); },
               "needs softmax or Parallax");
  expect_error([&] { expand_sweep(bad(R"({"base": {"seed": 3}})")); }, "list the seeds");
  SweepSpec s;
  expect_error([&] { add_cli_axis(s, "L="); }, "range is empty");
  expect_error([&] { add_cli_axis(s, "novalue"); }, "expected name=");
}

TEST(Sweep, ByteIdenticalOverThreadsAndResume) {
  TempDir d;
  const SweepSpec s = small_spec();
  SweepOptions o;
  o.progress = false;
  o.jobs = 1;
  const auto r1 = run_sweep(s, d.file("a.csv"), o);
  EXPECT_EQ(r1.items, 3 * 2 * 2 * 2);
  o.jobs = 2;
  run_sweep(s, d.file("b.csv"), o);
  const std::string a = slurp(d.file("a.csv"));
  EXPECT_EQ(a, slurp(d.file("b.csv")));
  // Interrupted after 5 items, then a partial line as a kill mid-write leaves it: the resume keeps
  // the 5 rows, drops the fragment and computes the rest.
  o.max_items = 5;
  const auto r2 = run_sweep(s, d.file("c.csv"), o);
  EXPECT_EQ(r2.computed, 5);
  { std::ofstream f(d.file("c.csv"), std::ios::app); f << "5,3,parallax,0,fp3"; }
  o.max_items = -1;
  const auto r3 = run_sweep(s, d.file("c.csv"), o);
  EXPECT_EQ(r3.already, 5);
  EXPECT_EQ(r3.computed, r1.items - 5);
  EXPECT_EQ(a, slurp(d.file("c.csv")));
  // A finished sweep run again computes nothing and changes nothing.
  EXPECT_EQ(run_sweep(s, d.file("c.csv"), o).computed, 0);
  EXPECT_EQ(a, slurp(d.file("c.csv")));
  // 2 x 2 x 3 x 2 rows, header + format line, every status ok.
  const auto rows = read_rows(d.file("a.csv"));
  ASSERT_EQ(rows.size(), 24u);
  for (const auto& r : rows) EXPECT_EQ(r.at("status"), "ok");
}

TEST(Sweep, RefusesAnotherFormatOrDescription) {
  TempDir d;
  const SweepSpec s = small_spec();
  SweepOptions o;
  o.progress = false, o.max_items = 1;
  run_sweep(s, d.file("a.csv"), o);
  SweepSpec other = s;
  other.seeds = {3, 5};
  expect_error([&] { run_sweep(other, d.file("a.csv"), o); }, "description changed");
  std::string text = slurp(d.file("a.csv"));
  const std::string want = "# plx-sweep format " + std::to_string(kSweepFormat);
  ASSERT_EQ(text.rfind(want, 0), 0u);
  text.replace(0, want.size(), "# plx-sweep format 999");
  { std::ofstream f(d.file("b.csv"), std::ios::binary); f << text; }
  expect_error([&] { run_sweep(s, d.file("b.csv"), o); }, "written by sweep format 999");
  { std::ofstream f(d.file("c.csv")); f << "a,b,c\n1,2,3\n"; }
  expect_error([&] { run_sweep(s, d.file("c.csv"), o); }, "not a plx sweep CSV");
}

// The CSV's numbers against a direct computation: fp64 candidate of a forward-only softmax point.
TEST(Sweep, StatisticsAgreeWithADirectComputation) {
  TempDir d;
  SweepSpec s = parse_sweep(json::parse(R"({"base": {"B": 1, "Hq": 1, "Hkv": 1, "Lq": 7, "Lkv": 7, "D": 5, "Dv": 4,
      "dtype": "float64", "member": "parallax"}, "axes": [{"name": "candidate", "values": ["fp32"]}],
      "seeds": [11], "backward": false})"));
  SweepOptions o;
  o.progress = false;
  run_sweep(s, d.file("a.csv"), o);
  const auto rows = read_rows(d.file("a.csv"));
  ASSERT_EQ(rows.size(), 1u);
  Problem p = expand_sweep(s)[0].problem;
  p.seed = 11;
  Inputs in = make_inputs(p);
  auto t = attention_forward<dd>(p, in).out;
  auto c = attention_forward<float>(p, in).out;
  double num = 0, den = 0, mxe = 0, mxt = 0;
  std::vector<double> rel;
  for (std::size_t r = 0; r < t.size() / 4; ++r) {
    double e2 = 0, t2 = 0;
    for (int k = 0; k < 4; ++k) {
      const double tv = to_double(t.data[r * 4 + k]), cv = double(c.data[r * 4 + k]);
      e2 += (cv - tv) * (cv - tv), t2 += tv * tv;
      mxe = std::max(mxe, std::fabs(cv - tv)), mxt = std::max(mxt, std::fabs(tv));
    }
    num += e2, den += t2;
    rel.push_back(std::sqrt(e2 / t2));
  }
  std::sort(rel.begin(), rel.end());
  auto near = [](const std::string& text, double want) {  // the CSV prints 5 significant digits
    EXPECT_NEAR(std::stod(text), want, 1e-4 * want) << text << " vs " << want;
  };
  near(rows[0].at("out_norm"), std::sqrt(num / den));
  near(rows[0].at("out_maxrel"), mxe / mxt);
  near(rows[0].at("out_row_med"), rel[3]);  // nearest-rank median of 7
  near(rows[0].at("out_row_max"), rel[6]);
  EXPECT_EQ(rows[0].at("dq_norm"), "nan");  // forward only
}

// The condition-aware bound on a sweep generated here with seeds of this run (PLX_SEED), over
// members, formulations, storage dtypes, candidates and hazards: >= 99.9 % of all rows covered,
// and on the median row (of those with a nonzero error) the limit is <= 10x the error for out and
// dr (the gradients dq, dk, dv: covered, looser; see the assertions). The CSV's
// per-item counts must agree with the rows.
TEST(Sweep, RowBoundCoversFreshSweepData) {
  TempDir d;
  const std::uint64_t s0 = seed() % 100000 * 10 + 1000;
  SweepSpec s = parse_sweep(json::parse(R"({"base": {"B": 1, "Hq": 2, "Hkv": 1, "Lq": 24, "Lkv": 24, "D": 8, "Dv": 8},
      "axes": [{"name": "member", "values": ["softmax", "parallax", "parallax_centred", "lla", "lla_cov"]},
               {"name": "gen", "values": ["normal", "z_cancel", "anisotropic", "large_scale"]},
               {"name": "dtype", "values": ["float32", "bfloat16"]},
               {"name": "candidate", "values": ["fp32"]}]})"));
  s.seeds = {s0, s0 + 1};
  const auto pts = expand_sweep(s);
  std::map<std::string, std::vector<double>> loose;
  std::map<std::string, double> n, viol;
  for (const auto& pt : pts)
    for (auto sd : s.seeds)
      for (const auto& [t, r] : sweep_item_row_bound(s, pt, sd))
        for (std::size_t k = 0; k < r.err.size(); ++k) {
          n[t] += 1;
          if (!(r.err[k] <= r.limit[k])) viol[t] += 1;
          if (r.err[k] > 0) loose[t].push_back(r.limit[k] / r.err[k]);
        }
  for (const char* t : {"out", "dq", "dk", "dv", "dr"}) {
    ASSERT_GT(n[t], 0) << t;
    auto& l = loose[t];
    std::sort(l.begin(), l.end());
    const double cover = 1 - viol[t] / n[t], med = l[l.size() / 2];
    std::printf("row bound %-3s: %g rows, %g over the bound (coverage %.5f), median limit/error %.3g\n", t, n[t], viol[t],
                cover, med);
    // Coverage: the constants are calibrated to the 99.95th percentile of two sweeps
    // (row_bound.cpp), so >= 99.9 % must hold on fresh seeds. Looseness: <= 10x on the median row
    // for out and dr; the gradients dq, dk, dv are covered but loose (18-1.3e4x measured,
    // docs/stability.md): printed, and held to the measured envelope so a regression shows.
    EXPECT_GE(cover, 0.999) << t;
    const std::string tn = t;
    if (tn == "out" || tn == "dr") EXPECT_LE(med, 10.0) << t;
    else EXPECT_LE(med, tn == "dq" ? 3e4 : 100.0) << t;
  }
}
