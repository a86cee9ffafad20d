// tests/kernels/test_lla_gpu.cpp — the LLA CUDA kernels (kernels/lla.cu) vs the float64 reference.
//
// Charter: (1) host validation of LlaParams / lla_supports, no device needed (runs in CI);
// (2) GPU cases: random problems from our RNG (edge lengths, GQA/MQA, windows, start/used, empty
// rows, small and per-row lambda, both anchors, Direct / CG / Jacobi-CG, bf16 and fp16), run
// through cuda::lla_forward (outputs and workspace poisoned with NaN first) and compared by
// validation/compare to reference attention_forward<double> with the FlashAttention rule:
// kernel error <= 2 x the error of a naive same-precision computation (emulate() below: the
// reference's own algorithm in float on the same inputs, output rounded to the dtype) or a
// derived floor (see floor_of). Plus the CG non-convergence flag, split-count invariance,
// matrix-free == split-KV, rapidcheck properties, bitwise determinism (the sanitizer case), and a
// singular fp32 direct solve raising plx::NumericalError like reference/ and fast/ (the status
// scan itself is a host test). GPU tests skip (GTEST_SKIP) with a message where no CUDA device exists.
#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/expect_error.hpp"
#include "kernels/cuda_api.hpp"
#include "kernels/lla_api.hpp"
#include "reference/attention.hpp"  // attention_forward<double>, instantiated here
#include "tests/support.hpp"
#include "validation/compare.hpp"

namespace plx {
namespace {

using cuda::LlaParams;
constexpr double kU32 = 0x1p-24;  // fp32 unit roundoff

// =====================================================================================
// (1) Host validation (no device)
// =====================================================================================
void* fake(std::uintptr_t a) { return reinterpret_cast<void*>(a); }

LlaParams valid(cuda::Op op) {  // B=2, Hq=8, Hkv=2, D=128, bf16, CG (decode: Lq=1 + workspace)
  LlaParams p;
  p.q = fake(0x10000), p.k = fake(0x30000), p.v = fake(0x40000), p.out = fake(0x50000);
  p.B = 2, p.Hq = 8, p.Hkv = 2, p.Lq = op == cuda::Op::Decode ? 1 : 64, p.Lkv = 64, p.D = p.Dv = 128;
  const std::int64_t D = 128;
  p.q_head_stride = p.o_head_stride = D, p.q_row_stride = p.o_row_stride = p.Hq * D;
  p.q_batch_stride = p.o_batch_stride = p.Lq * p.Hq * D;
  p.k_head_stride = p.v_head_stride = D, p.k_row_stride = p.v_row_stride = p.Hkv * D;
  p.k_batch_stride = p.v_batch_stride = p.Lkv * p.Hkv * D;
  p.scale = 0.088f;
  if (op == cuda::Op::Decode) p.workspace = static_cast<float*>(fake(0x70000));
  return p;
}
using test::expect_error;  // tests/expect_error.hpp

TEST(LlaApiCheck, ValidParamsPass) {
  for (cuda::Op op : {cuda::Op::Decode, cuda::Op::Forward}) {
    LlaParams p = valid(op);
    EXPECT_NO_THROW(cuda::check_lla_params(p, op));
    p.D = p.Dv = 64, p.dtype = cuda::ElemType::F16, p.anchor = cuda::LlaAnchor::Query, p.solver = cuda::LlaSolver::JacobiCG;
    EXPECT_NO_THROW(cuda::check_lla_params(p, op));
  }
  LlaParams p = valid(cuda::Op::Decode);
  p.solver = cuda::LlaSolver::Direct, p.num_splits = 7;
  EXPECT_NO_THROW(cuda::check_lla_params(p, cuda::Op::Decode));
}

TEST(LlaApiCheck, RejectsWhatTheKernelsCannotTake) {
  using cuda::Op;
  auto bad = [](Op op, auto mutate, const std::string& needle) {
    LlaParams p = valid(op);
    mutate(p);
    expect_error([&] { cuda::check_lla_params(p, op); }, needle);
    expect_error([&] { cuda::launch_lla(p, op); }, needle);  // launch validates before any CUDA call
  };
  for (Op op : {Op::Decode, Op::Forward}) {
    for (int D : {1, 32, 96, 127, 256}) bad(op, [D](LlaParams& p) { p.D = p.Dv = D; }, "'D'");
    bad(op, [](LlaParams& p) { p.Dv = 64; }, "'Dv'");
    bad(op, [](LlaParams& p) { p.dtype = static_cast<cuda::ElemType>(7); }, "'dtype'");
    bad(op, [](LlaParams& p) { p.q = fake(0x10008); }, "'q'");              // 8-byte aligned only
    bad(op, [](LlaParams& p) { p.v = nullptr; }, "'v'");
    bad(op, [](LlaParams& p) { p.lse = static_cast<float*>(fake(0x60002)); }, "'lse'");
    bad(op, [](LlaParams& p) { p.Lkv = 0; }, "'Lkv'");                     // L = 0
    bad(op, [](LlaParams& p) { p.Lq = 0; }, "'Lq'");
    bad(op, [](LlaParams& p) { p.B = 70000; }, "grid too large");
    bad(op, [](LlaParams& p) { p.Hq = p.Hkv = 65536 + 8; }, "grid too large");
    bad(op, [](LlaParams& p) { p.k_dim_stride = 2; }, "feature");          // non-contiguous feature axis
    bad(op, [](LlaParams& p) { p.o_dim_stride = 0; }, "feature");
    bad(op, [](LlaParams& p) { p.k_row_stride = 2 * 128 + 4; }, "k strides");
    bad(op, [](LlaParams& p) { p.lambda_scalar = -0.5f; }, "'lambda'");
    bad(op, [](LlaParams& p) { p.lambda_scalar = NAN; }, "'lambda'");
    bad(op, [](LlaParams& p) { p.lambda_scalar = INFINITY; }, "'lambda'");
    bad(op, [](LlaParams& p) { p.cg_rtol = NAN; }, "'cg_rtol'");
    bad(op, [](LlaParams& p) { p.cg_atol = -1.f; }, "'cg_atol'");
    bad(op, [](LlaParams& p) { p.cg_max_iters = 0; }, "'cg_max_iters'");
    bad(op, [](LlaParams& p) { p.delta_eps = -1e-6f; }, "'delta_eps'");
    bad(op, [](LlaParams& p) { p.scale = 0.f; }, "'scale'");
    bad(op, [](LlaParams& p) { p.Hq = 6, p.Hkv = 4; }, "multiple of Hkv");
    bad(op, [](LlaParams& p) { p.anchor = static_cast<cuda::LlaAnchor>(3); }, "'anchor'");
    bad(op, [](LlaParams& p) { p.solver = static_cast<cuda::LlaSolver>(9); }, "'solver'");
  }
  bad(Op::Decode, [](LlaParams& p) { p.Lq = 2; }, "exactly one query");
  bad(Op::Decode, [](LlaParams& p) { p.Hq = 64, p.Hkv = 2; }, "group sizes up to 16");
  bad(Op::Decode, [](LlaParams& p) { p.workspace = nullptr; }, "'workspace'");
  bad(Op::Decode, [](LlaParams& p) { p.num_splits = 0; }, "'num_splits'");
  bad(Op::Forward, [](LlaParams& p) { p.solver = cuda::LlaSolver::Direct; }, "matrix-free");
}

// lla_forward's singular check (no device): a [B, Hq, Lq] status tensor with singular rows gives a
// plx::NumericalError naming the first one in (b, h, i) order and the count; the other statuses
// (ok, not converged, non-finite CG) are reported, not thrown (docs/math.md §7.5).
TEST(LlaApiCheck, SingularStatusIsANumericalErrorNamingTheFirstRow) {
  Tensor<double> st({2, 4, 3}, double(cuda::kLlaOk));
  st(0, 1, 2) = cuda::kLlaNotConverged, st(0, 3, 0) = cuda::kLlaNonFinite;
  EXPECT_NO_THROW(cuda::lla_throw_if_singular(st));
  st(1, 3, 2) = cuda::kLlaSingular, st(1, 2, 0) = cuda::kLlaSingular;
  try {
    cuda::lla_throw_if_singular(st);
    ADD_FAILURE() << "no plx::NumericalError for singular rows";
  } catch (const NumericalError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("singular"), std::string::npos) << m;
    EXPECT_NE(m.find("row (b=1, h=2, i=0)"), std::string::npos) << m;
    EXPECT_NE(m.find("2 of 24 rows"), std::string::npos) << m;
  }
}

Problem lla_problem(const std::string& member, DType dt, int D, int B, int Hq, int Hkv, int Lq, int Lkv, std::uint64_t seed) {
  Problem p;
  set_member(p, member);
  p.dtype = dt, p.D = p.Dv = D, p.B = B, p.Hq = Hq, p.Hkv = Hkv, p.Lq = Lq, p.Lkv = Lkv, p.seed = seed;
  p.gen = InputGen::RmsNorm;
  p.solver.method = SolverMethod::CG;
  return p;
}

TEST(LlaApiCheck, SupportsAndRouting) {
  std::string why;
  Problem p = lla_problem("lla_cov", DType::BF16, 128, 1, 8, 2, 1, 100, 1);
  EXPECT_TRUE(cuda::lla_supports(p, &why)) << why;
  EXPECT_TRUE(cuda::supports(p, &why)) << "cuda::supports must route LLA to the LLA kernels: " << why;
  p.Lq = 5, p.Lkv = 5;
  EXPECT_TRUE(cuda::lla_supports(p, &why)) << why;  // prefill, CG
  p.solver.method = SolverMethod::Direct;
  EXPECT_FALSE(cuda::lla_supports(p, &why));
  EXPECT_NE(why.find("CG"), std::string::npos) << why;
  p = lla_problem("lla", DType::F32, 128, 1, 8, 2, 1, 100, 1);
  EXPECT_FALSE(cuda::lla_supports(p, &why));
  p = lla_problem("lla", DType::BF16, 96, 1, 8, 2, 1, 100, 1);
  EXPECT_FALSE(cuda::lla_supports(p, &why));
  p = lla_problem("lla", DType::BF16, 128, 1, 8, 2, 1, 100, 1);
  p.solver.block = 32, p.solver.method = SolverMethod::Direct;
  EXPECT_FALSE(cuda::lla_supports(p, &why));
  EXPECT_NE(why.find("block"), std::string::npos) << why;
  p = lla_problem("parallax", DType::BF16, 128, 1, 8, 2, 1, 100, 1);
  EXPECT_FALSE(cuda::lla_supports(p, &why));
  // Unsupported problems throw plx::Error before any CUDA call, with or without a device.
  Problem bad = lla_problem("lla", DType::BF16, 96, 1, 2, 2, 1, 10, 1);
  expect_error([&] { cuda::lla_forward(bad, make_inputs(bad)); }, "unsupported");
}

// =====================================================================================
// (2) GPU cases
// =====================================================================================
bool no_device() {
  std::string why;
  if (!cuda::available(&why)) {
    std::printf("no CUDA device: %s\n", why.c_str());
    return true;
  }
  return false;
}
#define SKIP_WITHOUT_DEVICE() \
  if (no_device()) GTEST_SKIP() << "no CUDA device: LLA kernels not run"

double round_dt(double x, DType t) { return t == DType::BF16 ? bf16_to_float(bf16_bits(float(x))) : f16_to_float(f16_bits(float(x))); }

// Naive same-precision baseline: the reference's algorithm (reference/attention.hpp solver_probe +
// the member's output form) in plain float arithmetic (no compensation, no centring beyond what the
// definition itself does), on the same dtype-exact inputs; output rounded to the dtype.
Tensor<double> emulate(const Problem& p, const Inputs& in) {
  const int D = p.D, Dv = p.Dv, G = p.group();
  Tensor<double> out({size_t(p.B), size_t(p.Lq), size_t(p.Hq), size_t(Dv)});
  const bool query = p.anchor == Anchor::Query;
  const float tau = float(p.tau());
  const long nrows = long(p.B) * p.Hq * p.Lq;
#pragma omp parallel for schedule(dynamic, 1)
  for (long row = 0; row < nrows; ++row) {  // rows are independent; each writes only its own output
        const int i = int(row % p.Lq), h = int((row / p.Lq) % p.Hq), b = int(row / (long(p.Lq) * p.Hq));
        const RowRange R = row_range(p, b, i);
        if (R.empty()) continue;  // output stays 0
        const int n = R.size(), hk = h / G;
        auto K = [&](int j, int d) { return float(in.k(b, R.lo + j, hk, d)); };
        auto V = [&](int j, int d) { return float(in.v(b, R.lo + j, hk, d)); };
        std::vector<float> q(D), w(n), kbar(D, 0.f), vbar(Dv, 0.f), A(D * D, 0.f), y(D, 0.f), e(D), x(D, 0.f);
        for (int d = 0; d < D; ++d) q[d] = float(in.q(b, i, h, d));
        float m = -INFINITY;
        for (int j = 0; j < n; ++j) {
          float s = 0;
          for (int d = 0; d < D; ++d) s += q[d] * K(j, d);
          w[j] = s * tau, m = std::max(m, w[j]);
        }
        float om = 0;
        for (int j = 0; j < n; ++j) w[j] = std::exp(w[j] - m), om += w[j];
        for (int j = 0; j < n; ++j) {
          for (int d = 0; d < D; ++d) kbar[d] += w[j] / om * K(j, d);
          for (int d = 0; d < Dv; ++d) vbar[d] += w[j] / om * V(j, d);
        }
        const float lam = float(in.lambda(b, h, i));
        for (int j = 0; j < n; ++j) {
          const float c = query ? w[j] : w[j] / om;
          for (int d = 0; d < D; ++d) e[d] = K(j, d) - (query ? q[d] : kbar[d]);
          for (int r = 0; r < D; ++r) {
            for (int s = 0; s < D; ++s) A[r * D + s] += c * e[r] * e[s];
            if (query) y[r] += w[j] * e[r];
          }
        }
        for (int d = 0; d < D; ++d) A[d * D + d] += query ? lam * om : lam;
        if (!query)
          for (int d = 0; d < D; ++d) y[d] = kbar[d] - q[d];
        if (p.solver.method == SolverMethod::Direct) {  // float Cholesky, forward/back substitution
          std::vector<float> L = A;
          for (int k = 0; k < D; ++k) {
            L[k * D + k] = std::sqrt(L[k * D + k]);
            for (int r = k + 1; r < D; ++r) L[r * D + k] /= L[k * D + k];
            for (int r = k + 1; r < D; ++r)
              for (int s = k + 1; s <= r; ++s) L[r * D + s] -= L[r * D + k] * L[s * D + k];
          }
          std::vector<float> t(D);
          for (int r = 0; r < D; ++r) {
            float s = y[r];
            for (int c = 0; c < r; ++c) s -= L[r * D + c] * t[c];
            t[r] = s / L[r * D + r];
          }
          for (int r = D - 1; r >= 0; --r) {
            float s = t[r];
            for (int c = r + 1; c < D; ++c) s -= L[c * D + r] * x[c];
            x[r] = s / L[r * D + r];
          }
        } else {  // docs/math.md §3.7 literally, in float
          const bool jac = p.solver.method == SolverMethod::JacobiCG;
          std::vector<float> res = y, z(D), pd(D), Sp(D);
          auto dot = [&](const std::vector<float>& a, const std::vector<float>& c) {
            float s = 0;
            for (int d = 0; d < D; ++d) s += a[d] * c[d];
            return s;
          };
          for (int d = 0; d < D; ++d) z[d] = jac ? res[d] / A[d * D + d] : res[d], pd[d] = z[d];
          float nrm = dot(res, z);
          const float thresh = std::max(nrm, float(p.solver.cg_atol)) * float(p.solver.cg_rtol);
          bool active = nrm != 0;
          for (int it = 0; it < p.solver.cg_max_iters && active; ++it) {
            for (int r = 0; r < D; ++r) {
              float s = 0;
              for (int c = 0; c < D; ++c) s += A[r * D + c] * pd[c];
              Sp[r] = s;
            }
            const float a = nrm / (dot(pd, Sp) + 1e-10f);
            for (int d = 0; d < D; ++d) x[d] += a * pd[d], res[d] -= a * Sp[d], z[d] = jac ? res[d] / A[d * D + d] : res[d];
            const float n1 = dot(res, z);
            active = !(n1 <= thresh || !std::isfinite(n1));
            const float bt = active ? n1 / nrm : 0.f;
            for (int d = 0; d < D; ++d) pd[d] = z[d] + bt * pd[d];
            nrm = n1;
          }
        }
        std::vector<float> o(Dv, 0.f);
        if (query) {  // docs/math.md §3.2 as FlashLLA writes it: S_j = w_j (1 - rho.e_j) / d, out = sum S_j v_j
          std::vector<float> ne(n);
          float Delta = om;
          for (int j = 0; j < n; ++j) {
            float t = 0;
            for (int d = 0; d < D; ++d) t += x[d] * (K(j, d) - q[d]);
            ne[j] = t, Delta -= w[j] * t;
          }
          const float eps = float(p.anchor_knobs.delta_eps);
          const float dd = Delta + (Delta > 0 ? eps : Delta < 0 ? -eps : (p.anchor_knobs.sgn0 == Sgn0::Plus ? eps : 0.f));
          for (int j = 0; j < n; ++j)
            for (int d = 0; d < Dv; ++d) o[d] += w[j] * (1 - ne[j]) / dd * V(j, d);
        } else {  // docs/math.md §3.5 covariance form: out = vbar - sum_j p_j (theta.(k_j - kbar)) (v_j - vbar)
          o = vbar;
          for (int j = 0; j < n; ++j) {
            float t = 0;
            for (int d = 0; d < D; ++d) t += x[d] * (K(j, d) - kbar[d]);
            for (int d = 0; d < Dv; ++d) o[d] -= w[j] / om * t * (V(j, d) - vbar[d]);
          }
        }
        for (int d = 0; d < Dv; ++d) out(b, i, h, d) = round_dt(o[d], p.dtype);
      }
  return out;
}

const char* method_name(SolverMethod m) { return m == SolverMethod::Direct ? "direct" : m == SolverMethod::CG ? "cg" : "jcg"; }

double max_abs(const Tensor<double>& t) {
  double m = 0;
  for (double x : t.data)
    if (std::isfinite(x)) m = std::max(m, std::fabs(x));
  return m;
}

struct Outcome {
  bool ok = true;
  std::string msg;
  double ratio = 0;  // error / limit of out
  CandidateResult got;
};

// Run one problem on the GPU and check it against the truth, row by row (each output row is one
// query's regression, with its own conditioning). Row r passes when
//   max_d |got - truth| <= max(2 x max_d |naive baseline - truth|, floor_r),
//   floor_r = u(dtype) max_d|truth_r| (1 + 2^-6)        one rounding of the output to the dtype
//           + 16 u32 kappa_r amp_r (max_d|truth_r - vbar_r| + [amp_r > 1] max_d|truth_r|)
// The second term is the fp32 solve: an fp32 system perturbs the probe by <= kappa eps_A relative,
// eps_A ~ 16 u32 being the accumulation depth of the fp32 moments (64-key tiles, Chan merges, block
// reductions); out - vbar is linear in the probe. kappa_r = cond of the system the kernel solves
// (cond(C + lambda I): direct solves and the key-mean anchor; cond(Sigma/omega) = cond(C + delta
// delta^T + lambda I): query-anchored CG). amp_r = 1 + alpha_r for query-anchored CG only: there the
// output divides by Delta = omega (1 - rho.delta) = omega/(1 + alpha), formed by cancellation, which
// multiplies the probe's relative error by 1 + alpha (docs/math.md §7.3); 1 otherwise (the kernels solve
// the covariance system for direct solves, docs/math.md §3.5). Both from the reference's diagnostics.
// CG rows the float64 reference itself left unconverged at cg_max_iters are not compared by default:
// the truth there is the k-th iterate, which fp32 arithmetic (kernel and naive baseline alike) does
// not track once CG loses orthogonality (measured: baseline errors up to 0.9 on outputs of size 1,
// docs/math.md §7.5). Those rows must instead carry the kernel's not-converged flag when the reference's true
// residual is clearly above the test (> 1e3 sqrt(rtol)), and be finite. compare_capped = true
// compares them anyway (a few iterations, where fp32 still tracks float64).
// The whole-tensor report (max abs/rel, ULPs, worst index, baseline) is printed on failure.

// Worst per-row error/limit over every GPU case of the run, printed at the end (also when passing).
struct Worst : ::testing::Environment {
  static inline double ratio = 0;
  static inline long cases = 0, capped = 0;
  static inline std::string where;
  void TearDown() override {
    if (cases)
      std::printf("LLA GPU cases: %ld, worst per-row error/limit %.3f at %s; CG rows left unconverged by the reference "
                  "(flag checked, output not compared): %ld\n", cases, ratio, where.c_str(), capped);
  }
};
[[maybe_unused]] ::testing::Environment* const kWorstEnv = ::testing::AddGlobalTestEnvironment(new Worst);

Outcome run_case(const Problem& p, const std::string& label, const cuda::LlaRunOptions& opt = {}, bool compare_capped = false) {
  Outcome oc;
  const Inputs in = make_inputs(p);
  const Forward<double> truth = attention_forward<double>(p, in, ForwardOptions{true, true});
  const Tensor<double> base = emulate(p, in);
  oc.got = cuda::lla_forward(p, in, opt);
  const CandidateResult& got = oc.got;
  const double u = unit_roundoff(p.dtype);
  const bool query_cg = p.anchor == Anchor::Query && p.solver.method != SolverMethod::Direct;
  const auto& dg = truth.diag;
  bool any_empty = false;
  int bad_rows = 0, nonfinite_status = 0, empty_bad = 0, capped = 0, unflagged = 0, nonfinite_out = 0;
  const bool cg = p.solver.method != SolverMethod::Direct;
  std::string worst_row;
  double worst = 0;
  for (int b = 0; b < p.B; ++b)
    for (int h = 0; h < p.Hq; ++h)
      for (int i = 0; i < p.Lq; ++i) {
        const int st = int(got.saved.at("status")(b, h, i));
        if (st != cuda::kLlaOk && st != cuda::kLlaNotConverged) ++nonfinite_status;
        if (dg.at("empty")(b, h, i) != 0) {  // docs/math.md §1.4: exactly 0, status ok, no iterations
          any_empty = true;
          bool bad = st != cuda::kLlaOk || got.saved.at("cg_iters")(b, h, i) != 0;
          for (int d = 0; d < p.Dv; ++d) bad = bad || got.out(b, i, h, d) != 0.0;
          empty_bad += bad;
          continue;
        }
        if (cg && !compare_capped && dg.at("cg_iters")(b, h, i) >= p.solver.cg_max_iters) {
          ++capped;
          if (dg.at("cg_residual")(b, h, i) > 1e3 * std::sqrt(p.solver.cg_rtol) && st != cuda::kLlaNotConverged) ++unflagged;
          for (int d = 0; d < p.Dv; ++d) nonfinite_out += !std::isfinite(got.out(b, i, h, d));
          continue;
        }
        double kappa = dg.at(query_cg ? "cond_Sigma" : "cond_C")(b, h, i);
        if (!std::isfinite(kappa)) kappa = 1e30;
        const double amp = query_cg ? 1 + std::fabs(dg.at("alpha")(b, h, i)) : 1.0;
        double err = 0, berr = 0, tmax = 0, dev = 0;
        for (int d = 0; d < p.Dv; ++d) {
          const double t = truth.out(b, i, h, d);
          const double e = std::fabs(got.out(b, i, h, d) - t);
          err = std::isnan(e) ? INFINITY : std::max(err, e);
          berr = std::max(berr, std::fabs(base(b, i, h, d) - t));
          tmax = std::max(tmax, std::fabs(t));
          dev = std::max(dev, std::fabs(t - truth.saved.at("vbar")(b, i, h, d)));
        }
        const double floor = u * tmax * (1 + 0x1p-6) + 16 * kU32 * kappa * amp * (dev + (query_cg ? tmax : 0.0));
        const double limit = std::max(2 * berr, floor);
        const double ratio = limit > 0 ? err / limit : (err > 0 ? INFINITY : 0);
        if (ratio > worst || !(ratio <= 1)) {
          worst = std::max(worst, ratio);
          worst_row = "worst row (b=" + std::to_string(b) + ", h=" + std::to_string(h) + ", i=" + std::to_string(i) +
                      "): err " + std::to_string(err) + " limit " + std::to_string(limit) + " (baseline " +
                      std::to_string(berr) + ", floor " + std::to_string(floor) + ", kappa " + std::to_string(kappa) +
                      ", amp " + std::to_string(amp) + ", status " + std::to_string(st) + ")\n";
        }
        bad_rows += !(ratio <= 1);
      }
  oc.ratio = worst;
  ++Worst::cases, Worst::capped += capped;
  if (worst > Worst::ratio) Worst::ratio = worst, Worst::where = label + " seed=" + std::to_string(p.seed);
  std::vector<TensorReport> reps;
  reps.push_back(compare_tensor("out", got.out, truth.out, p.dtype,
                                Tolerance{2.0, u * max_abs(truth.out), 0, "report only; the test applies the per-row limits above"},
                                &base));
  bool lse_ok = true;
  if (!any_empty) {  // lse in fp32: 8 u32 (|lse| + 1) for exp2/log2 (<= 2 ulp each) and the scaling
    reps.push_back(compare_tensor("lse", got.saved.at("lse"), truth.saved.at("lse"), DType::F32,
                                  Tolerance{0, 8 * kU32 * (max_abs(truth.saved.at("lse")) + 1), 0, "8 u32 (|lse|+1)"}));
    lse_ok = reps.back().passed;
  }
  oc.ok = bad_rows == 0 && nonfinite_status == 0 && empty_bad == 0 && lse_ok && unflagged == 0 && nonfinite_out == 0;
  if (!oc.ok || std::getenv("PLX_VERBOSE")) {
    oc.msg = label + " seed=" + std::to_string(p.seed) + ": rows over the limit " + std::to_string(bad_rows) +
             ", NaN/singular status rows " + std::to_string(nonfinite_status) + ", bad empty rows " +
             std::to_string(empty_bad) + ", capped CG rows " + std::to_string(capped) + " (unflagged " + std::to_string(unflagged) +
             ", non-finite " + std::to_string(nonfinite_out) + "); worst error/limit " + std::to_string(worst) + "\n" +
             worst_row + format_report(reps);
    std::printf("%s", oc.msg.c_str());
  }
  return oc;
}

void check_case(const Problem& p, const std::string& label, const cuda::LlaRunOptions& opt = {}) {
  SCOPED_TRACE(label);
  const Outcome oc = run_case(p, label, opt);
  EXPECT_TRUE(oc.ok) << oc.msg;
}

// The naive baseline is itself close to the truth (no device needed): its error is the output
// rounding plus the fp32 solve's sensitivity, the same floor the kernels get (so the 2x rule is
// not comparing against a broken emulation).
TEST(LlaBaseline, NaiveFloatTracksTheReference) {
  std::uint64_t seed = test::seed() + 50;
  for (const char* member : {"lla_cov", "lla"})
    for (SolverMethod m : {SolverMethod::Direct, SolverMethod::CG})
      for (int L : {1, 7, 65, 300}) {
        Problem p;
        set_member(p, member);
        p.dtype = DType::BF16, p.D = p.Dv = 64, p.B = 1, p.Hq = 2, p.Hkv = 1, p.Lq = 1, p.Lkv = L, p.seed = ++seed;
        p.gen = InputGen::RmsNorm, p.solver.method = m, p.solver.lambda = 0.3;
        const Inputs in = make_inputs(p);
        const Forward<double> truth = attention_forward<double>(p, in, ForwardOptions{true, true});
        const Tensor<double> base = emulate(p, in);
        double err = 0, tmax = max_abs(truth.out), kappa = 1;
        for (std::size_t i = 0; i < base.size(); ++i) err = std::max(err, std::fabs(base.data[i] - truth.out.data[i]));
        for (double c : truth.diag.at(p.anchor == Anchor::Query && m != SolverMethod::Direct ? "cond_Sigma" : "cond_C").data)
          kappa = std::max(kappa, c);
        const double bound = unit_roundoff(p.dtype) * tmax * 2 + 64 * kU32 * kappa * tmax;
        EXPECT_LE(err, bound) << member << " " << method_name(m) << " L=" << L;
        if (std::getenv("PLX_VERBOSE"))
          std::printf("baseline %s %s L=%d err %.3g bound %.3g kappa %.3g\n", member, method_name(m), L, err, bound, kappa);
      }
}


TEST(LlaGpuDecode, EdgeLengthsAnchorsSolversSplits) {
  SKIP_WITHOUT_DEVICE();
  std::uint64_t seed = test::seed() + 100;
  for (const char* member : {"lla_cov", "lla"})
    for (SolverMethod m : {SolverMethod::Direct, SolverMethod::CG})
      for (int D : {64, 128})
        for (int L : {1, 2, 7, 63, 64, 65, 97, 1025})
          for (auto [Hq, Hkv] : {std::pair{2, 2}, std::pair{8, 2}})
            for (int splits : {0, 3}) {
              Problem p = lla_problem(member, DType::BF16, D, 2, Hq, Hkv, 1, L, ++seed);
              p.solver.method = m, p.solver.lambda = 0.3;
              check_case(p, std::string("decode ") + member + " " + method_name(m) + " D=" + std::to_string(D) +
                                " L=" + std::to_string(L) + " Hq/Hkv=" + std::to_string(Hq) + "/" + std::to_string(Hkv) +
                                " splits=" + std::to_string(splits),
                         {cuda::LlaPath::SplitKV, splits});
            }
}

TEST(LlaGpuDecode, MasksEmptyRowsFp16SmallLambdaMqa) {
  SKIP_WITHOUT_DEVICE();
  std::uint64_t seed = test::seed() + 1000;
  for (const char* member : {"lla_cov", "lla"})
    for (SolverMethod m : {SolverMethod::Direct, SolverMethod::CG, SolverMethod::JacobiCG})
      for (int splits : {0, 1, 4}) {
        const std::string tag = std::string(member) + " " + method_name(m) + " splits=" + std::to_string(splits);
        const cuda::LlaRunOptions o{cuda::LlaPath::SplitKV, splits};
        Problem p = lla_problem(member, DType::BF16, 128, 4, 8, 2, 1, 700, ++seed);
        p.solver.method = m;
        p.used = {700, 333, 0, 129}, p.start = {0, 17, 0, 128};  // batch 2 empty; batch 3 has one key
        check_case(p, "decode used/start/empty/|A|=1 " + tag, o);
        p.window = 64;
        check_case(p, "decode window 64 " + tag, o);
        p.window = 0;
        check_case(p, "decode window 0 (all rows empty) " + tag, o);
        Problem f = lla_problem(member, DType::F16, 64, 2, 4, 4, 1, 300, ++seed);
        f.solver.method = m;
        check_case(f, "decode fp16 " + tag, o);
        Problem mq = lla_problem(member, DType::BF16, 128, 2, 16, 1, 1, 513, ++seed);  // MQA, G = 16
        mq.solver.method = m, mq.solver.lambda = 0.05, mq.solver.lambda_per_row = true;
        check_case(mq, "decode MQA G=16 per-row lambda " + tag, o);
        Problem sl = lla_problem(member, DType::BF16, 64, 2, 4, 2, 1, 40, ++seed);  // |A| < D: C singular
        sl.solver.method = m, sl.solver.lambda = 0.01;
        check_case(sl, "decode |A|=40 < D lambda=0.01 " + tag, o);
      }
}

// Chunks are an exact partition (docs/math.md §6.2/§6.4): every split count gives the truth within the
// tolerance, and any two split counts agree within twice that tolerance.
TEST(LlaGpuDecode, SplitCountInvariance) {
  SKIP_WITHOUT_DEVICE();
  for (const char* member : {"lla_cov", "lla"}) {
    Problem p = lla_problem(member, DType::BF16, 128, 2, 8, 2, 1, 1025, test::seed() + 2000);
    p.solver.method = SolverMethod::Direct, p.solver.lambda = 0.1;
    p.used = {1025, 900};
    std::vector<Tensor<double>> outs;
    double worst = 0;
    for (int s : {1, 2, 3, 7, 16, 64}) {
      const Outcome oc = run_case(p, std::string(member) + " splits=" + std::to_string(s), {cuda::LlaPath::SplitKV, s});
      EXPECT_TRUE(oc.ok) << oc.msg;
      worst = std::max(worst, oc.ratio);
      outs.push_back(oc.got.out);
    }
    // Pairwise: each differs from the truth by <= its limit, so from each other by <= 2 limits; we
    // assert the tighter 4 u(bf16) max|out| = 2 bf16 ulps (fp32 sums in another order, one rounding each).
    const double tol = 4 * unit_roundoff(DType::BF16) * max_abs(outs[0]);
    for (std::size_t a = 1; a < outs.size(); ++a) {
      double md = 0;
      for (std::size_t k = 0; k < outs[0].size(); ++k) md = std::max(md, std::fabs(outs[a].data[k] - outs[0].data[k]));
      EXPECT_LE(md, tol) << member << " split set " << a << " vs 1 split";
    }
    std::printf("split invariance %s: worst error/limit %.3f\n", member, worst);
  }
}

// Decode through the matrix-free CG kernel equals the split-KV decode with dense CG (the same
// iterates in exact arithmetic) — both checked against the truth, and iteration counts close.
TEST(LlaGpuDecode, MatrixFreeEqualsSplitKv) {
  SKIP_WITHOUT_DEVICE();
  std::uint64_t seed = test::seed() + 3000;
  for (const char* member : {"lla_cov", "lla"})
    for (int L : {7, 97, 1025}) {
      Problem p = lla_problem(member, DType::BF16, 128, 2, 8, 2, 1, L, ++seed);
      p.solver.lambda = 1.0;
      const Outcome a = run_case(p, std::string("matrix-free ") + member, {cuda::LlaPath::MatrixFree, 0});
      const Outcome b = run_case(p, std::string("split-kv ") + member, {cuda::LlaPath::SplitKV, 4});
      EXPECT_TRUE(a.ok) << a.msg;
      EXPECT_TRUE(b.ok) << b.msg;
      for (std::size_t r = 0; r < a.got.saved.at("cg_iters").size(); ++r)
        EXPECT_LE(std::fabs(a.got.saved.at("cg_iters").data[r] - b.got.saved.at("cg_iters").data[r]), 2.0)
            << member << " L=" << L << " row " << r;
    }
}

TEST(LlaGpuForward, CausalWindowsGqaEmptyRows) {
  SKIP_WITHOUT_DEVICE();
  std::uint64_t seed = test::seed() + 4000;
  for (const char* member : {"lla_cov", "lla"})
    for (SolverMethod m : {SolverMethod::CG, SolverMethod::JacobiCG}) {
      const std::string tag = std::string(member) + " " + method_name(m);
      for (int D : {64, 128})
        for (int L : {2, 7, 63, 64, 65, 97}) {
          Problem p = lla_problem(member, DType::BF16, D, 2, 4, 2, L, L, ++seed);
          p.solver.method = m, p.solver.lambda = m == SolverMethod::JacobiCG ? 1.0 : 0.3;
          check_case(p, "prefill causal " + tag + " D=" + std::to_string(D) + " L=" + std::to_string(L));
        }
      Problem p = lla_problem(member, DType::BF16, 128, 2, 6, 2, 65, 97, ++seed);  // Lq < Lkv, G = 3
      p.solver.method = m;
      check_case(p, "prefill Lq=65 Lkv=97 G=3 " + tag);
      p = lla_problem(member, DType::BF16, 64, 2, 2, 1, 97, 63, ++seed);  // Lq > Lkv: empty first rows
      p.solver.method = m;
      check_case(p, "prefill Lq=97 Lkv=63 (empty rows) " + tag);
      p = lla_problem(member, DType::BF16, 128, 1, 4, 4, 150, 150, ++seed);
      p.solver.method = m;
      for (int W : {7, 64, 0}) {
        p.window = W;
        check_case(p, "prefill window " + std::to_string(W) + " " + tag);
      }
      p.window = -1, p.causal = false;
      check_case(p, "prefill non-causal " + tag);
      p = lla_problem(member, DType::BF16, 64, 3, 4, 2, 70, 130, ++seed);
      p.solver.method = m, p.solver.lambda_per_row = true;
      p.start = {0, 5, 90}, p.used = {130, 100, 95};
      check_case(p, "prefill start/used per-row lambda " + tag);
      p = lla_problem(member, DType::F16, 128, 1, 2, 1, 129, 129, ++seed);
      p.solver.method = m;
      check_case(p, "prefill fp16 " + tag);
    }
}

// docs/math.md §7.5: a CG that cannot meet the test within cg_max_iters must say so. lambda = 0.01 with
// anisotropic keys (cond(cov k) = 1e4) and 3 iterations: the reference does not converge either.
TEST(LlaGpuCg, NonConvergenceIsFlagged) {
  SKIP_WITHOUT_DEVICE();
  for (const char* member : {"lla_cov", "lla"})
    for (cuda::LlaPath path : {cuda::LlaPath::SplitKV, cuda::LlaPath::MatrixFree}) {
      Problem p = lla_problem(member, DType::BF16, 64, 2, 4, 2, 1, 300, test::seed() + 5000);
      p.gen = InputGen::Anisotropic, p.solver.lambda = 0.01, p.solver.cg_max_iters = 3;
      const Inputs in = make_inputs(p);
      const Forward<double> truth = attention_forward<double>(p, in, ForwardOptions{true, true});
      const CandidateResult got = cuda::lla_forward(p, in, {path, 3});
      for (std::size_t r = 0; r < got.saved.at("status").size(); ++r) {
        EXPECT_EQ(truth.diag.at("cg_iters").data[r], 3.0) << "the reference converged: the case is too easy";
        EXPECT_EQ(got.saved.at("status").data[r], double(cuda::kLlaNotConverged)) << member << " row " << r;
        EXPECT_EQ(got.saved.at("cg_iters").data[r], 3.0) << member << " row " << r;
      }
      // Key-mean anchor: the output is linear in the 3-iteration theta (no denominator), so it is
      // checked like any other. Query anchor: Delta_3 = omega (1 - rho_3.delta) of a far-from-converged
      // rho_3 can sit near 0, so the output is not a stable function of the iterate (docs/math.md §7.3; the
      // naive float baseline was off by 13 on outputs of size 8 here): only the flags are asserted.
      if (std::string(member) == "lla_cov") {
        const Outcome oc = run_case(p, std::string("3-iteration CG ") + member, {path, 3}, /*compare_capped=*/true);
        EXPECT_TRUE(oc.ok) << oc.msg;
      }
    }
}

// Well-conditioned rows (lambda = 1, RMS keys: kappa <= 1 + ||C||/lambda, small): fp32 CG meets the
// reference's test, within 2 iterations of the float64 CG's count, and reports success.
TEST(LlaGpuCg, ConvergedIterationsMatchReference) {
  SKIP_WITHOUT_DEVICE();
  for (const char* member : {"lla_cov", "lla"})
    for (cuda::LlaPath path : {cuda::LlaPath::SplitKV, cuda::LlaPath::MatrixFree}) {
      Problem p = lla_problem(member, DType::BF16, 128, 2, 4, 2, 1, 500, test::seed() + 6000);
      // Squared-norm test 1e-8, i.e. relative residual 1e-4, well above kappa u32 (~1e-5 for the query
      // system's kappa ~ 1e2 here), where the fp32 and float64 residual recursions still track each
      // other (with 1e-10 the query anchor needed up to 3 more iterations in fp32).
      p.solver.lambda = 1.0, p.solver.cg_atol = p.solver.cg_rtol = 1e-8;
      const Inputs in = make_inputs(p);
      const Forward<double> truth = attention_forward<double>(p, in, ForwardOptions{true, true});
      const CandidateResult got = cuda::lla_forward(p, in, {path, 2});
      double sum_ref = 0, sum_got = 0;
      for (std::size_t r = 0; r < got.saved.at("status").size(); ++r) {
        const double ir = truth.diag.at("cg_iters").data[r], ig = got.saved.at("cg_iters").data[r];
        ASSERT_LT(ir, p.solver.cg_max_iters) << "reference did not converge: the case is too hard";
        EXPECT_EQ(got.saved.at("status").data[r], double(cuda::kLlaOk)) << member << " row " << r;
        EXPECT_LE(std::fabs(ig - ir), 2.0) << member << " row " << r << " gpu " << ig << " ref " << ir;
        sum_ref += ir, sum_got += ig;
      }
      std::printf("CG iterations %s path %d: mean gpu %.2f, reference %.2f\n", member, int(path),
                  sum_got / got.saved.at("status").size(), sum_ref / got.saved.at("status").size());
    }
}

// rapidcheck: random decode / prefill problems (masks, GQA, per-batch lengths, empty rows, small lambda).
rc::Gen<Problem> gen_lla(bool decode) {
  return rc::gen::exec([decode] {
    Problem p;
    set_member(p, *rc::gen::element<std::string>("lla", "lla_cov"));
    p.dtype = *rc::gen::element(DType::BF16, DType::F16);
    p.D = p.Dv = *rc::gen::element(64, 128);
    // Prefill sizes stay small: the naive baseline forms a D x D system per row (rows * Lkv * D^2 flops).
    p.B = *rc::gen::inRange(1, decode ? 4 : 3);
    p.Hkv = *rc::gen::inRange(1, 3);
    p.Hq = p.Hkv * *rc::gen::element(1, 2, 4);
    p.Lkv = decode ? *rc::gen::element(1, 2, 3, 7, 63, 64, 65, 97, 130, 300, 1025) : *rc::gen::element(1, 2, 3, 7, 63, 64, 65, 97, 130);
    p.Lq = decode ? 1 : *rc::gen::element(1, 2, 7, 33);
    p.causal = *rc::gen::weightedOneOf<bool>({{4, rc::gen::just(true)}, {1, rc::gen::just(false)}});
    p.window = *rc::gen::weightedOneOf<int>({{3, rc::gen::just(-1)}, {1, rc::gen::inRange(0, 40)}});
    if (*rc::gen::weightedOneOf<bool>({{2, rc::gen::just(false)}, {1, rc::gen::just(true)}})) {
      p.start.resize(p.B), p.used.resize(p.B);
      for (int b = 0; b < p.B; ++b) {
        p.used[b] = *rc::gen::inRange(0, p.Lkv + 1);
        p.start[b] = *rc::gen::inRange(0, p.used[b] + 1);
      }
    }
    p.gen = *rc::gen::element(InputGen::RmsNorm, InputGen::RmsNorm, InputGen::Normal, InputGen::Sink);
    p.solver.method = *rc::gen::element(SolverMethod::Direct, SolverMethod::CG, SolverMethod::JacobiCG);
    if (!decode && p.solver.method == SolverMethod::Direct) p.solver.method = SolverMethod::CG;
    p.solver.lambda = *rc::gen::element(0.01, 0.05, 0.3, 1.0, 4.0);
    if (p.solver.method == SolverMethod::JacobiCG) p.solver.lambda = std::max(p.solver.lambda, 0.3);
    p.solver.lambda_per_row = *rc::gen::arbitrary<bool>();
    p.seed = *rc::gen::inRange<std::uint64_t>(0, 1u << 30);
    return p;
  });
}

void property(bool decode) {
  const Problem p = *gen_lla(decode);
  const int splits = decode ? *rc::gen::element(0, 1, 3, 5) : 0;
  const Outcome oc = run_case(p, std::string(decode ? "rc decode " : "rc prefill ") + member_name(p) + " " +
                                     method_name(p.solver.method) + " D=" + std::to_string(p.D) + " B=" + std::to_string(p.B) +
                                     " Hq/Hkv=" + std::to_string(p.Hq) + "/" + std::to_string(p.Hkv) + " Lq=" +
                                     std::to_string(p.Lq) + " Lkv=" + std::to_string(p.Lkv) + " W=" + std::to_string(p.window) +
                                     " lambda=" + std::to_string(p.solver.lambda) + " splits=" + std::to_string(splits),
                              {decode ? cuda::LlaPath::SplitKV : cuda::LlaPath::MatrixFree, splits});
  RC_ASSERT(oc.ok);
}

TEST(LlaGpuProps, RandomDecodeMatchesReference) {
  SKIP_WITHOUT_DEVICE();
  EXPECT_TRUE(rc::check("random LLA decode vs reference", [] { property(true); }));
}
TEST(LlaGpuProps, RandomPrefillMatchesReference) {
  SKIP_WITHOUT_DEVICE();
  EXPECT_TRUE(rc::check("random LLA prefill vs reference", [] { property(false); }));
}

// A singular fp32 direct solve is a plx::NumericalError, as in reference/ and fast/. lambda = 0 and
// feature 0 of every key of batch 1 exactly 0: kbar_0 = 0 exactly, so C + lambda I has a zero row
// and column and the first Cholesky pivot is exactly 0 (below the D u32 max-diag threshold). Batch 0
// keeps lambda = 1 (well conditioned), so the first singular row is (b=1, h=0, i=0). With
// throw_on_singular = false the kernels' raw per-row report comes back instead: status singular and
// NaN output in batch 1, batch 0 ok and finite.
TEST(LlaGpuDecode, SingularDirectSolveIsANumericalError) {
  SKIP_WITHOUT_DEVICE();
  for (const char* member : {"lla_cov", "lla"}) {
    Problem p = lla_problem(member, DType::BF16, 64, 2, 4, 2, 1, 200, test::seed() + 8000);
    p.solver.method = SolverMethod::Direct, p.solver.lambda = 0.0;
    Inputs in = make_inputs(p);
    for (int j = 0; j < p.Lkv; ++j)
      for (int hk = 0; hk < p.Hkv; ++hk) in.k(1, j, hk, 0) = 0.0;
    for (int h = 0; h < p.Hq; ++h) in.lambda(0, h, 0) = 1.0;
    for (int splits : {1, 3}) {
      SCOPED_TRACE(std::string(member) + " splits=" + std::to_string(splits));
      cuda::LlaRunOptions o{cuda::LlaPath::SplitKV, splits};
      try {
        cuda::lla_forward(p, in, o);
        ADD_FAILURE() << "no plx::NumericalError for a singular C + lambda I";
      } catch (const NumericalError& e) {
        EXPECT_NE(std::string(e.what()).find("singular"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("row (b=1, h=0, i=0)"), std::string::npos) << e.what();
      }
      o.throw_on_singular = false;
      const CandidateResult got = cuda::lla_forward(p, in, o);
      for (int h = 0; h < p.Hq; ++h) {
        EXPECT_EQ(got.saved.at("status")(0, h, 0), double(cuda::kLlaOk)) << "h=" << h;
        EXPECT_EQ(got.saved.at("status")(1, h, 0), double(cuda::kLlaSingular)) << "h=" << h;
        for (int d = 0; d < p.Dv; ++d) {
          EXPECT_TRUE(std::isfinite(got.out(0, 0, h, d))) << "h=" << h << " d=" << d;
          EXPECT_TRUE(std::isnan(got.out(1, 0, h, d))) << "h=" << h << " d=" << d;
        }
      }
    }
  }
}

// The same launch twice gives bitwise the same output (no races, no atomics). Small on purpose:
// bench/cuda/run_device.sh runs this under compute-sanitizer memcheck and racecheck.
TEST(LlaGpuDeterminism, RepeatIsBitwise) {
  SKIP_WITHOUT_DEVICE();
  for (int Lq : {1, 33}) {
    Problem p = lla_problem("lla_cov", DType::BF16, 128, 2, 8, 2, Lq, 333, test::seed() + 7000 + Lq);
    p.solver.method = Lq == 1 ? SolverMethod::Direct : SolverMethod::CG;
    const Inputs in = make_inputs(p);
    const cuda::LlaRunOptions o{Lq == 1 ? cuda::LlaPath::SplitKV : cuda::LlaPath::MatrixFree, 5};
    const CandidateResult a = cuda::lla_forward(p, in, o), b = cuda::lla_forward(p, in, o);
    std::size_t diff = 0;
    for (std::size_t i = 0; i < a.out.data.size(); ++i) diff += !(a.out.data[i] == b.out.data[i]);
    EXPECT_EQ(diff, 0u) << "Lq=" << Lq;
    for (double x : a.out.data) ASSERT_TRUE(std::isfinite(x)) << "poison left in the output, Lq=" << Lq;
  }
  // G = 4 decode (the workspace read-modify-write path of pass 1), CG in the solve kernel.
  Problem p = lla_problem("lla", DType::BF16, 64, 1, 8, 2, 1, 200, test::seed() + 7100);
  const Inputs in = make_inputs(p);
  const CandidateResult a = cuda::lla_forward(p, in, {cuda::LlaPath::SplitKV, 3}), b = cuda::lla_forward(p, in, {cuda::LlaPath::SplitKV, 3});
  for (std::size_t i = 0; i < a.out.data.size(); ++i) ASSERT_EQ(a.out.data[i], b.out.data[i]);
}

}  // namespace
}  // namespace plx
