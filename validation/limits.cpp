// validation/limits.cpp — see limits.hpp.
#include "validation/limits.hpp"

#include <omp.h>

#include <atomic>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "reference/errors.hpp"

namespace plx {
namespace {
struct Counts {
  double in = 0;    // input elements: q, k, v, dO (+ r), lambda
  double out = 0;   // forward outputs and per-row saved values
  double grad = 0;  // gradient elements: dq, dk, dv (+ dr, dlambda)
};
Counts counts(const Problem& p) {
  const double B = p.B, Lq = p.Lq, Lkv = p.Lkv, Hq = p.Hq, Hkv = p.Hkv, D = p.D, Dv = p.Dv;
  const double nq = B * Lq * Hq * D, nk = B * Lkv * Hkv * D, nv = B * Lkv * Hkv * Dv, no = B * Lq * Hq * Dv;
  const double rows = B * Hq * Lq;
  Counts c;
  c.in = 2 * nq + nk + nv + no + rows;  // q, r (learned probes; counted always), k, v, dO, lambda
  // out, saved/vbar [B,Lq,Hq,Dv], saved/probe [B,Lq,Hq,D], ~20 per-row values (saved/*, diag/*),
  // plus an LLA row's D x D system while it is solved (one per thread: counted once per row
  // block of 64 rows, a generous bound on the threads in flight).
  c.out = 2 * no + nq + 20 * rows + (p.probe == Probe::Solver ? 64.0 * D * D : 0.0);
  if (!p.decode) c.grad = 2 * nq + nk + nv + rows;
  return c;
}
std::string gb(double b) { return human_bytes(b); }
}  // namespace

std::string human_bytes(double b) {
  char buf[64];
  if (b >= 1e9) std::snprintf(buf, sizeof buf, "%.3g GB", b / 1e9);
  else if (b >= 1e6) std::snprintf(buf, sizeof buf, "%.3g MB", b / 1e6);
  else std::snprintf(buf, sizeof buf, "%.3g kB", b / 1e3);
  return buf;
}

MemoryEstimate estimate_gen_memory(const Problem& p, const std::string& scalar, std::size_t rows) {
  Counts c = counts(p);
  double sub = 0;
  if (rows > 0 && rows < std::size_t(p.Lq)) {
    // Truth for `rows` rows: the per-row outputs and dq, dr scale by rows / Lq, dk and dv are not
    // computed. A run's sub-problem copies one batch's keys and values (double); each of up to T
    // (threads) kv-head units in flight holds its keys and values in the truth scalar (twice:
    // the backward converts its own), and the backward's wave of up to 4 T row blocks holds a
    // partial dK/dV over all keys each (reference/backward.hpp).
    const double f = double(rows) / p.Lq, kv = double(p.Lkv) * p.Hkv * (p.D + p.Dv);
    const double S = scalar == "bf50" ? 48 : 16, T = omp_get_max_threads();
    c.out *= f;
    c.grad = p.decode ? 0 : f * (2.0 * p.B * p.Lq * p.Hq * p.D + double(p.B) * p.Hq * p.Lq);
    sub = 8 * kv + T * 2 * S * kv / p.Hkv + 4 * T * S * double(p.Lkv) * (p.D + p.Dv);
  }
  // Bytes per element of the truth scalar: dd is two doubles; bf50 a Boost cpp_bin_float of
  // ~170 bits with its exponent and sign (48 bytes with padding).
  const double S = scalar == "bf50" ? 48 : 16;
  MemoryEstimate e;
  const double in = 8 * c.in * 2;  // Tensor<double> inputs + their storage copy while written
  // Truth: the scalar tensors, then hi/lo doubles, then the written bytes (8 per element); the
  // reference-error cross-check runs a second scalar over the same shapes (bf50, 48 bytes).
  const double fwd = c.out * (S + 48 + 16 + 8), bwd = c.grad * (S + 48 + 16 + 8) * 2;  // backward: saved + result
  e.bytes = in + fwd + bwd + sub;
  e.breakdown = "inputs " + gb(in) + ", forward truth " + gb(fwd) + " (" + scalar + " + cross-check + hi/lo), gradients " +
                gb(bwd) + (sub > 0 ? ", a run's keys and partial dK/dV " + gb(sub) : "");
  return e;
}

MemoryEstimate estimate_check_memory(const Problem& p, std::size_t rows) {
  const Counts c = counts(p);
  MemoryEstimate e;
  if (rows > 0 && rows < std::size_t(p.Lq)) {
    // Row-sampled (validation/row_sample.hpp): truth and baseline on `rows` rows; a candidate file
    // is full size (out, dq, dr); a run's sub-problem copies one batch's keys and values.
    const double f = double(rows) / p.Lq, full = double(p.B) * p.Lq * p.Hq * (p.Dv + 2.0 * p.D);
    const double kv = double(p.Lkv) * p.Hkv * (p.D + p.Dv);
    const double fx = 8 * c.in * 2 + full * f * (16 + 8);
    const double cand = full * (8 + 8);
    const double base = full * f * (4 + 8 + 8) + 4 * kv + 8 * kv;
    e.bytes = fx + cand + base;
    e.breakdown = "fixture " + gb(fx) + " (truth on " + std::to_string(rows) + " rows), candidate " + gb(cand) +
                  ", same-precision baseline on the rows' sub-problems " + gb(base);
    return e;
  }
  const double fx = 8 * c.in * 2 + (c.out + c.grad) * (16 + 8);  // inputs (+ raw bytes), truth hi/lo (+ raw)
  const double cand = (c.out + c.grad) * (8 + 8);                   // candidate doubles (+ raw)
  const double base = (c.out + c.grad) * (4 + 8 + 8) + 4 * c.in;   // fp32 reference, widened, rounded; fp32 inputs
  e.bytes = fx + cand + base;
  e.breakdown = "fixture " + gb(fx) + ", candidate " + gb(cand) + ", same-precision baseline " + gb(base);
  return e;
}

namespace {
std::atomic<std::uint64_t> g_memory_limit{0};
}  // namespace

void set_memory_limit(std::uint64_t bytes) { g_memory_limit.store(bytes); }

std::uint64_t memory_budget() {
  if (const std::uint64_t v = g_memory_limit.load()) return v;
  std::ifstream mi("/proc/meminfo");
  std::string line;
  while (std::getline(mi, line)) {
    std::istringstream ss(line);
    std::string key;
    unsigned long long kb = 0;
    if (ss >> key >> kb && key == "MemAvailable:") return kb * 1024ull;
  }
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? std::uint64_t(pages) * std::uint64_t(page) : (std::uint64_t(8) << 30);
}

void require_memory(const MemoryEstimate& e, const std::string& what) {
  const double have = double(memory_budget());
  if (e.bytes > have)
    throw Error(what + ": needs about " + gb(e.bytes) + " of memory (" + e.breakdown + "), more than the " + gb(have) +
                " available (MemAvailable, or PLX_MEMORY_LIMIT); refused before allocating anything");
}

}  // namespace plx
