"""plx — extended-precision truth and numerical checks for softmax, LLA and Parallax attention.

The numbers come from the C++ library (plx._plx); this file only adapts Python objects:
torch tensors are detached (and copied to the host when they live on a GPU), numpy arrays
and CPU tensors are read in place through DLPack / the buffer protocol.

    import plx
    fx = plx.load_fixture("fixtures/golden/parallax_cross_f32.h5")
    res = plx.check(fx, out=my_out, dq=my_dq, dk=my_dk, dv=my_dv, dr=my_dr)
    res.assert_ok()          # AssertionError whose message is the full report

    p = plx.Problem(member="parallax", Lq=128, Lkv=128, Hq=8, Hkv=8, D=64, Dv=64, dtype="float32")
    fx = plx.reference(p, q, k, v, r=r, dO=dO)   # truth on your own tensors
    fx.truth["out"]          # (hi, lo) float64 arrays; fx.saved, fx.diag, fx.tolerances
"""
import os as _os

from ._plx import CheckResult as _CheckResult  # noqa: F401
from ._plx import Error, Fixture, Problem, have_reference_backward, load_fixture, write_fixture
from . import _plx

__all__ = ["Problem", "Fixture", "Error", "Result", "reference", "check", "load_fixture", "write_fixture",
           "have_reference_backward"]
__version__ = "0.1.0"

_CHECKED = ("out", "dq", "dk", "dv", "dr", "dlambda")


def _host(x, name):
    """A CPU array the C++ side can read: torch tensors are detached (autograd tensors cannot be
    exported) and moved to the host; numpy arrays pass through unchanged."""
    if x is None:
        return None
    mod = type(x).__module__ or ""
    if mod.startswith("torch"):
        x = x.detach()
        if x.device.type != "cpu":
            x = x.cpu()
        return x
    if hasattr(x, "__dlpack__") or hasattr(x, "__array_interface__"):
        return x
    raise TypeError(f"plx: tensor '{name}' is a {type(x).__name__}; expected a numpy array or a torch tensor")


def reference(problem, q, k, v, r=None, dO=None, lam=None, scalar="dd", purpose=""):
    """Truth for the caller's own inputs: a Fixture (in memory) with truth (hi, lo) for out and,
    where the member has a backward and the problem is not a decode step, dq, dk, dv (dr, dlambda);
    saved forward tensors; per-row diagnostics; recommended tolerances. The inputs must be exactly
    representable in problem.dtype (plx.Error names the tensor otherwise). dO defaults to the
    generator's deterministic dO for problem.seed; lam (per-row ridge [B, Hq, Lq]) to problem's solver.lambda."""
    if not isinstance(problem, Problem):
        raise TypeError("plx.reference: problem must be a plx.Problem")
    t = {"q": q, "k": k, "v": v, "r": r, "dO": dO, "lambda": lam}
    t = {n: _host(x, n) for n, x in t.items() if x is not None}
    return _plx._reference(problem, t, scalar, purpose)


class Result:
    """The outcome of plx.check: per-tensor reports (errors, limit, rule, worst index), notes,
    the case's purpose and hint, pass/fail. `assert_ok()` raises AssertionError(report)."""

    def __init__(self, r):
        self._r = r
        self.passed = r.passed
        self.purpose = r.purpose
        self.hint = r.hint
        self.notes = list(r.notes)
        self.tensors = r.tensors          # name -> dict (max_abs, max_rel, limit, rule, passed, worst_index, ...)
        self.report = r.report            # the text `plx check` prints

    def __bool__(self):
        return bool(self.passed)

    def failed_tensors(self):
        return [n for n, t in self.tensors.items() if not t["passed"]]

    def to_dict(self):
        return self._r.to_dict()

    def assert_ok(self):
        if not self.passed:
            raise AssertionError("plx check failed (" + ", ".join(self.failed_tensors()) + ")\n" + self.report)
        return self

    def __repr__(self):
        return f"plx.Result({'PASS' if self.passed else 'FAIL'}, tensors={list(self.tensors)})"

    def __str__(self):
        return self.report


def check(fixture_or_problem, out=None, dq=None, dk=None, dv=None, dr=None, dlambda=None, *, q=None, k=None,
          v=None, r=None, dO=None, lam=None, tol=None, label="python"):
    """Check candidate tensors against the truth: fixture_or_problem is a fixture path, a Fixture
    (plx.load_fixture or plx.reference), or a Problem (then q, k, v [, r, dO, lam] are required and
    the truth is computed first). Candidate tensors keep their dtype (float32, float64, bfloat16,
    float16: the same-precision baseline and the recommended tolerance follow it). tol: optional
    {tensor: absolute limit} overrides. Returns a Result."""
    src = fixture_or_problem
    if isinstance(src, (str, _os.PathLike)):
        fx = load_fixture(_os.fspath(src))
    elif isinstance(src, Fixture):
        fx = src
    elif isinstance(src, Problem):
        if q is None or k is None or v is None:
            raise TypeError("plx.check(problem, ...) needs q=, k=, v= (and r= for a learned probe)")
        fx = reference(src, q, k, v, r=r, dO=dO, lam=lam)
    else:
        raise TypeError("plx.check: first argument must be a fixture path, a plx.Fixture or a plx.Problem")
    cand = {"out": out, "dq": dq, "dk": dk, "dv": dv, "dr": dr, "dlambda": dlambda}
    cand = {n: _host(x, n) for n, x in cand.items() if x is not None}
    if "out" not in cand:
        raise TypeError("plx.check: out= is required")
    return Result(_plx._check(fx, cand, dict(tol or {}), label))
