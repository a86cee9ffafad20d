// validation/suite.hpp — suites of fixture cases and `plx gen`.
//
// Charter: a suite is a JSON file {"name", "scalar"?, "defaults"?, "cases": [{"problem": {...},
// "scalar"?, "comment"? | "purpose"?, "hint"?, "rows"?}]}; "rows" asks for truth on a sample of query
// rows only (validation/row_sample.hpp: {"sample": N, "seed": S, "ranges": [[a, b], ...]}); each case's problem is `defaults` overlaid by its own fields (objects merged
// key by key) and parsed strictly (problem_json.hpp). gen_suite() writes one fixture per case
// (file = problem name + ".h5"), in parallel over cases with OpenMP (the reference inside a
// case runs serially then; with jobs = 1 it runs in parallel itself), and a manifest.json
// mapping every file to its problem and the SHA-256 of each dataset. Output bytes of every
// dataset are independent of `jobs`. Progress goes to stderr.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "reference/problem.hpp"
#include "validation/fixture.hpp"

namespace plx {

struct SuiteCase {
  Problem problem;
  std::string scalar = "dd";
  std::string file;  // problem.name + ".h5"
  std::string purpose;  // the case's "purpose" (or its "comment"): stored in the fixture, printed on failure
  std::string hint;     // the case's "hint": the usual cause of a failure and its fix
  // The case's "rows": truth for these query rows only (validation/row_sample.hpp); empty = all.
  std::vector<int> rows;
  nlohmann::json rows_spec;
};
struct Suite {
  std::string name;
  std::vector<SuiteCase> cases;
};

Suite load_suite(const std::string& path);
Suite parse_suite(const nlohmann::json& j, const std::string& where = "suite");
// JSON text -> suite; every failure (syntax, a wrong type anywhere) is a plx::Error.
Suite parse_suite_text(const std::string& text, const std::string& where = "suite");

struct GenOptions {
  int jobs = 0;              // 0 = all OpenMP threads
  bool progress = true;      // one line per case on stderr
  bool certify = false;      // also certified enclosures (validation/certify_fixture.hpp) for cases
  double certify_work_limit = 2e6;  // ... whose forward work B Hq Lq Lkv (D + Dv) is at most this
  // Which cases run one (batch, kv head) unit at a time (validation/fixture.hpp): those run one
  // after another with every thread and, under MPI, with every rank; the rest in parallel.
  GenSplit split = GenSplit::Auto;
};
// Generate every case into `dir` (created if missing). Returns the manifest (also written
// to dir/manifest.json). Throws plx::Error naming the case on failure.
nlohmann::json gen_suite(const Suite& s, const std::string& dir, const GenOptions& opt = {});

// Compare two manifests dataset by dataset; returns human-readable differences (empty = same).
std::vector<std::string> diff_manifests(const nlohmann::json& want, const nlohmann::json& got);

// Write text to `path` via a temporary file and rename (throws plx::Error).
void write_file_atomic(const std::string& path, const std::string& text);

}  // namespace plx
