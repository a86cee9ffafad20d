// kernels/capabilities.hpp — which kernel runs which problem: the one capability table.
//
// Charter: for each operation (prefill forward, decode, backward tile passes) the kernels by
// technique, in order of preference, with what each needs: head dim D, and driver features
// (tensor maps for TMA). Auto takes the first row that fits; an explicit choice must fit its row
// (check_params says why not). Both dtypes (bf16, fp16) run on every kernel. The order comes from
// same-run timings on the H100/H200 (docs/gpu-results.md). Plain C++17 without CUDA types: the
// host API, the .cu launchers and the benchmarks include it.
#pragma once
#include "kernels/backward_params.hpp"
#include "kernels/params.hpp"

namespace plx::cuda {

// ---- prefill forward ----------------------------------------------------------------------
// | kernel   | D        | needs                          |
// | Tma      | 128      | driver tensor maps (cuTensorMapEncodeTiled) |
// | Wgmma    | 128      | -  (Auto's fallback where the driver gives no tensor maps) |
// | MmaSync  | 64, 128  | -                              |
inline bool forward_kernel_fits(ForwardKernel k, int D) {
  return k == ForwardKernel::MmaSync ? (D == 64 || D == 128) : D == 128;
}
// Auto's first choice; a Tma choice that finds no tensor maps falls back to Wgmma (Auto only).
inline ForwardKernel forward_kernel_auto(int D) { return D == 128 ? ForwardKernel::Tma : ForwardKernel::MmaSync; }
inline const char* name(ForwardKernel k) {
  return k == ForwardKernel::MmaSync ? "mma_sync" : k == ForwardKernel::Wgmma ? "wgmma" : k == ForwardKernel::Tma ? "tma" : "auto";
}

// ---- decode (Lq = 1) ---------------------------------------------------------------------
// | kernel   | when Auto takes it                                                        |
// | CudaCore | Parallax, MHA (Hq = Hkv), one split, B * Hkv >= 128 (about a wave of blocks) |
// | MmaSync  | everything else                                                           |
// Both take D in {64, 128} and group sizes up to 16.
inline DecodeKernel decode_kernel_auto(bool parallax, int B, int Hq, int Hkv, int num_splits) {
  const bool cuda_core = parallax && Hq == Hkv && num_splits == 1 && (long long)B * Hkv >= 128;
  return cuda_core ? DecodeKernel::CudaCore : DecodeKernel::MmaSync;
}
inline const char* name(DecodeKernel k) {
  return k == DecodeKernel::CudaCore ? "cuda_core" : k == DecodeKernel::MmaSync ? "mma_sync" : "auto";
}

// ---- backward tile passes ------------------------------------------------------------------
// | kernel   | D        |
// | Wgmma    | 128      |
// | MmaSync  | 64, 128  |
inline bool backward_kernel_fits(BackwardKernel k, int D) {
  return k == BackwardKernel::MmaSync ? (D == 64 || D == 128) : k == BackwardKernel::Wgmma ? D == 128 : true;
}
inline BackwardKernel backward_kernel_auto(int D) { return D == 128 ? BackwardKernel::Wgmma : BackwardKernel::MmaSync; }
inline const char* name(BackwardKernel k) {
  return k == BackwardKernel::MmaSync ? "mma_sync" : k == BackwardKernel::Wgmma ? "wgmma" : "auto";
}

}  // namespace plx::cuda
