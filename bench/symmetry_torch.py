#!/usr/bin/env python3
"""An independent fp32 LLA (tests/python/torch_client.py's query-centred LLA, run in float32
with PyTorch) on every committed query-anchored direct LLA fixture, under feature-axis
permutations of q and k (an exact symmetry): error/limit of `plx check` per tensor and
variant. Usage: bench/symmetry_torch.py PLX [VARIANTS]. Prints one line per fixture:
the range of error/limit over the variants, per tensor (docs/reliability.md quotes it)."""
import json, os, subprocess, sys, tempfile
import numpy as np, torch, h5py
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "python"))
import torch_client as tc

plx = sys.argv[1]
nvar = int(sys.argv[2]) if len(sys.argv) > 2 else 8
golden = os.path.join(here, "..", "fixtures", "golden")
rng = np.random.default_rng(20261207)
with tempfile.TemporaryDirectory() as tmp:
    for name in sorted(os.listdir(golden)):
        if not name.endswith(".h5"):
            continue
        path = os.path.join(golden, name)
        with h5py.File(path, "r") as f:
            p = json.loads(f.attrs["problem"])
            if p["probe"] != "solver" or p["anchor"] != "query" or p["solver"]["method"] != "direct" or p["solver"]["block"] not in (0, p["D"]):
                continue
            base = {n: tc.read_input(f, n) for n in ("q", "k", "v", "dO")}
            lam = np.asarray(f["lambda"][()])
            has_grads = "dq" in f
        mask = tc.allowed_mask(p)
        ratios = {}
        for var in range(nvar):
            perm = np.arange(p["D"]) if var == 0 else rng.permutation(p["D"])
            t = {n: torch.tensor(x, dtype=torch.float32) for n, x in base.items()}
            t["q"], t["k"] = t["q"][..., perm].clone(), t["k"][..., perm].clone()
            for n in ("q", "k", "v"):
                t[n].requires_grad_(has_grads)
            o = tc.lla_query_centred(p, t, mask, torch.tensor(lam, dtype=torch.float32), detached=False)
            out = {"out": o}
            if has_grads:
                o.backward(t["dO"])
                inv = np.argsort(perm)
                out["dq"], out["dk"], out["dv"] = t["q"].grad[..., inv], t["k"].grad[..., inv], t["v"].grad
            cand = os.path.join(tmp, "c.h5")
            with h5py.File(cand, "w") as f:
                for n, x in out.items():
                    f.create_dataset(n, data=x.detach().to(torch.float32).numpy())
            r = subprocess.run([plx, "check", "--json", "--fixture", path, "--candidate", cand], capture_output=True, text=True)
            rep = json.loads(r.stdout)
            for tt in rep["tensors"]:
                ratios.setdefault(tt["tensor"], []).append((tt["worst_limit_ratio"], tt["status"]))
        line = ", ".join(f"{n} {min(x for x, _ in v):.2f}-{max(x for x, _ in v):.2f} ({'/'.join(sorted(set(s for _, s in v)))})"
                         for n, v in ratios.items())
        print(f"{name}: {nvar} variants: {line}", flush=True)
