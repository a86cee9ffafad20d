// validation/suite.cpp — see suite.hpp.
#include "validation/suite.hpp"
#include "validation/certify_fixture.hpp"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <map>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <set>

#include "validation/fixture.hpp"
#include "validation/mpi_shard.hpp"
#include "validation/progress.hpp"
#include "validation/row_sample.hpp"
#include "validation/problem_json.hpp"

namespace plx {
using nlohmann::json;

namespace {
json merge(json base, const json& over) {
  for (auto it = over.begin(); it != over.end(); ++it) {
    if (it.value().is_object() && base.contains(it.key()) && base[it.key()].is_object())
      base[it.key()] = merge(base[it.key()], it.value());
    else
      base[it.key()] = it.value();
  }
  return base;
}
bool good_name(const std::string& s) {
  if (s.empty() || s[0] == '.') return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) return false;
  return true;
}
}  // namespace

static Suite parse_suite_checked(const json& j, const std::string& where);

Suite parse_suite_text(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(where + " is not valid JSON: " + e.what());
  }
  return parse_suite(j, where);
}

Suite parse_suite(const json& j, const std::string& where) {
  try {
    return parse_suite_checked(j, where);
  } catch (const json::exception& e) {  // a wrong JSON type where a field is read (e.g. "name": 3)
    throw Error(where + ": " + e.what());
  }
}

static Suite parse_suite_checked(const json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("cases") || !j["cases"].is_array())
    throw Error(where + ": expected an object with a 'cases' array");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "name" && it.key() != "scalar" && it.key() != "defaults" && it.key() != "cases" && it.key() != "comment")
      throw Error(where + ": unknown key '" + it.key() + "' (name, scalar, defaults, cases, comment)");
  Suite s;
  s.name = j.value("name", std::string("suite"));
  const std::string scalar = j.value("scalar", std::string("dd"));
  const json defaults = j.value("defaults", json::object());
  if (!defaults.is_object()) throw Error(where + ": 'defaults' must be an object");
  std::set<std::string> files;
  for (std::size_t i = 0; i < j["cases"].size(); ++i) {
    const json& c = j["cases"][i];
    const std::string cw = where + ", case " + std::to_string(i);
    if (!c.is_object() || !c.contains("problem") || !c["problem"].is_object()) throw Error(cw + ": expected {\"problem\": {...}, \"scalar\"?}");
    for (auto it = c.begin(); it != c.end(); ++it)
      if (it.key() != "problem" && it.key() != "scalar" && it.key() != "comment" && it.key() != "purpose" &&
          it.key() != "hint" && it.key() != "rows")
        throw Error(cw + ": unknown key '" + it.key() + "' (problem, scalar, comment, purpose, hint, rows)");
    SuiteCase sc;
    try {
      sc.problem = problem_from_json(merge(defaults, c["problem"]));
    } catch (const Error& e) {
      throw Error(cw + ": " + e.what());
    }
    if (c.contains("rows")) {
      try {
        sc.rows = select_rows(sc.problem, c["rows"]);
      } catch (const Error& e) {
        throw Error(cw + ": " + e.what());
      }
      sc.rows_spec = c["rows"];
    }
    sc.scalar = c.value("scalar", scalar);
    for (const char* k : {"comment", "purpose", "hint"})
      if (c.contains(k) && !c[k].is_string()) throw Error(cw + ": '" + k + "' must be a string");
    sc.purpose = c.value("purpose", c.value("comment", std::string()));
    sc.hint = c.value("hint", std::string());
    if (sc.scalar != "dd" && sc.scalar != "bf50") throw Error(cw + ": scalar must be dd or bf50, got '" + sc.scalar + "'");
    if (!good_name(sc.problem.name)) throw Error(cw + ": problem name '" + sc.problem.name + "' is not a safe file name");
    sc.file = sc.problem.name + ".h5";
    if (!files.insert(sc.file).second) throw Error(cw + ": duplicate case name '" + sc.problem.name + "'");
    s.cases.push_back(std::move(sc));
  }
  return s;
}

Suite load_suite(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw Error("cannot read suite '" + path + "'");
  json j;
  try {
    j = json::parse(f);
  } catch (const json::exception& e) {
    throw Error("suite '" + path + "' is not valid JSON: " + e.what());
  }
  return parse_suite(j, "suite '" + path + "'");
}

void write_file_atomic(const std::string& path, const std::string& text) {
  namespace fs = std::filesystem;
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream o(tmp, std::ios::binary);
    if (!o) throw Error("cannot write '" + tmp + "': is the directory writable?");
    o << text;
    o.close();
    if (!o) {  // e.g. a full disk: no partial file survives, under any name
      std::error_code ec;
      fs::remove(tmp, ec);
      throw Error("cannot write '" + tmp + "' (disk full?)");
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw Error("cannot rename '" + tmp + "' to '" + path + "'");
  }
}

json gen_suite(const Suite& s, const std::string& dir, const GenOptions& opt) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir)) throw Error("cannot create output directory '" + dir + "'" + (ec ? ": " + ec.message() : ""));
  {  // fail early and clearly on an unwritable directory
    const std::string probe = (fs::path(dir) / (".plx_write_test." + std::to_string(::getpid()))).string();
    std::ofstream o(probe);
    if (!o) throw Error("output directory '" + dir + "' is not writable");
    o.close();
    fs::remove(probe, ec);
  }
  const int n = int(s.cases.size());
  // Largest cases first so the parallel loop balances.
  std::vector<int> order(n);
  for (int i = 0; i < n; ++i) order[i] = i;
  auto work = [&](int i) {
    const Problem& p = s.cases[i].problem;
    return double(p.B) * p.Hq * p.Lq * p.Lkv * (p.D + p.Dv) * (s.cases[i].scalar == "bf50" ? 30 : 1);
  };
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return work(a) > work(b); });
  std::vector<std::map<std::string, std::string>> hashes(n);
  std::vector<std::exception_ptr> errs(n);
  std::atomic<int> done{0};
  const int jobs = opt.jobs > 0 ? opt.jobs : omp_get_max_threads();
  omp_set_max_active_levels(1);  // a case's own OpenMP loop runs serially inside a multi-thread team
  const auto t0 = std::chrono::steady_clock::now();
  const auto& W = par::world();
  // Cases computed in units (validation/fixture.hpp: GenSplit::Auto) run one after another with
  // every thread, and under MPI every rank takes a share of each one's (batch, kv head) units;
  // rank 0 assembles and writes. The others run in parallel over threads, and under MPI rank r
  // writes the cases small[k] with k % size == r; rank 0 gathers their dataset hashes for the
  // manifest. Either way the bytes are those of one process.
  std::vector<int> big, small;
  for (int i : order)
    (gen_in_units(s.cases[i].problem, opt.split) || !s.cases[i].rows.empty() ? big : small).push_back(i);
  auto finish = [&](int i, FixtureData& f) {
    f.purpose = s.cases[i].purpose, f.hint = s.cases[i].hint;
    if (opt.certify) certify_fixture(f, opt.certify_work_limit);
    hashes[i] = write_fixture(f, (fs::path(dir) / s.cases[i].file).string());
  };
  auto report = [&](int i, double sec) {
    const int d = ++done;
    if (opt.progress && W.rank == 0) {
#pragma omp critical(plx_progress)
      std::fprintf(stderr, "plx gen: [%d/%d] %-32s %6.2f s%s\n", d, n, s.cases[i].file.c_str(), sec,
                   errs[i] ? "  FAILED" : "");
    }
  };
  for (int i : big) {
    const auto c0 = std::chrono::steady_clock::now();
    const Problem& p = s.cases[i].problem;
    const bool sampled = !s.cases[i].rows.empty();
    const long units = sampled ? long(row_runs(p, s.cases[i].rows).size()) : long(p.B) * p.Hkv;
    Progress prog("plx gen: " + s.cases[i].file, opt.progress && W.rank == 0, units);
    GenerateOptions go;
    go.split = GenSplit::Units;
    go.rows = s.cases[i].rows, go.rows_spec = s.cases[i].rows_spec;
    go.progress = [&](int d, int) {
      prog.update(d, sampled ? "run " + std::to_string(d) + " of consecutive sampled rows"
                             : "batch " + std::to_string((d - 1) / p.Hkv) + ", kv head " + std::to_string((d - 1) % p.Hkv));
    };
    try {
      std::optional<FixtureData> f = generate_fixture_shared(p, s.cases[i].scalar, go);
      if (f) finish(i, *f);
    } catch (const std::exception& e) {
      // A rank that fails here leaves the others waiting for its units: end every rank (plx_main).
      throw Error("case '" + p.name + "': " + e.what());
    }
    report(i, std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count());
  }
  const int ns = int(small.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(jobs)
  for (int k = 0; k < ns; ++k) {
    if (k % W.size != W.rank) continue;
    const int i = small[k];
    const auto c0 = std::chrono::steady_clock::now();
    try {
      FixtureData f = generate_fixture(s.cases[i].problem, s.cases[i].scalar);
      finish(i, f);
    } catch (const std::exception& e) {
      errs[i] = std::make_exception_ptr(Error("case '" + s.cases[i].problem.name + "': " + e.what()));
    }
    report(i, std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count());
  }
  if (W.size > 1) {  // every rank's hashes (or its first error) to rank 0
    json mine = json::object();
    for (int k = W.rank; k < ns; k += W.size) {
      const int i = small[k];
      if (errs[i]) {
        try {
          std::rethrow_exception(errs[i]);
        } catch (const std::exception& e) {
          mine = {{"error", e.what()}};
        }
        break;
      }
      mine[std::to_string(i)] = hashes[i];
    }
    const auto all = par::gather_text(mine.dump());
    if (W.rank != 0) return json();
    for (const auto& t : all) {
      const json r = json::parse(t);
      if (r.contains("error")) throw Error(r["error"].get<std::string>());
      for (auto it = r.begin(); it != r.end(); ++it) hashes[std::stoi(it.key())] = it.value().get<std::map<std::string, std::string>>();
    }
  }
  for (auto& e : errs)
    if (e) std::rethrow_exception(e);
  json m;
  m["schema_version"] = kFixtureSchemaVersion;
  m["suite"] = s.name;
  m["files"] = json::object();
  for (int i = 0; i < n; ++i)
    m["files"][s.cases[i].file] = {{"problem", problem_to_json(s.cases[i].problem)},
                                   {"scalar", s.cases[i].scalar},
                                   {"datasets", hashes[i]}};
  write_file_atomic((fs::path(dir) / "manifest.json").string(), m.dump(1) + "\n");
  if (opt.progress)
    std::fprintf(stderr, "plx gen: %d fixtures in %s (%.1f s, %d jobs)\n", n, dir.c_str(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), jobs);
  return m;
}

std::vector<std::string> diff_manifests(const json& want, const json& got) {
  std::vector<std::string> d;
  const json& wf = want.at("files");
  const json& gf = got.at("files");
  for (auto it = wf.begin(); it != wf.end(); ++it) {
    if (!gf.contains(it.key())) {
      d.push_back(it.key() + ": missing");
      continue;
    }
    const json& a = it.value();
    const json& b = gf[it.key()];
    if (a.at("problem") != b.at("problem")) d.push_back(it.key() + ": problem JSON differs");
    const json& ad = a.at("datasets");
    const json& bd = b.at("datasets");
    for (auto ds = ad.begin(); ds != ad.end(); ++ds) {
      if (!bd.contains(ds.key())) d.push_back(it.key() + ": dataset " + ds.key() + " missing");
      else if (bd[ds.key()] != ds.value()) d.push_back(it.key() + ": dataset " + ds.key() + " differs");
    }
    for (auto ds = bd.begin(); ds != bd.end(); ++ds)
      if (!ad.contains(ds.key())) d.push_back(it.key() + ": extra dataset " + ds.key());
  }
  for (auto it = gf.begin(); it != gf.end(); ++it)
    if (!wf.contains(it.key())) d.push_back(it.key() + ": extra file");
  return d;
}

}  // namespace plx
