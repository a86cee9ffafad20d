// tests/validation/test_golden.cpp — the committed golden suite regenerates bit for bit.
//
// Regenerates fixtures/suites/golden.json into a temp dir and compares, dataset by dataset,
// the SHA-256 of every dataset and the problem JSON with (a) the committed manifest and
// (b) the committed files themselves (whose own checksums read_fixture verifies). Creation
// time and git commit are attributes and are deliberately not compared. The suite is
// regenerated with certification (plx gen --certify), so this is also the CI check that every
// committed double-double truth is proven within its stated error of the exact value (generation
// fails otherwise) and that the committed radii `<tensor>_rad` are reproduced bit for bit.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tests/validation/fixture_support.hpp"
#include "validation/certify_fixture.hpp"
#include "validation/problem_json.hpp"
#include "validation/suite.hpp"

using namespace plx;

TEST(Golden, RegeneratesBitForBit) {
  const char* src = std::getenv("PLX_SOURCE_DIR");
  ASSERT_NE(src, nullptr) << "PLX_SOURCE_DIR must point at the repository root";
  const std::filesystem::path root(src), golden = root / "fixtures" / "golden";
  std::ifstream mf(golden / "manifest.json");
  ASSERT_TRUE(mf) << "missing " << (golden / "manifest.json");
  const nlohmann::json committed = nlohmann::json::parse(mf);

  Suite s = load_suite((root / "fixtures" / "suites" / "golden.json").string());
  test::TempDir d;
  GenOptions o;
  o.jobs = 2;
  o.certify = true;
  const nlohmann::json regen = gen_suite(s, d.path.string(), o);
  const auto diff = diff_manifests(committed, regen);
  for (const auto& x : diff) ADD_FAILURE() << x;
  EXPECT_TRUE(diff.empty());

  // The committed files match the manifest (and their own checksums).
  for (auto it = committed["files"].begin(); it != committed["files"].end(); ++it) {
    FixtureData f = read_fixture((golden / it.key()).string());
    EXPECT_EQ(problem_to_json(f.p), it.value()["problem"]) << it.key();
    for (auto ds = it.value()["datasets"].begin(); ds != it.value()["datasets"].end(); ++ds) {
      ASSERT_TRUE(f.sha256.count(ds.key())) << it.key() << " " << ds.key();
      EXPECT_EQ(f.sha256.at(ds.key()), ds.value().get<std::string>()) << it.key() << " " << ds.key();
    }
    EXPECT_EQ(f.sha256.size(), it.value()["datasets"].size()) << it.key();
    // Every case within the work limit carries an enclosure of every truth tensor.
    const Problem& p = f.p;
    if (double(p.B) * p.Hq * p.Lq * p.Lkv * (p.D + p.Dv) <= o.certify_work_limit) {
      ASSERT_FALSE(f.certified.is_null()) << it.key() << " is not certified";
      EXPECT_FALSE(f.certified.contains("not_verified")) << it.key() << ": " << f.certified.dump();
      for (const auto& [n, t] : f.truth) EXPECT_TRUE(f.rad.count(n)) << it.key() << " " << n;
    }
  }
}
