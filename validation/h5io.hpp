// validation/h5io.hpp — the thin layer plx uses to read and write HDF5 (C API, 1.10).
//
// Charter: RAII handles, typed dataset/attribute helpers, and one error policy: HDF5's
// own error-stack printing is silenced (H5Eset_auto) and every failed HDF5 call becomes a
// plx::Error naming the file, the object and HDF5's innermost message. Datasets are
// written contiguous and uncompressed, without object timestamps, so their bytes depend
// only on the data. Calls are serialised by a process-wide mutex (the caller may be a
// worker thread). No schema knowledge lives here (see fixture.hpp).
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

#include "reference/dtype.hpp"
#include "reference/tensor.hpp"

namespace plx::h5 {

// Owns an hid_t and closes it with the right H5*close.
class Handle {
 public:
  enum Kind { File, Group, Dataset, Attribute, Dataspace, Datatype, Plist };
  Handle() = default;
  Handle(hid_t id, Kind k) : id_(id), kind_(k) {}
  Handle(Handle&& o) noexcept : id_(o.id_), kind_(o.kind_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { close(); }
  hid_t id() const { return id_; }
  operator hid_t() const { return id_; }
  void close();

 private:
  hid_t id_ = -1;
  Kind kind_ = File;
};

// A dataset as read: element storage type, shape, raw native bytes, string attributes.
struct Raw {
  std::string name;
  std::vector<std::size_t> shape;
  enum Type { F64, F32, U16, I64, Other } type = Other;  // I64: index lists (a fixture's `rows`)
  std::string type_desc;         // e.g. "float64", "int32", "string"
  std::vector<std::uint8_t> bytes;  // row-major, little-endian host order (x86)
  std::size_t count() const;
};

Handle create_file(const std::string& path);  // truncates
Handle open_file(const std::string& path);    // read-only; clear error if not HDF5
Handle create_group(hid_t loc, const std::string& name);
// Flush a file being written and report a failure (e.g. a full disk) as plx::Error; closing
// a Handle cannot report one.
void flush(hid_t file);
bool exists(hid_t loc, const std::string& path);  // link exists (intermediate groups checked)
std::vector<std::string> list(hid_t loc, const std::string& group = ".");  // link names, sorted

// Write a dataset; `type` is the storage type (F64, F32, U16 or I64) and `data` its raw elements.
// A dataset over kChunkBytes is stored in chunks of about that size (chunk_dims), so a reader
// (h5py, plx) can read a run of rows of a long-sequence file without reading the whole tensor,
// compressed with HDF5's shuffle and deflate filters (every HDF5 build and h5py read them);
// smaller ones are contiguous and uncompressed. Neither changes the data or its SHA-256.
constexpr unsigned long long kChunkBytes = 1ull << 20;
std::vector<hsize_t> chunk_dims(const std::vector<hsize_t>& dims, std::size_t elem_bytes);  // empty: contiguous
Handle write(hid_t loc, const std::string& name, const std::vector<std::size_t>& shape, Raw::Type type,
             const void* data);
Raw read(hid_t loc, const std::string& name);

// UTF-8 fixed-length (null-padded) string: libhdf5 reads it from the object header, not from a
// global heap whose corruption can make H5Aread loop forever. get_attr_string reads both kinds.
void set_attr(hid_t obj, const std::string& name, const std::string& value);
void set_attr(hid_t obj, const std::string& name, std::int64_t value);
void set_attr_u64(hid_t obj, const std::string& name, std::uint64_t value);
bool has_attr(hid_t loc, const std::string& obj, const std::string& name);
std::string get_attr_string(hid_t loc, const std::string& obj, const std::string& name);  // fixed or vlen
std::int64_t get_attr_int(hid_t loc, const std::string& obj, const std::string& name);

// Watchdog: no input may make plx run unbounded, yet a corrupt file can make libhdf5 itself
// loop (e.g. H5HG_read under H5Aread of a variable-length string whose global-heap entry was
// zeroed). With a budget > 0 every reading call of this layer is timed by a watchdog thread;
// one that runs past `seconds` (plus 1 s per 50 MB read) prints
// "plx: error: reading '<file>' ... did not finish" to stderr, and to stdout as JSON when
// json_errors, and ends the process with exit 2 (the call cannot be interrupted: libhdf5
// holds no cancellation point). 0 (the default, for library users) disables it; `plx` sets
// 30 s, or PLX_HDF5_WATCHDOG_S.
void set_watchdog(double seconds, bool json_errors = false);
// The budget the plx tool arms the watchdog with (30 s unless PLX_HDF5_WATCHDOG_S set another,
// validation/environment.cpp); only the tool reads it.
void set_tool_watchdog_seconds(double seconds);
double tool_watchdog_seconds();

// Largest dataset `read` accepts, in bytes (default: half the physical memory). A declared
// shape beyond it (a corrupt or absurd file, e.g. a dimension of 2^40) is a plx::Error
// before any allocation.
void set_max_read_bytes(std::uint64_t bytes);
std::uint64_t max_read_bytes();

// Convert a raw dataset to doubles; bf16/fp16 bit patterns need `format` ("bfloat16"/"float16").
Tensor<double> to_tensor(const Raw& r, const std::string& format = "");

}  // namespace plx::h5
