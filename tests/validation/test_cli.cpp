// tests/validation/test_cli.cpp — the `plx` binary's contract: exit codes 0 / 1 / 2, JSON
// reports that name the worst index, clear messages for every bad input, inspect.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <sys/wait.h>

#include "tests/validation/fixture_support.hpp"

using namespace plx;
using namespace plx::test;

namespace {
struct PlxRun {
  int rc = -1;
  std::string out;
};
// Run plx with arguments; stdout+stderr captured.
PlxRun run_plx(const std::string& args) {
  TempDir d;
  const std::string log = d.file("log.txt");
  const std::string cmd = std::string(PLX_BINARY) + " " + args + " > " + log + " 2>&1";
  int st = std::system(cmd.c_str());
  PlxRun r;
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream f(log);
  std::stringstream ss;
  ss << f.rdbuf();
  r.out = ss.str();
  return r;
}
bool has(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

struct Shared {
  TempDir dir;
  std::string fixture;
  FixtureData gen;
  Shared() {
    Problem p = small_problem("softmax", DType::F32);
    gen = generate_fixture(p);
    fixture = dir.file("softmax.h5");
    write_fixture(gen, fixture);
  }
};
Shared& shared() {
  static Shared s;
  return s;
}
}  // namespace

TEST(Cli, CheckPassFailNanExitCodes) {
  const Shared& s = shared();
  TempDir d;
  auto good = rounded(s.gen.truth.at("out").hi, DType::F32);
  write_candidate(d.file("good.h5"), {{"out", good}}, DType::F32);
  PlxRun r = run_plx("check --fixture " + s.fixture + " --candidate " + d.file("good.h5"));
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(has(r.out, "PASS")) << r.out;

  auto bad = good;
  bad.data[bad.at4(1, 8, 2, 3)] += 0.01;
  write_candidate(d.file("bad.h5"), {{"out", bad}}, DType::F32);
  r = run_plx("check --json --fixture " + s.fixture + " --candidate " + d.file("bad.h5"));
  EXPECT_EQ(r.rc, 1) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_FALSE(j["passed"].get<bool>());
  EXPECT_EQ(j["tensors"][0]["worst_index"], (std::vector<int>{1, 8, 2, 3}));

  auto nan = good;
  nan.data[nan.at4(0, 1, 0, 0)] = std::numeric_limits<double>::infinity();
  write_candidate(d.file("nan.h5"), {{"out", nan}}, DType::F32);
  r = run_plx("check --fixture " + s.fixture + " --candidate " + d.file("nan.h5"));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, "non-finite") && has(r.out, "[0, 1, 0, 0]")) << r.out;

  r = run_plx("check --fixture " + s.fixture + " --run ref-double");
  EXPECT_EQ(r.rc, 0) << r.out;
}

TEST(Cli, BadInputIsExitTwoWithAMessage) {
  const Shared& s = shared();
  TempDir d;
  write_candidate(d.file("good.h5"), {{"out", rounded(s.gen.truth.at("out").hi, DType::F32)}}, DType::F32);
  copy_file(s.fixture, d.file("flip.h5"));
  flip_byte(d.file("flip.h5"), data_offset(d.file("flip.h5"), "q") + 3);
  copy_file(s.fixture, d.file("trunc.h5"));
  truncate_half(d.file("trunc.h5"));
  std::ofstream(d.file("text.h5")) << "hello";
  struct Case {
    std::string args, expect;
  } cases[] = {
      {"check --fixture " + d.file("flip.h5") + " --candidate " + d.file("good.h5"), "checksum mismatch"},
      {"check --fixture " + d.file("trunc.h5") + " --candidate " + d.file("good.h5"), "trunc.h5"},
      {"check --fixture " + d.file("text.h5") + " --candidate " + d.file("good.h5"), "not an HDF5 file"},
      {"check --fixture " + s.fixture + " --candidate " + d.file("text.h5"), "not an HDF5 file"},
      {"check --fixture " + s.fixture + " --candidate " + d.file("nope.h5"), "cannot open"},
      {"check --fixture " + s.fixture + " --candidate " + d.file("good.h5") + " --report /proc/plx/r.json", "/proc/plx/r.json"},
      {"check --fixture " + s.fixture + " --candidate " + d.file("good.h5") + " --tol out=x", "--tol"},
      {"check --fixture " + s.fixture + " --run warp-drive", "warp-drive"},
      {"check --fixture " + s.fixture, "exactly one of"},
      {"gen --suite " + d.file("text.h5") + " --out " + d.file("o"), "not valid JSON"},
      {"inspect " + d.file("flip.h5"), "checksum mismatch"},
      {"frobnicate", ""},
  };
  for (const auto& c : cases) {
    PlxRun r = run_plx(c.args);
    EXPECT_EQ(r.rc, 2) << c.args << "\n" << r.out;
    EXPECT_TRUE(has(r.out, c.expect)) << c.args << "\n" << r.out;
  }
}

// The environment is read at the tool's edge only (validation/environment.cpp): every variable is
// listed in --help, and a bad value is bad input (exit 2 naming the variable), before any work.
TEST(Cli, EnvironmentIsParsedAtTheEdgeAndDocumented) {
  PlxRun r = run_plx("--help");
  EXPECT_EQ(r.rc, 0) << r.out;
  for (const char* v : {"PLX_SHA256_PORTABLE", "ref-double"}) EXPECT_TRUE(has(r.out, v)) << v << "\n" << r.out;
  const PlxRun ch = run_plx("check --help");  // the registered backends, each with its summary
  for (const char* v : {"ref-double:", "fast:"}) EXPECT_TRUE(has(ch.out, v)) << v << "\n" << ch.out;
  if (has(ch.out, "cuda:"))  // built with the CUDA kernels: their settings are listed too
    for (const char* v : {"PLX_CUDA_FORWARD", "PLX_CUDA_DECODE", "PLX_CUDA_BACKWARD", "PLX_CUDA_SPLITS", "PLX_CUDA_TENSOR_MAPS"})
      EXPECT_TRUE(has(r.out, v)) << v << "\n" << r.out;
  const std::string cmd = "PLX_SHA256_PORTABLE=maybe " + std::string(PLX_BINARY) + " inspect " + shared().fixture + " 2>&1";
  FILE* f = popen(cmd.c_str(), "r");
  ASSERT_NE(f, nullptr);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, f)) out += buf;
  const int st = pclose(f);
  EXPECT_EQ(WIFEXITED(st) ? WEXITSTATUS(st) : -1, 2) << out;
  EXPECT_TRUE(has(out, "PLX_SHA256_PORTABLE")) << out;
}

TEST(Cli, InspectShowsProblemProvenanceAndContents) {
  PlxRun r = run_plx("inspect " + shared().fixture);
  EXPECT_EQ(r.rc, 0) << r.out;
  for (const char* s : {"softmax", "float32", "truth in dd", "commit", "out_lo", "saved/lse", "diag/ess", "checksums OK"})
    EXPECT_TRUE(has(r.out, s)) << s << "\n" << r.out;
  r = run_plx("inspect --json " + shared().fixture);
  EXPECT_EQ(r.rc, 0);
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["problem"]["Lkv"], 13);
  EXPECT_EQ(j["schema_version"], 1);
}

TEST(Cli, GenWritesManifestAndFiles) {
  TempDir d;
  std::ofstream(d.file("s.json"))
      << R"({"name": "t", "cases": [{"problem": {"name": "a", "member": "softmax", "Lq": 3, "Lkv": 4, "D": 2, "Dv": 2}}]})";
  PlxRun r = run_plx("gen --suite " + d.file("s.json") + " --out " + d.file("out") + " --jobs 2");
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(has(r.out, "[1/1] a.h5")) << r.out;
  std::ifstream m(d.file("out/manifest.json"));
  auto j = nlohmann::json::parse(m);
  EXPECT_TRUE(j["files"]["a.h5"]["datasets"].contains("out"));
  EXPECT_EQ(read_fixture(d.file("out/a.h5")).sha256.at("out"), j["files"]["a.h5"]["datasets"]["out"]);
  r = run_plx("gen --suite " + d.file("s.json") + " --out /proc/plx-no");
  EXPECT_EQ(r.rc, 2) << r.out;
}
