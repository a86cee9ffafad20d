#!/usr/bin/env python3
"""bench/stability/plot.py — figures and docs/stability.md from the study's sweep CSVs.

Usage: plot.py DATA_DIR [--figures docs/figures] [--doc docs/stability.md]
         [--template bench/stability/stability.md.in] [--meta meta.json]

DATA_DIR holds one CSV per study sweep (bench/stability/*.json, written by `plx sweep`). Every
figure is the median over seeds (markers) with the seeds' min..max as a band. The document is
the template with every {{key}} replaced by a number computed here from the same CSVs, so the
prose and the figures come from one run. Needs Debian's python3-matplotlib (and nothing else).
"""
import argparse
import csv
import json
import math
import os
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FORMAT = 1


def load(path):
    with open(path, newline="") as f:
        first = f.readline().strip()
        if not first.startswith("# plx-sweep format "):
            sys.exit(f"plot.py: {path} is not a plx sweep CSV")
        v = int(first.split()[3])
        if v != FORMAT:
            sys.exit(f"plot.py: {path} is sweep format {v}; this script reads format {FORMAT}")
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, x in list(r.items()):
            try:
                r[k] = float(x) if x not in ("",) else math.nan
            except ValueError:
                pass
    return rows


def group(rows, keys, x, y, where=None):
    """{key tuple: sorted [(x, median, lo, hi)]} over rows with status ok and finite y."""
    g = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["status"] != "ok" or (where and not where(r)):
            continue
        v = r[y]
        if isinstance(v, float) and math.isfinite(v):
            g[tuple(r[k] for k in keys)][r[x]].append(v)
    out = {}
    for k, d in g.items():
        out[k] = sorted((xx, statistics.median(vs), min(vs), max(vs)) for xx, vs in d.items())
    return out


def floor_y(v, lo=1e-18):
    return max(v, lo)


def lines(ax, series, label_fn, logx=True, logy=True, symlog=False):
    for k, pts in sorted(series.items(), key=lambda kv: str(kv[0])):
        xs = [p[0] for p in pts]
        ax.plot(xs, [floor_y(p[1]) for p in pts], marker="o", ms=3, label=label_fn(k))
        ax.fill_between(xs, [floor_y(p[2]) for p in pts], [floor_y(p[3]) for p in pts], alpha=0.15)
    if symlog:
        ax.set_xscale("symlog", linthresh=1)
    elif logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.grid(True, which="major", alpha=0.3)


def save(fig, figdir, name, made):
    path = os.path.join(figdir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    made.append(name)


def med(rows, col, where):
    v = [r[col] for r in rows if r["status"] == "ok" and where(r) and math.isfinite(r[col])]
    return statistics.median(v) if v else math.nan


def mx(rows, col, where):
    v = [r[col] for r in rows if r["status"] == "ok" and where(r) and math.isfinite(r[col])]
    return max(v) if v else math.nan


def fmt(x):
    if isinstance(x, str):
        return x
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if x == 0:
        return "0"
    if abs(x) >= 1e4 or abs(x) < 1e-2:
        m, e = f"{x:.2e}".split("e")
        return f"{m}e{int(e)}"
    return f"{x:.3g}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--figures", default="docs/figures")
    ap.add_argument("--doc", default="docs/stability.md")
    ap.add_argument("--template", default=os.path.join(os.path.dirname(__file__), "stability.md.in"))
    ap.add_argument("--meta", default=None, help="JSON with run facts (command, date, seconds, machine)")
    a = ap.parse_args()
    os.makedirs(a.figures, exist_ok=True)
    D = {}
    for name in ["L", "zcancel", "key_offset", "cond", "lambda", "cg", "hazards", "delta_eps", "masked", "rowbound"]:
        p = os.path.join(a.data, name + ".csv")
        if os.path.exists(p):
            D[name] = load(p)
    V = {}  # template values
    made = []
    fwd_bwd = [("out", "forward: out"), ("dq", "backward: dq"), ("dk", "backward: dk")]

    if "L" in D:
        rows = D["L"]
        fig, axs = plt.subplots(1, 3, figsize=(13, 3.8))
        for ax, (t, title) in zip(axs, fwd_bwd):
            lines(ax, group(rows, ["member"], "Lkv", t + "_norm"), lambda k: k[0], logx=True)
            ax.set_xlabel("L (= Lq = Lkv)")
            ax.set_ylabel("normwise relative error")
            ax.set_title(title + " (fp32, f32 inputs)")
        axs[0].legend(fontsize=8)
        save(fig, a.figures, "stability_L.png", made)
        for m in ["softmax", "parallax", "parallax_centred", "lla", "lla_cov"]:
            for t in ["out", "dq"]:
                for L in [32, 256]:
                    V[f"L_{m}_{t}_{L}"] = fmt(med(rows, t + "_norm", lambda r, m=m, L=L: r["member"] == m and r["Lkv"] == L))

    if "zcancel" in D:
        rows = D["zcancel"]
        fig, axs = plt.subplots(1, 3, figsize=(13, 3.8))
        for ax, (t, title) in zip(axs, [("out", "forward: out"), ("dq", "backward: dq"), ("dr", "backward: dr")]):
            lines(ax, group(rows, ["member", "candidate"], "gen_param", t + "_norm"), lambda k: f"{k[0]}, {k[1]}")
            ax.set_xlabel("key offset c of z_cancel (zbar/sigma_z ~ 0.9 c)")
            ax.set_ylabel("normwise relative error")
            ax.set_title(title)
        axs[0].legend(fontsize=7)
        save(fig, a.figures, "stability_zbar_sigma.png", made)
        for m in ["parallax", "parallax_centred"]:
            for t in ["out", "dq", "dr"]:
                for c in [1, 4096]:
                    V[f"z_{m}_{t}_{c}"] = fmt(med(rows, t + "_norm", lambda r, m=m, c=c: r["member"] == m and r["gen_param"] == c and r["candidate"] == "fp32"))
        for c in [1, 4096]:
            V[f"z_zs_{c}"] = fmt(med(rows, "zs_med", lambda r, c=c: r["gen_param"] == c))

    if "key_offset" in D:
        rows = D["key_offset"]
        fig, axs = plt.subplots(2, 2, figsize=(11, 7))
        for i, dt in enumerate(["float32", "bfloat16"]):
            for j, (t, title) in enumerate([("out", "forward: out"), ("dq", "backward: dq")]):
                ax = axs[i][j]
                lines(ax, group(rows, ["member", "candidate"], "key_offset", t + "_norm", lambda r, dt=dt: r["dtype"] == dt),
                      lambda k: f"{k[0]}, {k[1]}", symlog=True)
                ax.set_xlabel("common key offset c (keys + c u)")
                ax.set_ylabel("normwise relative error")
                ax.set_title(f"{title}, {dt} inputs and stored outputs")
        axs[0][0].legend(fontsize=7)
        save(fig, a.figures, "stability_key_offset.png", made)
        for m in ["softmax", "parallax_centred"]:
            for c in ["fp32", "fp32-saved"]:
                for dt in ["float32", "bfloat16"]:
                    for off in [0, 64, 1024]:
                        V[f"ko_{m}_{c}_{dt}_{off}"] = fmt(med(rows, "dq_norm", lambda r, m=m, c=c, dt=dt, off=off: r["member"] == m and r["candidate"] == c and r["dtype"] == dt and r["key_offset"] == off))
                    a0 = med(rows, "dq_norm", lambda r, m=m, c=c, dt=dt: r["member"] == m and r["candidate"] == c and r["dtype"] == dt and r["key_offset"] == 0)
                    for off in [64, 1024]:
                        a1 = med(rows, "dq_norm", lambda r, m=m, c=c, dt=dt, off=off: r["member"] == m and r["candidate"] == c and r["dtype"] == dt and r["key_offset"] == off)
                        V[f"kogrow_{m}_{c}_{dt}_{off}"] = fmt(a1 / a0 if a0 and a0 > 0 else math.nan)

    if "cond" in D:
        rows = D["cond"]
        fig, axs = plt.subplots(1, 3, figsize=(13, 3.8))
        for ax, (t, title) in zip(axs, fwd_bwd):
            lines(ax, group(rows, ["member"], "gen_param", t + "_norm"), lambda k: k[0])
            ax.set_xlabel("cond(cov(k)) of the anisotropic generator")
            ax.set_ylabel("normwise relative error")
            ax.set_title(title + " (fp32, lambda = 1e-4)")
        axs[0].legend(fontsize=8)
        save(fig, a.figures, "stability_cond.png", made)
        for m in ["lla", "lla_cov"]:
            for g in [1, 1e8]:
                V[f"cond_{m}_out_{g:g}"] = fmt(med(rows, "out_norm", lambda r, m=m, g=g: r["member"] == m and r["gen_param"] == g))
                V[f"cond_{m}_condS_{g:g}"] = fmt(med(rows, "condS_max", lambda r, m=m, g=g: r["member"] == m and r["gen_param"] == g))
                V[f"cond_{m}_condC_{g:g}"] = fmt(med(rows, "condC_max", lambda r, m=m, g=g: r["member"] == m and r["gen_param"] == g))
            V[f"cond_{m}_fail"] = str(sum(1 for r in rows if r["member"] == m and r["status"] != "ok"))
        V["cond_items"] = str(len(rows) // 2)

    if "lambda" in D:
        rows = D["lambda"]
        fig, axs = plt.subplots(1, 2, figsize=(11, 3.8))
        for t, ls in [("out", "-"), ("dq", "--"), ("dk", ":")]:
            s = group(rows, ["member"], "solver.lambda", t + "_norm", lambda r: r["candidate"] == "fp32")
            lines(axs[0], s, lambda k, t=t: f"{k[0]} {t}")
        axs[0].set_title("fp32 rounding error vs lambda")
        for t in ["dq", "dk", "dv"]:
            s = group(rows, ["member"], "solver.lambda", t + "_norm", lambda r: r["candidate"] == "fp64-detached")
            lines(axs[1], s, lambda k, t=t: f"{k[0]} {t}")
        axs[1].set_title("Detached ridge gradient vs Exact (relative difference)")
        for ax in axs:
            ax.set_xlabel("lambda")
            ax.set_ylabel("normwise relative error")
            ax.legend(fontsize=7)
        save(fig, a.figures, "stability_lambda.png", made)
        for m in ["lla", "lla_cov"]:
            for lam in [1e-4, 1e-1, 10]:
                for t in ["dq", "dk"]:
                    V[f"ridge_{m}_{t}_{lam:g}"] = fmt(med(rows, t + "_norm", lambda r, m=m, lam=lam: r["member"] == m and r["candidate"] == "fp64-detached" and abs(r["solver.lambda"] - lam) < 1e-9 * lam))
                V[f"lam_{m}_out_{lam:g}"] = fmt(med(rows, "out_norm", lambda r, m=m, lam=lam: r["member"] == m and r["candidate"] == "fp32" and abs(r["solver.lambda"] - lam) < 1e-9 * lam))

    if "cg" in D:
        rows = D["cg"]
        fig, axs = plt.subplots(1, 2, figsize=(11, 3.8))
        lines(axs[0], group(rows, ["gen_param"], "solver.cg_max_iters", "cgerr_max"), lambda k: f"cond(cov k) = {k[0]:g}", logx=False)
        axs[0].set_title("CG iterate vs direct solve (max over rows)")
        axs[0].set_ylabel("relative error of the probe rho")
        for t in ["out", "dq"]:
            lines(axs[1], group(rows, ["gen_param"], "solver.cg_max_iters", t + "_norm"), lambda k, t=t: f"{t}, cond {k[0]:g}", logx=False)
        axs[1].set_title("fp32 vs the same-iteration truth")
        axs[1].set_ylabel("normwise relative error")
        for ax in axs:
            ax.set_xlabel("CG iterations")
            ax.legend(fontsize=7)
        save(fig, a.figures, "stability_cg.png", made)
        for g in [10, 1000]:
            for it in [1, 4, 16, 32]:
                V[f"cg_{g}_{it}_err"] = fmt(med(rows, "cgerr_max", lambda r, g=g, it=it: r["gen_param"] == g and r["solver.cg_max_iters"] == it))
                V[f"cg_{g}_{it}_out"] = fmt(med(rows, "out_norm", lambda r, g=g, it=it: r["gen_param"] == g and r["solver.cg_max_iters"] == it))

    if "hazards" in D:
        rows = D["hazards"]
        gens = ["normal", "large_scale", "outliers", "sink", "near_duplicate"]
        members = ["softmax", "parallax", "parallax_centred", "lla_cov"]
        fig, axs = plt.subplots(2, 2, figsize=(12, 7))
        for i, dt in enumerate(["float32", "bfloat16"]):
            for j, t in enumerate(["out", "dq"]):
                ax = axs[i][j]
                w = 0.8 / len(members)
                for mi, m in enumerate(members):
                    ys = [floor_y(med(rows, t + "_norm", lambda r, g=g, m=m, dt=dt: r["gen"] == g and r["member"] == m and r["dtype"] == dt)) for g in gens]
                    ax.bar([x + mi * w for x in range(len(gens))], ys, width=w, label=m)
                ax.set_xticks([x + 0.4 - w / 2 for x in range(len(gens))])
                ax.set_xticklabels(gens, fontsize=8)
                ax.set_yscale("log")
                ax.set_ylabel("normwise relative error")
                ax.set_title(f"{t}, fp32 arithmetic, {dt} inputs and stored outputs")
        axs[0][0].legend(fontsize=7)
        save(fig, a.figures, "stability_hazards.png", made)
        tab = ["| generator | member | out f32 | dq f32 | out bf16 | dq bf16 |", "|---|---|---|---|---|---|"]
        for g in gens:
            for m in members:
                c = [fmt(med(rows, t + "_norm", lambda r, g=g, m=m, dt=dt, t=t: r["gen"] == g and r["member"] == m and r["dtype"] == dt)) for dt in ["float32", "bfloat16"] for t in ["out", "dq"]]
                tab.append(f"| {g} | {m} | {c[0]} | {c[1]} | {c[2]} | {c[3]} |")
        V["hazard_table"] = "\n".join(tab)
        # Tolerances per dtype from the data: the largest row-wise relative error over every member
        # and generator, and what it is in units of the dtype's unit roundoff.
        tt = ["| stored dtype | tensor | median row error | p90 (max over items) | max row error | max / u(dtype) |", "|---|---|---|---|---|---|"]
        for dt, u in [("float32", 2.0**-24), ("bfloat16", 2.0**-8)]:
            for t in ["out", "dq", "dk", "dv"]:
                m_ = med(rows, t + "_row_med", lambda r, dt=dt: r["dtype"] == dt)
                p9 = mx(rows, t + "_row_p90", lambda r, dt=dt: r["dtype"] == dt)
                x = mx(rows, t + "_row_max", lambda r, dt=dt: r["dtype"] == dt)
                tt.append(f"| {dt} | {t} | {fmt(m_)} | {fmt(p9)} | {fmt(x)} | {fmt(x / u)} |")
                V[f"tol_{dt}_{t}"] = fmt(x)
                V[f"tolu_{dt}_{t}"] = fmt(x / u)
        V["tolerance_table"] = "\n".join(tt)

    if "delta_eps" in D:
        rows = D["delta_eps"]
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for e in sorted(set(r["anchor_knobs.delta_eps"] for r in rows)):
            pts = [(r["dw_min"], r["out_row_max"]) for r in rows if r["anchor_knobs.delta_eps"] == e and r["status"] == "ok"]
            ax.scatter([p[0] for p in pts], [floor_y(p[1]) for p in pts], label=f"delta_eps = {e:g}", s=14)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("min over rows of |Delta| / omega")
        ax.set_ylabel("worst row: relative error of out (fp32)")
        ax.set_title("FlashLLA: the denominator Delta near zero")
        ax.legend(fontsize=7)
        ax.grid(True, alpha=0.3)
        save(fig, a.figures, "stability_lla_denominator.png", made)
        for e in [0, 1e-12, 1e-6, 1e-2]:
            V[f"de_{e:g}_rowmax"] = fmt(mx(rows, "out_row_max", lambda r, e=e: r["anchor_knobs.delta_eps"] == e))
            V[f"de_{e:g}_dw"] = fmt(min((r["dw_min"] for r in rows if r["anchor_knobs.delta_eps"] == e and r["status"] == "ok"), default=math.nan))
            V[f"de_{e:g}_fail"] = str(sum(1 for r in rows if r["anchor_knobs.delta_eps"] == e and r["status"] != "ok"))

    if "masked" in D:
        rows = D["masked"]
        tab = ["| member | window | start | min keys per row | out error (max over seeds) | dq | dk |", "|---|---|---|---|---|---|---|"]
        for r0 in sorted({(r["member"], r["window"], r["start"]) for r in rows}, key=str):
            sel = lambda r, r0=r0: (r["member"], r["window"], r["start"]) == r0
            tab.append(f"| {r0[0]} | {r0[1]:g} | {r0[2]} | {fmt(mx(rows, 'n_keys_min', sel))} | {fmt(mx(rows, 'out_norm', sel))} | {fmt(mx(rows, 'dq_norm', sel))} | {fmt(mx(rows, 'dk_norm', sel))} |")
        V["masked_table"] = "\n".join(tab)

    if "rowbound" in D:
        rows = D["rowbound"]
        tab = ["| tensor | rows | rows over the bound | coverage | median bound/error (worst item) | max error/(u M) |", "|---|---|---|---|---|---|"]
        for t in ["out", "dq", "dk", "dv", "dr"]:
            n = sum(r[t + "_rb_n"] for r in rows if r["status"] == "ok" and math.isfinite(r[t + "_rb_n"]))
            v = sum(r[t + "_rb_viol"] for r in rows if r["status"] == "ok" and math.isfinite(r[t + "_rb_viol"]))
            lo = mx(rows, t + "_rb_loose_med", lambda r: True)
            rm = mx(rows, t + "_rb_ratio_max", lambda r: True)
            tab.append(f"| {t} | {int(n)} | {int(v)} | {fmt(100 * (1 - v / n) if n else math.nan)} % | {fmt(lo)} | {fmt(rm)} |")
        V["rowbound_table"] = "\n".join(tab)

    if a.meta and os.path.exists(a.meta):
        with open(a.meta) as f:
            for k, x in json.load(f).items():
                V["meta_" + k] = str(x)
    V["figures"] = ", ".join(made)
    if os.path.exists(a.template):
        with open(a.template) as f:
            text = f.read()
        missing = []
        import re

        def sub(m):
            k = m.group(1)
            if k not in V:
                missing.append(k)
                return "n/a"
            return V[k]

        text = re.sub(r"\{\{([A-Za-z0-9_.+-]+)\}\}", sub, text)
        if missing:
            sys.exit("plot.py: the template names values this data does not give: " + ", ".join(sorted(set(missing))))
        tmp = a.doc + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, a.doc)
    print("plot.py: wrote " + ", ".join(made) + (f" and {a.doc}" if os.path.exists(a.template) else ""))
    if os.environ.get("PLOT_VALUES"):
        for k in sorted(V):
            if "table" not in k:
                print(k, V[k])


if __name__ == "__main__":
    main()
