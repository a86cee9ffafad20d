// tests/validation/test_problem_json.cpp — Problem <-> JSON: every field round-trips; bad
// names, keys and types are rejected with the field named.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "tests/support.hpp"
#include "validation/problem_json.hpp"

using namespace plx;
using nlohmann::json;

namespace {
// Every field of Problem compared (Problem has no operator==).
void expect_same(const Problem& a, const Problem& b) {
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.B, b.B); EXPECT_EQ(a.Hq, b.Hq); EXPECT_EQ(a.Hkv, b.Hkv); EXPECT_EQ(a.Lq, b.Lq); EXPECT_EQ(a.Lkv, b.Lkv);
  EXPECT_EQ(a.D, b.D); EXPECT_EQ(a.Dv, b.Dv); EXPECT_EQ(a.qk_scale, b.qk_scale); EXPECT_EQ(a.decode, b.decode);
  EXPECT_EQ(a.causal, b.causal); EXPECT_EQ(a.window, b.window); EXPECT_EQ(a.start, b.start); EXPECT_EQ(a.used, b.used);
  EXPECT_EQ(a.probe, b.probe); EXPECT_EQ(a.anchor, b.anchor); EXPECT_EQ(a.form, b.form);
  EXPECT_EQ(a.solver.lambda, b.solver.lambda); EXPECT_EQ(a.solver.lambda_per_row, b.solver.lambda_per_row);
  EXPECT_EQ(a.solver.block, b.solver.block); EXPECT_EQ(a.solver.method, b.solver.method);
  EXPECT_EQ(a.solver.cg_atol, b.solver.cg_atol); EXPECT_EQ(a.solver.cg_rtol, b.solver.cg_rtol);
  EXPECT_EQ(a.solver.cg_max_iters, b.solver.cg_max_iters); EXPECT_EQ(a.solver.ridge_grad, b.solver.ridge_grad);
  EXPECT_EQ(a.anchor_knobs.delta_eps, b.anchor_knobs.delta_eps); EXPECT_EQ(a.anchor_knobs.sgn0, b.anchor_knobs.sgn0);
  EXPECT_EQ(a.dtype, b.dtype); EXPECT_EQ(a.gen, b.gen); EXPECT_EQ(a.gen_param, b.gen_param);
  EXPECT_EQ(a.r_scale, b.r_scale); EXPECT_EQ(a.seed, b.seed);
}
std::string error_of(const json& j) {
  try {
    problem_from_json(j);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(ProblemJson, EveryFieldNonDefaultRoundTrips) {
  Problem p;
  p.name = "all_fields";
  p.B = 2, p.Hq = 6, p.Hkv = 3, p.Lq = 1, p.Lkv = 17, p.D = 12, p.Dv = 5, p.qk_scale = 0.123456789012345678;
  p.decode = true, p.causal = false, p.window = 4, p.start = {1, 2}, p.used = {17, 9};
  set_member(p, "lla");
  p.form = Formulation::Centred;
  p.solver = {0.3141592653589793, true, 4, SolverMethod::Direct, 1e-9, 3e-7, 17, RidgeGrad::Detached};
  p.anchor_knobs = {2.5e-7, Sgn0::Zero};
  p.dtype = DType::F16, p.gen = InputGen::NearDuplicate, p.gen_param = 1e-5, p.r_scale = -0.7;
  p.seed = 18446744073709551557ull;  // needs all 64 bits
  const json j = problem_to_json(p);
  Problem q = problem_from_json(json::parse(j.dump()));
  expect_same(p, q);
  EXPECT_EQ(problem_json_text(p), problem_json_text(q));
  p.solver.method = SolverMethod::JacobiCG, p.solver.block = 0;
  expect_same(p, problem_from_json(problem_to_json(p)));
}

RC_GTEST_PROP(ProblemJson, RandomProblemsRoundTrip, ()) {
  for (const char* m : {"softmax", "parallax", "parallax_centred", "lla", "lla_cov", "learned_query"}) {
    Problem p = *test::gen_problem(m);
    p.dtype = *rc::gen::element(DType::F64, DType::F32, DType::BF16, DType::F16);
    p.qk_scale = *rc::gen::element(0.0, 0.1, 1.0 / 3.0);
    Problem q = problem_from_json(json::parse(problem_to_json(p).dump()));
    RC_ASSERT(problem_json_text(p) == problem_json_text(q));
  }
}

TEST(ProblemJson, RejectsUnknownNamesKeysAndTypesNamingTheField) {
  json good = problem_to_json(Problem{});
  auto with = [&](const std::string& ptr, const json& v) {
    json j = good;
    j[json::json_pointer(ptr)] = v;
    return error_of(j);
  };
  EXPECT_NE(with("/probe", "sovler").find("'probe'"), std::string::npos);
  EXPECT_NE(with("/probe", "sovler").find("sovler"), std::string::npos);
  EXPECT_NE(with("/anchor", "keymean").find("'anchor'"), std::string::npos);
  EXPECT_NE(with("/form", "centered").find("'form'"), std::string::npos);
  EXPECT_NE(with("/solver/method", "gmres").find("'solver.method'"), std::string::npos);
  EXPECT_NE(with("/solver/ridge_grad", "none").find("'solver.ridge_grad'"), std::string::npos);
  EXPECT_NE(with("/anchor_knobs/sgn0", "minus").find("'anchor_knobs.sgn0'"), std::string::npos);
  EXPECT_NE(with("/gen", "gaussian").find("'gen'"), std::string::npos);
  EXPECT_NE(with("/dtype", "int8").find("'dtype'"), std::string::npos);
  EXPECT_NE(with("/bogus", 1).find("'bogus'"), std::string::npos);
  EXPECT_NE(with("/solver/lamda", 1).find("'solver.lamda'"), std::string::npos);
  EXPECT_NE(with("/B", "two").find("'B'"), std::string::npos);
  EXPECT_NE(with("/B", 2.5).find("'B'"), std::string::npos);
  EXPECT_NE(with("/seed", -1).find("'seed'"), std::string::npos);
  EXPECT_NE(with("/causal", 1).find("'causal'"), std::string::npos);
  EXPECT_NE(with("/tau", 0.5).find("'tau'"), std::string::npos);
}

TEST(ProblemJson, ValidateRunsOnInput) {
  json j = problem_to_json(Problem{});
  j["Hkv"] = 2, j["Hq"] = 3;
  EXPECT_NE(error_of(j).find("'Hq'"), std::string::npos);
  j = problem_to_json(Problem{});
  j["Lq"] = 4, j["decode"] = true;
  EXPECT_NE(error_of(j).find("'decode'"), std::string::npos);
}

TEST(ProblemJson, MemberShortcutThenExplicitFieldsOverride) {
  Problem p = problem_from_json(json{{"member", "lla"}, {"form", "centred"}});
  EXPECT_EQ(p.probe, Probe::Solver);
  EXPECT_EQ(p.anchor, Anchor::Query);
  EXPECT_EQ(p.form, Formulation::Centred);
  EXPECT_NE(error_of(json{{"member", "flash"}}).find("member"), std::string::npos);
}
