// validation/sweep.hpp — `plx sweep`: error against the extended reference over a grid of problems.
//
// Charter: a sweep is a base problem (problem JSON, validation/problem_json.hpp), a list of axes
// and a list of seeds. The points are the Cartesian product of the axes (first axis outermost);
// every point runs once per seed (seeds innermost), so item k = point * n_seeds + seed_index.
// Per item: the inputs of the point's problem (plus an optional common key offset), the truth
// (the reference in double-double with its saved intermediates and per-row diagnostics), one
// candidate evaluation in working precision, and one CSV row: error statistics of out and every
// gradient against the truth, the per-row diagnostics summarised, and the coverage of the
// condition-aware row bound (validation/row_bound.hpp).
//
// Axes (name -> what a value sets):
//   L            Lq = Lkv = value
//   key_offset   every key gets + value * u (u a fixed unit vector of the seed), then is rounded
//                to the input dtype: a common offset, which leaves softmax weights unchanged
//   candidate    how the candidate is evaluated (candidate_kinds() below)
//   member       the named member (softmax, parallax, parallax_centred, lla, lla_cov, learned_query)
//   anything else: a problem JSON field, dotted for nested objects ("solver.lambda", "gen_param",
//                "anchor_knobs.delta_eps", "dtype", "form", "anchor", "qk_scale", "r_scale", ...)
// Values are given as a list ("values"), or generated: "geom": [from, to, factor] (from * factor^k
// up to to, integers when from and factor are), "linspace": [from, to, n].
//
// CSV: line 1 "# plx-sweep format <N> spec <hash>" (hash of the canonical description), line 2 the
// column names, then one row per item in item order. Rows are appended and flushed one at a time;
// a run on an existing file checks line 1 (another format or another description is refused with a
// message), keeps every complete row and computes only the remaining items. The bytes depend only on
// the description: not on threads, ranks or interruptions.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "reference/problem.hpp"

namespace plx {

inline constexpr int kSweepFormat = 1;

struct SweepAxis {
  std::string name;
  std::vector<nlohmann::json> values;
};

struct SweepSpec {
  std::string name = "sweep";
  nlohmann::json base = nlohmann::json::object();  // problem JSON every point starts from
  std::vector<SweepAxis> axes;
  std::vector<std::uint64_t> seeds = {1};
  bool backward = true;  // also compare gradients (not for decode problems)
  nlohmann::json canonical() const;  // what the spec hash covers
  std::string hash() const;          // first 16 hex digits of SHA-256 of canonical().dump()
};

// One point of the grid, resolved.
struct SweepPoint {
  int index = 0;
  std::vector<std::string> axis_values;  // as written in the CSV, one per axis
  Problem problem;                       // seed set per item
  double key_offset = 0;
  std::string candidate = "fp32";
};

// Candidate kinds: "fp64" / "fp32" (the reference algorithm of the point's member and formulation
// in double / float arithmetic, outputs rounded to the input dtype, as a kernel stores them);
// "fp32-saved" (softmax and Parallax only: the float forward's out, vbar and per-row saves stored,
// out/vbar rounded to the input dtype, then the kernel-style backward from those saves, t = <dO, out>
// taken from the stored out as FlashAttention-style backwards do); "fp64-detached" (solver probes: the
// double reference with solver.ridge_grad = detached against the Exact truth, so its gradient error
// is the size of the ridge term the Detached rule drops); "fast" (plx_fast, when linked).
std::vector<std::string> candidate_kinds();

SweepSpec parse_sweep(const nlohmann::json& j, const std::string& where = "sweep");
SweepSpec load_sweep(const std::string& path);
// CLI form: "name=v1,v2,..." (each value JSON if it parses, else a string) appended to spec.axes.
void add_cli_axis(SweepSpec& s, const std::string& text);
// CLI form: "field=value" into the base problem (dotted fields).
void set_cli_base(SweepSpec& s, const std::string& text);

// Every point, checked: unknown axes, empty ranges, invalid problems and unsupported candidates are
// a plx::Error naming the point, raised before any work starts.
std::vector<SweepPoint> expand_sweep(const SweepSpec& s);

// Column names of the CSV (after the format line).
std::vector<std::string> sweep_columns(const SweepSpec& s);

// One item: the CSV row (without the newline). Thread-safe; deterministic.
std::string sweep_item_row(const SweepSpec& s, const SweepPoint& pt, std::uint64_t seed);

// The row bound's raw material of one item, per tensor (out, dq, dk, dv, dr): for every row, the
// error |c_row - t_row|_2 and the limit of validation/row_bound.hpp, and u M_row. Empty when the
// item's status is not ok or the candidate is fp64-detached.
struct RowBoundRows {
  std::vector<double> err, limit, uM;
};
std::map<std::string, RowBoundRows> sweep_item_row_bound(const SweepSpec& s, const SweepPoint& pt, std::uint64_t seed);

struct SweepOptions {
  int jobs = 0;           // threads over items (0 = all OpenMP threads); each item runs serially then
  bool progress = true;   // progress on stderr: a bar with ETA on a terminal, plain lines otherwise
  long max_items = -1;    // stop after computing this many new items (tests: an interrupted sweep)
};
struct SweepRunResult {
  long items = 0, already = 0, computed = 0;
};
// Run the sweep into csv_path (created, or resumed). Under MPI (compiled with PLX_HAVE_MPI and
// started with more than one rank) items are dealt round-robin to ranks and rank 0 writes.
SweepRunResult run_sweep(const SweepSpec& s, const std::string& csv_path, const SweepOptions& opt = {});

}  // namespace plx
