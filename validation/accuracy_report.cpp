// validation/accuracy_report.cpp — plx_accuracy: how many digits the reference keeps per scalar.
//
// Charter: runs the reference forward on a fixed set of problems (every member; normal,
// rms_norm, anisotropic, large_r, sink and z_cancel inputs) in double, long double, double-double and
// float128, measures the normwise relative error of each output against the 100-digit run
// (computed in 100-digit arithmetic, so errors far below 1e-16 are measured exactly) and prints
// a markdown table of correct decimal digits (-log10 of that error) and of run times. It checks
// nothing itself (tests/reference/test_forward_precision.cpp does); it documents.
#include <CLI/CLI.hpp>
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "reference/all.hpp"

using namespace plx;

namespace {

bf100 to_bf100(double x) { return bf100(x); }
bf100 to_bf100(long double x) { return bf100(x); }
bf100 to_bf100(const dd& x) { return bf100(x.x[0]) + bf100(x.x[1]); }  // exact: hi + lo
bf100 to_bf100(const qd4& x) { return ((bf100(x.x[0]) + bf100(x.x[1])) + bf100(x.x[2])) + bf100(x.x[3]); }  // error < 2^-330 relative: far below qd's own
bf100 to_bf100(const f128& x) { return bf100(x.str(40, std::ios::scientific)); }  // 40 > 36 digits: exact round trip

template <class T> double seconds_of(const std::function<void()>& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Normwise relative error ||x - truth||_2 / ||truth||_2 over the whole output, in bf100.
template <class T> double normwise_error(const Tensor<T>& x, const Tensor<bf100>& truth) {
  bf100 num = 0, den = 0;
  for (std::size_t i = 0; i < truth.size(); ++i) {
    const bf100 e = to_bf100(x.data[i]) - truth.data[i];
    num += e * e, den += truth.data[i] * truth.data[i];
  }
  return den > 0 ? to_double(bf100(sqrt(num / den))) : to_double(bf100(sqrt(num)));
}

struct Cell {
  double digits, seconds;
};

// Best of three runs: the machine is shared, and one forward takes milliseconds.
template <class T> Cell measure(const Problem& p, const Inputs& in, const Tensor<bf100>& truth) {
  Forward<T> F;
  double s = std::numeric_limits<double>::infinity();
  for (int rep = 0; rep < 3; ++rep) s = std::min(s, seconds_of<T>([&] { F = attention_forward<T>(p, in); }));
  const double err = normwise_error(F.out, truth);
  return {err > 0 ? -std::log10(err) : std::numeric_limits<double>::infinity(), s};
}

std::string fmt_digits(double d) {
  char b[32];
  if (std::isinf(d)) return "exact";
  std::snprintf(b, sizeof b, "%.1f", d);
  return b;
}
std::string fmt_ms(double s) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", 1e3 * s);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"plx_accuracy: correct decimal digits of the reference forward per scalar, vs 100 digits"};
  int L = 48, D = 8;
  app.add_option("--len", L, "Lq = Lkv of every problem")->check(CLI::Range(1, 4096));
  app.add_option("--dim", D, "D = Dv of every problem")->check(CLI::Range(1, 256));
  CLI11_PARSE(app, argc, argv);
  omp_set_num_threads(1);  // stable timings on a shared machine; the digits do not depend on it
  try {
    const char* members[] = {"softmax", "parallax", "parallax_centred", "lla", "lla_cov", "learned_query"};
    const InputGen gens[] = {InputGen::Normal, InputGen::RmsNorm, InputGen::Anisotropic, InputGen::LargeR, InputGen::Sink,
                             InputGen::ZCancel};
    std::time_t now = std::time(nullptr);
    char date[64];
    std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
    std::printf("Reference forward accuracy, %s. Problems: B=1, Hq=2, Hkv=1, Lq=Lkv=%d, D=Dv=%d, causal,\n", date, L, D);
    std::printf("seed 1, lambda 0.1, delta_eps 1e-12 (lla, learned_query), dtype float64 inputs. Digits = -log10 of\n");
    std::printf("the normwise relative error of `out` vs the bf100 (100-digit) run; time = one forward, ms\n(best of 3; bf100: one run), one thread.\n");
    std::printf("hazard = max over rows of zbar/sigma_z (learned probes) or cond(Sigma/omega) (solvers), from bf100.\n\n");
    std::printf("| member | inputs | hazard | double | long double | dd | float128 | qd | t double | t ld | t dd | t f128 | t qd | t bf100 |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    double total = 0;
    for (const char* m : members)
      for (InputGen g : gens) {
        Problem p;
        set_member(p, m);
        p.name = std::string(m) + "_" + to_string(g);
        p.B = 1, p.Hq = 2, p.Hkv = 1, p.Lq = p.Lkv = L, p.D = p.Dv = D, p.seed = 1;
        p.gen = g;
        const Inputs in = make_inputs(p);
        Forward<bf100> truth;
        ForwardOptions opt;
        opt.diagnostics = true;
        const double t100 = seconds_of<bf100>([&] { truth = attention_forward<bf100>(p, in, opt); });
        const auto& hz = truth.diag.at(p.probe == Probe::Solver ? "cond_Sigma" : "zbar_over_sigma");
        double hazard = 0;
        for (double x : hz.data) hazard = std::max(hazard, x);
        const Cell cd = measure<double>(p, in, truth.out), cl = measure<long double>(p, in, truth.out),
                   cq = measure<dd>(p, in, truth.out), cf = measure<f128>(p, in, truth.out),
                   c4 = measure<qd4>(p, in, truth.out);
        total += t100 + cd.seconds + cl.seconds + cq.seconds + cf.seconds + c4.seconds;
        std::printf("| %s | %s | %.3g | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", m, to_string(g).c_str(),
                    p.probe == Probe::None ? 0.0 : hazard, fmt_digits(cd.digits).c_str(), fmt_digits(cl.digits).c_str(),
                    fmt_digits(cq.digits).c_str(), fmt_digits(cf.digits).c_str(), fmt_digits(c4.digits).c_str(),
                    fmt_ms(cd.seconds).c_str(), fmt_ms(cl.seconds).c_str(), fmt_ms(cq.seconds).c_str(),
                    fmt_ms(cf.seconds).c_str(), fmt_ms(c4.seconds).c_str(), fmt_ms(t100).c_str());
      }
    std::printf("\nTotal reference time: %.1f s.\n", total);
  } catch (const plx::Error& e) {
    std::fprintf(stderr, "plx_accuracy: error: %s\n", e.what());
    return 2;
  }
  return 0;
}
