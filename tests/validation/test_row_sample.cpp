// tests/validation/test_row_sample.cpp — row-sampled truth (validation/row_sample.hpp).
//
// The claim: the truth of a listed row is the truth of that row in the full problem (each run of
// rows is a sub-problem in which every row sees the same keys as in the full problem): out,
// saved/* and diag/* bit for bit, the gradients within the reference's own error (see below). Checked against full generation for every member, masks with
// start/used, windows, Lq != Lkv and per-row lambda. Then the spec's rules and errors, the file's
// schema (rows dataset, compact shapes, no dk/dv), and `plx check` judging exactly the listed rows.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>

#include "tests/support.hpp"
#include "tests/validation/fixture_support.hpp"
#include "validation/check.hpp"
#include "validation/problem_json.hpp"
#include "validation/row_sample.hpp"

using namespace plx;
using namespace plx::test;
using nlohmann::json;

namespace {

Problem case_of(const std::string& text) { return problem_from_json(json::parse(text)); }


bool bit_equal(const Tensor<double>& a, const Tensor<double>& b) {
  return a.shape == b.shape && std::memcmp(a.ptr(), b.ptr(), a.size() * 8) == 0;
}

const char* kCases[] = {
    R"({"name": "r1", "member": "softmax", "B": 2, "Hq": 4, "Hkv": 2, "Lq": 40, "Lkv": 48, "D": 8, "Dv": 8,
        "start": [0, 5], "used": [48, 41], "dtype": "bfloat16", "seed": 21})",
    R"({"name": "r2", "member": "parallax", "B": 1, "Hq": 2, "Hkv": 1, "Lq": 37, "Lkv": 37, "D": 6, "Dv": 5,
        "window": 9, "dtype": "float32", "seed": 22})",
    R"({"name": "r3", "member": "parallax_centred", "B": 2, "Hq": 2, "Hkv": 2, "Lq": 30, "Lkv": 20, "D": 4, "Dv": 4,
        "dtype": "float16", "seed": 23})",
    R"({"name": "r4", "member": "lla", "B": 1, "Hq": 2, "Hkv": 2, "Lq": 24, "Lkv": 24, "D": 4, "Dv": 4,
        "solver": {"lambda_per_row": true}, "dtype": "float32", "seed": 24})",
    R"({"name": "r5", "member": "learned_query", "B": 2, "Hq": 2, "Hkv": 1, "Lq": 17, "Lkv": 29, "D": 5, "Dv": 3,
        "causal": false, "dtype": "float32", "seed": 25})",
    R"({"name": "r6", "member": "lla_cov", "B": 1, "Hq": 2, "Hkv": 1, "Lq": 20, "Lkv": 26, "D": 4, "Dv": 4,
        "solver": {"method": "cg", "cg_max_iters": 3}, "dtype": "bfloat16", "seed": 26})",
};

}  // namespace

TEST(RowSample, SampledTruthEqualsThoseRowsOfFullTruthBitForBit) {
  for (const char* text : kCases) {
    Problem p = case_of(text);
    p.seed += plx::test::seed();  // inputs and sampled rows change with PLX_SEED
    // A sample plus a run of consecutive rows, so both single-row and multi-row runs occur.
    const std::vector<int> rows =
        select_rows(p, {{"sample", 6}, {"seed", plx::test::seed()}, {"ranges", {{p.Lq / 2, p.Lq / 2 + 4}}}});
    GenerateOptions whole, sampled;
    whole.split = GenSplit::Whole;
    sampled.rows = rows;
    const FixtureData full = generate_fixture(p, "dd", whole), s = generate_fixture(p, "dd", sampled);
    ASSERT_EQ(s.rows, rows) << p.name;
    EXPECT_FALSE(s.truth.count("dk") || s.truth.count("dv")) << p.name;
    ASSERT_TRUE(s.truth.count("dq")) << p.name << ": gradients of the listed rows (PLX_SEED " << plx::test::seed() << ")";
    // The gradients' recomputation of S = tau Q K^T and G = dO V^T in the backward is an Eigen
    // product over a block of rows whose summation order depends on the block's row count, so
    // a row computed in a run of other length may differ in the last dd bits. Both are dd results
    // within the reference's a-priori error (validation/fixture.cpp, the estimate 64 (Lkv + D + Dv)
    // u_dd kappa relative to max|truth|): they may differ by twice that.
    double kappa = 1;
    for (const char* d : {"cond_Sigma", "zbar_over_sigma"})
      if (full.diag.count(d))
        for (double x : full.diag.at(d).data) kappa = std::max(kappa, std::fabs(x));
    const double est = 64.0 * (p.Lkv + p.D + p.Dv) * 0x1p-104 * kappa;
    for (const auto& [n, t] : full.truth) {
      if (n == "dk" || n == "dv") continue;
      ASSERT_TRUE(s.truth.count(n)) << p.name << ": " << n;
      const Tensor<double> hi = take_rows(t.hi, rows), lo = take_rows(t.lo, rows);
      if (n == "out") {  // the forward's products are the fixed-order dd kernels: bit for bit
        EXPECT_TRUE(bit_equal(hi, s.truth.at(n).hi)) << p.name << ": " << n;
        EXPECT_TRUE(bit_equal(lo, s.truth.at(n).lo)) << p.name << ": " << n << "_lo";
        continue;
      }
      double diff = 0, mx = 0;
      for (std::size_t i = 0; i < hi.size(); ++i) {
        // (hi + lo) - (hi' + lo') without cancelling the lo parts away.
        diff = std::max(diff, std::fabs((hi.data[i] - s.truth.at(n).hi.data[i]) + (lo.data[i] - s.truth.at(n).lo.data[i])));
        mx = std::max(mx, std::fabs(hi.data[i]));
      }
      EXPECT_LE(diff, 2 * est * mx) << p.name << ": " << n;
    }
    for (const auto& [n, t] : full.saved) {
      ASSERT_TRUE(s.saved.count(n)) << p.name << ": saved/" << n;
      EXPECT_TRUE(bit_equal(take_rows(t.hi, rows), s.saved.at(n).hi)) << p.name << ": saved/" << n;
    }
    for (const auto& [n, t] : full.diag) {
      ASSERT_TRUE(s.diag.count(n)) << p.name << ": diag/" << n;
      EXPECT_TRUE(bit_equal(take_rows(t, rows), s.diag.at(n))) << p.name << ": diag/" << n;
    }
  }
}

TEST(RowSample, SpecRules) {
  const Problem p = case_of(kCases[0]);
  const auto a = select_rows(p, {{"sample", 10}, {"seed", 7}});
  ASSERT_EQ(a.size(), 10u);
  EXPECT_EQ(a.front(), 0);
  EXPECT_EQ(a.back(), p.Lq - 1);
  for (std::size_t k = 1; k < a.size(); ++k) EXPECT_LT(a[k - 1], a[k]);
  EXPECT_EQ(a, select_rows(p, {{"sample", 10}, {"seed", 7}})) << "deterministic";
  EXPECT_NE(a, select_rows(p, {{"sample", 10}, {"seed", 8}})) << "the seed matters (8 of 38 inner rows)";
  EXPECT_EQ(select_rows(p, {{"sample", p.Lq}}).size(), std::size_t(p.Lq)) << "a sample of every row";
  const auto blk = select_rows(p, {{"sample", 14}, {"block", 4}, {"seed", 2}});
  ASSERT_EQ(blk.size(), 14u);
  EXPECT_EQ(row_runs(p, blk).size() % 2, 0u);
  for (std::size_t k = 1; k + 1 < blk.size(); ++k)  // inner rows come in aligned blocks of 4: 1 + 4j .. 4 + 4j
    if ((blk[k] - 1) % 4 != 0) EXPECT_EQ(blk[k - 1], blk[k] - 1) << "row " << blk[k] << " starts no block";
  EXPECT_NE(error_of([&] { select_rows(p, {{"sample", 13}, {"block", 4}}); }).find("multiple of the block"), std::string::npos);
  EXPECT_EQ(select_rows(p, {{"sample", 38}, {"block", 4}}).size(), 38u) << "all 9 blocks of 4 inner rows";
  const auto r = select_rows(p, {{"ranges", {{3, 6}, {5, 9}}}});
  EXPECT_EQ(r, (std::vector<int>{0, 3, 4, 5, 6, 7, 8, p.Lq - 1})) << "ranges are half-open and merge; first and last added";
  const auto runs = row_runs(p, r);
  ASSERT_EQ(runs.size(), 6u) << "3 runs per batch";
  EXPECT_EQ(runs[1].i0, 3);
  EXPECT_EQ(runs[1].i1, 9);
  EXPECT_EQ(runs[1].k0, 1);
  EXPECT_EQ(runs[3].b, 1);
}

TEST(RowSample, BadSpecsNameTheField) {
  const Problem p = case_of(kCases[0]);
  EXPECT_NE(error_of([&] { select_rows(p, {{"sample", 41}}); }).find("rows.sample = 41"), std::string::npos);
  EXPECT_NE(error_of([&] { select_rows(p, {{"sample", 1}}); }).find("rows.sample"), std::string::npos);
  EXPECT_NE(error_of([&] { select_rows(p, {{"ranges", {{0, 3}, {38, 41}}}}); }).find("rows.ranges[1]"), std::string::npos);
  EXPECT_NE(error_of([&] { select_rows(p, {{"ranges", {{5, 5}}}}); }).find("rows.ranges[0]"), std::string::npos);
  EXPECT_NE(error_of([&] { select_rows(p, {{"sampel", 4}}); }).find("unknown key 'sampel'"), std::string::npos);
  EXPECT_NE(error_of([&] { select_rows(p, json::object()); }).find("'sample' or 'ranges'"), std::string::npos);
  EXPECT_NE(error_of([&] { select_rows(p, {{"sample", 4}, {"seed", -1}}); }).find("rows.seed"), std::string::npos);
  Problem w = p;
  w.causal = false, w.window = 5, w.start.clear(), w.used.clear();
  EXPECT_NE(error_of([&] { select_rows(w, {{"sample", 4}}); }).find("non-causal problem with a window"), std::string::npos);
  EXPECT_NE(error_of([&] { select_rows(w, {{"ranges", {{30, 40}}}}); }).find("non-causal problem with a window"),
            std::string::npos)
      << "a suffix plus the always-kept first row is not a suffix";
}

TEST(RowSample, FileSchemaAndCheckJudgeTheListedRows) {
  TempDir dir;
  const Problem p = case_of(kCases[1]);
  GenerateOptions o;
  o.rows = select_rows(p, {{"sample", 5}, {"seed", 1}});
  o.rows_spec = {{"sample", 5}, {"seed", 1}};
  const std::string path = dir.file("s.h5");
  write_fixture(generate_fixture(p, "dd", o), path);
  const FixtureData fx = read_fixture(path);
  EXPECT_EQ(fx.rows, o.rows);
  EXPECT_EQ(fx.rows_spec, o.rows_spec);
  EXPECT_EQ(fx.truth.at("out").hi.shape, (std::vector<std::size_t>{1, 5, 2, 5}));
  EXPECT_FALSE(fx.truth.count("dk"));
  // A full-size candidate: the full problem's fp32 same-precision baseline (a correct fp32 result).
  const auto base = same_precision_baseline(p, fx.in, DType::F32, true, nullptr);
  std::map<std::string, Tensor<double>> cand = {{"out", base.at("out")}, {"dq", base.at("dq")}, {"dr", base.at("dr")},
                                                {"dk", base.at("dk")}, {"dv", base.at("dv")}};
  write_candidate(dir.file("good.h5"), cand, DType::F32);
  CheckResult good = check_candidate(path, fx, read_candidate(dir.file("good.h5"), fx));
  EXPECT_EQ(good.verdict, Verdict::Pass) << good.format();
  // An error in a row that is not listed goes unseen (that is what sampling means) ...
  int unlisted = 1;
  while (std::find(fx.rows.begin(), fx.rows.end(), unlisted) != fx.rows.end()) ++unlisted;
  auto bad = cand;
  bad["out"](0, unlisted, 1, 2) += 0.5;
  write_candidate(dir.file("unlisted.h5"), bad, DType::F32);
  EXPECT_EQ(check_candidate(path, fx, read_candidate(dir.file("unlisted.h5"), fx)).verdict, Verdict::Pass);
  // ... and the same error in a listed row fails.
  bad = cand;
  bad["out"](0, fx.rows[2], 1, 2) += 0.5;
  write_candidate(dir.file("listed.h5"), bad, DType::F32);
  CheckResult r = check_candidate(path, fx, read_candidate(dir.file("listed.h5"), fx));
  EXPECT_EQ(r.verdict, Verdict::Fail) << r.format();
  EXPECT_NE(r.format().find("row-sampled fixture: judged on the 5 of 37 query rows"), std::string::npos) << r.format();
  // A wrong-size candidate is refused as before.
  std::map<std::string, Tensor<double>> small = {{"out", fx.truth.at("out").hi}};
  write_candidate(dir.file("compact.h5"), small, DType::F32);
  EXPECT_NE(error_of([&] { read_candidate(dir.file("compact.h5"), fx); }).find("shape"), std::string::npos);
}
