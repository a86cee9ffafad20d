// validation/certify_fixture.hpp — certified enclosures carried by a fixture (`plx gen --certify`).
//
// Charter: certify_fixture() runs the certified tier (reference/certify.hpp) on a generated
// fixture's stored inputs and, per entry of every certified tensor, stores
// rad = max(hi + lo - inf, sup - (hi + lo)) rounded up to float64, where [inf, sup] is the proven
// enclosure of the exact value: |exact - (hi + lo)| <= rad is then proven (dataset `<tensor>_rad`,
// docs/fixtures.md). The enclosures are far narrower than the double-double truth's own error, so
// rad is that error, proven. If it exceeds what the fixture states about its truth (twice its
// `reference_error`, plus the hi/lo storage rounding), the truth is wrong: generation fails
// (a bug in the reference, its error statement, or the certified tier). The root attribute
// `certified` (JSON) records per tensor max_rad, max_abs, digits and working bits, and the
// tensors not verified with the reason. Cases above a work limit are skipped (no attribute).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "reference/certify.hpp"
#include "validation/fixture.hpp"

namespace plx {

// Forward work B Hq Lq Lkv (D + Dv) above which `plx gen --certify` skips a case by default.
constexpr double kCertifyWorkLimit = 2e6;

// The distance of the truth hi + lo of one tensor to the far end of its enclosure, per entry.
struct TruthRadius {
  Tensor<double> rad;             // outward-rounded max(hi + lo - inf, sup - (hi + lo))
  double max_rad = 0, max_abs = 0;  // max rad, max |hi|
};
TruthRadius truth_radius(const Truth& t, const Tensor<Ival>& enc);

// The largest normwise relative error (max rad / max |truth|) the fixture's own statement allows
// for tensor `name`: 2 x reference_error.max_rel[name] (or 1e-25 where it states none) + 2^-105
// (rounding x to hi + lo) + 1e-60 (room for the enclosure's width).
double allowed_truth_error(const FixtureData& f, const std::string& name);

// Certify f in place (f.rad, f.certified). Throws plx::Error if a truth's proven error exceeds
// allowed_truth_error().
// Returns false (and leaves f unchanged) if the case's work exceeds work_limit.
bool certify_fixture(FixtureData& f, double work_limit = kCertifyWorkLimit, const CertifyOptions& o = {});

// Decimal digits of a certified tensor: -log10(max_rad / max_abs); +inf when exact.
double certified_digits(double max_rad, double max_abs);

// One line for reports: "truth certified to N digits (out 30.2, dq 29.9, ...)" or "" if none.
std::string certified_summary(const FixtureData& f);

}  // namespace plx
