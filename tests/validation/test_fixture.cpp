// tests/validation/test_fixture.cpp — schema v1 round trip, every bad-input case of the
// reader, the check path (pass, injected error, NaN, dtype/shape mismatches), the
// same-precision baseline, and gen determinism across thread counts.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "tests/validation/fixture_support.hpp"
#include "validation/check.hpp"
#include "validation/problem_json.hpp"
#include "validation/suite.hpp"

using namespace plx;
using namespace plx::test;

namespace {
bool has(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

// One generated fixture shared by the tests of this file (generation is the slow part).
struct Shared {
  TempDir dir;
  std::string path;
  FixtureData gen;
  Shared() {
    gen = generate_fixture(small_problem("parallax", DType::BF16));
    path = dir.file("parallax_bf16.h5");
    write_fixture(gen, path);
  }
};
Shared& shared() {
  static Shared s;
  return s;
}
}  // namespace

TEST(Fixture, RoundTripIsExact) {
  const Shared& s = shared();
  FixtureData r = read_fixture(s.path);
  EXPECT_EQ(problem_json_text(r.p), problem_json_text(s.gen.p));
  Inputs in = make_inputs(s.gen.p);  // the inputs are a pure function of the problem
  EXPECT_EQ(r.in.q.data, in.q.data);
  EXPECT_EQ(r.in.k.data, in.k.data);
  EXPECT_EQ(r.in.v.data, in.v.data);
  EXPECT_EQ(r.in.r.data, in.r.data);
  EXPECT_EQ(r.in.dO.data, in.dO.data);
  for (const auto& [n, t] : s.gen.truth) {
    ASSERT_TRUE(r.truth.count(n)) << n;
    EXPECT_EQ(r.truth.at(n).hi.data, t.hi.data) << n;
    EXPECT_EQ(r.truth.at(n).lo.data, t.lo.data) << n;
    // hi/lo is a double-double split: |lo| <= ulp(hi)/2.
    for (std::size_t i = 0; i < t.hi.size(); ++i)
      ASSERT_LE(std::fabs(t.lo.data[i]), 0.5 * ulp_in(DType::F64, t.hi.data[i])) << n << " " << i;
  }
  EXPECT_EQ(r.truth.count("dq") == 1, have_reference_backward());
  EXPECT_TRUE(r.saved.count("lse") && r.saved.count("zbar") && r.saved.count("vbar"));
  EXPECT_TRUE(r.diag.count("zbar_over_sigma"));
  EXPECT_EQ(r.scalar, "dd");
  EXPECT_TRUE(r.tolerances["out"].contains("bfloat16"));
  EXPECT_TRUE(r.reference_error.contains("max_rel"));
  // The reference's own measured error (dd vs bf50) is far below any candidate tolerance.
  EXPECT_LT(r.reference_error["max_rel"]["out"].get<double>(), 1e-25);
}

TEST(Fixture, Bf16InputsAreStoredAsBitsWithAFloat32View) {
  const Shared& s = shared();
  h5::Handle f = h5::open_file(s.path);
  h5::Raw q = h5::read(f, "q"), q32 = h5::read(f, "q_f32");
  EXPECT_EQ(q.type, h5::Raw::U16);
  EXPECT_EQ(h5::get_attr_string(f, "q", "format"), "bfloat16");
  EXPECT_EQ(q32.type, h5::Raw::F32);
  EXPECT_EQ(h5::to_tensor(q, "bfloat16").data, h5::to_tensor(q32).data);
}

TEST(FixtureBadInput, NotHdf5) {
  TempDir d;
  std::ofstream(d.file("x.h5")) << "this is not HDF5\n";
  EXPECT_TRUE(has(error_of([&] { read_fixture(d.file("x.h5")); }), "not an HDF5 file"));
  EXPECT_TRUE(has(error_of([&] { read_fixture(d.file("missing.h5")); }), "cannot open"));
}

TEST(FixtureBadInput, Truncated) {
  TempDir d;
  copy_file(shared().path, d.file("t.h5"));
  truncate_half(d.file("t.h5"));
  const std::string e = error_of([&] { read_fixture(d.file("t.h5")); });
  EXPECT_FALSE(e.empty());
  EXPECT_TRUE(has(e, "t.h5")) << e;
}

TEST(FixtureBadInput, FlippedByteIsAChecksumMismatch) {
  TempDir d;
  copy_file(shared().path, d.file("f.h5"));
  flip_byte(d.file("f.h5"), data_offset(d.file("f.h5"), "out") + 13);
  const std::string e = error_of([&] { read_fixture(d.file("f.h5")); });
  EXPECT_TRUE(has(e, "checksum mismatch")) << e;
  EXPECT_TRUE(has(e, "'out'")) << e;
}

TEST(FixtureBadInput, MissingDataset) {
  TempDir d;
  copy_file(shared().path, d.file("m.h5"));
  delete_dataset(d.file("m.h5"), "out_lo");
  const std::string e = error_of([&] { read_fixture(d.file("m.h5")); });
  EXPECT_TRUE(has(e, "'out_lo' is missing")) << e;
}

TEST(FixtureBadInput, MisshapenDataset) {
  TempDir d;
  copy_file(shared().path, d.file("s.h5"));
  {
    delete_dataset(d.file("s.h5"), "v");
    hid_t f = H5Fopen(d.file("s.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    std::vector<std::uint16_t> bad(2 * 13 * 2 * 5, 0x3f80);  // Dv = 5 instead of 6, valid bf16 ones
    h5::Handle ds = h5::write(f, "v", {2, 13, 2, 5}, h5::Raw::U16, bad.data());
    h5::set_attr(ds, "format", std::string("bfloat16"));
    h5::set_attr(ds, "sha256", sha256_hex(bad.data(), bad.size() * 2));
    H5Fclose(f);
  }
  const std::string e = error_of([&] { read_fixture(d.file("s.h5")); });
  EXPECT_TRUE(has(e, "'v'") && has(e, "shape")) << e;
}

TEST(FixtureBadInput, UnknownSchemaVersion) {
  TempDir d;
  copy_file(shared().path, d.file("v.h5"));
  set_root_int_attr(d.file("v.h5"), "schema_version", 2);
  const std::string e = error_of([&] { read_fixture(d.file("v.h5")); });
  EXPECT_TRUE(has(e, "schema_version 2")) << e;
}

// ---- check ---------------------------------------------------------------------------
namespace {
CheckResult check_tensors(const std::map<std::string, Tensor<double>>& t, DType dt,
                          const std::map<std::string, double>& tol = {}) {
  TempDir d;
  write_candidate(d.file("c.h5"), t, dt);
  const FixtureData fx = read_fixture(shared().path);
  return check_candidate(shared().path, fx, read_candidate(d.file("c.h5"), fx), tol);
}
}  // namespace

TEST(Check, TruthRoundedToTheCandidateDtypePasses) {
  const auto& tr = shared().gen.truth;
  for (DType dt : {DType::BF16, DType::F32, DType::F64}) {
    std::map<std::string, Tensor<double>> c;
    for (const auto& [n, t] : tr) c[n] = rounded(t.hi, dt);
    CheckResult r = check_tensors(c, dt);
    EXPECT_TRUE(r.passed) << r.format();
    // Rounding to nearest is within half an ulp of the candidate dtype (ULP metric check).
    for (const auto& rep : r.reports) EXPECT_LE(rep.max_ulp, 0.5 + 1e-12) << rep.name;
  }
}

TEST(Check, InjectedErrorFailsAndIsLocated) {
  auto out = rounded(shared().gen.truth.at("out").hi, DType::F32);
  const std::size_t at = out.at4(1, 5, 3, 2);
  out.data[at] += 0.05;  // ~100 bf16 ulps of |out| ~ 1: far above any derived limit
  CheckResult r = check_tensors({{"out", out}}, DType::F32);
  ASSERT_EQ(r.reports.size(), 1u);
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(r.reports[0].worst_index, (std::vector<std::size_t>{1, 5, 3, 2}));
  EXPECT_NEAR(r.reports[0].max_abs, 0.05, 1e-6);
  ASSERT_TRUE(r.reports[0].baseline_max_abs.has_value());
}

TEST(Check, NanIsReportedWithLocationAndFails) {
  auto out = rounded(shared().gen.truth.at("out").hi, DType::BF16);
  out.data[out.at4(0, 2, 1, 4)] = std::nan("");
  CheckResult r = check_tensors({{"out", out}}, DType::BF16);
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(r.reports[0].nonfinite, 1u);
  EXPECT_EQ(r.reports[0].first_nonfinite, (std::vector<std::size_t>{0, 2, 1, 4}));
}

TEST(Check, ToleranceOverride) {
  auto out = rounded(shared().gen.truth.at("out").hi, DType::F32);
  out.data[7] += 1e-3;
  EXPECT_FALSE(check_tensors({{"out", out}}, DType::F32).passed);
  EXPECT_TRUE(check_tensors({{"out", out}}, DType::F32, parse_tol_overrides({"out=2e-3"})).passed);
  EXPECT_TRUE(has(error_of([] { parse_tol_overrides({"out=abc"}); }), "out"));
  EXPECT_TRUE(has(error_of([] { parse_tol_overrides({"lse=1"}); }), "unknown tensor"));
}

TEST(CheckBadInput, CandidateFiles) {
  TempDir d;
  const FixtureData fx = read_fixture(shared().path);
  const auto& out = shared().gen.truth.at("out").hi;
  // uint16 without a format attribute
  {
    h5::Handle f = h5::create_file(d.file("a.h5"));
    std::vector<std::uint16_t> u(out.size(), 0);
    h5::write(f, "out", out.shape, h5::Raw::U16, u.data());
  }
  EXPECT_TRUE(has(error_of([&] { read_candidate(d.file("a.h5"), fx); }), "format"));
  // int32 storage: dtype mismatch
  {
    hid_t f = H5Fcreate(d.file("b.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    std::vector<hsize_t> dims(out.shape.begin(), out.shape.end());
    hid_t sp = H5Screate_simple(4, dims.data(), nullptr);
    hid_t ds = H5Dcreate2(f, "out", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    std::vector<int> v(out.size(), 1);
    H5Dwrite(ds, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
    H5Dclose(ds), H5Sclose(sp), H5Fclose(f);
  }
  EXPECT_TRUE(has(error_of([&] { read_candidate(d.file("b.h5"), fx); }), "dtype mismatch"));
  // file-level dtype attribute disagreeing with the storage
  write_candidate(d.file("c.h5"), {{"out", out}}, DType::F32);
  {
    h5::Handle f(H5Fopen(d.file("c.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT), h5::Handle::File);
    h5::set_attr(f, "dtype", std::string("bfloat16"));
  }
  EXPECT_TRUE(has(error_of([&] { read_candidate(d.file("c.h5"), fx); }), "dtype mismatch"));
  // wrong shape
  Tensor<double> small({2, 9, 4, 5}, 0.5);
  write_candidate(d.file("s.h5"), {{"out", small}}, DType::F32);
  EXPECT_TRUE(has(error_of([&] { read_candidate(d.file("s.h5"), fx); }), "shape"));
  // no out
  write_candidate(d.file("n.h5"), {{"dq", shared().gen.in.q}}, DType::F32);
  EXPECT_TRUE(has(error_of([&] { read_candidate(d.file("n.h5"), fx); }), "no dataset 'out'"));
}

TEST(Baseline, Bf16BaselineIsRepresentableAndWithinOneRounding) {
  const FixtureData& g = shared().gen;
  std::string note;
  auto b = same_precision_baseline(g.p, g.in, DType::BF16, false, &note);
  EXPECT_TRUE(has(note, "float32 arithmetic")) << note;
  const auto& truth = g.truth.at("out").hi;
  double mx = 0, err = 0;
  for (std::size_t i = 0; i < truth.size(); ++i) {
    const double x = b.at("out").data[i];
    ASSERT_EQ(round_to(DType::BF16, x), x);
    mx = std::max(mx, std::fabs(truth.data[i]));
    err = std::max(err, std::fabs(x - truth.data[i]));
  }
  // One bf16 rounding (u = 2^-8 relative) of an fp32 result whose own error is ~1e-6:
  // |err| <= (2^-8 + 1e-5) * max|out|.
  EXPECT_LE(err, (0x1p-8 + 1e-5) * mx);
  EXPECT_GT(err, 0.0);
}

TEST(Gen, BitIdenticalWhateverTheThreadCount) {
  Suite s;
  s.name = "tiny";
  for (const char* m : {"softmax", "lla", "lla_cov"}) {
    SuiteCase c;
    c.problem = small_problem(m);
    c.problem.Lq = 5, c.problem.Lkv = 5;
    c.file = c.problem.name + ".h5";
    s.cases.push_back(c);
  }
  TempDir a, b;
  GenOptions o1, o2;
  o1.jobs = 1, o2.jobs = 2;
  o1.progress = o2.progress = false;
  auto m1 = gen_suite(s, a.path.string(), o1);
  auto m2 = gen_suite(s, b.path.string(), o2);
  EXPECT_TRUE(diff_manifests(m1, m2).empty());
  EXPECT_EQ(m1.dump(), m2.dump());
  EXPECT_GT(m1["files"]["t_lla.h5"]["datasets"].size(), 20u);
  // A different seed changes the data (the comparison can fail).
  s.cases[0].problem.seed += 1;
  TempDir c;
  auto m3 = gen_suite(s, c.path.string(), o2);
  EXPECT_FALSE(diff_manifests(m1, m3).empty());
}

TEST(Gen, UnwritableDirectoryIsAClearError) {
  Suite s = parse_suite(nlohmann::json::parse(R"({"cases": [{"problem": {"name": "x", "member": "softmax"}}]})"));
  EXPECT_TRUE(has(error_of([&] { gen_suite(s, "/proc/plx-cannot-write-here", {}); }), "/proc/plx-cannot-write-here"));
  EXPECT_TRUE(has(error_of([] { parse_suite(nlohmann::json::parse(R"({"cases": [{"problem": {"member": "sofmax"}}]})")); }),
                  "sofmax"));
  EXPECT_TRUE(has(error_of([] {
                    parse_suite(nlohmann::json::parse(
                        R"({"cases": [{"problem": {"name": "a"}}, {"problem": {"name": "a"}}]})"));
                  }),
                  "duplicate"));
}
