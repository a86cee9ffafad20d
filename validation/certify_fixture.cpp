// validation/certify_fixture.cpp — see certify_fixture.hpp.
#include "validation/certify_fixture.hpp"

#include <mpfr.h>

#include <cmath>
#include <cstdio>
#include <limits>

namespace plx {
using nlohmann::json;

namespace {

// hi + lo exactly: two doubles' sum needs at most (exponent gap + 53) bits, < 2200.
struct Exact2 {
  mpfr_t v;
  Exact2(double hi, double lo) {
    mpfr_init2(v, 2200);
    mpfr_set_d(v, hi, MPFR_RNDN);
    mpfr_add_d(v, v, lo, MPFR_RNDN);  // exact at 2200 bits
  }
  ~Exact2() { mpfr_clear(v); }
};

std::string index_str(const std::vector<std::size_t>& shape, std::size_t flat) {
  std::vector<std::size_t> idx(shape.size());
  for (std::size_t k = shape.size(); k-- > 0;) idx[k] = flat % shape[k], flat /= shape[k];
  return shape_str(idx);
}

}  // namespace

TruthRadius truth_radius(const Truth& t, const Tensor<Ival>& enc) {
  enc.require_shape(t.hi.shape, "enclosure");
  TruthRadius r;
  r.rad = Tensor<double>(t.hi.shape);
  mpfr_t d1, d2;
  mpfr_inits2(64, d1, d2, (mpfr_ptr)0);
  for (std::size_t i = 0; i < t.hi.size(); ++i) {
    const Exact2 x(t.hi.data[i], t.lo.data[i]);
    const Ival& e = enc.data[i];
    if (!is_finite(e) || !std::isfinite(t.hi.data[i])) {
      r.rad.data[i] = std::numeric_limits<double>::infinity();
      r.max_rad = r.rad.data[i];
      continue;
    }
    mpfr_sub(d1, x.v, e.lo, MPFR_RNDU);
    mpfr_sub(d2, e.hi, x.v, MPFR_RNDU);
    mpfr_max(d1, d1, d2, MPFR_RNDU);
    r.rad.data[i] = mpfr_get_d(d1, MPFR_RNDU);
    r.max_rad = std::max(r.max_rad, r.rad.data[i]);
    r.max_abs = std::max(r.max_abs, std::fabs(t.hi.data[i]));
  }
  mpfr_clears(d1, d2, (mpfr_ptr)0);
  return r;
}

double allowed_truth_error(const FixtureData& f, const std::string& name) {
  double claimed = 1e-25;  // the certified tier's promise where the fixture states nothing
  const json& re = f.reference_error;
  if (re.contains("max_rel") && re["max_rel"].contains(name) && re["max_rel"][name].is_number())
    claimed = re["max_rel"][name].get<double>();
  return 2 * claimed + 0x1p-105 + 1e-60;
}

double certified_digits(double max_rad, double max_abs) {
  if (max_rad == 0) return std::numeric_limits<double>::infinity();
  if (max_abs == 0) return -std::numeric_limits<double>::infinity();
  return -std::log10(max_rad / max_abs);
}

bool certify_fixture(FixtureData& f, double work_limit, const CertifyOptions& o) {
  const Problem& p = f.p;
  const double work = double(p.B) * p.Hq * p.Lq * p.Lkv * (p.D + p.Dv);
  if (work > work_limit) return false;
  CertifyOptions opt = o;
  opt.backward = o.backward && f.truth.size() > 1;  // gradients only where the fixture has them
  Certificate c = certify(p, f.in, opt);
  json tensors = json::object(), nv = json::object();
  std::map<std::string, Tensor<double>> rad;
  for (const auto& [name, truth] : f.truth) {
    auto it = c.enclosure.find(name);
    if (it == c.enclosure.end()) {
      nv[name] = c.not_verified.count(name) ? c.not_verified.at(name) : "no enclosure computed";
      continue;
    }
    TruthRadius ec = truth_radius(truth, it->second);
    const double proven = ec.max_abs > 0 ? ec.max_rad / ec.max_abs : (ec.max_rad > 0 ? HUGE_VAL : 0.0);
    const double allowed = allowed_truth_error(f, name);
    if (!(proven <= allowed)) {
      std::size_t k = 0;
      for (std::size_t i = 0; i < ec.rad.size(); ++i)
        if (!(ec.rad.data[i] <= ec.rad.data[k])) k = i;
      const Ival& e = it->second.data[k];
      char buf[600];
      std::snprintf(buf, sizeof buf,
                    "certify: the %s truth of '%s' is proven to be %.3g (normwise relative) from the exact value, "
                    "more than its fixture allows (%.3g = 2 x reference_error + hi/lo rounding); worst entry %s: "
                    "truth %.17g + %.17g, exact in [%.17g, %.17g]: a bug in the reference, its error statement, "
                    "or the certified tier",
                    f.scalar.c_str(), name.c_str(), proven, allowed, index_str(truth.hi.shape, k).c_str(),
                    truth.hi.data[k], truth.lo.data[k], e.lo_d(), e.hi_d());
      throw Error(buf);
    }
    const double digits = certified_digits(ec.max_rad, ec.max_abs);
    const bool fwd = name == "out";
    tensors[name] = {{"max_rad", ec.max_rad},
                     {"max_abs", ec.max_abs},
                     {"digits", std::isfinite(digits) ? json(std::floor(digits * 10) / 10) : json("exact")},
                     {"allowed_rel", allowed},
                     {"enclosure_rel_width", normwise_rel_width(it->second)},
                     {"bits", c.bits.count(fwd ? "forward" : "backward") ? c.bits.at(fwd ? "forward" : "backward") : 0}};
    rad[name] = std::move(ec.rad);
  }
  f.rad = std::move(rad);
  f.certified = {{"method", "the reference evaluated in interval arithmetic (MPFR endpoints, outward rounding), "
                            "ridge systems by a verified solve (Krawczyk/Rump); docs/certified.md"},
                 {"statement", "for every entry: |exact - (t + t_lo)| <= t_rad, exact = the real value of the "
                               "stated function of the stored inputs (docs/certified.md)"},
                 {"tensors", tensors}};
  if (!nv.empty()) f.certified["not_verified"] = nv;
  return true;
}

std::string certified_summary(const FixtureData& f) {
  if (f.certified.is_null() || !f.certified.contains("tensors")) return "";
  const json& t = f.certified["tensors"];
  double worst = std::numeric_limits<double>::infinity();
  std::string parts;
  for (auto it = t.begin(); it != t.end(); ++it) {
    const double d = certified_digits(it.value().value("max_rad", 0.0), it.value().value("max_abs", 0.0));
    worst = std::min(worst, d);
    char buf[64];
    if (std::isfinite(d)) std::snprintf(buf, sizeof buf, "%s%s %.1f", parts.empty() ? "" : ", ", it.key().c_str(), d);
    else std::snprintf(buf, sizeof buf, "%s%s exact", parts.empty() ? "" : ", ", it.key().c_str());
    parts += buf;
  }
  std::string s;
  if (t.empty()) s = "truth not certified";
  else if (std::isfinite(worst)) s = "truth certified to " + std::to_string(int(std::floor(worst))) + " digits (" + parts + ")";
  else s = "truth certified exact (" + parts + ")";
  if (f.certified.contains("not_verified")) {
    s += "; not verified:";
    for (auto it = f.certified["not_verified"].begin(); it != f.certified["not_verified"].end(); ++it)
      s += " " + it.key();
  }
  return s;
}

}  // namespace plx
