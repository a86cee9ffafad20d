// tests/validation/test_faults.cpp — faults injected into `plx gen` and `plx check`, and
// resource limits.
//
// SIGKILL at random points of `plx gen`: no file under a final name is ever partial or corrupt
// (every *.h5 present reads back with every checksum; manifest.json, when present, parses and
// names only complete files), and a rerun completes. A full disk (a 40 kB tmpfs when this
// process may mount one, else RLIMIT_FSIZE, which fails writes the same way) and a read-only
// directory give exit 2 with a clear message and leave no file under a final name. Limits:
// a dimension beyond int32 (L = 2^40) in a suite, a problem whose estimated memory exceeds
// the machine's, a fixture refused under PLX_MEMORY_LIMIT, and a candidate dataset whose
// declared shape would need 2^53 bytes are all exit 2 / plx::Error before any allocation.
// The seed of the kill times is PLX_SEED (printed), so a failure reproduces.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "tests/support.hpp"
#include "tests/validation/fixture_support.hpp"
#include "validation/check.hpp"
#include "validation/limits.hpp"

using namespace plx;
using namespace plx::test;
namespace fs = std::filesystem;

namespace {
struct PlxProc {
  int rc = -1;
  bool killed = false;
  std::string out;
};
// fork + exec plx with args; optional SIGKILL after `kill_after` seconds; optional file-size
// limit (bytes) in the child.
PlxProc spawn(const std::vector<std::string>& args, double kill_after = -1, long fsize_limit = -1) {
  TempDir d;
  const std::string log = d.file("log");
  pid_t pid = ::fork();
  if (pid == 0) {
    FILE* f = std::freopen(log.c_str(), "w", stdout);
    (void)f;
    ::dup2(::fileno(stdout), 2);
    if (fsize_limit >= 0) {
      ::signal(SIGXFSZ, SIG_IGN);  // writes past the limit fail with EFBIG, as on a full disk
      rlimit rl{rlim_t(fsize_limit), rlim_t(fsize_limit)};
      ::setrlimit(RLIMIT_FSIZE, &rl);
    }
    std::vector<char*> av;
    std::string bin = PLX_BINARY;
    av.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) av.push_back(a.data());
    av.push_back(nullptr);
    ::execv(bin.c_str(), av.data());
    ::_exit(127);
  }
  PlxProc r;
  if (kill_after >= 0) {
    std::this_thread::sleep_for(std::chrono::duration<double>(kill_after));
    r.killed = ::kill(pid, SIGKILL) == 0;
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  r.killed = r.killed && WIFSIGNALED(st);
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream f(log);
  std::stringstream ss;
  ss << f.rdbuf();
  r.out = ss.str();
  return r;
}
bool has(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

// A small suite of a few cases (a fraction of a second each), written to dir/s.json.
std::string small_suite(const TempDir& d) {
  std::ofstream(d.file("s.json")) << R"({"name": "faults", "defaults": {"Lq": 24, "Lkv": 24, "D": 8, "Dv": 8, "Hq": 2, "Hkv": 1},
    "cases": [{"problem": {"name": "a", "member": "softmax"}}, {"problem": {"name": "b", "member": "parallax"}},
              {"problem": {"name": "c", "member": "lla", "solver": {"lambda": 0.5}}},
              {"problem": {"name": "d", "member": "softmax", "causal": true}}]})";
  return d.file("s.json");
}

// Every file under a final name in dir is complete: fixtures read back with every checksum,
// the manifest parses and names only files that exist and read back.
void expect_no_partial_files(const std::string& dir, const std::string& ctx) {
  if (!fs::is_directory(dir)) return;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    // Temporaries are not final names: .<file>.tmp.<pid>.<n> (fixtures), manifest.json.tmp.<pid>.
    if (name.empty() || name[0] == '.' || name.find(".tmp.") != std::string::npos) continue;
    if (e.path().extension() == ".h5") {
      EXPECT_NO_THROW(read_fixture(e.path().string())) << ctx << ": partial or corrupt " << name;
    } else if (name == "manifest.json") {
      std::ifstream f(e.path());
      nlohmann::json m;
      ASSERT_NO_THROW(m = nlohmann::json::parse(f)) << ctx << ": partial manifest";
      for (auto it = m["files"].begin(); it != m["files"].end(); ++it)
        EXPECT_TRUE(fs::exists(fs::path(dir) / it.key())) << ctx << ": manifest names missing " << it.key();
    } else {
      ADD_FAILURE() << ctx << ": unexpected file " << name;
    }
  }
}

// Mount a size-limited tmpfs (or a read-only one) at dir; false when not permitted here.
bool mount_tmpfs(const std::string& dir, const std::string& opts, unsigned long flags = 0) {
  fs::create_directories(dir);
  return ::mount("tmpfs", dir.c_str(), "tmpfs", flags, opts.c_str()) == 0;
}
}  // namespace

TEST(Faults, SigkillDuringGenNeverLeavesAPartialFile) {
  TempDir d;
  const std::string suite = small_suite(d);
  // How long a whole run takes, to spread the kill times over it.
  const auto t0 = std::chrono::steady_clock::now();
  PlxProc full = spawn({"gen", "--quiet", "--jobs", "1", "--suite", suite, "--out", d.file("ref")});
  const double T = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(full.rc, 0) << full.out;
  std::mt19937_64 rng(seed());
  std::uniform_real_distribution<double> at(0.0, T);
  int killed = 0;
  const int rounds = 12;
  for (int i = 0; i < rounds; ++i) {
    const std::string out = d.file("out" + std::to_string(i));
    const double when = at(rng);
    PlxProc r = spawn({"gen", "--quiet", "--jobs", "1", "--suite", suite, "--out", out}, when);
    killed += r.killed;
    expect_no_partial_files(out, "killed at " + std::to_string(when) + " s of " + std::to_string(T));
    PlxProc again = spawn({"gen", "--quiet", "--jobs", "2", "--suite", suite, "--out", out});
    EXPECT_EQ(again.rc, 0) << again.out;
    expect_no_partial_files(out, "rerun after a kill");
    for (const char* f : {"a.h5", "b.h5", "c.h5", "d.h5"})  // the rerun's data equal an undisturbed run's
      EXPECT_EQ(read_fixture(out + "/" + f).sha256, read_fixture(d.file("ref") + "/" + f).sha256) << f;
  }
  std::cout << "SIGKILL rounds: " << rounds << ", killed mid-run: " << killed << " (run length " << T << " s)\n";
  EXPECT_GE(killed, rounds / 2);  // most kill times fall inside the run
}

TEST(Faults, FullDiskIsACleanExitTwo) {
  TempDir d;
  const std::string suite = small_suite(d);
  const std::string mnt = d.file("small");
  const bool mounted = mount_tmpfs(mnt, "size=40k");  // smaller than the suite (each fixture is >= 30 kB)
  PlxProc r;
  if (mounted) {
    r = spawn({"gen", "--quiet", "--suite", suite, "--out", mnt});
    std::cout << "full disk: a 40 kB tmpfs\n";
  } else {  // no mount permission: the same write failure through a file-size limit
    fs::create_directories(mnt);
    r = spawn({"gen", "--quiet", "--suite", suite, "--out", mnt}, -1, 16 * 1024);
    std::cout << "full disk: RLIMIT_FSIZE 16 kB (mounting a tmpfs is not permitted here)\n";
  }
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_TRUE(has(r.out, "plx: error:")) << r.out;
  expect_no_partial_files(mnt, "full disk");
  // A candidate check whose --report cannot be written: exit 2, no partial report.
  if (mounted) {
    TempDir f;
    Problem p = small_problem("softmax");
    const FixtureData fx = generate_fixture(p);
    write_fixture(fx, f.file("fx.h5"));
    write_candidate(f.file("c.h5"), {{"out", rounded(fx.truth.at("out").hi, DType::F32)}}, DType::F32);
    std::ofstream(mnt + "/.filler", std::ios::binary) << std::string(300 * 1024, 'x');  // fill what is left
    PlxProc c = spawn({"check", "--fixture", f.file("fx.h5"), "--candidate", f.file("c.h5"), "--report", mnt + "/r.json"});
    EXPECT_EQ(c.rc, 2) << c.out;
    EXPECT_FALSE(fs::exists(mnt + "/r.json"));
  }
  if (mounted) ::umount2(mnt.c_str(), MNT_DETACH);
}

TEST(Faults, ReadOnlyDirectoryIsACleanExitTwo) {
  TempDir d;
  const std::string suite = small_suite(d);
  const std::string mnt = d.file("ro");
  std::string dir = mnt;
  if (!mount_tmpfs(mnt, "size=64k", MS_RDONLY)) dir = "/proc/plx-readonly";  // /proc is read-only for files
  PlxProc r = spawn({"gen", "--quiet", "--suite", suite, "--out", dir});
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_TRUE(has(r.out, dir)) << r.out;
  if (dir == mnt) ::umount2(mnt.c_str(), MNT_DETACH);
}

TEST(Limits, AbsurdShapesAreRefusedBeforeAllocation) {
  TempDir d;
  // L = 2^40 in a suite: beyond int32, a range error naming the field.
  std::ofstream(d.file("huge.json")) << R"({"name": "h", "cases": [{"problem": {"name": "a", "member": "softmax", "Lq": 1099511627776}}]})";
  PlxProc r = spawn({"gen", "--suite", d.file("huge.json"), "--out", d.file("o")});
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_TRUE(has(r.out, "Lq")) << r.out;
  // Fits int32 and the element cap, but not the memory: refused with the estimate, at once.
  std::ofstream(d.file("big.json"))
      << R"({"name": "b", "cases": [{"problem": {"name": "a", "member": "softmax", "Lq": 524288, "Lkv": 524288, "D": 1024, "Dv": 1024}}]})";
  const auto t0 = std::chrono::steady_clock::now();
  r = spawn({"gen", "--suite", d.file("big.json"), "--out", d.file("o")});
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_TRUE(has(r.out, "needs about") && has(r.out, "GB")) << r.out;
  EXPECT_LT(sec, 10.0);
  // A fixture whose problem needs more than PLX_MEMORY_LIMIT: refused by read_fixture.
  Problem p = small_problem("softmax");
  const FixtureData fx = generate_fixture(p);
  write_fixture(fx, d.file("fx.h5"));
  set_memory_limit(1000);  // what PLX_MEMORY_LIMIT=1000 sets in the plx tool
  std::string msg;
  try {
    read_fixture(d.file("fx.h5"));
  } catch (const Error& e) {
    msg = e.what();
  }
  set_memory_limit(0);
  EXPECT_TRUE(has(msg, "needs about") && has(msg, "fx.h5")) << msg;
  // A candidate dataset declaring 2^53 bytes (chunked, never allocated in the file).
  {
    hid_t f = H5Fcreate(d.file("cand.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[4] = {hsize_t(1) << 20, hsize_t(1) << 20, 1024, 1}, chunk[4] = {1, 1, 1, 1};
    hid_t sp = H5Screate_simple(4, dims, nullptr);
    hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(pl, 4, chunk);
    hid_t ds = H5Dcreate2(f, "out", H5T_IEEE_F64LE, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    ASSERT_GE(ds, 0);
    H5Dclose(ds), H5Pclose(pl), H5Sclose(sp), H5Fclose(f);
  }
  msg.clear();
  try {
    read_candidate(d.file("cand.h5"), fx);
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_TRUE(has(msg, "declares shape") && has(msg, "cand.h5")) << msg;
}
