// validation/plx_main.cpp — the `plx` command line.
//
// Charter: thin CLI11 front end over suites -> fixtures -> candidates -> check -> report.
// Subcommands: gen (write a suite of fixtures), check (a candidate file or an in-process
// candidate against a fixture), inspect (what a fixture holds), demo (the README's first
// command: default suite, best candidate, report). Exit codes everywhere: 0 pass,
// 1 numerical failure (including NaN/Inf in a candidate, or a missing tensor under
// --require-all), 2 bad input or usage, 3 (check) nothing failed but a tensor had no sound
// rule and was not judged. With --json, an error is a JSON object on stdout as well.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "reference/all.hpp"
#include "validation/candidates.hpp"
#include "validation/certify_fixture.hpp"
#include "validation/check.hpp"
#include "validation/emulate.hpp"
#include "validation/environment.hpp"
#include "validation/fixture.hpp"
#include "validation/h5io.hpp"
#include "validation/problem_json.hpp"
#include "validation/suite.hpp"
#include "validation/user_inputs.hpp"
#include "validation/mpi_shard.hpp"
#include "validation/row_sample.hpp"
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
  std::string fixture, candidate, run, report, baseline;
  std::vector<std::string> tol;
  bool json = false, require_all = false, ignore_extra = false, as_problem_dtype = false, row_bound = false;
};

CheckResult check_one(const std::string& fixture_path, const FixtureData& fx, const std::string& cand_file,
                      const std::string& run, const CheckOptions& opt, bool ignore_extra = false) {
  if (!cand_file.empty()) {
    std::vector<std::string> ignored;
    CheckResult r = check_candidate(fixture_path, fx, read_candidate(cand_file, fx, ignore_extra, &ignored), opt);
    for (const auto& n : ignored) r.notes.push_back("ignored (--ignore-extra): candidate object '" + n + "'");
    return r;
  }
  // Gradients are run and judged whenever the fixture holds their truth; a backend that cannot
  // differentiate this problem is said so in the report, never passed over silently.
  bool grads = false;
  for (const char* g : {"dq", "dk", "dv", "dr"}) grads = grads || fx.truth.count(g) > 0;
  std::string why_no_grads;
  const RunWhat what = grads ? RunWhat::ForwardAndBackward : RunWhat::Forward;
  Candidate c;
  if (fx.rows.empty()) {
    CandidateResult r = run_candidate(run, fx.p, fx.in, what, &why_no_grads);
    c = candidate_from_result("run:" + run, r, fx.p, candidate_dtypes(run, fx.p));
  } else {
    // A row-sampled fixture: the backend runs each run of sampled rows as its own sub-problem
    // (validation/row_sample.hpp), which computes exactly those rows of the full problem.
    c.label = "run:" + run + " (on the sub-problems of the " + std::to_string(fx.rows.size()) + " sampled rows)";
    c.in_process = true;
    const auto dtypes = candidate_dtypes(run, fx.p);
    auto m = over_rows(fx.p, fx.in, fx.rows, [&](const Problem& sp, const Inputs& si) {
      std::string why;
      CandidateResult r = run_candidate(run, sp, si, what, &why);
      if (!why.empty()) why_no_grads = why;
      std::map<std::string, Tensor<double>> t;
      for (auto [n, x] : {std::pair<const char*, Tensor<double>*>{"out", &r.out}, {"dq", &r.dq}, {"dr", &r.dr}})
        if (!x->empty()) t[n] = std::move(*x);
      return t;
    });
    if (!why_no_grads.empty()) m.erase("dq"), m.erase("dr");  // not every run has them: none judged
    for (auto& [n, x] : m) c.tensors[n] = {std::move(x), dtypes.count(n) ? dtypes.at(n) : DType::F64};
  }
  // Keep only tensors the fixture has truth for (e.g. gradients of a decode fixture).
  for (auto it = c.tensors.begin(); it != c.tensors.end();)
    it = fx.truth.count(it->first) ? std::next(it) : c.tensors.erase(it);
  CheckResult res = check_candidate(fixture_path, fx, c, opt);
  if (!why_no_grads.empty()) res.notes.push_back("gradients NOT checked (the fixture has their truth): " + why_no_grads);
  return res;
}

int run_check(const CheckArgs& a) {
  if (a.candidate.empty() == a.run.empty()) throw Error("check: give exactly one of --candidate FILE or --run NAME");
  CheckOptions opt;
  opt.abs_override = parse_tol_overrides(a.tol);
  opt.require_all = a.require_all, opt.as_problem_dtype = a.as_problem_dtype, opt.row_bound = a.row_bound;
  FixtureData fx = read_fixture(a.fixture);
  if (!a.baseline.empty()) profile_by_name(a.baseline);  // an unknown name fails before any work
  opt.baseline = a.baseline;
  CheckResult r = check_one(a.fixture, fx, a.candidate, a.run, opt, a.ignore_extra);
  if (!a.report.empty()) write_file_atomic(a.report, r.to_json().dump(1) + "\n");
  if (a.json) std::cout << r.to_json().dump(1) << "\n";
  else std::cout << r.format();
  return exit_code(r.verdict);
}

// ---- gen -------------------------------------------------------------------------------
int run_gen(const std::string& suite_path, const std::string& out, int jobs, const std::string& scalar, bool quiet,
            bool certify, double certify_limit, const std::string& split) {
  Suite s = load_suite(suite_path);
  if (!scalar.empty()) {
    if (scalar != "dd" && scalar != "bf50") throw Error("--scalar must be dd or bf50, got '" + scalar + "'");
    for (auto& c : s.cases) c.scalar = scalar;
  }
  GenOptions o;
  o.jobs = jobs, o.progress = !quiet;
  o.certify = certify, o.certify_work_limit = certify_limit;
  o.split = split == "units" ? GenSplit::Units : split == "whole" ? GenSplit::Whole : GenSplit::Auto;
  gen_suite(s, out, o);
  return 0;
}

// gen --inputs: one fixture on the user's own tensors (validation/user_inputs.hpp).
int run_gen_inputs(const std::string& inputs, const std::string& problem_path, const std::string& out,
                   const std::string& scalar, const std::string& purpose) {
  if (problem_path.empty()) throw Error("gen --inputs needs --problem FILE.json (the problem the inputs belong to)");
  std::ifstream pf(problem_path);
  if (!pf) throw Error("cannot read problem '" + problem_path + "'");
  json pj;
  try {
    pj = json::parse(pf);
  } catch (const json::exception& e) {
    throw Error("problem '" + problem_path + "' is not valid JSON: " + e.what());
  }
  const Problem p = problem_from_json(pj);
  FixtureData f = fixture_from_user_inputs(p, read_user_inputs(inputs), scalar.empty() ? "dd" : scalar,
                                           "inputs '" + inputs + "', dataset");
  f.purpose = purpose;
  write_fixture(f, out);
  std::cerr << "plx gen: wrote " << out << " (" << member_name(p) << ", truth in " << f.scalar << ")\n";
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
            {"reference_error", fx.reference_error}, {"tolerances", fx.tolerances}, {"diagnostics_max", diag},
            {"purpose", fx.purpose}, {"hint", fx.hint}};
  if (!fx.certified.is_null()) j["certified"] = fx.certified;
  if (!fx.rows.empty()) j["rows"] = {{"count", fx.rows.size()}, {"spec", fx.rows_spec}};
  if (as_json) {
    std::cout << j.dump(1) << "\n";
    return 0;
  }
  std::cout << "fixture " << path << "  (schema v" << kFixtureSchemaVersion << ", checksums OK)\n"
            << "  member " << member_name(fx.p) << ", inputs " << to_string(fx.p.dtype) << ", truth in " << fx.scalar
            << "\n  generator " << fx.provenance.value("generator", "") << ", commit "
            << fx.provenance.value("git_commit", "") << ", created " << fx.provenance.value("created", "") << "\n"
            << "  problem " << problem_to_json(fx.p).dump() << "\n";
  if (!fx.rows.empty())
    std::cout << "  row-sampled: truth for " << fx.rows.size() << " of " << fx.p.Lq
              << " query rows (dataset 'rows'; spec " << fx.rows_spec.dump() << "); no dk, dv\n";
  if (!fx.purpose.empty()) std::cout << "  purpose: " << fx.purpose << "\n";
  if (!fx.hint.empty()) std::cout << "  hint: " << fx.hint << "\n";
  std::cout << "  datasets:\n";
  for (const auto& d : datasets) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "    %-22s %-24s %-18s %.16s…\n", d["name"].get<std::string>().c_str(),
                  d["type"].get<std::string>().c_str(), shape_str(d["shape"].get<std::vector<std::size_t>>()).c_str(),
                  d["sha256"].get<std::string>().c_str());
    std::cout << buf;
  }
  if (const std::string cs = certified_summary(fx); !cs.empty()) {  // widths of the certified enclosures
    std::cout << "  " << cs << "\n";
    for (auto it = fx.certified["tensors"].begin(); it != fx.certified["tensors"].end(); ++it)
      std::cout << "    " << it.key() << ": max rad " << it.value()["max_rad"].get<double>() << " (max |truth| "
                << it.value()["max_abs"].get<double>() << "), enclosure width " << it.value()["enclosure_rel_width"].get<double>()
                << " relative, " << it.value()["bits"].get<long>() << " bits\n";
    if (fx.certified.contains("not_verified"))
      for (auto it = fx.certified["not_verified"].begin(); it != fx.certified["not_verified"].end(); ++it)
        std::cout << "    " << it.key() << ": not verified: " << it.value().get<std::string>() << "\n";
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
  // An installed plx (cmake --install): <prefix>/bin/plx and <prefix>/share/plx/suites/.
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path p = exe.parent_path().parent_path() / "share" / "plx" / "suites" / "default.json";
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
  int exit_code = 0, passed = 0, failed = 0, bad = 0, not_judged = 0;
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
      CheckResult r = check_one(fpath, fx, "", who, CheckOptions{});
      std::cout << "\n" << r.format();
      if (r.verdict == Verdict::NotJudged) ++not_judged;  // reported; no verdict, so no failure
      else (r.passed ? passed : failed)++;
      if (r.verdict == Verdict::Fail) exit_code = std::max(exit_code, 1);
    } catch (const Error& e) {
      std::cout << "\n== " << c.problem.name << "\n   candidate " << who << ": error: " << e.what() << "\n";
      ++bad, exit_code = 2;
    }
  }
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "\nplx demo summary: " << passed << " passed, " << failed << " failed, " << not_judged << " not judged, " << bad << " errors, of "
            << s.cases.size() << " cases (" << sec << " s); fixtures kept in " << out << "\n";
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"plx — the numerics of softmax, LLA and Parallax, checked against an extended-precision reference.\n"
               "Exit codes: 0 pass, 1 numerical failure (or a missing tensor under --require-all), 2 bad input,\n"
               "3 (check) nothing failed but a tensor has no sound rule and was not judged.\n"
               "With --json, errors are also printed as a JSON object on stdout."};
  app.set_version_flag("--version", version_string(), "print the version, git commit and fixture schema version");
  app.require_subcommand(1);
  bool want_json = false;  // errors as JSON on stdout too (decided before parsing, so parse errors qualify)
  for (int i = 1; i < argc; ++i) want_json = want_json || std::string(argv[i]) == "--json";
  auto fail = [&](const std::string& msg, int rc) {
    std::cerr << "plx: error: " << msg << "\n";
    if (want_json) std::cout << json{{"error", msg}, {"exit_code", rc}}.dump(1) << "\n";
    return rc;
  };

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
  std::string gen_inputs, gen_problem, gen_purpose;
  gen->add_option("--suite", gen_suite_path, "suite JSON (fixtures/suites/<name>.json)");
  gen->add_option("--inputs", gen_inputs, "instead of a suite: HDF5 file with your own q, k, v (r, dO, lambda)");
  gen->add_option("--problem", gen_problem, "with --inputs: the problem JSON the inputs belong to");
  gen->add_option("--purpose", gen_purpose, "with --inputs: what the case tests (stored in the fixture)");
  gen->add_option("--out", gen_out, "output directory (with --inputs: the fixture file)")->required();
  gen->add_option("--jobs", gen_jobs, "threads over cases (default: all); output bytes do not depend on it");
  gen->add_option("--scalar", gen_scalar, "override every case's truth scalar: dd or bf50");
  gen->add_flag("--quiet", gen_quiet, "no progress on stderr");
  bool gen_certify = false;
  double gen_certify_limit = kCertifyWorkLimit;
  gen->add_flag("--certify", gen_certify, "also prove enclosures of the truth (interval arithmetic; docs/certified.md)");
  gen->add_option("--certify-limit", gen_certify_limit, "certify only cases whose work B Hq Lq Lkv (D + Dv) is at most this")
      ->check(CLI::PositiveNumber);
  std::string gen_split = "auto";
  gen->add_option("--split", gen_split,
                  "auto | units | whole: compute a case one (batch, kv head) at a time (less memory, progress per "
                  "unit, shared over MPI ranks) or all at once; auto = units when the case has several units and "
                  "B Hq Lq Lkv (D + Dv) >= 2^30. The bytes are the same either way")
      ->check(CLI::IsMember({"auto", "units", "whole"}));

  auto* check = app.add_subcommand("check", "check a candidate against a fixture");
  CheckArgs ca;
  check->add_option("--fixture", ca.fixture, "fixture .h5")->required();
  check->add_option("--candidate", ca.candidate, "candidate .h5 with out (and optionally dq, dk, dv, dr, dlambda)");
  std::string run_help = "run an in-process backend instead:";
  for (const Backend& b : backends()) run_help += "\n    " + b.name + ": " + b.summary;
  check->add_option("--run", ca.run, run_help);
  check->add_flag("--json", ca.json, "print the report as JSON");
  check->add_option("--tol", ca.tol, "override limits: tensor=abs[,tensor=abs...]");
  check->add_option("--report", ca.report, "also write the JSON report to this file");
  check->add_flag("--require-all", ca.require_all,
                  "fail (exit 1) when the candidate lacks a tensor the fixture has truth for (default: listed as not checked)");
  check->add_flag("--ignore-extra", ca.ignore_extra,
                  "skip candidate datasets the fixture does not check (default: an error naming them, exit 2)");
  check->add_flag("--as-problem-dtype", ca.as_problem_dtype,
                  "judge a tensor stored wider than its natural dtype (e.g. a float32 result stored as float64) at "
                  "the natural dtype");
  check->footer("Exit: 0 pass; 1 a judged tensor failed (or --require-all and a tensor is missing); 2 bad input; "
                "3 nothing failed but a tensor was not judged (no sound rule, e.g. only a float64 fallback baseline).");
  check->add_option("--baseline", ca.baseline,
                    "same-precision baseline: an emulation profile (docs/emulation.md), e.g. flash-bf16; "
                    "default: the float32 reference rounded to the candidate dtype (float64 for float64)");
  check->add_flag("--row-bound", ca.row_bound,
                  "experimental: judge out, dq, dk, dv, dr by the condition-aware per-row bound (validation/row_bound.hpp) "
                  "instead of the same-precision baseline; it covers >= 99.9 % of rows on its calibration sweeps, within 10x of the "
                  "median row's error for out and dr; for dq, dk, dv it is loose (docs/stability.md)");

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

  {
    std::string foot = "Backends for check --run (best first):";
    for (const Backend& b : backends()) foot += "\n  " + b.name + ": " + b.summary;
    app.footer(foot + "\n" + environment_help());
  }
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
    apply_environment();
  } catch (const plx::Error& e) {
    const int rc = fail(e.what(), 2);
    if (par::world().size > 1) par::abort_all(rc);
    return rc;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() != 0 && want_json) return fail(e.what(), 2);
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  // no input may make plx run unbounded: a stuck libhdf5 read ends with exit 2 (h5io.hpp);
  // the budget is 30 s or PLX_HDF5_WATCHDOG_S (applied with the environment above)
  h5::set_watchdog(h5::tool_watchdog_seconds(), want_json);
  try {
    if (*demo) return run_demo(demo_suite, demo_out, demo_cand, demo_jobs);
    if (*gen) {
      if (gen_suite_path.empty() == gen_inputs.empty()) throw Error("gen: give exactly one of --suite FILE or --inputs FILE");
      if (!gen_inputs.empty()) return run_gen_inputs(gen_inputs, gen_problem, gen_out, gen_scalar, gen_purpose);
      return run_gen(gen_suite_path, gen_out, gen_jobs, gen_scalar, gen_quiet, gen_certify, gen_certify_limit, gen_split);
    }
    if (*check) return run_check(ca);
    if (*inspect) return run_inspect(insp_file, insp_json);
    if (*sweep) return run_sweep_cmd(sa);
  } catch (const std::exception& e) {  // plx::Error and anything else: bad input, exit 2
    const int rc = fail(e.what(), 2);
    if (par::world().size > 1) par::abort_all(rc);  // one rank's error ends every rank
    // Leave without libhdf5's exit-time teardown: after a failed write (a full disk) it can crash
    // on the half-written file's handles. Temporary files are already removed by the writer.
    std::cout.flush(), std::cerr.flush();
    std::_Exit(rc);
  }
  return 0;
}
