// validation/candidates.cpp — dispatch by name to the reference, fast CPU and CUDA paths.
#include "validation/candidates.hpp"

#include "reference/all.hpp"
#ifdef PLX_HAVE_FAST
#include "fast/fast.hpp"
#endif
#ifdef PLX_HAVE_CUDA_KERNELS
#include "kernels/cuda_api.hpp"
#endif

namespace plx {

std::vector<std::string> candidate_names() {
  std::vector<std::string> n;
#ifdef PLX_HAVE_CUDA_KERNELS
  n.push_back("cuda");
#endif
#ifdef PLX_HAVE_FAST
  n.push_back("fast");
#endif
  n.push_back("ref-double");
  return n;
}

bool candidate_supports(const std::string& name, const Problem& p, std::string* why) {
  if (name == "ref-double") return true;
  if (name == "fast") {
#ifdef PLX_HAVE_FAST
    return fast::supports(p, why);
#else
    if (why) *why = "this plx was built without the fast CPU path (target plx_fast)";
    return false;
#endif
  }
  if (name == "cuda") {
#ifdef PLX_HAVE_CUDA_KERNELS
    return cuda::available(why) && cuda::supports(p, why);
#else
    if (why) *why = "this plx was built without the CUDA kernels (target plx_kernels)";
    return false;
#endif
  }
  if (why) *why = "unknown candidate '" + name + "' (ref-double, fast, cuda)";
  return false;
}

CandidateResult run_candidate(const std::string& name, const Problem& p, const Inputs& in) {
  std::string why;
  if (!candidate_supports(name, p, &why)) throw Error("candidate '" + name + "' cannot run '" + p.name + "': " + why);
  if (name == "ref-double") {
    CandidateResult r;
    ForwardOptions o;
    o.saved = true;
    auto F = attention_forward<double>(p, in, o);
    r.out = F.out;
    r.saved = F.saved;
#ifdef PLX_BACKWARD_TEMPLATES
    if (!p.decode) {
      auto G = attention_backward<double>(p, in);
      r.dq = G.dq, r.dk = G.dk, r.dv = G.dv;
      if (p.probe == Probe::Learned) r.dr = G.dr;
    }
#endif
    return r;
  }
#ifdef PLX_HAVE_FAST
  if (name == "fast") {
    if (!p.decode && fast::supports_backward(p, nullptr)) return fast::forward_backward(p, in);
    return fast::forward(p, in);
  }
#endif
#ifdef PLX_HAVE_CUDA_KERNELS
  if (name == "cuda") return cuda::forward(p, in);
#endif
  throw Error("candidate '" + name + "' is not available");
}

std::map<std::string, DType> candidate_dtypes(const std::string& name, const Problem& p) {
  std::map<std::string, DType> d;
  if (name == "ref-double") {
    for (const char* n : {"out", "dq", "dk", "dv", "dr"}) d[n] = DType::F64;
    return d;
  }
  // fast / cuda: out is rounded to the input dtype like a kernel's output; gradients are
  // fp32 (fp64 in the F64 debug mode) per fast/fast.hpp.
  const DType acc = p.dtype == DType::F64 ? DType::F64 : DType::F32;
  d["out"] = p.dtype;
  for (const char* n : {"dq", "dk", "dv", "dr"}) d[n] = acc;
  return d;
}

}  // namespace plx
