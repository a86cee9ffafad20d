// bench/bench_check.cpp — how fast `plx check` moves fixture data, and how long `plx gen`
// takes for the committed golden suite.
//
// Charter: (1) CheckDataPath: a B=4, H=8, L=4096, D=128 fp32 fixture (written once to
// $TMPDIR; its truth is a stand-in, since a double-double truth at this size costs hours and
// the data path does not depend on the values) is read with every SHA-256 verified, a
// candidate file is read, and `out` is compared through compare_tensor; throughput = bytes of
// both files / time. The same-precision baseline (O(B H L^2 D) arithmetic) is not part of
// this number. (2) GenGolden: fixtures/suites/golden.json regenerated with 2 jobs.
// Run by hand: ./build/bench/bench_check (PLX_SOURCE_DIR defaults to the source tree).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>

#include "reference/all.hpp"
#include "validation/check.hpp"
#include "validation/fixture.hpp"
#include "validation/h5io.hpp"
#include "validation/suite.hpp"

#ifndef PLX_BENCH_SOURCE_DIR
#define PLX_BENCH_SOURCE_DIR "."  // run from the repository root, or set PLX_SOURCE_DIR
#endif

using namespace plx;
namespace fs = std::filesystem;

namespace {
struct BigCase {
  fs::path dir, fixture, candidate;
  double bytes = 0;
  BigCase() {
    dir = fs::temp_directory_path() / ("plx-bench-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    Problem p;
    p.name = "bench_check_big";
    set_member(p, "softmax");
    p.B = 4, p.Hq = 8, p.Hkv = 8, p.Lq = 4096, p.Lkv = 4096, p.D = 128, p.Dv = 128, p.dtype = DType::F32, p.seed = 1;
    FixtureData f;
    f.p = p;
    f.in = make_inputs(p);
    // Stand-in truth with the right shape: v's values (the data path is value-independent).
    Tensor<double> lo(f.in.v.shape, 1e-20);
    f.truth["out"] = {f.in.v, lo};
    for (DType X : {DType::F64, DType::F32, DType::BF16, DType::F16}) {
      Tolerance t = recommended_tolerance(p, "out", X);
      f.tolerances["out"][to_string(X)] = {{"baseline_ratio", t.baseline_ratio}, {"abs_floor", t.abs_floor},
                                           {"rel_floor", t.rel_floor}, {"why", t.why}};
    }
    f.reference_error = {{"method", "benchmark stand-in"}};
    fixture = dir / "big.h5", candidate = dir / "cand.h5";
    write_fixture(f, fixture.string());
    h5::Handle c = h5::create_file(candidate.string());
    std::vector<float> v(f.in.v.data.begin(), f.in.v.data.end());
    h5::write(c, "out", f.in.v.shape, h5::Raw::F32, v.data());
    bytes = double(fs::file_size(fixture) + fs::file_size(candidate));
  }
  ~BigCase() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

void CheckDataPath(benchmark::State& st) {
  static BigCase big;
  for (auto _ : st) {
    FixtureData fx = read_fixture(big.fixture.string());  // every dataset read and SHA-256 verified
    Candidate c = read_candidate(big.candidate.string(), fx);
    const Tolerance tol = tolerance_from_json(fx.tolerances["out"]["float32"]);
    TensorReport r = compare_tensor("out", c.tensors.at("out").values, fx.truth.at("out").hi, DType::F32, tol);
    benchmark::DoNotOptimize(r.max_abs);
  }
  st.counters["MB/s"] = benchmark::Counter(big.bytes / 1e6, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["MB"] = big.bytes / 1e6;
}
BENCHMARK(CheckDataPath)->Unit(benchmark::kSecond)->Iterations(3)->UseRealTime();

void GenGolden(benchmark::State& st) {
  const char* src = std::getenv("PLX_SOURCE_DIR");
  const fs::path root = src ? src : PLX_BENCH_SOURCE_DIR;
  Suite s = load_suite((root / "fixtures" / "suites" / "golden.json").string());
  const fs::path out = fs::temp_directory_path() / ("plx-bench-gen-" + std::to_string(::getpid()));
  for (auto _ : st) {
    GenOptions o;
    o.jobs = 2, o.progress = false;
    gen_suite(s, out.string(), o);
  }
  std::error_code ec;
  fs::remove_all(out, ec);
  st.counters["cases"] = double(s.cases.size());
}
BENCHMARK(GenGolden)->Unit(benchmark::kSecond)->Iterations(1)->UseRealTime();
}  // namespace

BENCHMARK_MAIN();
