// tests/reference/test_forward_bad_input.cpp — bad input to the reference forward gives a clear plx::Error.
//
// Charter: every malformed request (invalid problem field, wrong tensor shape, NaN/Inf input,
// unknown member or dtype name) is rejected with plx::Error whose message names the field or
// tensor and, for non-finite values, the index; a mathematically undefined case (singular
// ridge system at lambda = 0) raises plx::NumericalError saying so. Asserts on message text.
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "reference/all.hpp"

using namespace plx;

namespace {

Problem good(const std::string& member = "parallax") {
  Problem p;
  p.B = 2, p.Hq = 4, p.Hkv = 2, p.Lq = 5, p.Lkv = 6, p.D = 4, p.Dv = 3, p.seed = 17;
  set_member(p, member);
  return p;
}

// Runs f, requires an exception of type E whose message contains every needle.
template <class E = Error>
void expect_error(const std::function<void()>& f, std::initializer_list<std::string> needles) {
  try {
    f();
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "message '" << msg << "' lacks '" << n << "'";
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type, message: " << e.what();
    return;
  }
  ADD_FAILURE() << "no exception; expected one mentioning " << *needles.begin();
}

void forward(const Problem& p, const Inputs& in) { (void)attention_forward<double>(p, in); }
void forward(const Problem& p) { forward(p, make_inputs(p)); }

}  // namespace

TEST(ForwardBadInput, ProblemFieldsAreNamed) {
  auto with = [](auto edit) { Problem p = good(); edit(p); return p; };
  expect_error([&] { forward(with([](Problem& p) { p.Hq = 3; })); }, {"'Hq'", "multiple of Hkv", "Hq=3", "Hkv=2"});
  expect_error([&] { forward(with([](Problem& p) { p.D = 0; })); }, {"'D'", ">= 1", "got 0"});
  expect_error([&] { forward(with([](Problem& p) { p.Dv = -1; })); }, {"'Dv'"});
  expect_error([&] { forward(with([](Problem& p) { p.B = 0; })); }, {"'B'"});
  expect_error([&] { forward(with([](Problem& p) { p.Lkv = 0; })); }, {"'Lkv'"});
  expect_error([&] { forward(with([](Problem& p) { p.window = -2; })); }, {"'window'", "-1 (off) or >= 0"});
  expect_error([&] { forward(with([](Problem& p) { p.start = {0}; })); }, {"'start'", "one entry per batch"});
  expect_error([&] { forward(with([](Problem& p) { p.used = {6, 7}; })); }, {"'used'", "entry 1", "[0, Lkv]"});
  expect_error([&] { forward(with([](Problem& p) { p.start = {-1, 0}; })); }, {"'start'", "entry 0"});
  expect_error([&] { forward(with([](Problem& p) { p.decode = true; })); }, {"'decode'", "Lq = 1"});
  expect_error([&] { forward(with([](Problem& p) { p.qk_scale = -1; })); }, {"'qk_scale'"});
  expect_error([&] { forward(with([](Problem& p) { p.qk_scale = std::numeric_limits<double>::infinity(); })); }, {"'qk_scale'", "finite"});
  expect_error([&] { forward(with([](Problem& p) { p.r_scale = std::numeric_limits<double>::quiet_NaN(); })); }, {"'r_scale'"});
  expect_error([&] { forward(with([](Problem& p) { p.gen_param = -3; })); }, {"'gen_param'"});
}

TEST(ForwardBadInput, SolverAndAnchorKnobsAreNamed) {
  auto with = [](auto edit) { Problem p = good("lla"); edit(p); return p; };
  expect_error([&] { forward(with([](Problem& p) { p.solver.lambda = -0.1; })); }, {"'solver.lambda'", ">= 0"});
  expect_error([&] { forward(with([](Problem& p) { p.solver.block = 3; })); }, {"'solver.block'", "divide D=4", "got 3"});
  expect_error([&] { forward(with([](Problem& p) { p.solver.cg_max_iters = 0; })); }, {"'solver.cg_max_iters'"});
  expect_error([&] { forward(with([](Problem& p) { p.solver.cg_rtol = -1; })); }, {"'solver.cg_rtol'"});
  expect_error([&] {
    forward(with([](Problem& p) { p.solver.block = 2, p.solver.method = SolverMethod::CG; }));
  }, {"'solver.method'", "block = D"});
  expect_error([&] {
    forward(with([](Problem& p) { p.anchor_knobs.delta_eps = std::numeric_limits<double>::quiet_NaN(); }));
  }, {"'anchor.delta_eps'"});
}

TEST(ForwardBadInput, UnknownNames) {
  Problem p;
  expect_error([&] { set_member(p, "flash"); }, {"member", "'flash'", "softmax", "lla_cov"});
  expect_error([&] { (void)dtype_from_string("int8"); }, {"dtype", "'int8'", "bfloat16"});
}

TEST(ForwardBadInput, MismatchedShapesNameTheTensor) {
  Problem p = good("parallax");
  Inputs in = make_inputs(p);
  {
    Inputs bad = in;
    bad.q = Tensor<double>({2, 5, 4, 5}, 1.0);
    expect_error([&] { forward(p, bad); }, {"tensor 'q'", "[2, 5, 4, 5]", "[2, 5, 4, 4]"});
  }
  {
    Inputs bad = in;
    bad.k = Tensor<double>({2, 6, 4, 4}, 1.0);  // MHA-shaped keys for a GQA problem
    expect_error([&] { forward(p, bad); }, {"tensor 'k'", "[2, 6, 2, 4]"});
  }
  {
    Inputs bad = in;
    bad.v = Tensor<double>({2, 7, 2, 3}, 1.0);
    expect_error([&] { forward(p, bad); }, {"tensor 'v'"});
  }
  {
    Inputs bad = in;
    bad.r = Tensor<double>({2, 5, 4}, 1.0);
    expect_error([&] { forward(p, bad); }, {"tensor 'r'"});
  }
  Problem pl = good("lla");
  Inputs il = make_inputs(pl);
  il.lambda = Tensor<double>({2, 4, 4}, 0.1);
  expect_error([&] { forward(pl, il); }, {"tensor 'lambda'", "[2, 4, 5]"});
}

TEST(ForwardBadInput, NonFiniteInputsReportTensorAndIndex) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  Problem p = good("parallax");
  Inputs in = make_inputs(p);
  {
    Inputs bad = in;
    bad.q(1, 2, 3, 1) = nan;
    expect_error([&] { forward(p, bad); }, {"tensor 'q'", "non-finite", "[1, 2, 3, 1]"});
  }
  {
    Inputs bad = in;
    bad.k(0, 5, 1, 3) = -inf;
    expect_error([&] { forward(p, bad); }, {"tensor 'k'", "[0, 5, 1, 3]"});
  }
  {
    Inputs bad = in;
    bad.v(1, 0, 0, 2) = inf;
    expect_error([&] { forward(p, bad); }, {"tensor 'v'", "[1, 0, 0, 2]"});
  }
  {
    Inputs bad = in;
    bad.r(0, 4, 2, 0) = nan;
    expect_error([&] { forward(p, bad); }, {"tensor 'r'", "[0, 4, 2, 0]"});
  }
  {
    // A NaN in a padded (masked) key position is still rejected: docs/math.md §7.8 requires finite padding.
    Problem pp = p;
    pp.used = {3, 6};
    Inputs bad = make_inputs(pp);
    bad.k(0, 5, 0, 0) = nan;
    expect_error([&] { forward(pp, bad); }, {"tensor 'k'", "[0, 5, 0, 0]"});
  }
  Problem pl = good("lla");
  Inputs il = make_inputs(pl);
  il.lambda(1, 3, 4) = nan;
  expect_error([&] { forward(pl, il); }, {"tensor 'lambda'", "[1, 3, 4]"});
  il = make_inputs(pl);
  il.lambda(0, 0, 2) = -1;
  expect_error([&] { forward(pl, il); }, {"tensor 'lambda'", "negative"});
}

// lambda = 0 with |A_i| <= D keys: C (and Sigma) is singular; both LLA forms say so, naming the row.
TEST(ForwardBadInput, SingularRidgeSystemIsANumericalError) {
  for (const char* m : {"lla", "lla_cov"}) {
    Problem p = good(m);
    p.solver.lambda = 0, p.anchor_knobs.delta_eps = 0;  // causal: row 0 sees Lkv - Lq + 1 = 2 <= D keys
    expect_error<NumericalError>([&] { forward(p); }, {"singular", "row (b=", "lambda = 0"});
  }
  // The same problem with a ridge is fine.
  Problem p = good("lla");
  p.solver.lambda = 1e-3;
  EXPECT_NO_THROW(forward(p));
}

// Query-anchored denominator exactly 0 with sgn(0) = 0 is a NumericalError, not a NaN: a learned
// probe r with r.(kbar - q) = 1 exactly. One key at the query plus offset 1/r: Delta = omega (1 - r.delta) = 0.
TEST(ForwardBadInput, ZeroDenominatorWithSgn0ZeroIsANumericalError) {
  Problem p;
  set_member(p, "learned_query");
  p.B = p.Hq = p.Hkv = p.Lq = p.Lkv = 1, p.D = p.Dv = 2;
  p.anchor_knobs.delta_eps = 0.5, p.anchor_knobs.sgn0 = Sgn0::Zero;
  Inputs in = make_inputs(p);
  in.q.data = {0.5, 0.25};
  in.k.data = {1.5, 0.25};  // delta = k - q = (1, 0)
  in.r.data = {1.0, 3.0};   // r.delta = 1 exactly -> Delta = 0, d = Delta + 0.5 * sgn0(0) = 0
  expect_error<NumericalError>([&] { forward(p, in); }, {"denominator d = 0", "sgn0 = 0"});
  p.anchor_knobs.sgn0 = Sgn0::Plus;  // the default shifts by +delta_eps: finite
  auto F = attention_forward<double>(p, in);
  for (double x : F.out.data) EXPECT_TRUE(std::isfinite(x));
}
