// validation/row_bound.hpp — a condition-aware per-row error bound for out and the gradients.
//
// Charter: for a candidate that evaluates a member in working precision u_w and stores its results
// in the input dtype (unit roundoff u_s), a limit for every row of out, dq, dk, dv, dr (a row is the
// last axis: one query row of out/dq/dr, one key row of dk/dv):
//
//   |c_row - t_row|_2 <= C_T * u * M_row + u_s * |t_row|_2
//
// M_row is the row's first-order sensitivity to one rounding of every quantity the kernel forms,
// computed from the inputs and the truth's saved intermediates (in double). Rounding errors of
// different keys are independent, so their effects add as a root sum of squares; errors shared by
// the whole row (the normalisation, t = <dO, out> and b = <dO, vbar>, the accumulator form's two
// large sums, the solve's error in the probe) act coherently and add linearly. With p_j the weights,
// sigma_s_j = tau sum_d |q_d k_jd| (one rounding of the logit s_j moves it by ~u sigma_s_j),
// z_j = theta.k_j, sigma_z_j = sum_d |theta_d k_jd|, gamma = omega / d (1 for the key-mean anchor)
// and kappa the condition number of the row's ridge system (solver probes; 0 otherwise):
//
//   out: |out| + [accumulator] |gamma| (|zbar| |vbar| + sum_j p_j |z_j| |v_j|)
//        + [solver] |gamma| kappa |theta| sum_j p_j |k_j - kbar| |v_j - vbar| + (1 + kappa) |gamma| |gamma - 1| |out - vbar|
//        + (1 + kappa) sqrt(sum_j [p_j (1 + |gamma| |z_j - zbar|) sigma_s_j |v_j - out| + p_j |gamma| sigma_z_j |v_j - vbar| + p_j |v_j|]^2)
//   dq:  (1 + kappa) (|dq| + tau (T |kbar| + |gamma| Bv |sum_j p_j (z_j - zbar) k_j|) + sqrt(sum_j (tau |k_j| e_j)^2))
//   dr:  |dr| + |gamma| Bv |kbar| + sqrt(sum_j (|k_j| f_j)^2)
//   dk_j, dv_j: |row| + the root sum of squares over the queries i of the same per-(i, j) terms
//
// with e_j = p_j (A_j + |a_j - t| sigma_s_j + |gamma| (|z_j - zbar| A_j + sigma_z_j |a_j - b|)) + |gl_j| sigma_s_j,
// f_j = |gamma| p_j (A_j + |a_j - b| sigma_s_j) + |gu_j| sigma_s_j, a_j = dO.v_j, A_j = sum_d |dO_d v_jd|,
// T = sum_d |dO_d out_d|, Bv = sum_d |dO_d vbar_d|, gl and gu the backward's per-key weights
// (docs/gradients.md). A common key offset makes sigma_z_j, |k_j| and |kbar| large while the outputs
// stay put, so the bound grows exactly where the arithmetic loses digits; the accumulator form's
// cancellation and t taken from a rounded out enter as the coherent terms. Saved-tensor backwards
// use u = max(u_w, u_s). C_T is one constant per tensor, measured on the calibration sweep
// (bench/stability/rowbound.json, docs/stability.md "condition-aware tolerance"; bench/rowbound_calibrate):
// the rule is an empirical envelope of a first-order model, not a proof. It holds for >= 99.9 % of
// rows of every tensor; it is <= 10x the error on the median row for out and dr, and 18-1.3e4x
// for dk, dv, dq (covered but loose), which is why --row-bound stays experimental for gradients.
// Not covered: dlambda, decode problems, empty rows (their truth is exactly zero: any nonzero
// candidate value fails).
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "reference/inputs.hpp"
#include "reference/problem.hpp"
#include "reference/tensor.hpp"
#include "validation/fixture.hpp"

namespace plx {

// The truth in double, as the bound needs it.
struct RowBoundTruth {
  Tensor<double> out;                           // [B,Lq,Hq,Dv]
  std::map<std::string, Tensor<double>> saved;  // m, omega, zbar, d, Delta, probe, vbar (attention.hpp names)
  std::map<std::string, Tensor<double>> diag;   // cond_C, cond_Sigma (solver probes)
  std::map<std::string, Tensor<double>> grads;  // dq, dk, dv, dr (empty map for forward only)
};

// Row sensitivities M_row per tensor (flat row order of the tensor: index / last-axis length).
std::map<std::string, std::vector<double>> row_sensitivities(const Problem& p, const Inputs& in, const RowBoundTruth& t);

// The constant C_T of the rule for tensor `name` (out, dq, dk, dv, dr).
double row_bound_constant(const std::string& name);

// Per-row limits (C_T u M_row + u_s |t_row|) for `name`, u = the candidate's working unit roundoff.
std::vector<double> row_limits(const std::string& name, const std::vector<double>& M, const Tensor<double>& truth,
                               double u_work, double u_store);

// Per-element limits (every entry of a row gets its row's limit), in the truth's shape: what
// compare_tensor takes as elem_limit (an entry-wise test of a row-norm limit is weaker, never stricter).
Tensor<double> row_limits_elementwise(const std::vector<double>& row_limit, const Tensor<double>& truth);

// For `plx check --row-bound`: per-element limits for every tensor of `names` the rule covers,
// from a fixture's truth, saves and diagnostics, for a candidate stored in dtype X. The working
// precision is taken as fp64 for float64 candidates, fp32 for float32 ones, and X itself for
// bf16 / fp16 candidates (a kernel storing bf16 is assumed to round its intermediates there too).
// *note says which tensors are judged and with which u.
std::map<std::string, Tensor<double>> check_row_limits(const Problem& p, const Inputs& in, const RowBoundTruth& t,
                                                       DType X, const std::vector<std::string>& names, std::string* note);

// The same from a fixture, for one tensor: std::nullopt (and *note says why) when the rule does not
// cover it (dlambda, a tensor without truth, a fixture without saves).
std::optional<Tensor<double>> fixture_row_limits(const FixtureData& fx, DType X, const std::string& name, std::string* note);

}  // namespace plx
