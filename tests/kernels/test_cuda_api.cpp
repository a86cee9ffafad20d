// tests/kernels/test_cuda_api.cpp — the CUDA host API's argument validation, on the CPU.
//
// Charter: every launch the kernels cannot take must be a plx::Error from check_params /
// launch / forward BEFORE any CUDA call, so these tests need no device and run in CI.
// Device pointers here are fake (aligned integers); nothing is dereferenced.
#include <gtest/gtest.h>

#include <string>

#include <cmath>
#include <limits>

#include "tests/expect_error.hpp"
#include "kernels/backward_api.hpp"
#include "kernels/cuda_api.hpp"
#include "reference/inputs.hpp"

namespace plx::cuda {
namespace {

void* fake(std::uintptr_t a) { return reinterpret_cast<void*>(a); }

// A valid decode/forward launch description: B=2, Hq=8, Hkv=2, Lq=Lkv=64, D=Dv=128, bf16.
AttnParams valid(Op op) {
  AttnParams p;
  p.q = fake(0x10000), p.r = fake(0x20000), p.k = fake(0x30000), p.v = fake(0x40000), p.out = fake(0x50000);
  p.B = 2, p.Hq = 8, p.Hkv = 2, p.Lq = op == Op::Decode ? 1 : 64, p.Lkv = 64, p.D = 128, p.Dv = 128;
  const std::int64_t D = 128;
  p.q_head_stride = p.r_head_stride = p.o_head_stride = D;
  p.q_row_stride = p.r_row_stride = p.o_row_stride = p.Hq * D;
  p.q_batch_stride = p.r_batch_stride = p.o_batch_stride = p.Lq * p.Hq * D;
  p.k_head_stride = p.v_head_stride = D;
  p.k_row_stride = p.v_row_stride = p.Hkv * D;
  p.k_batch_stride = p.v_batch_stride = p.Lkv * p.Hkv * D;
  p.scale = 0.088f;
  return p;
}

using test::expect_error;  // tests/expect_error.hpp

TEST(CudaApiCheck, ValidParamsPass) {
  for (Op op : {Op::Decode, Op::Forward}) {
    AttnParams p = valid(op);
    EXPECT_NO_THROW(check_params(p, op));
    p.mech = Mechanism::Softmax, p.r = nullptr;  // softmax needs no r
    EXPECT_NO_THROW(check_params(p, op));
    p.D = p.Dv = 64;
    EXPECT_NO_THROW(check_params(p, op));
  }
}

TEST(CudaApiCheck, UnsupportedHeadDims) {
  for (int D : {1, 32, 96, 127, 256}) {
    AttnParams p = valid(Op::Forward);
    p.D = p.Dv = D;
    expect_error([&] { check_params(p, Op::Forward); }, "'D'");
  }
  AttnParams p = valid(Op::Forward);
  p.Dv = 64;
  expect_error([&] { check_params(p, Op::Forward); }, "'Dv'");
}

TEST(CudaApiCheck, UnsupportedDtypeAndMechanism) {
  AttnParams p = valid(Op::Decode);
  p.dtype = static_cast<ElemType>(7);
  expect_error([&] { check_params(p, Op::Decode); }, "'dtype'");
  p = valid(Op::Decode);
  p.mech = static_cast<Mechanism>(5);
  expect_error([&] { check_params(p, Op::Decode); }, "'mech'");
}

TEST(CudaApiCheck, MisalignedOrMissingPointers) {
  AttnParams p = valid(Op::Forward);
  p.q = fake(0x10002);
  expect_error([&] { check_params(p, Op::Forward); }, "'q'");
  p = valid(Op::Forward);
  p.v = fake(0x40008);
  expect_error([&] { check_params(p, Op::Forward); }, "'v'");
  p = valid(Op::Forward);
  p.out = nullptr;
  expect_error([&] { check_params(p, Op::Forward); }, "'out'");
  p = valid(Op::Forward);
  p.r = nullptr;  // Parallax needs r
  expect_error([&] { check_params(p, Op::Forward); }, "'r'");
  p = valid(Op::Forward);
  p.lse = reinterpret_cast<float*>(0x60002);
  expect_error([&] { check_params(p, Op::Forward); }, "'lse'");
}

TEST(CudaApiCheck, ZeroLengths) {
  AttnParams p = valid(Op::Forward);
  p.Lq = 0;
  expect_error([&] { check_params(p, Op::Forward); }, "'Lq'");
  p = valid(Op::Decode);
  p.Lkv = 0;
  expect_error([&] { check_params(p, Op::Decode); }, "'Lkv'");
  p = valid(Op::Forward);
  p.B = 0;
  expect_error([&] { check_params(p, Op::Forward); }, "'B'");
}

TEST(CudaApiCheck, GridTooLarge) {
  AttnParams p = valid(Op::Forward);
  p.B = 70000;
  expect_error([&] { check_params(p, Op::Forward); }, "grid too large");
  p = valid(Op::Decode);
  p.Hq = p.Hkv = 65536 + 8;
  expect_error([&] { check_params(p, Op::Decode); }, "grid too large");
}

TEST(CudaApiCheck, StridesTheKernelCannotTake) {
  AttnParams p = valid(Op::Forward);
  p.k_row_stride = 2 * 128 + 4;  // rows not 16-byte aligned
  expect_error([&] { check_params(p, Op::Forward); }, "k strides");
  p = valid(Op::Forward);
  p.q_head_stride = -128;
  expect_error([&] { check_params(p, Op::Forward); }, "q strides");
  p = valid(Op::Forward);
  p.o_head_stride = 0;  // every head would write the same row
  expect_error([&] { check_params(p, Op::Forward); }, "head strides");
  p = valid(Op::Forward);
  p.k_row_stride = 0;
  expect_error([&] { check_params(p, Op::Forward); }, "kv row strides");
}

TEST(CudaApiCheck, DecodeSpecific) {
  AttnParams p = valid(Op::Decode);
  p.Lq = 2;
  expect_error([&] { check_params(p, Op::Decode); }, "'Lq'");
  p = valid(Op::Decode);
  p.Hq = 64, p.Hkv = 2;  // G = 32
  expect_error([&] { check_params(p, Op::Decode); }, "'Hq/Hkv'");
  p = valid(Op::Decode);
  p.num_splits = 4;  // no workspace
  expect_error([&] { check_params(p, Op::Decode); }, "'workspace'");
  p = valid(Op::Decode);
  p.num_splits = 0;
  expect_error([&] { check_params(p, Op::Decode); }, "'num_splits'");
  p = valid(Op::Decode);
  p.Hq = 6, p.Hkv = 4;
  expect_error([&] { check_params(p, Op::Decode); }, "'Hq'");
  p = valid(Op::Decode);
  p.decode_kernel = static_cast<DecodeKernel>(3);
  expect_error([&] { check_params(p, Op::Decode); }, "'decode_kernel'");
  p = valid(Op::Decode);
  p.window = -2;
  expect_error([&] { check_params(p, Op::Decode); }, "'window'");
  p = valid(Op::Decode);
  p.scale = 0.f;
  expect_error([&] { check_params(p, Op::Decode); }, "'scale'");
}

TEST(CudaApiCheck, ForwardKernel) {
  AttnParams p = valid(Op::Forward);
  p.forward_kernel = static_cast<ForwardKernel>(4);
  expect_error([&] { check_params(p, Op::Forward); }, "'forward_kernel'");
  p = valid(Op::Forward);
  p.forward_kernel = static_cast<ForwardKernel>(-1);
  expect_error([&] { check_params(p, Op::Forward); }, "'forward_kernel'");
  for (ForwardKernel k : {ForwardKernel::Auto, ForwardKernel::MmaSync, ForwardKernel::Wgmma, ForwardKernel::Tma}) {
    p = valid(Op::Forward);  // every kernel takes the valid D = 128 launch
    p.forward_kernel = k;
    EXPECT_NO_THROW(check_params(p, Op::Forward)) << name(k);
  }
  for (ForwardKernel k : {ForwardKernel::Wgmma, ForwardKernel::Tma}) {  // the wgmma kernels are D = 128 only
    p = valid(Op::Forward);
    p.D = p.Dv = 64, p.forward_kernel = k;
    p.q_head_stride = p.r_head_stride = p.k_head_stride = p.v_head_stride = p.o_head_stride = 64;
    expect_error([&] { check_params(p, Op::Forward); }, "D = 128 only");
    p.forward_kernel = ForwardKernel::MmaSync;
    EXPECT_NO_THROW(check_params(p, Op::Forward));
  }
}

// launch() validates before touching CUDA: a bad launch is a plx::Error even without a device.
TEST(CudaApiCheck, LaunchValidatesFirst) {
  AttnParams p = valid(Op::Forward);
  p.D = p.Dv = 96;
  expect_error([&] { launch(p, Op::Forward); }, "'D'");
}

TEST(CudaApiSupports, Problems) {
  Problem p;
  p.B = 1, p.Hq = 4, p.Hkv = 2, p.Lq = 1, p.Lkv = 33, p.D = p.Dv = 64, p.dtype = DType::BF16;
  std::string why;
  for (const char* m : {"softmax", "parallax", "parallax_centred"}) {
    set_member(p, m);
    EXPECT_TRUE(supports(p, &why)) << m << ": " << why;
  }
  set_member(p, "lla");
  p.solver.block = 32;  // LLA routes to kernels/lla.cu (test_lla_gpu.cpp); its block-diagonal variant has no kernel
  EXPECT_FALSE(supports(p, &why));
  EXPECT_NE(why.find("LLA"), std::string::npos) << why;
  p.solver.block = 0;
  set_member(p, "learned_query");
  EXPECT_FALSE(supports(p, &why));
  set_member(p, "parallax");
  p.dtype = DType::F32;
  EXPECT_FALSE(supports(p, &why));
  p.dtype = DType::F16;
  EXPECT_TRUE(supports(p, &why)) << why;
  p.D = p.Dv = 96;
  EXPECT_FALSE(supports(p, &why));
  p.D = 128, p.Dv = 64;
  EXPECT_FALSE(supports(p, &why));
  p.D = p.Dv = 128, p.Hq = 34, p.Hkv = 2;  // decode group 17
  EXPECT_FALSE(supports(p, &why));
  p.Lq = 5;  // the prefill kernel takes any group
  EXPECT_TRUE(supports(p, &why)) << why;
}

// forward() refuses an unsupported problem with a plx::Error, device or not.
TEST(CudaApiSupports, ForwardRefusesUnsupported) {
  Problem p;
  set_member(p, "lla");
  p.B = 1, p.Hq = 1, p.Hkv = 1, p.Lq = 3, p.Lkv = 3, p.D = p.Dv = 64, p.dtype = DType::BF16;
  const Inputs in = make_inputs(p);
  expect_error([&] { forward(p, in); }, "unsupported");
}

TEST(CudaApiSupports, AvailableNeverThrows) {
  std::string why;
  const bool ok = available(&why);
  if (!ok) EXPECT_FALSE(why.empty());
  std::printf("cuda::available = %d (%s)\n", int(ok), why.c_str());
}

// Non-finite inputs are bad input for cuda::forward and cuda::backward: a plx::Error naming the
// tensor, raised before any device work (so it also holds on a machine without a GPU, where the
// call would otherwise fail only at "no usable device"). The exactness check of the upload lets
// non-finite values through, so without this a NaN would reach the kernels.
TEST(CudaApiCheck, NonFiniteInputsAreRejectedBeforeTheDevice) {
  Problem p;
  set_member(p, "parallax");
  p.B = 1, p.Hq = 2, p.Hkv = 1, p.Lq = 5, p.Lkv = 7, p.D = 64, p.Dv = 64, p.dtype = DType::BF16;
  const Inputs good = make_inputs(p);
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  struct Case {
    Tensor<double> Inputs::*t;
    const char* name;
    double x;
  };
  for (const Case& c : {Case{&Inputs::q, "'q'", nan}, Case{&Inputs::k, "'k'", inf}, Case{&Inputs::v, "'v'", -inf},
                        Case{&Inputs::r, "'r'", nan}}) {
    Inputs in = good;
    (in.*c.t).data[3] = c.x;
    expect_error([&] { forward(p, in); }, c.name);
    expect_error([&] { backward(p, in); }, c.name);
  }
  Inputs in = good;
  in.dO.data[1] = nan;
  expect_error([&] { backward(p, in); }, "'dO'");
  // Finite inputs pass the check: on a GPU the call runs, elsewhere the error is about the device.
  try {
    forward(p, good);
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).find("non-finite"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace plx::cuda
