// validation/user_inputs.cpp — see user_inputs.hpp.
#include "validation/user_inputs.hpp"

#include <cmath>
#include <cstdio>

#include "validation/h5io.hpp"

namespace plx {

namespace {

std::string index_of(std::size_t flat, const std::vector<std::size_t>& shape) {
  std::vector<std::size_t> pos(shape.size());
  for (std::size_t a = shape.size(); a-- > 0;) pos[a] = flat % shape[a], flat /= shape[a];
  return shape_str(pos);
}

// Shape, finiteness and exact representability in dtype dt of one input tensor.
void check_tensor(const Tensor<double>& t, const std::string& name, const std::vector<std::size_t>& want, DType dt,
                  const std::string& where) {
  if (t.shape != want)
    throw Error(where + " '" + name + "': shape " + shape_str(t.shape) + " but the problem needs " + shape_str(want) +
                " (layout: q, r [B, Lq, Hq, D]; k [B, Lkv, Hkv, D]; v [B, Lkv, Hkv, Dv]; dO [B, Lq, Hq, Dv]; "
                "lambda [B, Hq, Lq])");
  for (std::size_t i = 0; i < t.size(); ++i) {
    const double x = t.data[i];
    if (!std::isfinite(x))
      throw Error(where + " '" + name + "': non-finite value " + std::to_string(x) + " at index " + index_of(i, t.shape));
    if (round_to(dt, x) != x) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.17g", x);
      throw Error(where + " '" + name + "': value " + buf + " at index " + index_of(i, t.shape) +
                  " is not exactly representable in the problem dtype " + to_string(dt) +
                  " (round the inputs to " + to_string(dt) + " first, or set the problem's dtype to the inputs' own)");
    }
  }
}

}  // namespace

Inputs complete_user_inputs(const Problem& p, UserInputs u, const std::string& where) {
  validate(p);
  const std::size_t B = p.B, Lq = p.Lq, Lkv = p.Lkv, Hq = p.Hq, Hkv = p.Hkv, D = p.D, Dv = p.Dv;
  for (const char* n : {"q", "k", "v"}) {
    const Tensor<double>& t = std::string(n) == "q" ? u.q : std::string(n) == "k" ? u.k : u.v;
    if (t.empty()) throw Error(where + " '" + n + "' is missing (q, k and v are required)");
  }
  check_tensor(u.q, "q", {B, Lq, Hq, D}, p.dtype, where);
  check_tensor(u.k, "k", {B, Lkv, Hkv, D}, p.dtype, where);
  check_tensor(u.v, "v", {B, Lkv, Hkv, Dv}, p.dtype, where);
  Inputs in;
  in.q = std::move(u.q), in.k = std::move(u.k), in.v = std::move(u.v);
  if (p.probe == Probe::Learned) {
    if (u.r.empty()) throw Error(where + " 'r' is missing: member " + member_name(p) + " has a learned probe r");
    check_tensor(u.r, "r", {B, Lq, Hq, D}, p.dtype, where);
    in.r = std::move(u.r);
  } else {
    if (!u.r.empty()) throw Error(where + " 'r' was given but member " + member_name(p) + " has no learned probe");
    in.r = Tensor<double>({B, Lq, Hq, D});
  }
  if (p.probe == Probe::Solver && !u.lambda.empty()) {
    check_tensor(u.lambda, "lambda", {B, Hq, Lq}, DType::F64, where);
    for (std::size_t i = 0; i < u.lambda.size(); ++i)
      if (u.lambda.data[i] < 0)
        throw Error(where + " 'lambda': negative ridge " + std::to_string(u.lambda.data[i]) + " at index " +
                    index_of(i, u.lambda.shape));
    in.lambda = std::move(u.lambda);
  } else if (p.probe == Probe::Solver) {
    in.lambda = make_inputs(p).lambda;  // the problem's solver.lambda (per row when lambda_per_row)
  } else {
    if (!u.lambda.empty()) throw Error(where + " 'lambda' was given but member " + member_name(p) + " has no ridge solve");
    in.lambda = Tensor<double>({B, Hq, Lq}, p.solver.lambda);
  }
  if (!u.dO.empty()) {
    check_tensor(u.dO, "dO", {B, Lq, Hq, Dv}, p.dtype, where);
    in.dO = std::move(u.dO);
  } else {
    in.dO = make_inputs(p).dO;
  }
  check_inputs(p, in);
  return in;
}

UserInputs read_user_inputs(const std::string& path) {
  h5::Handle file = h5::open_file(path);
  UserInputs u;
  auto get = [&](const std::string& name, Tensor<double>& dst) {
    if (!h5::exists(file, name)) return;
    h5::Raw r = h5::read(file, name);
    std::string fmt;
    if (r.type == h5::Raw::U16) {
      fmt = h5::has_attr(file, name, "format") ? h5::get_attr_string(file, name, "format") : "";
      if (fmt != "bfloat16" && fmt != "float16")
        throw Error("inputs '" + path + "', dataset '" + name + "': uint16 data needs a 'format' attribute "
                    "'bfloat16' or 'float16' (got '" + fmt + "')");
    } else if (r.type != h5::Raw::F64 && r.type != h5::Raw::F32) {
      throw Error("inputs '" + path + "', dataset '" + name + "': stored as " + r.type_desc +
                  " (expected float64, float32, or uint16 bf16/fp16 bit patterns with a 'format' attribute)");
    }
    dst = h5::to_tensor(r, fmt);
  };
  get("q", u.q), get("k", u.k), get("v", u.v), get("r", u.r), get("dO", u.dO), get("lambda", u.lambda);
  return u;
}

FixtureData fixture_from_user_inputs(const Problem& p, UserInputs u, const std::string& scalar, const std::string& where) {
  const bool own_dO = !u.dO.empty();
  FixtureData f = generate_fixture(p, complete_user_inputs(p, std::move(u), where), scalar);
  f.reference_error["notes"]["inputs"] =
      std::string("user-supplied q, k, v") + (p.probe == Probe::Learned ? ", r" : "") +
      (own_dO ? ", dO" : "; dO from the generator (seed " + std::to_string(p.seed) + ")");
  return f;
}

}  // namespace plx
