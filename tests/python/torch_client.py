#!/usr/bin/env python3
"""tests/python/torch_client.py — a real external client of plx's golden fixtures.

Charter: reads fixtures/golden/*.h5 with h5py only (schema v1, docs/fixtures.md), runs
PyTorch on their inputs — torch.nn.functional.scaled_dot_product_attention for softmax
(explicit boolean mask built from the fixture's problem: end-aligned causal, window,
per-batch start/used; GQA via repeat_interleave) and a plain PyTorch Parallax (docs/math.md §4.1,
Algorithm 1, accumulator form) — writes candidate HDF5 files the way a harness would
(float32 / float64, bf16/fp16 as uint16 bits with a 'format' attribute) and runs
`plx check` on them. Asserts: every softmax and Parallax fixture passes (exit 0); two
deliberately wrong candidates fail with exit 1 and a report that points at the cause:
a start-aligned causal mask on an Lq != Lkv case (out, dk, dv flagged, O(1) error), and the
FlashLLA "Detached" ridge gradient on an LLA case (forward passes, gradients fail).
A third, fragile candidate (Algorithm 1 without the docs/math.md §7.1 shift) must fail on
parallax_z_cancel_f32 (dq flagged): in fp32 it loses the digits the shift saves.
Exit status: 0 all assertions hold, 1 otherwise (a missing torch is a failure, not a skip).
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import h5py
except ImportError as e:  # pragma: no cover
    print(f"torch_client: FAIL: numpy/h5py missing ({e}); run .ci/setup", file=sys.stderr)
    sys.exit(1)
try:
    import torch
except ImportError as e:
    print(f"torch_client: FAIL: PyTorch is not importable with {sys.executable} ({e}). "
          "Run .ci/setup, which creates .venv with torch; this test never skips.", file=sys.stderr)
    sys.exit(1)

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


# ---- reading a fixture (schema v1) --------------------------------------------------------
def read_input(f, name):
    """An input tensor as float64, exact: uint16 bit patterns are decoded via the float32 view."""
    ds = f[name]
    if ds.dtype == np.uint16:
        return np.asarray(f[name + "_f32"][()], dtype=np.float64)
    return np.asarray(ds[()], dtype=np.float64)


def allowed_mask(p):
    """[B, Lq, Lkv] bool: the allowed key set A_i of docs/math.md §1.2 (end-aligned to the used length)."""
    B, Lq, Lkv = p["B"], p["Lq"], p["Lkv"]
    m = np.zeros((B, Lq, Lkv), dtype=bool)
    for b in range(B):
        used = p["used"][b] if p["used"] else Lkv
        start = p["start"][b] if p["start"] else 0
        for i in range(Lq):
            P = used - Lq + i
            lo, hi = start, used
            if p["causal"]:
                hi = min(hi, P + 1)
            if p["window"] >= 0:
                lo = max(lo, P - p["window"] + 1)
            lo, hi = max(lo, 0), min(hi, Lkv)
            if hi > lo:
                m[b, i, lo:hi] = True
    return m


def start_aligned_mask(p):
    """The deliberately wrong mask of FlashLLA / Parallax-Triton training kernels: j <= i."""
    B, Lq, Lkv = p["B"], p["Lq"], p["Lkv"]
    j = np.arange(Lkv)[None, :]
    i = np.arange(Lq)[:, None]
    return np.broadcast_to(j <= i, (B, Lq, Lkv)).copy()


def work_dtype(p):
    # fp32 arithmetic for fp32/bf16/fp16 inputs (like a kernel), fp64 for float64 fixtures.
    return torch.float64 if p["dtype"] == "float64" else torch.float32


def heads_first(x):  # [B, L, H, D] -> [B, H, L, D]
    return x.permute(0, 2, 1, 3)


# ---- candidates -----------------------------------------------------------------------------
def sdpa_softmax(p, t, mask):
    G = p["Hq"] // p["Hkv"]
    q = heads_first(t["q"])
    k = heads_first(t["k"]).repeat_interleave(G, dim=1)
    v = heads_first(t["v"]).repeat_interleave(G, dim=1)
    am = torch.from_numpy(mask)[:, None, :, :]  # True = attend
    nonempty = am.any(-1, keepdim=True)
    # SDPA gives NaN on a row with no allowed key (and NaN gradients); let such rows attend
    # everything, then zero them: out = 0 and no gradient, as docs/math.md §1.4 requires.
    o = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=am | ~nonempty, scale=p["tau"])
    o = torch.where(nonempty, o, torch.zeros_like(o))
    return o.permute(0, 2, 1, 3)


def parallax_closed(p, t, mask, shift=True):
    """docs/math.md §4.1 Algorithm 1 in plain PyTorch (accumulator form, safe pivot for empty rows), with
    the per-row shift z -> z - z0 of docs/math.md §7.1 (z0 = the detached p1-weighted mean of z; the output
    is exactly invariant to z0, so autograd's gradient is unchanged). shift=False is Algorithm 1
    as written: it loses log10(zbar / sigma_z) digits, and on parallax_z_cancel_f32 its dq and dk
    fail the fp32 baseline rule (the deliberately fragile candidate below)."""
    G = p["Hq"] // p["Hkv"]
    q, r = heads_first(t["q"]), heads_first(t["r"])
    k = heads_first(t["k"]).repeat_interleave(G, dim=1)
    v = heads_first(t["v"]).repeat_interleave(G, dim=1)
    am = torch.from_numpy(mask)[:, None, :, :]
    s1 = p["tau"] * q @ k.transpose(-1, -2)
    s1 = torch.where(am, s1, torch.full_like(s1, -float("inf")))
    m = s1.amax(-1, keepdim=True).detach()
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    p1 = torch.exp(s1 - m)                     # 0 off A
    s2 = r @ k.transpose(-1, -2)               # never masked, never scaled
    if shift:
        w = torch.where(am, p1, torch.zeros_like(p1)).detach()
        ws = w.sum(-1, keepdim=True)
        zs = (w * torch.where(am, s2, torch.zeros_like(s2))).sum(-1, keepdim=True).detach()
        z0 = torch.where(ws > 0, zs / torch.where(ws > 0, ws, torch.ones_like(ws)), torch.zeros_like(ws))  # empty rows: 0
        s2 = s2 - z0
    p2 = p1 * s2
    d1, d2 = p1.sum(-1, keepdim=True), p2.sum(-1, keepdim=True)
    O1, O2 = p1 @ v, p2 @ v
    safe = torch.where(d1 > 0, d1, torch.ones_like(d1))
    o = (O1 / safe) * (1 + d2 / safe) - O2 / safe
    o = torch.where(d1 > 0, o, torch.zeros_like(o))
    return o.permute(0, 2, 1, 3)


def lla_query_centred(p, t, mask, lam, detached):
    """docs/math.md §3.2 LLA (direct solve) in float64 PyTorch; `detached` drops the ridge-omega term
    from the gradient (FlashLLA's convention, docs/math.md §9.1) — a deliberately wrong gradient."""
    G = p["Hq"] // p["Hkv"]
    q = heads_first(t["q"])
    k = heads_first(t["k"]).repeat_interleave(G, dim=1)
    v = heads_first(t["v"]).repeat_interleave(G, dim=1)
    B, H, Lq, D = q.shape
    eps = p["anchor_knobs"]["delta_eps"]
    rows = []
    for b in range(B):
        for h in range(H):
            for i in range(Lq):
                idx = np.nonzero(mask[b, i])[0]
                if len(idx) == 0:
                    rows.append(torch.zeros(v.shape[-1], dtype=v.dtype))
                    continue
                K, V, qi = k[b, h, idx], v[b, h, idx], q[b, h, i]
                s = p["tau"] * (K @ qi)
                w = torch.exp(s - s.max().detach())
                om = w.sum()
                E = K - qi
                mu = (w[:, None] * E).sum(0)
                ridge = lam[b, h, i] * (om.detach() if detached else om)
                Sig = (w[:, None, None] * E[:, :, None] * E[:, None, :]).sum(0) + ridge * torch.eye(D, dtype=q.dtype)
                rho = torch.linalg.solve(Sig, mu)
                Delta = om - mu @ rho
                d = Delta + eps * (1.0 if Delta.item() >= 0 else -1.0)
                n = 1 - E @ rho
                rows.append(((w * n)[:, None] * V).sum(0) / d)
    o = torch.stack(rows).reshape(B, H, Lq, -1)
    return o.permute(0, 2, 1, 3)


# ---- writing a candidate and running plx ------------------------------------------------------
def write_candidate(path, tensors, dtype):
    """tensors: name -> float tensor; stored in `dtype` as a harness would."""
    with h5py.File(path, "w") as f:
        for name, x in tensors.items():
            a = x.detach().to(torch.float32 if dtype != "float64" else torch.float64)
            if dtype == "bfloat16":
                bits = a.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
                f.create_dataset(name, data=bits).attrs["format"] = "bfloat16"
            elif dtype == "float16":
                bits = a.to(torch.float16).numpy().view(np.uint16)
                f.create_dataset(name, data=bits).attrs["format"] = "float16"
            else:
                f.create_dataset(name, data=a.numpy())


def plx_check(plx, fixture, candidate):
    r = subprocess.run([plx, "check", "--json", "--fixture", fixture, "--candidate", candidate],
                       capture_output=True, text=True)
    rep = None
    if r.stdout.strip():
        try:
            rep = json.loads(r.stdout)
        except json.JSONDecodeError:
            rep = None
    return r.returncode, rep, r.stdout + r.stderr


def run_case(plx, path, tmp, kind, wrong=None):
    """Run one candidate on one fixture; returns (exit code, report, text)."""
    with h5py.File(path, "r") as f:
        p = json.loads(f.attrs["problem"])
        wd = work_dtype(p)
        names = ["q", "k", "v", "dO"] + (["r"] if p["probe"] == "learned" else [])
        t = {n: torch.tensor(read_input(f, n), dtype=wd if kind != "lla" else torch.float64) for n in names}
        lam = np.asarray(f["lambda"][()]) if "lambda" in f else None
        has_grads = "dq" in f
    mask = start_aligned_mask(p) if wrong == "start_aligned" else allowed_mask(p)
    grad_inputs = [n for n in ("q", "k", "v", "r") if n in t]
    if has_grads:
        for n in grad_inputs:
            t[n].requires_grad_(True)
    if kind == "softmax":
        o = sdpa_softmax(p, t, mask)
    elif kind == "parallax":
        o = parallax_closed(p, t, mask, shift=(wrong != "unshifted"))
    else:
        o = lla_query_centred(p, t, mask, lam, detached=(wrong == "detached"))
    out = {"out": o}
    if has_grads:
        o.backward(t["dO"])
        for n in grad_inputs:
            out["d" + n] = t[n].grad
    # Storage: out in the fixture dtype (a kernel's output), gradients in fp32 (fp64 fixtures: fp64).
    cand = os.path.join(tmp, f"{os.path.basename(path)[:-3]}.{kind}.{wrong or 'ok'}.cand.h5")
    odt = p["dtype"]
    gdt = "float64" if p["dtype"] == "float64" else "float32"
    write_candidate(cand, {"out": out["out"]}, odt)
    if has_grads:
        with h5py.File(cand, "a") as f:
            for n, g in out.items():
                if n != "out":
                    f.create_dataset(n, data=g.detach().to(torch.float64 if gdt == "float64" else torch.float32).numpy())
    return plx_check(plx, path, cand)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--plx", required=True)
    ap.add_argument("--fixtures", required=True)
    a = ap.parse_args()
    failures = []

    def expect(cond, msg):
        print(("ok   " if cond else "FAIL ") + msg)
        if not cond:
            failures.append(msg)

    files = sorted(glob.glob(os.path.join(a.fixtures, "*.h5")))
    expect(len(files) > 0, f"golden fixtures found in {a.fixtures}")
    with tempfile.TemporaryDirectory(prefix="plx-torch-") as tmp:
        for path in files:
            with h5py.File(path, "r") as f:
                p = json.loads(f.attrs["problem"])
            name = os.path.basename(path)
            kind = {"softmax": "softmax", "parallax": "parallax", "parallax_centred": "parallax"}.get(p["member"])
            if kind is None:
                continue
            rc, rep, text = run_case(a.plx, path, tmp, kind)
            expect(rc == 0, f"{name}: torch {kind} passes plx check (exit {rc})")
            if rc != 0:
                print(text)

        # Wrong candidate 1: start-aligned causal mask on an Lq != Lkv case.
        for name in ("softmax_cross_f32.h5", "parallax_cross_f32.h5"):
            path = os.path.join(a.fixtures, name)
            kind = "softmax" if name.startswith("softmax") else "parallax"
            rc, rep, text = run_case(a.plx, path, tmp, kind, wrong="start_aligned")
            expect(rc == 1, f"{name}: start-aligned mask fails with exit 1 (got {rc})")
            if rep is None:
                expect(False, f"{name}: JSON report parsed\n{text}")
                continue
            t = {x["tensor"]: x for x in rep["tensors"]}
            expect(not t["out"]["passed"], f"{name}: report flags 'out'")
            with h5py.File(path, "r") as f:
                p = json.loads(f.attrs["problem"])
            o = t["out"]
            wi = o["worst_index"]
            expect(len(wi) == 4 and wi[1] < p["Lq"] and abs(o["worst_candidate"] - o["worst_truth"]) == o["max_abs"],
                   f"{name}: out's worst index {wi} is a query row with both values reported")
            expect(o["max_rel"] > 1e-2, f"{name}: out's error is structural (max_rel {o['max_rel']:.3g} >> rounding)")
            for g in ("dk", "dv"):
                if g in t:
                    expect(not t[g]["passed"], f"{name}: report flags '{g}' (gradients to the keys the mask dropped)")

        # Fragile candidate: Algorithm 1 without the docs/math.md §7.1 shift, on the z - zbar cancellation
        # fixture. It is not wrong in exact arithmetic; plx must still flag it, because in fp32 it
        # is worse than the same-precision baseline (measured 30 Nov: dq 6x, dk 2x the limit).
        path = os.path.join(a.fixtures, "parallax_z_cancel_f32.h5")
        if os.path.exists(path):
            rc, rep, text = run_case(a.plx, path, tmp, "parallax", wrong="unshifted")
            expect(rc == 1, f"parallax_z_cancel_f32.h5: unshifted Algorithm 1 fails with exit 1 (got {rc})")
            if rep is not None:
                t = {x["tensor"]: x for x in rep["tensors"]}
                bad = [n for n in ("out", "dq", "dk", "dv", "dr") if n in t and not t[n]["passed"]]
                expect("dq" in bad, f"parallax_z_cancel_f32.h5: report flags dq (flagged: {bad})")
        else:
            expect(False, "parallax_z_cancel_f32.h5 present")

        # Wrong candidate 2: the Detached (FlashLLA) ridge gradient on an LLA case; the exact one passes.
        path = os.path.join(a.fixtures, "lla_direct_f32.h5")
        rc, rep, text = run_case(a.plx, path, tmp, "lla")
        expect(rc == 0, f"lla_direct_f32.h5: torch LLA (exact gradient) passes (exit {rc})")
        if rc != 0:
            print(text)
        rc, rep, text = run_case(a.plx, path, tmp, "lla", wrong="detached")
        expect(rc == 1, f"lla_direct_f32.h5: Detached ridge gradient fails with exit 1 (got {rc})")
        if rep is not None:
            t = {x["tensor"]: x for x in rep["tensors"]}
            expect(t["out"]["passed"], "lla_direct_f32.h5: forward of the Detached candidate still passes")
            bad = [n for n in ("dq", "dk", "dv") if n in t and not t[n]["passed"]]
            expect("dq" in bad or "dk" in bad, f"lla_direct_f32.h5: report flags the gradient tensors {bad}")
    print(f"torch_client: {'PASS' if not failures else 'FAIL'} ({len(failures)} failed assertions)")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
