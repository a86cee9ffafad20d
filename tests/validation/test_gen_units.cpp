// tests/validation/test_gen_units.cpp — a case computed one (batch, kv head) unit at a time
// (GenSplit::Units, validation/fixture.hpp) gives the same truth, saved tensors, diagnostics and
// notes as the whole case, bit for bit, for every member of the family; the progress callback
// sees every unit; and the written datasets hash the same.
//
// Why bit-identity is the right assertion: the reference computes each (batch, head, row block)
// task from that head's data alone and adds the row blocks' partial dK/dV in task order (head,
// then row block), so the unit of one kv head adds the same terms in the same order. Any other
// result means a unit sees different data (a wrong slice, a lost `start`/`used`/lambda), which
// this test exists to catch.
#include <gtest/gtest.h>

#include "tests/support.hpp"
#include "tests/validation/fixture_support.hpp"
#include "validation/h5io.hpp"
#include "validation/problem_json.hpp"

using namespace plx;
using namespace plx::test;

namespace {

Problem case_of(const std::string& json_text) { return problem_from_json(nlohmann::json::parse(json_text)); }

void expect_same(const FixtureData& a, const FixtureData& b, const std::string& what) {
  auto same = [&](const Tensor<double>& x, const Tensor<double>& y, const std::string& n) {
    ASSERT_EQ(x.shape, y.shape) << what << ": " << n;
    // Bitwise: NaN entries (none expected) would compare unequal and fail loudly.
    EXPECT_EQ(0, std::memcmp(x.ptr(), y.ptr(), x.size() * 8)) << what << ": " << n << " differs";
  };
  ASSERT_EQ(a.truth.size(), b.truth.size()) << what;
  for (const auto& [n, t] : a.truth) {
    ASSERT_TRUE(b.truth.count(n)) << what << ": " << n;
    same(t.hi, b.truth.at(n).hi, n), same(t.lo, b.truth.at(n).lo, n + "_lo");
  }
  ASSERT_EQ(a.saved.size(), b.saved.size()) << what;
  for (const auto& [n, t] : a.saved) same(t.hi, b.saved.at(n).hi, "saved/" + n), same(t.lo, b.saved.at(n).lo, "saved/" + n + "_lo");
  ASSERT_EQ(a.diag.size(), b.diag.size()) << what;
  for (const auto& [n, t] : a.diag) same(t, b.diag.at(n), "diag/" + n);
  EXPECT_EQ(a.reference_error.dump(), b.reference_error.dump()) << what;
  EXPECT_EQ(a.tolerances.dump(), b.tolerances.dump()) << what;
}

struct Case {
  const char* what;
  const char* problem;
};

// Every member, GQA, several batches with their own start/used, a window, per-row lambda, the
// iterative solvers, a decode step (no backward), and bf50 truth.
const Case kCases[] = {
    {"softmax GQA, 2 batches with start/used",
     R"({"name": "u1", "member": "softmax", "B": 2, "Hq": 4, "Hkv": 2, "Lq": 40, "Lkv": 48, "D": 8, "Dv": 8,
         "start": [0, 5], "used": [48, 41], "dtype": "bfloat16", "seed": 11})"},
    {"parallax (accumulator), window, 3 kv heads",
     R"({"name": "u2", "member": "parallax", "B": 1, "Hq": 3, "Hkv": 3, "Lq": 37, "Lkv": 37, "D": 6, "Dv": 5,
         "window": 9, "dtype": "float32", "seed": 12})"},
    {"parallax_centred, MQA-like group of 4",
     R"({"name": "u3", "member": "parallax_centred", "B": 2, "Hq": 4, "Hkv": 1, "Lq": 33, "Lkv": 33, "D": 4, "Dv": 4,
         "dtype": "float16", "seed": 13})"},
    {"FlashLLA direct solve, per-row lambda",
     R"({"name": "u4", "member": "lla", "B": 2, "Hq": 2, "Hkv": 2, "Lq": 24, "Lkv": 24, "D": 4, "Dv": 4,
         "solver": {"lambda_per_row": true}, "dtype": "float32", "seed": 14})"},
    {"lla_cov CG",
     R"({"name": "u5", "member": "lla_cov", "B": 1, "Hq": 4, "Hkv": 2, "Lq": 20, "Lkv": 20, "D": 4, "Dv": 4,
         "solver": {"method": "cg", "cg_max_iters": 3}, "dtype": "bfloat16", "seed": 15})"},
    {"learned_query, non-causal",
     R"({"name": "u6", "member": "learned_query", "B": 2, "Hq": 2, "Hkv": 2, "Lq": 17, "Lkv": 29, "D": 5, "Dv": 3,
         "causal": false, "dtype": "float32", "seed": 16})"},
    {"decode step (forward only)",
     R"({"name": "u7", "member": "parallax", "B": 2, "Hq": 4, "Hkv": 2, "Lq": 1, "Lkv": 50, "D": 8, "Dv": 8,
         "decode": true, "dtype": "bfloat16", "seed": 17})"},
};

}  // namespace

TEST(GenUnits, BitIdenticalToWholeForEveryMember) {
  for (const Case& c : kCases) {
    Problem p = case_of(c.problem);
    p.seed += plx::test::seed();  // other inputs with every PLX_SEED
    ASSERT_GT(p.B * p.Hkv, 1) << c.what << ": needs more than one unit to test anything";
    GenerateOptions whole, units;
    whole.split = GenSplit::Whole, units.split = GenSplit::Units;
    int calls = 0, last = 0;
    units.progress = [&](int d, int n) {
      ++calls, last = d;
      EXPECT_EQ(n, p.B * p.Hkv);
    };
    const FixtureData a = generate_fixture(p, "dd", whole), b = generate_fixture(p, "dd", units);
    expect_same(a, b, c.what);
    EXPECT_EQ(calls, p.B * p.Hkv) << c.what << ": progress once per unit";
    EXPECT_EQ(last, p.B * p.Hkv) << c.what;
  }
}

TEST(GenUnits, Bf50TruthToo) {
  const Problem p = case_of(kCases[0].problem);
  GenerateOptions whole, units;
  whole.split = GenSplit::Whole, units.split = GenSplit::Units;
  expect_same(generate_fixture(p, "bf50", whole), generate_fixture(p, "bf50", units), "bf50 softmax GQA");
}

TEST(GenUnits, WrittenDatasetsHashTheSame) {
  TempDir dir;
  const Problem p = case_of(kCases[1].problem);
  GenerateOptions whole, units;
  whole.split = GenSplit::Whole, units.split = GenSplit::Units;
  const auto ha = write_fixture(generate_fixture(p, "dd", whole), dir.file("a.h5"));
  const auto hb = write_fixture(generate_fixture(p, "dd", units), dir.file("b.h5"));
  EXPECT_EQ(ha, hb);
  EXPECT_GT(ha.size(), 10u);
}

TEST(GenUnits, AutoSplitsOnlyLargeMultiUnitCases) {
  Problem p = case_of(kCases[0].problem);
  EXPECT_FALSE(gen_in_units(p, GenSplit::Auto)) << "a small case runs whole";
  EXPECT_TRUE(gen_in_units(p, GenSplit::Units));
  p.Lq = p.Lkv = 8192, p.D = p.Dv = 128, p.start.clear(), p.used.clear();
  EXPECT_TRUE(gen_in_units(p, GenSplit::Auto)) << "B Hq Lq Lkv (D + Dv) = 2^37 >= kUnitsWork";
  EXPECT_FALSE(gen_in_units(p, GenSplit::Whole));
  p.B = 1, p.Hkv = 1, p.Hq = 4;
  EXPECT_FALSE(gen_in_units(p, GenSplit::Units)) << "one unit: nothing to split";
}

// Long-sequence files: a dataset over kChunkBytes is stored in row chunks of at most that size and
// reads back bit for bit; small datasets (every committed fixture's) stay contiguous.
TEST(GenUnits, LargeDatasetsAreChunkedByRows) {
  using V = std::vector<hsize_t>;
  EXPECT_EQ(h5::chunk_dims({1, 16384, 8, 128}, 8), (V{1, 128, 8, 128})) << "128 rows of 8 heads x 128 doubles = 1 MiB";
  EXPECT_EQ(h5::chunk_dims({2, 100000, 1, 3}, 2), (V{1, 100000, 1, 3})) << "one batch's rows fit";
  EXPECT_EQ(h5::chunk_dims({1, 8, 131072}, 8), (V{1, 1, 131072})) << "per-row tensor: one head's rows";
  EXPECT_TRUE(h5::chunk_dims({1, 8, 16384}, 8).empty()) << "exactly 1 MiB: contiguous";
  EXPECT_TRUE(h5::chunk_dims({3000000}, 8).empty()) << "rank 1 stays contiguous";
  for (const V& d : {V{1, 1000, 3, 50}, V{2, 7, 30000}}) {
    const V c = h5::chunk_dims(d, 8);
    ASSERT_EQ(c.size(), d.size());
    hsize_t bytes = 8;
    for (std::size_t a = 0; a < c.size(); ++a) {
      EXPECT_LE(c[a], d[a]);
      bytes *= c[a];
    }
    EXPECT_LE(bytes, h5::kChunkBytes);
    EXPECT_GT(bytes, h5::kChunkBytes / 2) << "chunks are not needlessly small";
  }
  TempDir dir;
  const std::string path = dir.file("big.h5");
  Tensor<double> t({1, 3000, 2, 64});
  for (std::size_t i = 0; i < t.size(); ++i) t.data[i] = double(i) * 0.37 - 1e5;
  {
    h5::Handle f = h5::create_file(path);
    h5::Handle ds = h5::write(f, "x", t.shape, h5::Raw::F64, t.ptr());
    h5::Handle dcpl(H5Dget_create_plist(ds), h5::Handle::Plist);
    EXPECT_EQ(H5Pget_layout(dcpl), H5D_CHUNKED);
    EXPECT_EQ(H5Pget_nfilters(dcpl), 2) << "shuffle + deflate";
    h5::Handle small = h5::write(f, "y", {1, 10, 2, 64}, h5::Raw::F64, t.ptr());
    h5::Handle dcpl2(H5Dget_create_plist(small), h5::Handle::Plist);
    EXPECT_EQ(H5Pget_layout(dcpl2), H5D_CONTIGUOUS);
  }
  h5::Handle f = h5::open_file(path);
  EXPECT_EQ(h5::to_tensor(h5::read(f, "x")).data, t.data);
}
