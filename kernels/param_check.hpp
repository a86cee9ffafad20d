// kernels/param_check.hpp — the launch-parameter checks the three CUDA host APIs share.
//
// Charter: check_params (cuda_api.cpp), check_backward_params (backward_api.cpp) and
// check_lla_params (lla_api.cpp) validate different params structs with the same field rules:
// dtype, head dims, shapes, scale and window; pointers present and aligned; element strides
// non-negative multiples of 8 (16-byte rows); grid limits. Each failure throws
// plx::Error("<who> '<field>': <why>"), naming the field. The checks specific to one API (decode
// splits, the LLA solver, gradient strides) stay in that API. Host only, header only.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/params.hpp"
#include "reference/errors.hpp"  // plx::Error

namespace plx::cuda::detail {

class ParamCheck {
 public:
  explicit ParamCheck(const char* who) : who_(who) {}

  void need(bool ok, const std::string& field, const std::string& why) const {
    if (!ok) throw Error(std::string(who_) + " '" + field + "': " + why);
  }
  static std::string str(long long x) { return std::to_string(x); }

  // Fields every params struct has (AttnParams, BwdParams, LlaParams): element type, D = Dv in
  // {64, 128}, B, heads (Hq a multiple of Hkv), lengths >= 1, scale, window. `what` completes
  // "L = 0 has nothing to <what>".
  template <class P> void shapes(const P& p, const char* what) const {
    need(p.dtype == ElemType::BF16 || p.dtype == ElemType::F16, "dtype", "must be bf16 or fp16");
    need(p.D == 64 || p.D == 128, "D", "unsupported head dim " + str(p.D) + " (supported: 64, 128)");
    need(p.Dv == p.D, "Dv", "must equal D (got D=" + str(p.D) + ", Dv=" + str(p.Dv) + ")");
    need(p.B >= 1, "B", "must be >= 1, got " + str(p.B));
    need(p.Hq >= 1 && p.Hkv >= 1, "Hq/Hkv", "must be >= 1");
    need(p.Hq % p.Hkv == 0, "Hq", "must be a multiple of Hkv, got Hq=" + str(p.Hq) + ", Hkv=" + str(p.Hkv));
    need(p.Lq >= 1, "Lq", std::string("must be >= 1 (L = 0 has nothing to ") + what + "), got " + str(p.Lq));
    need(p.Lkv >= 1, "Lkv", std::string("must be >= 1 (L = 0 has nothing to ") + what + "), got " + str(p.Lkv));
    need(std::isfinite(p.scale) && p.scale > 0, "scale", "must be finite and > 0");
    need(p.window >= -1, "window", "must be -1 (off) or >= 0");
  }

  // A device pointer: non-null when `required` (`null_why` says why it must be there) and
  // `align`-byte aligned (16 for the tensors the kernels move as 16-byte vectors, 4 for floats).
  void pointer(const void* x, const char* name, bool required, unsigned align, const char* null_why = "is null") const {
    need(!required || x != nullptr, name, null_why);
    need(reinterpret_cast<std::uintptr_t>(x) % align == 0, name, "must be " + str(align) + "-byte aligned");
  }

  // Batch, row and head strides of one tensor (elements): >= 0 and multiples of 8, so every
  // row starts on a 16-byte boundary. `tail` is appended to the message.
  void strides(const char* name, std::int64_t bs, std::int64_t rs, std::int64_t hs, const char* tail = "") const {
    for (std::int64_t s : {bs, rs, hs}) {
      need(s >= 0, name, "strides must be >= 0");
      need(s % 8 == 0, name, "strides must be multiples of 8 elements (16-byte rows), got " + str(bs) + ", " +
                                 str(rs) + ", " + str(hs) + tail);
    }
  }

  // The strides of q, r (Parallax only), k, v and out that AttnParams and BwdParams share: rows
  // on 16-byte boundaries (multiples of 8 elements), non-negative, the feature axis contiguous.
  template <class P> void attention_strides(const P& p, bool plx) const {
    const char* tail = "; the feature axis must be contiguous";
    strides("q strides", p.q_batch_stride, p.q_row_stride, p.q_head_stride, tail);
    if (plx) strides("r strides", p.r_batch_stride, p.r_row_stride, p.r_head_stride, tail);
    strides("k strides", p.k_batch_stride, p.k_row_stride, p.k_head_stride, tail);
    strides("v strides", p.v_batch_stride, p.v_row_stride, p.v_head_stride, tail);
    strides("out strides", p.o_batch_stride, p.o_row_stride, p.o_head_stride, tail);
  }

  // gridDim.y and .z are at most 65535.
  void grid_dim(long long n, const char* field, const char* what = "") const {
    need(n <= 65535, field, "grid too large: " + std::string(field) + "=" + str(n) + " > 65535" + what);
  }

 private:
  const char* who_;
};

}  // namespace plx::cuda::detail
