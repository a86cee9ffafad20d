// python/src/plx_module.cpp — the Python module plx._plx (nanobind) over the C++ library.
//
// Charter: bindings only; every number comes from the C++ code (reference/, validation/).
// Tensors come in through DLPack / the buffer protocol (numpy, torch, anything nanobind
// accepts on the CPU) and are read in place, element by element through their strides, into
// the library's float64 tensors (the only copy: the library's own storage, which is also the
// rounding-free widening of fp32/bf16/fp16). Arrays going out are read-only numpy views of
// the C++ object's storage (no copy); they keep that object alive. plx::Error becomes
// plx.Error (a ValueError) with the library's message, which names the field or tensor.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <memory>

#include "reference/all.hpp"
#include "validation/check.hpp"
#include "validation/fixture.hpp"
#include "validation/problem_json.hpp"
#include "validation/user_inputs.hpp"

namespace nb = nanobind;
using namespace plx;
using nlohmann::json;

namespace {

using AnyArray = nb::ndarray<nb::ro, nb::device::cpu>;

// Python object <-> JSON through the json module (Problem fields, tolerances, reports).
json to_json_value(const nb::handle& o) {
  nb::module_ js = nb::module_::import_("json");
  return json::parse(nb::cast<std::string>(js.attr("dumps")(o)));
}
nb::object from_json_value(const json& j) {
  nb::module_ js = nb::module_::import_("json");
  return js.attr("loads")(j.dump());
}

// Any CPU array (float64/32/16, bfloat16; any strides) -> Tensor<double>, and its dtype.
std::pair<Tensor<double>, DType> read_array(const AnyArray& a, const std::string& name) {
  const auto dt = a.dtype();
  const auto code = static_cast<nb::dlpack::dtype_code>(dt.code);
  DType d;
  if (code == nb::dlpack::dtype_code::Float && dt.bits == 64) d = DType::F64;
  else if (code == nb::dlpack::dtype_code::Float && dt.bits == 32) d = DType::F32;
  else if (code == nb::dlpack::dtype_code::Float && dt.bits == 16) d = DType::F16;
  else if (code == nb::dlpack::dtype_code::Bfloat && dt.bits == 16) d = DType::BF16;
  else
    throw Error("tensor '" + name + "': unsupported dtype (code " + std::to_string(dt.code) + ", " +
                std::to_string(dt.bits) + " bits); expected float64, float32, float16 or bfloat16");
  if (dt.lanes != 1) throw Error("tensor '" + name + "': vector dtypes (lanes != 1) are not supported");
  std::vector<std::size_t> shape(a.ndim());
  for (std::size_t i = 0; i < a.ndim(); ++i) shape[i] = a.shape(i);
  Tensor<double> t(shape);
  const auto* base = static_cast<const unsigned char*>(a.data());
  const std::size_t n = t.size(), nd = shape.size(), esz = dt.bits / 8;
  std::vector<std::size_t> idx(nd, 0);
  for (std::size_t flat = 0; flat < n; ++flat) {
    std::int64_t off = 0;
    for (std::size_t k = 0; k < nd; ++k) off += std::int64_t(idx[k]) * a.stride(k);
    const unsigned char* p = base + off * std::int64_t(esz);
    double x;
    if (d == DType::F64) { std::memcpy(&x, p, 8); }
    else if (d == DType::F32) { float f; std::memcpy(&f, p, 4); x = f; }
    else { std::uint16_t u; std::memcpy(&u, p, 2); x = d == DType::BF16 ? bf16_to_float(u) : f16_to_float(u); }
    t.data[flat] = x;
    for (std::size_t k = nd; k-- > 0;) {
      if (++idx[k] < shape[k]) break;
      idx[k] = 0;
    }
  }
  return {std::move(t), d};
}

// A read-only numpy view of a tensor owned by `owner` (a bound C++ object).
nb::object view(const Tensor<double>& t, nb::handle owner) {
  std::vector<std::size_t> shape = t.shape;
  nb::ndarray<nb::numpy, const double> a(t.ptr(), shape.size(), shape.data(), owner);
  return nb::cast(a, nb::rv_policy::reference);
}

// A fixture (read from a file or computed on the caller's inputs) with the file it came from.
struct Fixture {
  FixtureData data;
  std::string path;  // "" when computed in memory
};

nb::dict tensors_dict(const std::map<std::string, Tensor<double>>& m, nb::handle owner) {
  nb::dict d;
  for (const auto& [n, t] : m)
    if (!t.empty()) d[n.c_str()] = view(t, owner);
  return d;
}
nb::dict truth_dict(const std::map<std::string, Truth>& m, nb::handle owner) {
  nb::dict d;
  for (const auto& [n, t] : m) d[n.c_str()] = nb::make_tuple(view(t.hi, owner), t.lo.empty() ? nb::none() : view(t.lo, owner));
  return d;
}

Problem problem_from_kwargs(const nb::kwargs& kw) {
  json j = json::object();
  for (auto [k, v] : kw) j[nb::cast<std::string>(k)] = to_json_value(v);
  return problem_from_json(j);
}

}  // namespace

NB_MODULE(_plx, m) {
  m.doc() = "plx: extended-precision truth and checks for softmax, LLA and Parallax attention (C++ core)";
  nb::exception<Error>(m, "Error", PyExc_ValueError);

  nb::class_<Problem>(m, "Problem",
                      "One attention case: the fields of the C++ plx::Problem (reference/problem.hpp), by name.\n"
                      "Problem(member='parallax', B=1, Hq=8, Hkv=8, Lq=128, Lkv=128, D=64, Dv=64, dtype='float32', ...)\n"
                      "An invalid field raises plx.Error naming it.")
      .def("__init__", [](Problem* p, const nb::kwargs& kw) { new (p) Problem(problem_from_kwargs(kw)); })
      .def("to_dict", [](const Problem& p) { return from_json_value(problem_to_json(p)); }, "every field as a dict")
      .def("to_json", [](const Problem& p) { return problem_json_text(p); }, "canonical JSON text (as fixtures store it)")
      .def("replace", [](const Problem& p, const nb::kwargs& kw) {
            json j = problem_to_json(p);
            j.erase("tau");
            for (auto [k, v] : kw) j[nb::cast<std::string>(k)] = to_json_value(v);
            if (kw.contains("member")) j.erase("probe"), j.erase("anchor"), j.erase("form");
            return problem_from_json(j);
          }, "a copy with some fields changed (validated)")
      .def("__getattr__", [](const Problem& p, const std::string& name) -> nb::object {
            json j = problem_to_json(p);
            if (!j.contains(name)) throw nb::attribute_error(("Problem has no field '" + name + "'").c_str());
            return from_json_value(j[name]);
          })
      .def("__eq__", [](const Problem& a, const Problem& b) { return problem_json_text(a) == problem_json_text(b); })
      .def("__repr__", [](const Problem& p) { return "plx.Problem(" + problem_json_text(p) + ")"; });

  nb::class_<Fixture>(m, "Fixture", "A golden fixture: inputs, truth (hi, lo), saved tensors, diagnostics, tolerances")
      .def_prop_ro("problem", [](const Fixture& f) { return f.data.p; })
      .def_prop_ro("path", [](const Fixture& f) { return f.path; })
      .def_prop_ro("scalar", [](const Fixture& f) { return f.data.scalar; })
      .def_prop_rw("purpose", [](const Fixture& f) { return f.data.purpose; },
                   [](Fixture& f, const std::string& s) { f.data.purpose = s; })
      .def_prop_rw("hint", [](const Fixture& f) { return f.data.hint; }, [](Fixture& f, const std::string& s) { f.data.hint = s; })
      .def_prop_ro("inputs", [](nb::handle self) {
            const Fixture& f = nb::cast<const Fixture&>(self);
            const Problem& p = f.data.p;
            nb::dict d;
            auto put = [&](const char* n, const Tensor<double>& t) { d[n] = view(t, self); };
            put("q", f.data.in.q), put("k", f.data.in.k), put("v", f.data.in.v), put("dO", f.data.in.dO);
            if (p.probe == Probe::Learned) put("r", f.data.in.r);
            if (p.probe == Probe::Solver) put("lambda", f.data.in.lambda);
            return d;
          }, "q, k, v, dO (+ r or lambda) as float64 arrays, exactly the values in the problem dtype")
      .def_prop_ro("truth", [](nb::handle self) { return truth_dict(nb::cast<const Fixture&>(self).data.truth, self); },
                   "name -> (hi, lo): the truth is hi + lo (~30 digits); hi alone is the float64 rounding")
      .def_prop_ro("saved", [](nb::handle self) { return truth_dict(nb::cast<const Fixture&>(self).data.saved, self); },
                   "saved forward tensors (m, lse, omega, zbar, ...) as (hi, lo)")
      .def_prop_ro("diag", [](nb::handle self) { return tensors_dict(nb::cast<const Fixture&>(self).data.diag, self); },
                   "per-row diagnostics [B, Hq, Lq]")
      .def_prop_ro("tolerances", [](const Fixture& f) { return from_json_value(f.data.tolerances); })
      .def_prop_ro("reference_error", [](const Fixture& f) { return from_json_value(f.data.reference_error); })
      .def_prop_ro("provenance", [](const Fixture& f) { return from_json_value(f.data.provenance); })
      .def("__repr__", [](const Fixture& f) {
        return "plx.Fixture(" + (f.path.empty() ? std::string("<in memory>") : f.path) + ", " + member_name(f.data.p) +
               ", truth " + f.data.scalar + ")";
      });

  m.def("load_fixture", [](const std::string& path) {
        Fixture f{read_fixture(path), path};
        return f;
      }, nb::arg("path"), "read and verify a schema-v1 fixture (checksums, shapes)");

  m.def("write_fixture", [](const Fixture& f, const std::string& path) {
        nb::gil_scoped_release unlock;
        return write_fixture(f.data, path);
      }, nb::arg("fixture"), nb::arg("path"), "write a schema-v1 fixture (temporary name + rename); returns dataset -> SHA-256");

  m.def("_reference", [](const Problem& p, nb::dict tensors, const std::string& scalar, const std::string& purpose) {
        UserInputs u;
        for (auto [k, v] : tensors) {
          const std::string n = nb::cast<std::string>(k);
          Tensor<double> t = read_array(nb::cast<AnyArray>(v), n).first;
          if (n == "q") u.q = std::move(t);
          else if (n == "k") u.k = std::move(t);
          else if (n == "v") u.v = std::move(t);
          else if (n == "r") u.r = std::move(t);
          else if (n == "dO") u.dO = std::move(t);
          else if (n == "lambda") u.lambda = std::move(t);
          else throw Error("reference: unknown input '" + n + "' (q, k, v, r, dO, lambda)");
        }
        Fixture f;
        {
          nb::gil_scoped_release unlock;
          f.data = fixture_from_user_inputs(p, std::move(u), scalar, "input");
        }
        f.data.purpose = purpose;
        return f;
      }, nb::arg("problem"), nb::arg("tensors"), nb::arg("scalar") = "dd", nb::arg("purpose") = "");

  nb::class_<CheckResult>(m, "CheckResult")
      .def_ro("passed", &CheckResult::passed)
      .def_ro("purpose", &CheckResult::purpose)
      .def_ro("hint", &CheckResult::hint)
      .def_ro("notes", &CheckResult::notes)
      .def_ro("fixture", &CheckResult::fixture)
      .def_ro("candidate", &CheckResult::candidate)
      .def_prop_ro("problem", [](const CheckResult& r) { return r.problem; })
      .def_prop_ro("tensors", [](const CheckResult& r) {
            nb::dict d;
            for (const auto& t : r.reports) d[t.name.c_str()] = from_json_value(to_json(t));
            return d;
          }, "tensor -> report (max_abs, max_rel, limit, rule, passed, worst_index, ...)")
      .def("to_dict", [](const CheckResult& r) { return from_json_value(r.to_json()); })
      .def_prop_ro("report", &CheckResult::format, "the human report (what `plx check` prints)");

  m.def("_check", [](const Fixture& f, nb::dict tensors, nb::dict tol, const std::string& label) {
        Candidate c;
        c.label = label;
        for (auto [k, v] : tensors) {
          const std::string n = nb::cast<std::string>(k);
          auto [t, dt] = read_array(nb::cast<AnyArray>(v), n);
          c.tensors[n] = {std::move(t), dt};
        }
        if (!c.tensors.count("out")) throw Error("check: the candidate needs 'out'");
        // Shapes: the same rule as a candidate file.
        const Problem& p = f.data.p;
        const std::size_t B = p.B, Lq = p.Lq, Hq = p.Hq, D = p.D, Dv = p.Dv, Lkv = p.Lkv, Hkv = p.Hkv;
        const std::map<std::string, std::vector<std::size_t>> shapes = {
            {"out", {B, Lq, Hq, Dv}}, {"dq", {B, Lq, Hq, D}}, {"dk", {B, Lkv, Hkv, D}},
            {"dv", {B, Lkv, Hkv, Dv}}, {"dr", {B, Lq, Hq, D}}, {"dlambda", {B, Hq, Lq}}};
        for (const auto& [n, ct] : c.tensors) {
          if (!shapes.count(n)) throw Error("check: unknown tensor '" + n + "' (out, dq, dk, dv, dr, dlambda)");
          if (ct.values.shape != shapes.at(n))
            throw Error("check: tensor '" + n + "' has shape " + shape_str(ct.values.shape) + " but the problem needs " +
                        shape_str(shapes.at(n)));
        }
        std::map<std::string, double> ov;
        for (auto [k, v] : tol) ov[nb::cast<std::string>(k)] = nb::cast<double>(v);
        nb::gil_scoped_release unlock;
        return check_candidate(f.path.empty() ? "<in memory: " + p.name + ">" : f.path, f.data, c, ov);
      }, nb::arg("fixture"), nb::arg("tensors"), nb::arg("tol"), nb::arg("label"));

  m.attr("have_reference_backward") = have_reference_backward();
}
