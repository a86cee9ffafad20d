// validation/row_sample.hpp — truth for a chosen subset of query rows (row-sampled fixtures).
//
// At 100k keys the truth of every row costs O(Lq Lkv D) in double-double, out of reach; the truth of
// R chosen rows costs O(R Lkv D) and still catches a kernel that goes wrong at long rows. A
// fixture then carries truth (out, dq, dr, dlambda, saved/*, diag/*) only for the query rows listed
// in its dataset `rows`, in that order: [B, R, Hq, X] and [B, Hq, R]. dk and dv sum over every
// query row and have no truth in such a fixture. Inputs stay full size, so a candidate computes the
// whole problem as usual and `plx check` judges exactly the listed rows.
//
// How the rows are computed: a maximal run of consecutive listed rows [i0, i1) of batch b is the
// sub-problem B = 1, Lq = i1 - i0 of that batch's keys with used' = used_b - Lq + i1 for a causal
// mask (docs/math.md §1.2: row i sits at P_i = used_b - Lq + i, which the sub-problem keeps) and
// the keys at or after used' dropped (no row of the run sees them). Without a causal mask every
// row sees the same keys and used' = used_b. A non-causal mask with a window is anchored to the last
// query row, so only a suffix of rows can be cut out of it: other row sets are refused. The
// reference computes each row of the sub-problem exactly as in the full problem (the same keys
// in the same order), so sampled truth equals those rows of full truth bit for bit
// (tests/validation/test_row_sample.cpp).
#pragma once
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "reference/inputs.hpp"
#include "reference/problem.hpp"

namespace plx {

// The spec, a suite case's "rows": {"sample": N, "seed": S, "block": K, "ranges": [[a, b], ...]}.
// sample: N rows in all, the first and last query rows always among them and the others drawn
// uniformly without replacement (seed S, default the problem's seed) as (N - 2) / K aligned
// blocks of K consecutive rows (K = 1 by default: single rows; larger blocks share each run's
// O(Lkv D) set-up, see docs/fixtures.md); ranges: half-open [a, b) runs of rows added to the
// sample. Returns the sorted, distinct rows. Errors name the field.
std::vector<int> select_rows(const Problem& p, const nlohmann::json& spec);
// Is this row set computable as sub-problems (see the charter)? Otherwise a plx::Error naming why.
void check_row_set(const Problem& p, const std::vector<int>& rows);

struct RowRun {
  int b = 0, i0 = 0, i1 = 0;  // batch, query rows [i0, i1)
  int k0 = 0;                 // position of row i0 in the row list
};
// Maximal runs of consecutive rows, for every batch (batch-major).
std::vector<RowRun> row_runs(const Problem& p, const std::vector<int>& rows);
// The sub-problem of one run and its inputs (sliced from the full inputs).
Problem row_problem(const Problem& p, const RowRun& r);
Inputs row_inputs(const Problem& p, const Inputs& in, const RowRun& r);

// Full [B, Lq, H, X] / [B, H, Lq] -> the listed rows [B, R, H, X] / [B, H, R].
Tensor<double> take_rows(const Tensor<double>& full, const std::vector<int>& rows);
// A run's sub-problem tensor [1, i1 - i0, H, X] / [1, H, i1 - i0] into the row tensor `t`
// (allocated on first use for B batches and R rows).
void put_run(Tensor<double>& t, const Tensor<double>& sub, const RowRun& r, int B, std::size_t R);

// Run `f` (a per-problem computation returning named tensors) on every run's sub-problem and
// assemble its per-row tensors (out, dq, dr, dlambda) over the listed rows; dk, dv are dropped.
std::map<std::string, Tensor<double>> over_rows(
    const Problem& p, const Inputs& in, const std::vector<int>& rows,
    const std::function<std::map<std::string, Tensor<double>>(const Problem&, const Inputs&)>& f);

}  // namespace plx
