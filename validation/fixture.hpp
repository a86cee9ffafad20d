// validation/fixture.hpp — golden fixtures, schema v1 (docs/fixtures.md is the normative text).
//
// Charter: generate one case (inputs in the problem dtype, truth in an extended scalar,
// saved intermediates, per-row diagnostics, the reference's own error, recommended
// tolerances), write it as one HDF5 file (temp name + rename), and read it back with every
// check a consumer needs: schema version, problem JSON, required datasets and shapes, and
// the SHA-256 of every dataset. Layout: flat root (q, r, k, v, dO, lambda, out, out_lo, dq,
// dq_lo, ...), groups saved/ and diag/. Nothing here runs a candidate (see check.hpp).
#pragma once
#include <functional>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>

#include "reference/inputs.hpp"
#include "reference/problem.hpp"
#include "validation/compare.hpp"

namespace plx {

constexpr int kFixtureSchemaVersion = 1;

// Tensors a candidate may provide, in report order. dlambda only for solver probes.
const std::vector<std::string>& checked_tensor_names();

// Truth as hi + lo doubles (hi = round(x), lo = round(x - hi)), ~30 digits together.
struct Truth {
  Tensor<double> hi, lo;
};

struct FixtureData {
  Problem p;
  std::string scalar = "dd";                   // extended scalar of the truth: "dd" or "bf50"
  Inputs in;                                   // exactly representable in p.dtype
  std::map<std::string, Truth> truth;          // out (+ dq, dk, dv, dr, dlambda when a backward exists)
  std::map<std::string, Truth> saved;          // m, lse, omega, zbar, Delta, d, probe, vbar
  std::map<std::string, Tensor<double>> diag;  // per-row diagnostics [B, Hq, Lq]
  nlohmann::json reference_error;              // measured (dd vs bf50) or a documented estimate
  nlohmann::json tolerances;                   // tensor -> candidate dtype -> {baseline_ratio, rel_floor, abs_floor, why}
  std::map<std::string, std::string> sha256;   // dataset path -> hex (filled by write/read)
  nlohmann::json provenance;                   // generator, git_commit, created (read back only)
  std::string purpose;                         // what the case tests (a suite case's comment); root attribute
  std::string hint;                            // where a failure usually comes from and what fixes it; root attribute
  // Certified enclosures (optional; validation/certify_fixture.hpp): tensor -> rad with
  // |exact - (hi + lo)| <= rad per entry, and the root attribute `certified` (null if absent).
  std::map<std::string, Tensor<double>> rad;
  nlohmann::json certified;
  // Row-sampled truth (validation/row_sample.hpp): the query rows the truth, saved/ and diag/
  // tensors hold, in order ([B, R, Hq, X], [B, Hq, R]); no dk, dv. Empty: every row. Stored as
  // the int64 dataset `rows` and the root attribute `rows` (the spec that chose them).
  std::vector<int> rows;
  nlohmann::json rows_spec;
  std::size_t truth_rows() const { return rows.empty() ? std::size_t(p.Lq) : rows.size(); }
};

// "plx <version> (git commit <hash at configure time>, fixture schema v<N>)": `plx --version`.
std::string version_string();
std::string git_commit();

// Is a reference backward compiled in (reference/backward.hpp)?
bool have_reference_backward();

// How the truth of one case is computed. Every choice gives the same bytes.
//  * Whole: one call of the reference over all batches and heads (OpenMP over its row blocks).
//  * Units: one (batch, kv head) at a time — the sub-problem B = 1, Hkv = 1, Hq = G of that
//    batch's keys and the G query heads sharing them. The reference computes every row block and
//    sums dK/dV over the group's heads and row blocks in the same order either way, so the
//    scattered results equal Whole's bit for bit (tests/validation/test_gen_units.cpp). The
//    extended-precision intermediates then exist for one unit at a time (peak memory), progress
//    is reported per unit, and under MPI the units are shared over the ranks.
//  * Auto: Units when the case has more than one unit and its work B Hq Lq Lkv (D + Dv) is at
//    least kUnitsWork, else Whole.
enum class GenSplit { Auto, Whole, Units };
constexpr double kUnitsWork = 1u << 30;
struct GenerateOptions {
  GenSplit split = GenSplit::Auto;
  // Under MPI (validation/mpi_shard.hpp), every rank calls generate_fixture_shared with the same
  // arguments and the units go to the ranks round-robin; rank 0 assembles and finishes the case.
  bool shared = false;
  // Called on the assembling rank after each unit: (units done, units in all).
  std::function<void(int, int)> progress;
  // Truth for these query rows only (validation/row_sample.hpp: select_rows); empty = every row.
  // With rows, the units are the runs of consecutive rows of each batch.
  std::vector<int> rows;
  nlohmann::json rows_spec;
};
// Does this case run in units under `split`?
bool gen_in_units(const Problem& p, GenSplit split);

// Compute everything for one case. `scalar` is "dd" (default) or "bf50".
FixtureData generate_fixture(const Problem& p, const std::string& scalar = "dd", const GenerateOptions& o = {});
// The same for given inputs (the caller's own q, k, v, ...), which must satisfy
// check_user_inputs (validation/user_inputs.hpp); generate_fixture(p) is this on make_inputs(p).
FixtureData generate_fixture(const Problem& p, Inputs in, const std::string& scalar, const GenerateOptions& o = {});
// One case computed by every MPI rank together (o.shared is implied): rank 0 returns the fixture,
// the other ranks std::nullopt after sending their units. A single process is generate_fixture.
std::optional<FixtureData> generate_fixture_shared(const Problem& p, const std::string& scalar, GenerateOptions o = {});

// The truth alone (no saved tensors, diagnostics or error measurement), in double-double and
// rounded to double: out, and with `gradients` dq, dk, dv (+ dr, dlambda as the member has them).
// The CG rule (validation/cg_rule.hpp) uses it for the direct-solve problem.
std::map<std::string, Tensor<double>> reference_truth_dd(const Problem& p, const Inputs& in, bool gradients);

// Write to `path` via a temporary name in the same directory and an atomic rename.
// Returns dataset path -> SHA-256 (the same values stored as attributes).
std::map<std::string, std::string> write_fixture(const FixtureData& f, const std::string& path);

// Read and verify (schema, problem, datasets, shapes, checksums). Throws plx::Error.
FixtureData read_fixture(const std::string& path);

// The recommended tolerance for tensor `name` of a candidate in dtype `cand` (derivation in `why`).
Tolerance recommended_tolerance(const Problem& p, const std::string& name, DType cand);
Tolerance tolerance_from_json(const nlohmann::json& j);

}  // namespace plx
