// validation/h5io.cpp — see h5io.hpp. Every HDF5 call goes through check() or a guard.
#include "validation/h5io.hpp"

#include <atomic>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

namespace plx::h5 {
namespace {

std::recursive_mutex& lib_mutex() {
  static std::recursive_mutex m;
  return m;
}
struct Lock {
  std::lock_guard<std::recursive_mutex> g{lib_mutex()};
  Lock() {
    static bool silenced = [] {
      H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // we report errors ourselves
      return true;
    }();
    (void)silenced;
  }
};

// HDF5's innermost (most specific) error message, from the current error stack.
std::string last_hdf5_message() {
  std::string msg;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned n, const H5E_error2_t* e, void* data) -> herr_t {
        auto* s = static_cast<std::string*>(data);
        if (n == 0 && e->desc) *s = e->desc;
        return 0;
      },
      &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg.empty() ? "unknown HDF5 error" : msg;
}

// ---- the watchdog (see set_watchdog) -----------------------------------------------------
struct WatchState {
  std::mutex m;
  std::condition_variable cv;
  double budget = 0;
  bool json = false, started = false;
  int depth = 0;  // nested guarded calls (the library mutex is recursive): only the outermost is timed
  std::chrono::steady_clock::time_point deadline;
  std::string what;
};
WatchState& watch_state() {
  static WatchState* w = new WatchState;  // never destroyed: the watchdog thread may outlive main's statics
  return *w;
}
[[noreturn]] void watchdog_fire(const std::string& what, double seconds) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.3g", seconds);
  const std::string msg = what + " did not finish in " + buf +
                          " s: the file is corrupt (libhdf5 does not return on it); stopped by plx's HDF5 watchdog "
                          "(PLX_HDF5_WATCHDOG_S sets the budget)";
  std::fprintf(stderr, "plx: error: %s\n", msg.c_str());
  if (watch_state().json) std::printf("%s\n", nlohmann::json{{"error", msg}, {"exit_code", 2}}.dump(1).c_str());
  std::fflush(stdout), std::fflush(stderr);
  ::_exit(2);
}
void watchdog_loop() {
  WatchState& w = watch_state();
  std::unique_lock<std::mutex> g(w.m);
  for (;;) {
    if (w.depth == 0) {
      w.cv.wait(g);
      continue;
    }
    const auto dl = w.deadline;
    if (w.cv.wait_until(g, dl) == std::cv_status::timeout && w.depth > 0 && w.deadline == dl &&
        std::chrono::steady_clock::now() >= dl)
      watchdog_fire(w.what, w.budget);
  }
}
// Times one reading call (what = "reading '<file>': <operation>"); bytes extends the budget.
class Watch {
 public:
  explicit Watch(const std::string& what, std::uint64_t bytes = 0) {
    WatchState& w = watch_state();
    std::lock_guard<std::mutex> g(w.m);
    if (w.budget <= 0) return;
    if (w.depth++ > 0) {  // nested: the outermost call's deadline stands, extended for this read's size
      w.deadline += std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::duration<double>(double(bytes) / 50e6));
      return;
    }
    w.what = what;
    w.deadline = std::chrono::steady_clock::now() +
                 std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                     std::chrono::duration<double>(w.budget + double(bytes) / 50e6));
    w.cv.notify_all();
  }
  ~Watch() {
    WatchState& w = watch_state();
    std::lock_guard<std::mutex> g(w.m);
    if (w.depth > 0) --w.depth;
  }
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;
};
bool watching() {
  WatchState& w = watch_state();
  std::lock_guard<std::mutex> g(w.m);
  return w.budget > 0;
}

std::uint64_t& max_read_bytes_ref() {
  static std::uint64_t v = [] {
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? std::uint64_t(pages) * std::uint64_t(page) / 2 : std::uint64_t(8) << 30;
  }();
  return v;
}

template <class R> R check(R r, const std::string& what) {
  if (r < 0) throw Error("HDF5: " + what + " failed (" + last_hdf5_message() + ")");
  return r;
}

std::string obj_name(hid_t loc) {
  char buf[512];
  ssize_t n = H5Iget_name(loc, buf, sizeof buf);
  std::string s = n > 0 ? std::string(buf, std::min<std::size_t>(n, sizeof buf - 1)) : "?";
  char fbuf[1024];
  ssize_t fn = H5Fget_name(loc, fbuf, sizeof fbuf);
  return (fn > 0 ? std::string(fbuf, std::min<std::size_t>(fn, sizeof fbuf - 1)) + ":" : "") + s;
}

hid_t file_type(Raw::Type t) {
  return t == Raw::F64 ? H5T_IEEE_F64LE : t == Raw::F32 ? H5T_IEEE_F32LE : t == Raw::I64 ? H5T_STD_I64LE : H5T_STD_U16LE;
}
hid_t mem_type(Raw::Type t) {
  return t == Raw::F64 ? H5T_NATIVE_DOUBLE : t == Raw::F32 ? H5T_NATIVE_FLOAT : t == Raw::I64 ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT16;
}
std::size_t elem_size(Raw::Type t) { return t == Raw::F64 || t == Raw::I64 ? 8 : t == Raw::F32 ? 4 : 2; }

Handle vlen_string_type() {
  Handle t(check(H5Tcopy(H5T_C_S1), "H5Tcopy"), Handle::Datatype);
  check(H5Tset_size(t, H5T_VARIABLE), "H5Tset_size");
  check(H5Tset_cset(t, H5T_CSET_UTF8), "H5Tset_cset");
  return t;
}

Handle open_attr(hid_t loc, const std::string& obj, const std::string& name) {
  if (!H5Aexists_by_name(loc, obj.c_str(), name.c_str(), H5P_DEFAULT))
    throw Error("HDF5: " + obj_name(loc) + " object '" + obj + "' has no attribute '" + name + "'");
  return Handle(check(H5Aopen_by_name(loc, obj.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT),
                      "opening attribute '" + name + "' of '" + obj + "'"),
                Handle::Attribute);
}
std::string file_of(hid_t loc) {
  char fbuf[1024];
  ssize_t fn = H5Fget_name(loc, fbuf, sizeof fbuf);
  H5Eclear2(H5E_DEFAULT);
  return fn > 0 ? std::string(fbuf, std::min<std::size_t>(fn, sizeof fbuf - 1)) : "?";
}
// "reading '<file>': <op>", computed only when the watchdog is on.
std::string watch_what(hid_t loc, const std::string& op) {
  return watching() ? "reading '" + file_of(loc) + "': " + op : std::string();
}
}  // namespace

namespace {
std::atomic<double> g_tool_watchdog_s{30.0};
}  // namespace
void set_tool_watchdog_seconds(double seconds) { g_tool_watchdog_s.store(seconds); }
double tool_watchdog_seconds() { return g_tool_watchdog_s.load(); }

void set_watchdog(double seconds, bool json_errors) {
  WatchState& w = watch_state();
  std::lock_guard<std::mutex> g(w.m);
  w.budget = seconds, w.json = json_errors;
  if (seconds > 0 && !w.started) {
    std::thread(watchdog_loop).detach();
    w.started = true;
  }
  w.cv.notify_all();
}
void set_max_read_bytes(std::uint64_t bytes) { max_read_bytes_ref() = bytes; }
std::uint64_t max_read_bytes() { return max_read_bytes_ref(); }

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) close(), id_ = o.id_, kind_ = o.kind_, o.id_ = -1;
  return *this;
}
void Handle::close() {
  if (id_ < 0) return;
  Lock l;
  switch (kind_) {
    case File: H5Fclose(id_); break;
    case Group: H5Gclose(id_); break;
    case Dataset: H5Dclose(id_); break;
    case Attribute: H5Aclose(id_); break;
    case Dataspace: H5Sclose(id_); break;
    case Datatype: H5Tclose(id_); break;
    case Plist: H5Pclose(id_); break;
  }
  H5Eclear2(H5E_DEFAULT);
  id_ = -1;
}

std::size_t Raw::count() const {
  std::size_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

Handle create_file(const std::string& path) {
  Lock l;
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) throw Error("cannot create HDF5 file '" + path + "' (" + last_hdf5_message() + "): is the directory writable?");
  return Handle(f, Handle::File);
}

Handle open_file(const std::string& path) {
  Lock l;
  Watch w(watching() ? "reading '" + path + "': opening the file" : "");
  FILE* probe = std::fopen(path.c_str(), "rb");
  if (!probe) throw Error("cannot open '" + path + "': " + std::strerror(errno));
  std::fclose(probe);
  htri_t is = H5Fis_hdf5(path.c_str());
  H5Eclear2(H5E_DEFAULT);
  if (is <= 0) throw Error("'" + path + "' is not an HDF5 file (no HDF5 signature)");
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) throw Error("cannot open HDF5 file '" + path + "' (" + last_hdf5_message() + "): truncated or corrupt?");
  return Handle(f, Handle::File);
}

void flush(hid_t file) {
  Lock l;
  check(H5Fflush(file, H5F_SCOPE_GLOBAL), "writing '" + file_of(file) + "' to disk (disk full?)");
}

Handle create_group(hid_t loc, const std::string& name) {
  Lock l;
  return Handle(check(H5Gcreate2(loc, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "creating group " + name),
                Handle::Group);
}

bool exists(hid_t loc, const std::string& path) {
  Lock l;
  Watch w(watch_what(loc, "looking up '" + path + "'"));
  std::string prefix;
  std::size_t pos = 0;
  while (true) {  // check every intermediate link, as H5Lexists requires
    std::size_t next = path.find('/', pos);
    prefix = path.substr(0, next);
    htri_t e = H5Lexists(loc, prefix.c_str(), H5P_DEFAULT);
    if (e <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return false;
    }
    if (next == std::string::npos) return true;
    pos = next + 1;
  }
}

std::vector<std::string> list(hid_t loc, const std::string& group) {
  Lock l;
  Watch w(watch_what(loc, "listing group '" + group + "'"));
  std::vector<std::string> names;
  check(H5Literate_by_name(
            loc, group.c_str(), H5_INDEX_NAME, H5_ITER_INC, nullptr,
            [](hid_t, const char* name, const H5L_info_t*, void* data) -> herr_t {
              static_cast<std::vector<std::string>*>(data)->push_back(name);
              return 0;
            },
            &names, H5P_DEFAULT),
        "listing group '" + group + "'");
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<hsize_t> chunk_dims(const std::vector<hsize_t>& dims, std::size_t elem) {
  hsize_t n = elem;
  for (hsize_t d : dims) n *= d;
  if (n <= kChunkBytes || dims.size() < 2) return {};
  // Whole trailing axes while they fit, then a part of the next one, 1 on the leading axes: a
  // chunk is a run of consecutive rows ([B, L, H, X]) or of one head's rows ([B, H, L]).
  std::vector<hsize_t> c(dims.size(), 1);
  hsize_t bytes = elem;
  for (std::size_t a = dims.size(); a-- > 0;) {
    if (dims[a] == 0) return {};
    if (bytes * dims[a] <= kChunkBytes) {
      c[a] = dims[a], bytes *= dims[a];
      continue;
    }
    c[a] = std::max<hsize_t>(1, kChunkBytes / bytes);
    break;
  }
  return c;
}

Handle write(hid_t loc, const std::string& name, const std::vector<std::size_t>& shape, Raw::Type type,
             const void* data) {
  Lock l;
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Handle space(check(H5Screate_simple(int(dims.size()), dims.data(), nullptr), "H5Screate_simple"), Handle::Dataspace);
  Handle dcpl(check(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate"), Handle::Plist);
  check(H5Pset_obj_track_times(dcpl, false), "H5Pset_obj_track_times");  // bytes depend on data only
  const std::vector<hsize_t> chunk = chunk_dims(dims, elem_size(type));
  if (!chunk.empty()) {
    check(H5Pset_chunk(dcpl, int(chunk.size()), chunk.data()), "H5Pset_chunk " + name);
    // Byte shuffle + deflate level 1 (measured on an L = 4096 fixture: 602 -> 428 MB; the float32
    // views of 16-bit inputs shrink 2.75x, saved/probe 5x, hi/lo truth only 1.13x; ~28 s per GB).
    check(H5Pset_shuffle(dcpl), "H5Pset_shuffle " + name);
    check(H5Pset_deflate(dcpl, 1), "H5Pset_deflate " + name);
  }
  Handle ds(check(H5Dcreate2(loc, name.c_str(), file_type(type), space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
                  "creating dataset " + name),
            Handle::Dataset);
  check(H5Dwrite(ds, mem_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "writing dataset " + name);
  return ds;
}

Raw read(hid_t loc, const std::string& name) {
  Lock l;
  Watch w(watch_what(loc, "opening dataset '" + name + "'"));
  if (!exists(loc, name)) throw Error("HDF5: " + obj_name(loc) + " has no dataset '" + name + "'");
  Handle ds(check(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), "opening dataset " + name), Handle::Dataset);
  Handle space(check(H5Dget_space(ds), "H5Dget_space " + name), Handle::Dataspace);
  int rank = check(H5Sget_simple_extent_ndims(space), "H5Sget_simple_extent_ndims " + name);
  std::vector<hsize_t> dims(rank);
  check(H5Sget_simple_extent_dims(space, dims.data(), nullptr), "H5Sget_simple_extent_dims " + name);
  Raw r;
  r.name = name;
  r.shape.assign(dims.begin(), dims.end());
  Handle ft(check(H5Dget_type(ds), "H5Dget_type " + name), Handle::Datatype);
  H5T_class_t cls = H5Tget_class(ft);
  std::size_t sz = H5Tget_size(ft);
  if (cls == H5T_FLOAT && sz == 8) r.type = Raw::F64, r.type_desc = "float64";
  else if (cls == H5T_FLOAT && sz == 4) r.type = Raw::F32, r.type_desc = "float32";
  else if (cls == H5T_FLOAT && sz == 2) r.type = Raw::Other, r.type_desc = "float16 (HDF5 native half)";
  else if (cls == H5T_INTEGER && sz == 2 && H5Tget_sign(ft) == H5T_SGN_NONE) r.type = Raw::U16, r.type_desc = "uint16";
  else if (cls == H5T_INTEGER && sz == 8 && H5Tget_sign(ft) == H5T_SGN_2) r.type = Raw::I64, r.type_desc = "int64";
  else if (cls == H5T_INTEGER) r.type = Raw::Other, r.type_desc = (H5Tget_sign(ft) == H5T_SGN_NONE ? "uint" : "int") + std::to_string(8 * sz);
  else if (cls == H5T_STRING) r.type = Raw::Other, r.type_desc = "string";
  else r.type = Raw::Other, r.type_desc = "HDF5 class " + std::to_string(int(cls));
  // The declared size, checked before any allocation: a corrupt or absurd shape (2^40) is an
  // error, never an overflow or an out-of-memory kill.
  std::uint64_t count = 1;
  bool overflow = false;
  for (auto d : dims) overflow = overflow || __builtin_mul_overflow(count, std::uint64_t(d), &count);
  if (r.type != Raw::Other) overflow = overflow || __builtin_mul_overflow(count, std::uint64_t(elem_size(r.type)), &count);
  if (overflow || count > max_read_bytes())
    throw Error("HDF5: dataset '" + name + "' of " + obj_name(loc) + " declares shape " + shape_str(r.shape) +
                (overflow ? " (its size overflows 64 bits)" : " = " + std::to_string(count) + " bytes") +
                ", more than this plx reads (" + std::to_string(max_read_bytes()) +
                " bytes; by default half the physical memory): corrupt or absurd file?");
  if (r.type == Raw::Other) return r;  // caller decides how to reject it (names type_desc)
  Watch wr(watch_what(loc, "reading dataset '" + name + "'"), count);
  r.bytes.resize(count);
  check(H5Dread(ds, mem_type(r.type), H5S_ALL, H5S_ALL, H5P_DEFAULT, r.bytes.data()),
        "reading dataset '" + name + "' of " + obj_name(loc) + " (truncated file?)");
  return r;
}

void set_attr(hid_t obj, const std::string& name, const std::string& value) {
  Lock l;
  Handle t(check(H5Tcopy(H5T_C_S1), "H5Tcopy"), Handle::Datatype);
  check(H5Tset_size(t, std::max<std::size_t>(value.size(), 1)), "H5Tset_size");  // size 0 is not allowed
  check(H5Tset_strpad(t, H5T_STR_NULLPAD), "H5Tset_strpad");
  check(H5Tset_cset(t, H5T_CSET_UTF8), "H5Tset_cset");
  Handle space(check(H5Screate(H5S_SCALAR), "H5Screate"), Handle::Dataspace);
  Handle a(check(H5Acreate2(obj, name.c_str(), t, space, H5P_DEFAULT, H5P_DEFAULT), "creating attribute " + name),
           Handle::Attribute);
  std::vector<char> buf(std::max<std::size_t>(value.size(), 1), 0);
  std::memcpy(buf.data(), value.data(), value.size());
  check(H5Awrite(a, t, buf.data()), "writing attribute " + name);
}
void set_attr(hid_t obj, const std::string& name, std::int64_t value) {
  Lock l;
  Handle space(check(H5Screate(H5S_SCALAR), "H5Screate"), Handle::Dataspace);
  Handle a(check(H5Acreate2(obj, name.c_str(), H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT), "creating attribute " + name),
           Handle::Attribute);
  check(H5Awrite(a, H5T_NATIVE_INT64, &value), "writing attribute " + name);
}
void set_attr_u64(hid_t obj, const std::string& name, std::uint64_t value) {
  Lock l;
  Handle space(check(H5Screate(H5S_SCALAR), "H5Screate"), Handle::Dataspace);
  Handle a(check(H5Acreate2(obj, name.c_str(), H5T_STD_U64LE, space, H5P_DEFAULT, H5P_DEFAULT), "creating attribute " + name),
           Handle::Attribute);
  check(H5Awrite(a, H5T_NATIVE_UINT64, &value), "writing attribute " + name);
}

bool has_attr(hid_t loc, const std::string& obj, const std::string& name) {
  Lock l;
  Watch w(watch_what(loc, "looking up attribute '" + name + "' of '" + obj + "'"));
  htri_t e = H5Aexists_by_name(loc, obj.c_str(), name.c_str(), H5P_DEFAULT);
  if (e < 0) H5Eclear2(H5E_DEFAULT);
  return e > 0;
}

std::string get_attr_string(hid_t loc, const std::string& obj, const std::string& name) {
  Lock l;
  Watch w(watch_what(loc, "reading attribute '" + name + "' of '" + obj + "'"));
  Handle a = open_attr(loc, obj, name);
  Handle ft(check(H5Aget_type(a), "H5Aget_type " + name), Handle::Datatype);
  if (H5Tget_class(ft) != H5T_STRING) throw Error("HDF5: attribute '" + name + "' of '" + obj + "' is not a string");
  Handle space(check(H5Aget_space(a), "H5Aget_space"), Handle::Dataspace);
  if (H5Sget_simple_extent_npoints(space) != 1)
    throw Error("HDF5: attribute '" + name + "' of '" + obj + "' is not a scalar string");
  if (H5Tis_variable_str(ft) > 0) {
    Handle t = vlen_string_type();
    char* p = nullptr;
    check(H5Aread(a, t, &p), "reading attribute " + name);
    std::string s = p ? p : "";
    if (p) H5free_memory(p);
    return s;
  }
  std::size_t n = H5Tget_size(ft);
  if (n == 0 || n > (std::size_t(64) << 20))  // plx writes a few kB; a corrupt size is not allocated
    throw Error("HDF5: attribute '" + name + "' of '" + obj + "' declares a string of " + std::to_string(n) +
                " bytes (corrupt file?)");
  std::vector<char> buf(n + 1, 0);
  check(H5Aread(a, ft, buf.data()), "reading attribute " + name);
  return std::string(buf.data(), strnlen(buf.data(), n));
}

std::int64_t get_attr_int(hid_t loc, const std::string& obj, const std::string& name) {
  Lock l;
  Watch w(watch_what(loc, "reading attribute '" + name + "' of '" + obj + "'"));
  Handle a = open_attr(loc, obj, name);
  Handle ft(check(H5Aget_type(a), "H5Aget_type " + name), Handle::Datatype);
  if (H5Tget_class(ft) != H5T_INTEGER) throw Error("HDF5: attribute '" + name + "' of '" + obj + "' is not an integer");
  std::int64_t v = 0;
  check(H5Aread(a, H5T_NATIVE_INT64, &v), "reading attribute " + name);
  return v;
}

Tensor<double> to_tensor(const Raw& r, const std::string& format) {
  Tensor<double> t(r.shape);
  const std::size_t n = r.count();
  if (r.type == Raw::F64) std::memcpy(t.data.data(), r.bytes.data(), n * 8);
  else if (r.type == Raw::F32) {
    std::vector<float> f(n);
    std::memcpy(f.data(), r.bytes.data(), n * 4);
    for (std::size_t i = 0; i < n; ++i) t.data[i] = f[i];
  } else if (r.type == Raw::I64) {
    std::vector<std::int64_t> v(n);
    std::memcpy(v.data(), r.bytes.data(), n * 8);
    for (std::size_t i = 0; i < n; ++i) t.data[i] = double(v[i]);
  } else if (r.type == Raw::U16) {
    std::vector<std::uint16_t> u(n);
    std::memcpy(u.data(), r.bytes.data(), n * 2);
    if (format == "bfloat16") for (std::size_t i = 0; i < n; ++i) t.data[i] = bf16_to_float(u[i]);
    else if (format == "float16") for (std::size_t i = 0; i < n; ++i) t.data[i] = f16_to_float(u[i]);
    else
      throw Error("dataset '" + r.name + "' is uint16 but its 'format' attribute is '" + format +
                  "' (expected 'bfloat16' or 'float16' bit patterns)");
  } else {
    throw Error("dataset '" + r.name + "' has unsupported type " + r.type_desc +
                " (expected float64, float32, or uint16 bit patterns with a 'format' attribute)");
  }
  return t;
}

}  // namespace plx::h5
