// tests/validation/test_strict.cpp — `plx check` is strict and explains its verdict.
//
// Every tensor the fixture has truth for is checked or listed "not checked" (--require-all:
// exit 1); any other dataset in a candidate (an unknown name, a misspelling such as `dQ`, or
// a known tensor the fixture has no truth for such as `dr` on softmax) is exit 2 naming it,
// unless --ignore-extra; a tensor stored wider than its natural dtype gets a warning naming
// the likely cause, and --as-problem-dtype judges it at the natural dtype; a tensor without a
// sound rule is "not judged" (exit 3), never FAIL; --version; with --json, errors are JSON
// on stdout; the HDF5 watchdog ends a read that cannot finish with exit 2 naming the file.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/validation/fixture_support.hpp"
#include "validation/check.hpp"

using namespace plx;
using namespace plx::test;
using nlohmann::json;

namespace {
struct PlxRun {
  int rc = -1;
  std::string out, err;
  double seconds = 0;
};
// Run plx; stdout and stderr captured separately.
PlxRun run_plx(const std::string& args, const std::string& env = "") {
  TempDir d;
  const std::string o = d.file("out.txt"), e = d.file("err.txt");
  const std::string cmd = env + " " + std::string(PLX_BINARY) + " " + args + " > " + o + " 2> " + e;
  const auto t0 = std::chrono::steady_clock::now();
  int st = std::system(cmd.c_str());
  PlxRun r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  auto slurp = [](const std::string& f) {
    std::ifstream s(f);
    std::stringstream ss;
    ss << s.rdbuf();
    return ss.str();
  };
  r.out = slurp(o), r.err = slurp(e);
  return r;
}
bool has(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

struct Shared {
  TempDir dir;
  std::string fixture;
  FixtureData gen;
  Shared() {
    Problem p = small_problem("softmax", DType::F32);  // has gradient truth (dq, dk, dv)
    gen = generate_fixture(p);
    fixture = dir.file("softmax.h5");
    write_fixture(gen, fixture);
  }
  Tensor<double> good(const std::string& n) const { return rounded(gen.truth.at(n).hi, DType::F32); }
};
Shared& shared() {
  static Shared s;
  return s;
}
std::string golden(const std::string& name) {
  const char* src = std::getenv("PLX_SOURCE_DIR");
  return (std::filesystem::path(src ? src : ".") / "fixtures" / "golden" / name).string();
}
}  // namespace

TEST(Strict, MissingTensorsAreListedAndRequireAllFails) {
  const Shared& s = shared();
  ASSERT_TRUE(s.gen.truth.count("dq")) << "the reference backward is not compiled in";
  TempDir d;
  write_candidate(d.file("c.h5"), {{"out", s.good("out")}}, DType::F32);
  PlxRun r = run_plx("check --fixture " + s.fixture + " --candidate " + d.file("c.h5"));
  EXPECT_EQ(r.rc, 0) << r.out << r.err;
  for (const char* n : {"not checked: dq", "not checked: dk", "not checked: dv", "3 tensor(s) not checked"})
    EXPECT_TRUE(has(r.out, n)) << n << "\n" << r.out;
  r = run_plx("check --json --fixture " + s.fixture + " --candidate " + d.file("c.h5"));
  EXPECT_EQ(r.rc, 0);
  json j = json::parse(r.out);
  EXPECT_EQ(j["not_checked"], (std::vector<std::string>{"dk", "dq", "dv"}));
  EXPECT_EQ(j["verdict"], "pass");
  r = run_plx("check --require-all --json --fixture " + s.fixture + " --candidate " + d.file("c.h5"));
  EXPECT_EQ(r.rc, 1) << r.out;
  j = json::parse(r.out);
  EXPECT_EQ(j["verdict"], "fail");
  EXPECT_EQ(j["exit_code"], 1);
  // With every tensor present, --require-all passes.
  write_candidate(d.file("all.h5"), {{"out", s.good("out")}, {"dq", s.good("dq")}, {"dk", s.good("dk")}, {"dv", s.good("dv")}},
                  DType::F32);
  r = run_plx("check --require-all --fixture " + s.fixture + " --candidate " + d.file("all.h5"));
  EXPECT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_FALSE(has(r.out, "not checked")) << r.out;
}

TEST(Strict, ExtraDatasetsAreAnErrorNamingThemUnlessIgnored) {
  const Shared& s = shared();
  TempDir d;
  // A misspelling, a known tensor this fixture has no truth for (dr on softmax), and a group.
  write_candidate(d.file("dQ.h5"), {{"out", s.good("out")}, {"dQ", s.good("dq")}}, DType::F32);
  write_candidate(d.file("dr.h5"), {{"out", s.good("out")}, {"dr", s.good("dq")}}, DType::F32);
  write_candidate(d.file("grp.h5"), {{"out", s.good("out")}}, DType::F32);
  {
    h5::Handle f(H5Fopen(d.file("grp.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT), h5::Handle::File);
    h5::Handle g = h5::create_group(f, "extras");
  }
  for (const auto& [file, name] : std::vector<std::pair<std::string, std::string>>{
           {"dQ.h5", "'dQ'"}, {"dr.h5", "'dr'"}, {"grp.h5", "'extras'"}}) {
    PlxRun r = run_plx("check --fixture " + s.fixture + " --candidate " + d.file(file));
    EXPECT_EQ(r.rc, 2) << file << "\n" << r.out << r.err;
    EXPECT_TRUE(has(r.err, name) && has(r.err, "--ignore-extra")) << file << "\n" << r.err;
    r = run_plx("check --ignore-extra --fixture " + s.fixture + " --candidate " + d.file(file));
    EXPECT_EQ(r.rc, 0) << file << "\n" << r.out << r.err;
    EXPECT_TRUE(has(r.out, "ignored (--ignore-extra)") && has(r.out, name)) << r.out;
  }
  PlxRun r = run_plx("check --fixture " + s.fixture + " --candidate " + d.file("dr.h5"));
  EXPECT_TRUE(has(r.err, "no truth for it")) << r.err;
}

TEST(Strict, WiderStorageWarnsAndAsProblemDtypeJudgesAtIt) {
  const Shared& s = shared();
  TempDir d;
  // A float32 result (the truth rounded to fp32) stored as float64: its rounding error is
  // far beyond the float64 rule (the 1.9e8x) and within the float32 one.
  write_candidate(d.file("w.h5"), {{"out", s.good("out")}}, DType::F64);
  PlxRun r = run_plx("check --fixture " + s.fixture + " --candidate " + d.file("w.h5"));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, "warning: 'out' is stored as float64") && has(r.out, "most likely a float32 result") &&
              has(r.out, "--as-problem-dtype"))
      << r.out;
  r = run_plx("check --json --as-problem-dtype --fixture " + s.fixture + " --candidate " + d.file("w.h5"));
  json j = json::parse(r.out);
  EXPECT_EQ(j["tensors"][0]["dtype"], "float32") << r.out;
  EXPECT_EQ(j["verdict"], "pass") << r.out;
  EXPECT_EQ(r.rc, 0);
  // Values that are not float32 numbers: the warning says so instead.
  Tensor<double> wide = s.gen.truth.at("out").hi;
  write_candidate(d.file("w64.h5"), {{"out", wide}}, DType::F64);
  r = run_plx("check --fixture " + s.fixture + " --candidate " + d.file("w64.h5"));
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(has(r.out, "not all float32 numbers")) << r.out;
}

TEST(Strict, ReportSaysWhatDecides) {
  const Shared& s = shared();
  TempDir d;
  write_candidate(d.file("c.h5"), {{"out", s.good("out")}, {"dq", s.good("dq")}}, DType::F32);
  PlxRun r = run_plx("check --json --fixture " + s.fixture + " --candidate " + d.file("c.h5"));
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  json j = json::parse(r.out);
  for (const auto& t : j["tensors"]) {
    const double lim = t["limit"], err = t["max_abs"], ratio = t["worst_limit_ratio"];
    EXPECT_NEAR(ratio, err / lim, 1e-12 * (1 + ratio)) << t.dump();
    const std::string by = t["limit_set_by"];
    EXPECT_TRUE(by == "baseline" || by == "floor") << by;
    EXPECT_EQ(t["status"], "pass");
  }
  r = run_plx("check --fixture " + s.fixture + " --candidate " + d.file("c.h5"));
  EXPECT_TRUE(has(r.out, "err/limit") && has(r.out, "set by") && has(r.out, "err/base") && !has(r.out, " ratio "))
      << r.out;
}

// ULPs are counted at the tensor's scale: a zero truth entry gives a finite, meaningful figure.
TEST(Strict, UlpNearZeroTruthIsMeaningful) {
  Tensor<double> truth({1, 1, 1, 4}), cand({1, 1, 1, 4});
  truth.data = {0.0, 1e-30, 0.5, 1.0};
  cand.data = {1e-7, 1e-30, 0.5, 1.0};
  Tolerance tol;
  tol.rel_floor = 1e-6;
  TensorReport r = compare_tensor("out", cand, truth, DType::F32, tol);
  EXPECT_NEAR(r.max_ulp, 1e-7 / std::ldexp(1.0, -23), 1e-9);  // ulp(1.0) in fp32 = 2^-23
  EXPECT_EQ(r.limit_set_by, kSetByFloor);
}

// lla_near_zero_delta_f32: the fp32 reference's ridge solve fails, so the gradients have only
// a float64 fallback baseline: not judged (exit 3), never FAIL, whatever their error.
TEST(Strict, NoSoundRuleIsNotJudgedExitThree) {
  const std::string fx_path = golden("lla_near_zero_delta_f32.h5");
  const FixtureData fx = read_fixture(fx_path);
  ASSERT_TRUE(fx.truth.count("dq"));
  TempDir d;
  Tensor<double> dq = rounded(fx.truth.at("dq").hi, DType::F32);
  for (auto& x : dq.data) x = round_to(DType::F32, x * (1 + 1e-3));  // far off: still not a FAIL
  write_candidate(d.file("c.h5"), {{"out", rounded(fx.truth.at("out").hi, DType::F32)}, {"dq", dq}}, DType::F32);
  PlxRun r = run_plx("check --json --fixture " + fx_path + " --candidate " + d.file("c.h5"));
  EXPECT_EQ(r.rc, 3) << r.out << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["verdict"], "not judged");
  for (const auto& t : j["tensors"]) {
    if (t["tensor"] == "out") {
      EXPECT_EQ(t["status"], "pass") << t.dump();  // the conditioning rule judges out
    }
    if (t["tensor"] == "dq") {
      EXPECT_EQ(t["status"], "not judged") << t.dump();
      EXPECT_TRUE(has(t["not_judged_why"].get<std::string>(), "no same-precision baseline"));
    }
  }
  r = run_plx("check --fixture " + fx_path + " --candidate " + d.file("c.h5"));
  EXPECT_TRUE(has(r.out, "NOT JUDGED") && !has(r.out, "FAIL")) << r.out;
  // A judged failure still dominates: out off by 1 % fails (exit 1).
  Tensor<double> out = rounded(fx.truth.at("out").hi, DType::F32);
  for (auto& x : out.data) x = round_to(DType::F32, x * 1.01);
  write_candidate(d.file("bad.h5"), {{"out", out}, {"dq", dq}}, DType::F32);
  r = run_plx("check --fixture " + fx_path + " --candidate " + d.file("bad.h5"));
  EXPECT_EQ(r.rc, 1) << r.out;
}

TEST(Strict, VersionAndJsonErrors) {
  PlxRun r = run_plx("--version");
  EXPECT_EQ(r.rc, 0);
  EXPECT_TRUE(has(r.out, "git commit") && has(r.out, "fixture schema v" + std::to_string(kFixtureSchemaVersion))) << r.out;
  TempDir d;
  for (const std::string& args : std::vector<std::string>{"check --json --fixture " + d.file("nope.h5") + " --candidate " +
                                                              d.file("x.h5"),
                                                          "inspect --json " + d.file("nope.h5"), "check --json --bogus-flag"}) {
    r = run_plx(args);
    EXPECT_EQ(r.rc, 2) << args;
    json j;
    ASSERT_NO_THROW(j = json::parse(r.out)) << args << "\nstdout: " << r.out;
    EXPECT_EQ(j["exit_code"], 2);
    EXPECT_FALSE(j["error"].get<std::string>().empty());
    EXPECT_FALSE(r.err.empty());  // the text error stays on stderr
  }
}

// A read that cannot finish (here: a FIFO nobody writes, standing in for libhdf5 looping on a
// corrupt global heap) ends with exit 2 naming the file, within the budget.
TEST(Strict, WatchdogEndsAStuckRead) {
  TempDir d;
  const std::string fifo = d.file("stuck.h5");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  PlxRun r = run_plx("inspect --json " + fifo, "PLX_HDF5_WATCHDOG_S=1");
  EXPECT_EQ(r.rc, 2) << r.out << r.err;
  EXPECT_TRUE(has(r.err, "stuck.h5") && has(r.err, "did not finish")) << r.err;
  EXPECT_TRUE(json::parse(r.out)["error"].get<std::string>().find("stuck.h5") != std::string::npos) << r.out;
  EXPECT_LT(r.seconds, 20.0);
  r = run_plx("inspect " + fifo, "PLX_HDF5_WATCHDOG_S=abc");
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(has(r.err, "PLX_HDF5_WATCHDOG_S")) << r.err;
}
