"""tests/python/test_plx_module.py — the plx Python module as a kernel author would use it (pytest).

A plain PyTorch softmax (SDPA) and Parallax (accumulator form with the per-row shift of
docs/math.md, "7.1 Cancellation in the Parallax output"), forward and autograd backward, are
checked on every committed golden fixture of those members through plx.check: the candidate
tensors go in as torch tensors in the fixture's dtype (bf16/fp16 out stays bf16/fp16; gradients
fp32), exactly as a harness holds them. A deliberately wrong candidate (a start-aligned causal
mask on an Lq != Lkv case) must fail, and its AssertionError must carry the readable report:
the flagged tensors, the worst index, the case's purpose. Truth on the caller's own tensors
(plx.reference) must reproduce the golden truth bit for bit from the same inputs, and bad
inputs (NaN, wrong shape, values not representable in the problem dtype, bad problem fields)
must raise plx.Error naming the field or tensor.
The model code (masks, SDPA, Parallax) is shared with tests/python/torch_client.py.
"""
import glob
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import plx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_client as tc  # noqa: E402  (allowed_mask, start_aligned_mask, sdpa_softmax, parallax_closed)

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
GOLDEN = sorted(glob.glob(os.path.join(ROOT, "fixtures", "golden", "*.h5")))
MEMBERS = {"softmax": "softmax", "parallax": "parallax", "parallax_centred": "parallax"}
TORCH_DTYPE = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16,
               "float16": torch.float16}


def _kind(path):
    return MEMBERS.get(plx.load_fixture(path).problem.member)


CASES = [p for p in GOLDEN if _kind(p)]


def run_torch(fx, wrong=None):
    """The candidate: torch on the fixture's inputs, in fp32 (fp64 for float64 fixtures)."""
    p = fx.problem.to_dict()
    wd = torch.float64 if p["dtype"] == "float64" else torch.float32
    ins = fx.inputs
    t = {n: torch.tensor(np.asarray(ins[n]), dtype=wd) for n in ("q", "k", "v", "dO", "r") if n in ins}
    mask = tc.start_aligned_mask(p) if wrong == "start_aligned" else tc.allowed_mask(p)
    grads = "dq" in fx.truth
    names = [n for n in ("q", "k", "v", "r") if n in t]
    if grads:
        for n in names:
            t[n].requires_grad_(True)
    kind = MEMBERS[p["member"]]
    o = tc.sdpa_softmax(p, t, mask) if kind == "softmax" else tc.parallax_closed(p, t, mask)
    cand = {"out": o.detach().to(TORCH_DTYPE[p["dtype"]])}  # a kernel's output is in the input dtype
    if grads:
        o.backward(t["dO"])
        for n in names:
            cand["d" + n] = t[n].grad  # fp32 (fp64) gradients
    return cand


def test_import_is_fast():
    """`import plx` in a fresh interpreter takes < 0.5 s (it must not import torch)."""
    code = "import time; t = time.perf_counter(); import plx; print(time.perf_counter() - t)"
    dt = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert dt < 0.5, f"import plx took {dt:.3f} s"
    out = subprocess.run([sys.executable, "-c", "import sys, plx; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False", "import plx imported torch"


def test_golden_fixtures_present():
    assert len(CASES) >= 10, f"expected the softmax and Parallax golden fixtures, found {CASES}"


@pytest.mark.parametrize("path", CASES, ids=[os.path.basename(p)[:-3] for p in CASES])
def test_torch_candidate_passes(path):
    fx = plx.load_fixture(path)
    cand = run_torch(fx)
    res = plx.check(fx, **cand)
    res.assert_ok()
    assert set(res.tensors) == set(cand)  # every tensor given was judged
    for n, t in res.tensors.items():
        assert t["max_abs"] <= t["limit"], (n, t)


@pytest.mark.parametrize("name", ["softmax_cross_f32", "parallax_cross_f32"])
def test_wrong_mask_fails_readably(name):
    fx = plx.load_fixture(os.path.join(ROOT, "fixtures", "golden", name + ".h5"))
    p = fx.problem
    res = plx.check(fx, **run_torch(fx, wrong="start_aligned"))
    assert not res.passed
    bad = res.failed_tensors()
    assert "out" in bad and "dk" in bad and "dv" in bad, bad
    out = res.tensors["out"]
    assert out["worst_index"][1] < p.Lq
    assert abs(out["worst_candidate"] - out["worst_truth"]) == out["max_abs"]
    assert out["max_rel"] > 1e-2  # structural, far above any rounding
    with pytest.raises(AssertionError) as e:
        res.assert_ok()
    msg = str(e.value)
    assert msg.startswith("plx check failed (out")
    assert "result: FAIL" in msg and name in msg
    assert "worst" in msg  # the report gives the worst index with both values
    assert fx.purpose and "the case tests: " + fx.purpose in msg  # the case's purpose travels into the message
    assert "hint: " + fx.hint in msg


def test_reference_on_own_tensors_reproduces_golden():
    """plx.reference on a fixture's own inputs (as float32 numpy arrays, and as torch tensors)
    gives the committed truth bit for bit: same inputs, same code, whichever route."""
    fx = plx.load_fixture(os.path.join(ROOT, "fixtures", "golden", "parallax_cross_f32.h5"))
    ins = {n: np.asarray(a, dtype=np.float32) for n, a in fx.inputs.items()}
    mine = plx.reference(fx.problem, ins["q"], ins["k"], ins["v"], r=ins["r"], dO=ins["dO"])
    assert set(mine.truth) == set(fx.truth)
    for n in fx.truth:
        for a, b in zip(mine.truth[n], fx.truth[n]):
            np.testing.assert_array_equal(a, b, err_msg=n)
    for n in fx.saved:
        np.testing.assert_array_equal(mine.saved[n][0], fx.saved[n][0], err_msg=n)
    tt = {n: torch.from_numpy(a) for n, a in ins.items()}
    mine_t = plx.reference(fx.problem, tt["q"], tt["k"], tt["v"], r=tt["r"], dO=tt["dO"])
    np.testing.assert_array_equal(mine_t.truth["out"][0], fx.truth["out"][0])
    # A non-contiguous view (heads-first permuted back) is read through its strides.
    qt = tt["q"].permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3)
    assert not qt.is_contiguous()
    mine_s = plx.reference(fx.problem, qt, tt["k"], tt["v"], r=tt["r"], dO=tt["dO"])
    np.testing.assert_array_equal(mine_s.truth["out"][0], fx.truth["out"][0])
    # The arrays handed back are read-only views of the C++ storage.
    hi = mine.truth["out"][0]
    assert not hi.flags.writeable


def test_check_on_a_problem_and_round_trip(tmp_path):
    """plx.check(problem, q=.., k=.., v=..) computes the truth first; write/load keeps everything."""
    p = plx.Problem(name="own", member="softmax", Hq=2, Hkv=1, Lq=5, Lkv=9, D=4, Dv=4, dtype="float32", seed=7)
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(s, generator=g) for s in ((1, 5, 2, 4), (1, 9, 1, 4), (1, 9, 1, 4)))
    fx = plx.reference(p, q, k, v, purpose="my own inputs")
    o = tc.sdpa_softmax(p.to_dict(), {"q": q.double(), "k": k.double(), "v": v.double()}, tc.allowed_mask(p.to_dict()))
    plx.check(p, q=q, k=k, v=v, out=o.float()).assert_ok()
    path = str(tmp_path / "own.h5")
    plx.write_fixture(fx, path)
    back = plx.load_fixture(path)
    assert back.purpose == "my own inputs" and back.problem == p
    np.testing.assert_array_equal(back.truth["out"][0], fx.truth["out"][0])
    np.testing.assert_array_equal(back.inputs["q"], q.double().numpy())
    assert plx.check(path, out=o.float()).passed
    assert not plx.check(path, out=(o * 1.01).float()).passed


def test_bad_inputs_name_the_tensor():
    p = plx.Problem(member="parallax", Lq=4, Lkv=4, D=4, Dv=4, dtype="float32")
    q = np.zeros((1, 4, 1, 4), np.float32)
    k = np.ones((1, 4, 1, 4), np.float32)
    v = np.ones((1, 4, 1, 4), np.float32)
    r = np.ones((1, 4, 1, 4), np.float32)
    bad = q.copy()
    bad[0, 2, 0, 1] = np.nan
    with pytest.raises(plx.Error, match=r"'q': non-finite value nan at index \[0, 2, 0, 1\]"):
        plx.reference(p, bad, k, v, r=r)
    with pytest.raises(plx.Error, match=r"'k': shape \[1, 3, 1, 4\]"):
        plx.reference(p, q, k[:, :3], v, r=r)
    with pytest.raises(plx.Error, match=r"'v': value 0.10000000000000001 .* not exactly representable in the problem dtype float32"):
        plx.reference(p, q, k, np.full((1, 4, 1, 4), 0.1), r=r)
    with pytest.raises(plx.Error, match=r"'r' is missing"):
        plx.reference(p, q, k, v)
    with pytest.raises(plx.Error, match=r"'q': unsupported dtype"):
        plx.reference(p, q.astype(np.int32), k, v, r=r)
    with pytest.raises(plx.Error, match=r"problem field 'Hq': must be a multiple of Hkv"):
        plx.Problem(Hq=3, Hkv=2)
    with pytest.raises(plx.Error, match=r"problem field 'windw': unknown field"):
        plx.Problem(windw=3)
    with pytest.raises(plx.Error, match=r"tensor 'out' has shape"):
        plx.check(plx.reference(p, q, k, v, r=r), out=q[:, :, :, :2])


def test_problem_mirrors_the_cpp_fields():
    p = plx.Problem(member="lla", B=2, Hq=4, Hkv=2, Lq=3, Lkv=3, D=4, Dv=2, solver={"lambda": 0.5})
    assert (p.B, p.Hq, p.Hkv, p.D, p.Dv, p.probe, p.anchor, p.form) == (2, 4, 2, 4, 2, "solver", "query", "accumulator")
    assert p.solver["lambda"] == 0.5 and p.tau == pytest.approx(0.5)
    q = p.replace(Lq=1, decode=True)
    assert q.Lq == 1 and q.decode and q.B == 2


def test_cli_gen_inputs_matches_module(tmp_path):
    """`plx gen --inputs` on a fixture's own inputs (float32 datasets written with h5py) gives the
    committed truth bit for bit; a NaN is refused with exit 2 naming the dataset and the index."""
    import h5py
    import json
    exe = os.environ.get("PLX_BINARY", os.path.join(ROOT, "build", "plx"))
    assert os.path.exists(exe), f"plx binary not found at {exe} (set PLX_BINARY)"
    fx = plx.load_fixture(os.path.join(ROOT, "fixtures", "golden", "parallax_window_padding_f32.h5"))
    ins = fx.inputs
    src, prob, out = tmp_path / "in.h5", tmp_path / "p.json", tmp_path / "case.h5"
    with h5py.File(src, "w") as f:
        for n in ("q", "k", "v", "r", "dO"):
            f.create_dataset(n, data=np.asarray(ins[n], dtype=np.float32))
    prob.write_text(fx.problem.to_json())
    r = subprocess.run([exe, "gen", "--inputs", str(src), "--problem", str(prob), "--out", str(out),
                        "--purpose", "mine"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    mine = plx.load_fixture(str(out))
    assert mine.purpose == "mine"
    for n in fx.truth:
        np.testing.assert_array_equal(mine.truth[n][0], fx.truth[n][0], err_msg=n)
        np.testing.assert_array_equal(mine.truth[n][1], fx.truth[n][1], err_msg=n)
    with h5py.File(src, "a") as f:
        k = f["k"][()]
        k[0, 3, 0, 2] = np.nan
        f["k"][...] = k
    r = subprocess.run([exe, "gen", "--inputs", str(src), "--problem", str(prob), "--out", str(tmp_path / "bad.h5")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert f"inputs '{src}', dataset 'k': non-finite value nan at index [0, 3, 0, 2]" in r.stderr, r.stderr
    assert not (tmp_path / "bad.h5").exists()
