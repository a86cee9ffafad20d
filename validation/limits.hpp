// validation/limits.hpp — refuse work that cannot fit in memory, before allocating it.
//
// Charter: an estimate of the bytes that generating a fixture (inputs, the truth in the
// extended scalar, its hi/lo doubles, saved intermediates, gradients) or checking a
// candidate (fixture inputs and truth, candidate, same-precision baseline) will hold at its
// peak, from the problem's shape alone; and a guard that throws plx::Error with the estimate
// and its breakdown when it exceeds the memory available (MemAvailable of /proc/meminfo, or
// PLX_MEMORY_LIMIT bytes when set). Absurd shapes (a dimension beyond int32, e.g. L = 2^40)
// never reach here: problem_from_json rejects them; a dataset whose declared size exceeds
// the budget is refused by h5io's read before allocation.
#pragma once
#include <cstdint>
#include <string>

#include "reference/problem.hpp"

namespace plx {

struct MemoryEstimate {
  double bytes = 0;
  std::string breakdown;  // e.g. "inputs 1.2 GB (double), truth 3.4 GB (dd + hi/lo), ..."
};

// Peak bytes of generate_fixture(p, scalar) (scalar "dd" or "bf50"; gradients when p allows),
// with truth for `rows` sampled query rows (validation/row_sample.hpp; 0 = every row).
MemoryEstimate estimate_gen_memory(const Problem& p, const std::string& scalar, std::size_t rows = 0);
// Peak bytes of read_fixture + check_candidate for p (gradients included when p allows), for a
// fixture with truth on `rows` sampled query rows (0 = every row).
MemoryEstimate estimate_check_memory(const Problem& p, std::size_t rows = 0);

// Bytes this process may use: the limit set_memory_limit gave (the plx tool: PLX_MEMORY_LIMIT),
// else MemAvailable (else physical RAM). 0 = no explicit limit.
void set_memory_limit(std::uint64_t bytes);
std::uint64_t memory_budget();

// Throws plx::Error "<what>: needs about X GB (<breakdown>), more than the Y GB available" when
// e.bytes > memory_budget(). For `plx gen` the message names what reduces the need: row-sampled
// truth, and MPI ranks for the work.
void require_memory(const MemoryEstimate& e, const std::string& what);

std::string human_bytes(double b);

}  // namespace plx
