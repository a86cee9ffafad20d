// validation/plx_main.cpp — the `plx` command line.
//
// Charter: thin CLI11 front end over suites -> fixtures -> candidates -> check -> report.
// Subcommands: gen (write a suite of fixtures), check (a candidate file or an in-process
// candidate against a fixture), inspect (what a fixture holds), demo (the README's first
// command: default suite, best candidate, report). Exit codes everywhere: 0 pass,
// 1 numerical failure (including NaN/Inf in a candidate), 2 bad input or usage.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "reference/all.hpp"
#include "validation/candidates.hpp"
#include "validation/check.hpp"
#include "validation/fixture.hpp"
#include "validation/h5io.hpp"
#include "validation/problem_json.hpp"
#include "validation/suite.hpp"
#include "validation/mpi_shard.hpp"
#include "validation/sweep.hpp"

#ifndef PLX_SOURCE_DIR
#define PLX_SOURCE_DIR "."
#endif

using namespace plx;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// ---- check -----------------------------------------------------------------------------
struct CheckArgs {
  std::string fixture, candidate, run, report;
  std::vector<std::string> tol;
  bool json = false, row_bound = false;
};

CheckResult check_one(const std::string& fixture_path, const FixtureData& fx, const std::string& cand_file,
                      const std::string& run, const std::map<std::string, double>& tol, bool row_bound = false) {
  if (!cand_file.empty()) return check_candidate(fixture_path, fx, read_candidate(cand_file, fx), tol, row_bound);
  CandidateResult r = run_candidate(run, fx.p, fx.in);
  Candidate c = candidate_from_result("run:" + run, r, fx.p, candidate_dtypes(run, fx.p));
  // Keep only tensors the fixture has truth for (e.g. gradients of a decode fixture).
  for (auto it = c.tensors.begin(); it != c.tensors.end();)
    it = fx.truth.count(it->first) ? std::next(it) : c.tensors.erase(it);
  return check_candidate(fixture_path, fx, c, tol, row_bound);
}

int run_check(const CheckArgs& a) {
  if (a.candidate.empty() == a.run.empty()) throw Error("check: give exactly one of --candidate FILE or --run NAME");
  auto tol = parse_tol_overrides(a.tol);
  FixtureData fx = read_fixture(a.fixture);
  CheckResult r = check_one(a.fixture, fx, a.candidate, a.run, tol, a.row_bound);
  if (!a.report.empty()) write_file_atomic(a.report, r.to_json().dump(1) + "\n");
  if (a.json) std::cout << r.to_json().dump(1) << "\n";
  else std::cout << r.format();
  return r.passed ? 0 : 1;
}

// ---- gen -------------------------------------------------------------------------------
int run_gen(const std::string& suite_path, const std::string& out, int jobs, const std::string& scalar, bool quiet) {
  Suite s = load_suite(suite_path);
  if (!scalar.empty()) {
    if (scalar != "dd" && scalar != "bf50") throw Error("--scalar must be dd or bf50, got '" + scalar + "'");
    for (auto& c : s.cases) c.scalar = scalar;
  }
  GenOptions o;
  o.jobs = jobs, o.progress = !quiet;
  gen_suite(s, out, o);
  return 0;
}

// ---- sweep -----------------------------------------------------------------------------
struct SweepArgs {
  std::string spec, out;
  std::vector<std::string> axes, sets;
  std::vector<std::uint64_t> seeds;
  int jobs = 0;
  bool quiet = false, dry_run = false, no_backward = false;
};
int run_sweep_cmd(const SweepArgs& a) {
  SweepSpec s = a.spec.empty() ? SweepSpec{} : load_sweep(a.spec);
  for (const auto& t : a.sets) set_cli_base(s, t);
  for (const auto& t : a.axes) add_cli_axis(s, t);
  if (!a.seeds.empty()) s.seeds = a.seeds;
  if (a.no_backward) s.backward = false;
  if (a.dry_run) {  // validate every point and print the plan
    const auto pts = expand_sweep(s);
    if (par::world().rank == 0)
      std::cout << "plx sweep: " << pts.size() << " points x " << s.seeds.size() << " seeds = "
                << pts.size() * s.seeds.size() << " items, spec " << s.hash() << "\n";
    return 0;
  }
  if (a.out.empty()) throw Error("sweep: --out CSV is required (unless --dry-run)");
  SweepOptions o;
  o.jobs = a.jobs, o.progress = !a.quiet;
  const auto r = run_sweep(s, a.out, o);
  if (par::world().rank == 0 && !a.quiet)
    std::fprintf(stderr, "plx sweep: %ld items in %s (%ld kept from an earlier run, %ld computed; %d rank%s)\n",
                 r.items, a.out.c_str(), r.already, r.computed, par::world().size, par::world().size > 1 ? "s" : "");
  return 0;
}

// ---- inspect ---------------------------------------------------------------------------
int run_inspect(const std::string& path, bool as_json) {
  FixtureData fx = read_fixture(path);  // verifies schema, shapes and every checksum
  h5::Handle file = h5::open_file(path);
  json datasets = json::array();
  for (const auto& [ds, sha] : fx.sha256) {
    h5::Raw r = h5::read(file, ds);
    std::string fmt = h5::has_attr(file, ds, "format") ? h5::get_attr_string(file, ds, "format") : "";
    datasets.push_back({{"name", ds}, {"type", r.type_desc + (fmt.empty() ? "" : " (" + fmt + " bits)")},
                        {"shape", r.shape}, {"sha256", sha}});
  }
  json diag = json::object();
  for (const auto& [n, t] : fx.diag) {
    double mx = 0;
    for (double x : t.data) mx = std::max(mx, std::isfinite(x) ? std::fabs(x) : mx);
    diag[n] = mx;
  }
  json j = {{"file", path}, {"schema_version", kFixtureSchemaVersion}, {"scalar", fx.scalar},
            {"provenance", fx.provenance}, {"problem", problem_to_json(fx.p)}, {"datasets", datasets},
            {"reference_error", fx.reference_error}, {"tolerances", fx.tolerances}, {"diagnostics_max", diag}};
  if (as_json) {
    std::cout << j.dump(1) << "\n";
    return 0;
  }
  std::cout << "fixture " << path << "  (schema v" << kFixtureSchemaVersion << ", checksums OK)\n"
            << "  member " << member_name(fx.p) << ", inputs " << to_string(fx.p.dtype) << ", truth in " << fx.scalar
            << "\n  generator " << fx.provenance.value("generator", "") << ", commit "
            << fx.provenance.value("git_commit", "") << ", created " << fx.provenance.value("created", "") << "\n"
            << "  problem " << problem_to_json(fx.p).dump() << "\n  datasets:\n";
  for (const auto& d : datasets) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "    %-22s %-24s %-18s %.16s…\n", d["name"].get<std::string>().c_str(),
                  d["type"].get<std::string>().c_str(), shape_str(d["shape"].get<std::vector<std::size_t>>()).c_str(),
                  d["sha256"].get<std::string>().c_str());
    std::cout << buf;
  }
  std::cout << "  reference error: " << fx.reference_error.dump() << "\n  per-row diagnostics (max |.|): " << diag.dump()
            << "\n  recommended tolerances (rel_floor; limit = max(ratio x baseline, rel_floor x max|truth|)):\n";
  for (auto it = fx.tolerances.begin(); it != fx.tolerances.end(); ++it) {
    std::cout << "    " << it.key() << ":";
    for (auto d = it.value().begin(); d != it.value().end(); ++d)
      std::cout << "  " << d.key() << " " << d.value()["rel_floor"].get<double>();
    std::cout << "\n";
  }
  if (fx.tolerances.contains("out") && fx.tolerances["out"].contains("float32"))
    std::cout << "    derivation (out, float32): " << fx.tolerances["out"]["float32"]["why"].get<std::string>() << "\n";
  return 0;
}

// ---- demo ------------------------------------------------------------------------------
std::string default_suite_path() {
  for (const fs::path& base : {fs::path(PLX_SOURCE_DIR), fs::current_path()}) {
    fs::path p = base / "fixtures" / "suites" / "default.json";
    if (fs::exists(p)) return p.string();
  }
  throw Error("demo: cannot find fixtures/suites/default.json (run from the repository root or pass --suite)");
}

int run_demo(std::string suite_path, std::string out, std::string cand, int jobs) {
  const auto t0 = std::chrono::steady_clock::now();
  if (suite_path.empty()) suite_path = default_suite_path();
  if (out.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    out = (fs::path(tmp && *tmp ? tmp : "/tmp") / ("plx-demo-" + std::to_string(::getpid()))).string();
  }
  Suite s = load_suite(suite_path);
  std::cout << "plx demo: generating " << s.cases.size() << " fixtures of suite '" << s.name << "' into " << out
            << " (truth: reference in double-double)\n";
  GenOptions o;
  o.jobs = jobs, o.progress = false;
  gen_suite(s, out, o);
  const auto names = candidate_names();
  int exit_code = 0, passed = 0, failed = 0, bad = 0;
  for (const auto& c : s.cases) {
    const std::string fpath = (fs::path(out) / c.file).string();
    std::string who = cand;
    if (who.empty())
      for (const auto& n : names)
        if (candidate_supports(n, c.problem, nullptr)) {
          who = n;
          break;
        }
    try {
      FixtureData fx = read_fixture(fpath);
      CheckResult r = check_one(fpath, fx, "", who, {});
      std::cout << "\n" << r.format();
      (r.passed ? passed : failed)++;
      if (!r.passed) exit_code = std::max(exit_code, 1);
    } catch (const Error& e) {
      std::cout << "\n== " << c.problem.name << "\n   candidate " << who << ": error: " << e.what() << "\n";
      ++bad, exit_code = 2;
    }
  }
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "\nplx demo summary: " << passed << " passed, " << failed << " failed, " << bad << " errors, of "
            << s.cases.size() << " cases (" << sec << " s); fixtures kept in " << out << "\n";
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"plx — the numerics of softmax, LLA and Parallax, checked against an extended-precision reference.\n"
               "Exit codes: 0 pass, 1 numerical failure, 2 bad input."};
  app.require_subcommand(1);

  auto* demo = app.add_subcommand("demo", "generate the default suite, check the best candidate on it, print the report");
  std::string demo_suite, demo_out, demo_cand;
  int demo_jobs = 0;
  demo->add_option("--suite", demo_suite, "suite JSON (default: fixtures/suites/default.json)");
  demo->add_option("--out", demo_out, "directory for the fixtures (default: a new one under $TMPDIR)");
  demo->add_option("--candidate", demo_cand, "candidate to run (default: the best available per case)");
  demo->add_option("--jobs", demo_jobs, "threads over cases (default: all)");

  auto* gen = app.add_subcommand("gen", "write a suite of golden fixtures and a manifest");
  std::string gen_suite_path, gen_out, gen_scalar;
  int gen_jobs = 0;
  bool gen_quiet = false;
  gen->add_option("--suite", gen_suite_path, "suite JSON (fixtures/suites/<name>.json)")->required();
  gen->add_option("--out", gen_out, "output directory")->required();
  gen->add_option("--jobs", gen_jobs, "threads over cases (default: all); output bytes do not depend on it");
  gen->add_option("--scalar", gen_scalar, "override every case's truth scalar: dd or bf50");
  gen->add_flag("--quiet", gen_quiet, "no progress on stderr");

  auto* check = app.add_subcommand("check", "check a candidate against a fixture");
  CheckArgs ca;
  check->add_option("--fixture", ca.fixture, "fixture .h5")->required();
  check->add_option("--candidate", ca.candidate, "candidate .h5 with out (and optionally dq, dk, dv, dr, dlambda)");
  check->add_option("--run", ca.run, "run an in-process candidate instead: ref-double, fast, cuda");
  check->add_flag("--json", ca.json, "print the report as JSON");
  check->add_option("--tol", ca.tol, "override limits: tensor=abs[,tensor=abs...]");
  check->add_option("--report", ca.report, "also write the JSON report to this file");
  check->add_flag("--row-bound", ca.row_bound,
                  "judge out, dq, dk, dv, dr by the condition-aware per-row bound (validation/row_bound.hpp) "
                  "instead of the same-precision baseline");

  auto* sweep = app.add_subcommand("sweep", "error vs the extended reference over a grid of problems, CSV (validation/sweep.hpp)");
  SweepArgs sa;
  sweep->add_option("--spec", sa.spec, "sweep description JSON (base problem, axes, seeds)");
  sweep->add_option("--out", sa.out, "CSV to write; an existing one from the same description is resumed");
  sweep->add_option("--axis", sa.axes, "add an axis: name=v1,v2,... (L, key_offset, candidate, member, or a problem field)");
  sweep->add_option("--set", sa.sets, "set a base problem field: field=value (dotted: solver.lambda=0.01)");
  sweep->add_option("--seeds", sa.seeds, "seeds (replace the description's)");
  sweep->add_option("--jobs", sa.jobs, "threads over items (default: all); output bytes do not depend on it");
  sweep->add_flag("--no-backward", sa.no_backward, "forward only");
  sweep->add_flag("--dry-run", sa.dry_run, "validate every point and print the item count; compute nothing");
  sweep->add_flag("--quiet", sa.quiet, "no progress on stderr");

  auto* inspect = app.add_subcommand("inspect", "print a fixture's problem, provenance and contents");
  std::string insp_file;
  bool insp_json = false;
  inspect->add_option("file", insp_file, "fixture .h5")->required();
  inspect->add_flag("--json", insp_json, "print as JSON");

  try {
    par::init(&argc, &argv);  // MPI only under mpirun (validation/mpi_shard.hpp)
  } catch (const plx::Error& e) {
    std::cerr << "plx: error: " << e.what() << "\n";
    return 2;
  }
  struct Finalize {
    ~Finalize() { par::finalize(); }
  } finalize_mpi;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  try {
    if (*demo) return run_demo(demo_suite, demo_out, demo_cand, demo_jobs);
    if (*gen) return run_gen(gen_suite_path, gen_out, gen_jobs, gen_scalar, gen_quiet);
    if (*check) return run_check(ca);
    if (*inspect) return run_inspect(insp_file, insp_json);
    if (*sweep) return run_sweep_cmd(sa);
  } catch (const plx::Error& e) {
    std::cerr << "plx: error: " << e.what() << "\n";
    if (par::world().size > 1) par::abort_all(2);
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "plx: error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
