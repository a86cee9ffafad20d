// validation/certify_fixture.hpp — certified enclosures carried by a fixture (`plx gen --certify`).
//
// Charter: certify_fixture() runs the certified tier (reference/certify.hpp) on a generated
// fixture's stored inputs, checks that the double-double truth hi + lo of every certified tensor
// lies inside its proven enclosure (if not, that is a reference bug: it throws plx::Error), and
// stores per entry rad = max(hi + lo - inf, sup - (hi + lo)) rounded up to float64, so that
// |exact - (hi + lo)| <= rad is a proven statement (dataset `<tensor>_rad`, docs/fixtures.md), and
// the root attribute `certified` (JSON: per tensor max_rad, max_abs, digits, working bits; the
// tensors not verified and why). Cases above a work limit are skipped (no attribute).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "reference/certify.hpp"
#include "validation/fixture.hpp"

namespace plx {

// Forward work B Hq Lq Lkv (D + Dv) above which `plx gen --certify` skips a case by default.
constexpr double kCertifyWorkLimit = 2e6;

// The truth hi + lo of one tensor against its enclosure, entry by entry.
struct EnclosureCheck {
  Tensor<double> rad;          // outward-rounded max distance from hi + lo to the enclosure's ends
  std::size_t outside = 0;     // entries whose hi + lo is outside the enclosure
  std::size_t first_outside = 0;
  std::string first_detail;    // index, truth and enclosure of the first such entry
  double max_rad = 0, max_abs = 0;
};
EnclosureCheck check_truth_in_enclosure(const Truth& t, const Tensor<Ival>& enc);

// Certify f in place (f.rad, f.certified). Throws plx::Error if a truth lies outside its enclosure.
// Returns false (and leaves f unchanged) if the case's work exceeds work_limit.
bool certify_fixture(FixtureData& f, double work_limit = kCertifyWorkLimit, const CertifyOptions& o = {});

// Decimal digits of a certified tensor: -log10(max_rad / max_abs); +inf when exact.
double certified_digits(double max_rad, double max_abs);

// One line for reports: "truth certified to N digits (out 30.2, dq 29.9, ...)" or "" if none.
std::string certified_summary(const FixtureData& f);

}  // namespace plx
