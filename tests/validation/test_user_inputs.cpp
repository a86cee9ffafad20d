// tests/validation/test_user_inputs.cpp — truth on the caller's own inputs (validation/user_inputs.hpp)
// and the purpose/hint that travel with a case.
//
// Route consistency: a fixture computed from user-supplied tensors equal to the generator's
// inputs has exactly the truth of the generated fixture (same inputs, same code: any difference
// is a wiring bug such as a transposed or reordered tensor). Refusals: every bad input names the
// tensor (and the index where there is one). Purpose and hint: written, read back, printed by the
// report on failure only.
#include <gtest/gtest.h>

#include <cmath>

#include "tests/expect_error.hpp"
#include "tests/validation/fixture_support.hpp"
#include "validation/check.hpp"
#include "validation/h5io.hpp"
#include "validation/user_inputs.hpp"

using namespace plx;

namespace {

UserInputs as_user(const Inputs& in, const Problem& p) {
  UserInputs u;
  u.q = in.q, u.k = in.k, u.v = in.v, u.dO = in.dO;
  if (p.probe == Probe::Learned) u.r = in.r;
  if (p.probe == Probe::Solver) u.lambda = in.lambda;
  return u;
}

void expect_same_truth(const FixtureData& a, const FixtureData& b) {
  ASSERT_EQ(a.truth.size(), b.truth.size());
  for (const auto& [n, t] : a.truth) {
    ASSERT_TRUE(b.truth.count(n)) << n;
    EXPECT_EQ(t.hi.data, b.truth.at(n).hi.data) << n;
    EXPECT_EQ(t.lo.data, b.truth.at(n).lo.data) << n;
  }
  for (const auto& [n, t] : a.saved) EXPECT_EQ(t.hi.data, b.saved.at(n).hi.data) << n;
}

}  // namespace

TEST(UserInputs, SameInputsSameTruthEveryMember) {
  for (const char* m : {"softmax", "parallax", "lla", "lla_cov"}) {
    Problem p = test::small_problem(m);
    p.Lq = 5, p.Lkv = 7;
    const Inputs in = make_inputs(p);
    expect_same_truth(generate_fixture(p, "dd"), fixture_from_user_inputs(p, as_user(in, p)));
  }
}

TEST(UserInputs, MissingDOIsTheGeneratorsAndSaidSo) {
  Problem p = test::small_problem("parallax");
  UserInputs u = as_user(make_inputs(p), p);
  u.dO = Tensor<double>();
  const FixtureData f = fixture_from_user_inputs(p, u);
  EXPECT_EQ(f.in.dO.data, make_inputs(p).dO.data);
  EXPECT_NE(f.reference_error["notes"]["inputs"].get<std::string>().find("dO from the generator"), std::string::npos);
}

TEST(UserInputs, RefusalsNameTheTensor) {
  const Problem p = test::small_problem("parallax");  // float32 inputs
  const Inputs in = make_inputs(p);
  {
    UserInputs u = as_user(in, p);
    u.q.data[u.q.at4(1, 2, 3, 4)] = std::nan("");
    test::expect_error([&] { complete_user_inputs(p, u); }, "'q': non-finite value nan at index [1, 2, 3, 4]");
  }
  {
    UserInputs u = as_user(in, p);
    u.k.data[7] = INFINITY;
    test::expect_error([&] { complete_user_inputs(p, u); }, "'k': non-finite value inf");
  }
  {
    UserInputs u = as_user(in, p);
    u.v.shape = {2, 13, 2, 3}, u.v.data.resize(2 * 13 * 2 * 3);
    test::expect_error([&] { complete_user_inputs(p, u); }, "'v': shape [2, 13, 2, 3] but the problem needs [2, 13, 2, 6]");
  }
  {
    UserInputs u = as_user(in, p);
    u.r.data[0] = 0.1;  // not a float32
    test::expect_error([&] { complete_user_inputs(p, u); }, "'r': value 0.10000000000000001 at index [0, 0, 0, 0] is not exactly representable in the problem dtype float32");
  }
  {
    UserInputs u = as_user(in, p);
    u.r = Tensor<double>();
    test::expect_error([&] { complete_user_inputs(p, u); }, "'r' is missing");
  }
  {
    UserInputs u = as_user(in, p);
    u.lambda = Tensor<double>({2, 4, 9}, 0.1);
    test::expect_error([&] { complete_user_inputs(p, u); }, "'lambda' was given but member parallax has no ridge solve");
  }
  {
    const Problem s = test::small_problem("lla");
    UserInputs u = as_user(make_inputs(s), s);
    u.lambda.data[3] = -1;
    test::expect_error([&] { complete_user_inputs(s, u); }, "'lambda': negative ridge");
  }
  {
    const Problem b = test::small_problem("softmax", DType::BF16);
    UserInputs u = as_user(make_inputs(b), b);
    u.dO.data[5] = 1.0 + 0x1p-20;  // representable in float32, not in bfloat16
    test::expect_error([&] { complete_user_inputs(b, u); }, "'dO': value");
  }
}

TEST(UserInputs, ReadFromHdf5NamesTheDataset) {
  test::TempDir d;
  const Problem p = test::small_problem("softmax");
  const Inputs in = make_inputs(p);
  const std::string path = d.file("in.h5");
  {
    h5::Handle f = h5::create_file(path);
    std::vector<float> q(in.q.data.begin(), in.q.data.end()), k(in.k.data.begin(), in.k.data.end());
    h5::write(f, "q", in.q.shape, h5::Raw::F32, q.data());
    h5::write(f, "k", in.k.shape, h5::Raw::F32, k.data());
    h5::write(f, "v", in.v.shape, h5::Raw::F64, in.v.data.data());
  }
  const UserInputs u = read_user_inputs(path);
  EXPECT_EQ(u.q.data, in.q.data);
  EXPECT_EQ(u.v.data, in.v.data);
  EXPECT_TRUE(u.r.empty());
  // Stored in a type plx cannot interpret: refused naming file and dataset.
  const std::string bad = d.file("bad.h5");
  {
    h5::Handle f = h5::create_file(bad);
    std::vector<std::uint16_t> bits(in.q.size(), 0x3f80);
    h5::write(f, "q", in.q.shape, h5::Raw::U16, bits.data());  // no 'format' attribute
  }
  test::expect_error([&] { read_user_inputs(bad); }, "inputs '" + bad + "', dataset 'q': uint16 data needs a 'format'");
}

TEST(Purpose, TravelsThroughTheFileAndIntoFailureReportsOnly) {
  test::TempDir d;
  const Problem p = test::small_problem("softmax");
  FixtureData f = generate_fixture(p, "dd");
  f.purpose = "what this case tests", f.hint = "how to fix a failure";
  const std::string path = d.file("f.h5");
  write_fixture(f, path);
  const FixtureData g = read_fixture(path);
  EXPECT_EQ(g.purpose, f.purpose);
  EXPECT_EQ(g.hint, f.hint);
  Candidate c;
  c.label = "test";
  Tensor<double> out = g.truth.at("out").hi;
  for (auto& x : out.data) x = double(float(x));
  c.tensors["out"] = {out, DType::F32};
  const CheckResult ok = check_candidate(path, g, c);
  ASSERT_TRUE(ok.passed) << ok.format();
  EXPECT_EQ(ok.format().find("what this case tests"), std::string::npos);
  for (auto& x : c.tensors["out"].values.data) x = double(float(x * 1.01));
  const CheckResult bad = check_candidate(path, g, c);
  ASSERT_FALSE(bad.passed);
  EXPECT_NE(bad.format().find("the case tests: what this case tests"), std::string::npos) << bad.format();
  EXPECT_NE(bad.format().find("hint: how to fix a failure"), std::string::npos);
  EXPECT_EQ(bad.to_json()["purpose"], "what this case tests");
}
