// validation/plx_main.cpp — the `plx` command line.
//
// Charter: thin CLI11 front end over the problem -> inputs -> reference -> candidate ->
// compare path. Subcommands: demo (the README's main job). Exit codes: 0 pass,
// 1 numerical failure, 2 bad input.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "reference/all.hpp"
#include "validation/compare.hpp"

using namespace plx;

namespace {
// The built-in default: one small case per member, reference in double-double (truth)
// vs the reference in double (candidate), with the double-precision tolerance
// 64 * n_keys * u_double * max|truth| (a forward-error bound for sums of n terms).
int run_demo() {
  int worst = 0;
  for (const char* member : {"softmax", "parallax", "parallax_centred", "lla", "lla_cov", "learned_query"}) {
    Problem p;
    p.name = std::string("demo_") + member;
    p.B = 2, p.Hq = 4, p.Hkv = 2, p.Lq = 65, p.Lkv = 65, p.D = 16, p.Dv = 16, p.seed = 7;
    set_member(p, member);
    Inputs in = make_inputs(p);
    Tensor<double> truth = attention_forward_double<dd>(p, in);
    Tensor<double> cand = attention_forward_double<double>(p, in);
    Tolerance tol{2.0, 0.0, 64.0 * p.Lkv * 0x1p-53, "64 * L_kv * u(double) * max|truth|"};
    auto rep = compare_tensor("out", cand, truth, DType::F64, tol);
    std::cout << "== " << p.name << "  (" << member_name(p) << ", B=" << p.B << " Hq=" << p.Hq << " Hkv=" << p.Hkv
              << " L=" << p.Lq << " D=" << p.D << ", candidate: reference<double>, truth: reference<dd>)\n"
              << format_report({rep});
    if (!rep.passed) worst = 1;
  }
  return worst;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"plx — the numerics of softmax, LLA and Parallax, checked against an extended-precision reference"};
  app.require_subcommand(1);
  auto* demo = app.add_subcommand("demo", "run the built-in default validation and print the report");
  CLI11_PARSE(app, argc, argv);
  try {
    if (*demo) return run_demo();
  } catch (const plx::Error& e) {
    std::cerr << "plx: error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
