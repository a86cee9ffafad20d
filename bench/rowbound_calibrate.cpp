// bench/rowbound_calibrate.cpp — the calibration of the condition-aware row bound's constants
// C_T (validation/row_bound.hpp, docs/stability.md "Condition-aware tolerance").
//
// Runs every point and seed of a sweep spec (default bench/stability/rowbound.json), and per
// tensor collects each row's required constant r = (err - u_s |t_row|) / (u M_row), i.e. the C_T
// at which the row would sit exactly at its limit. Prints the quantiles of r, the power of two
// at or above the 99.95th percentile (the constant row_bound_constant states), and for that
// constant the coverage and the median limit / error over rows with a nonzero error.
// usage: rowbound_calibrate [sweep.json]   (target rowbound_calibrate, not built by default)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <vector>

#include "validation/row_bound.hpp"
#include "validation/sweep.hpp"

using namespace plx;

int main(int argc, char** argv) {
  const SweepSpec s = load_sweep(argc > 1 ? argv[1] : "bench/stability/rowbound.json");
  const auto pts = expand_sweep(s);
  struct Rows {
    std::vector<double> need, err, uM, us;  // us: the u_s |t_row| term
  };
  std::map<std::string, Rows> R;
  for (const auto& pt : pts)
    for (auto sd : s.seeds)
      for (const auto& [t, r] : sweep_item_row_bound(s, pt, sd)) {
        const double C = row_bound_constant(t);
        for (std::size_t k = 0; k < r.err.size(); ++k) {
          const double us = r.limit[k] - C * r.uM[k];
          auto& x = R[t];
          x.err.push_back(r.err[k]), x.uM.push_back(r.uM[k]), x.us.push_back(us);
          x.need.push_back(r.uM[k] > 0 ? std::max(0.0, r.err[k] - us) / r.uM[k] : 0.0);
        }
      }
  std::printf("tensor rows q50 q99 q99.9 q99.95 max C_T(pow2>=q99.95) coverage median_limit/err\n");
  for (auto& [t, x] : R) {
    std::vector<double> v = x.need;
    std::sort(v.begin(), v.end());
    auto q = [&](double f) { return v[std::min(v.size() - 1, std::size_t(f * double(v.size())))]; };
    const double C = std::exp2(std::ceil(std::log2(std::max(q(0.9995), 1e-300))));
    std::size_t cov = 0;
    std::vector<double> loose;
    for (std::size_t k = 0; k < x.err.size(); ++k) {
      const double lim = C * x.uM[k] + x.us[k];
      cov += x.err[k] <= lim;
      if (x.err[k] > 0) loose.push_back(lim / x.err[k]);
    }
    std::sort(loose.begin(), loose.end());
    std::printf("%-3s %zu %.3g %.3g %.3g %.3g %.3g %g %.5f %.3g\n", t.c_str(), v.size(), q(0.5), q(0.99), q(0.999),
                q(0.9995), v.back(), C, double(cov) / double(x.err.size()), loose.empty() ? 0.0 : loose[loose.size() / 2]);
  }
}
