// tests/validation/fixture_support.hpp — temp dirs, small fixtures and file surgery for the
// fixture/check/CLI tests (corrupting copies with the HDF5 C API, as a foreign tool would).
#pragma once
#include <hdf5.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <fstream>
#include <string>

#include "reference/all.hpp"
#include "validation/fixture.hpp"
#include "validation/h5io.hpp"
#include "validation/sha256.hpp"

namespace plx::test {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static int n = 0;
    path = std::filesystem::temp_directory_path() /
           ("plx-test-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// The message of the plx::Error that f throws ("" if it throws none).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A small case of the given member (GQA, causal, Lq != Lkv so the mask alignment matters).
inline Problem small_problem(const std::string& member, DType dt = DType::F32) {
  Problem p;
  p.name = "t_" + member;
  set_member(p, member);
  p.B = 2, p.Hq = 4, p.Hkv = 2, p.Lq = 9, p.Lkv = 13, p.D = 8, p.Dv = 6, p.seed = 99, p.dtype = dt;
  p.solver.lambda = 0.3;
  return p;
}

inline void copy_file(const std::string& a, const std::string& b) {
  std::filesystem::copy_file(a, b, std::filesystem::copy_options::overwrite_existing);
}

// Byte offset of a contiguous dataset's data in its file.
inline haddr_t data_offset(const std::string& file, const std::string& ds) {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, ds.c_str(), H5P_DEFAULT);
  haddr_t off = H5Dget_offset(d);
  H5Dclose(d), H5Fclose(f);
  return off;
}
inline void flip_byte(const std::string& file, std::size_t offset) {
  std::fstream s(file, std::ios::in | std::ios::out | std::ios::binary);
  s.seekg(offset);
  char c;
  s.get(c);
  c ^= 0x01;
  s.seekp(offset);
  s.put(c);
}
inline void truncate_half(const std::string& file) {
  std::filesystem::resize_file(file, std::filesystem::file_size(file) / 2);
}
inline void delete_dataset(const std::string& file, const std::string& ds) {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  H5Ldelete(f, ds.c_str(), H5P_DEFAULT);
  H5Fclose(f);
}
inline void set_root_int_attr(const std::string& file, const std::string& name, long long v) {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  H5Adelete(f, name.c_str());
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, name.c_str(), H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_LLONG, &v);
  H5Aclose(a), H5Sclose(sp), H5Fclose(f);
}

// Write a candidate file: `out` (and any extra tensors) in the given storage.
inline void write_candidate(const std::string& path, const std::map<std::string, Tensor<double>>& t, DType dt) {
  h5::Handle f = h5::create_file(path);
  for (const auto& [name, x] : t) {
    const std::size_t n = x.size();
    if (dt == DType::F64) {
      h5::write(f, name, x.shape, h5::Raw::F64, x.data.data());
    } else if (dt == DType::F32) {
      std::vector<float> v(n);
      for (std::size_t i = 0; i < n; ++i) v[i] = float(x.data[i]);
      h5::write(f, name, x.shape, h5::Raw::F32, v.data());
    } else {
      std::vector<std::uint16_t> v(n);
      for (std::size_t i = 0; i < n; ++i) v[i] = dt == DType::BF16 ? bf16_bits(float(x.data[i])) : f16_bits(float(x.data[i]));
      h5::Handle d = h5::write(f, name, x.shape, h5::Raw::U16, v.data());
      h5::set_attr(d, "format", to_string(dt));
    }
  }
}

inline Tensor<double> rounded(const Tensor<double>& t, DType dt) {
  Tensor<double> r = t;
  for (auto& x : r.data) x = round_to(dt, x);
  return r;
}

}  // namespace plx::test
