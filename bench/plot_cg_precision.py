#!/usr/bin/python3
"""Plot docs/figures/cg_precision.png from the CSV that bench/cg_precision.cpp prints.

Usage: /usr/bin/python3 bench/plot_cg_precision.py docs/figures/cg_precision.csv docs/figures/cg_precision.png [row]
Needs python3-matplotlib (Debian). One panel per ridge lambda for one query row: the relative
deviation of each precision's iterate from the same recurrence run in 300-digit MPFR, against
the iteration count k, for plain CG, the eps-CG recurrence (with +1e-10 in the step) and Lanczos
with full reorthogonalisation; the grey line is the exact iterate's distance to the direct solve.
"""
import csv
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

src, dst = sys.argv[1], sys.argv[2]
row = sys.argv[3] if len(sys.argv) > 3 else "48"
rows = [r for r in csv.DictReader(open(src)) if r["row"] == row]
lams = sorted({r["lambda"] for r in rows}, key=float, reverse=True)
colors = {"double": "tab:red", "dd": "tab:blue", "qd": "tab:green", "bf50": "tab:purple"}
styles = {"plain": "-", "spec": "--", "lanczos": ":"}
names = {"plain": "plain CG", "spec": "eps-CG (+1e-10 in the step)", "lanczos": "Lanczos, full reorth."}
fig, axes = plt.subplots(1, len(lams), figsize=(5.2 * len(lams), 4.6), sharey=True)
for ax, lam in zip(axes, lams):
    sel = [r for r in rows if r["lambda"] == lam]
    cond, stopk = float(sel[0]["cond"]), int(sel[0]["stopk"])
    for var in ["plain", "spec", "lanczos"]:
        for prec in ["double", "dd", "qd", "bf50"]:
            pts = [(int(r["k"]), max(float(r["dev"]), 1e-70)) for r in sel if r["variant"] == var and r["prec"] == prec]
            if not pts:
                continue
            ax.semilogy(*zip(*pts), styles[var], color=colors[prec], lw=1.4,
                        label=f"{names[var]}, {prec}" if ax is axes[0] else None)
    err = [(int(r["k"]), max(float(r["err_direct"]), 1e-70)) for r in sel if r["variant"] == "spec" and r["prec"] == "dd"]
    ax.semilogy(*zip(*err), "-", color="0.6", lw=3, alpha=0.6,
                label="|x_k - x*| / |x*| (eps-CG, exact)" if ax is axes[0] else None)
    ax.axvline(stopk, color="k", lw=0.8, ls="-.")
    ax.set_title(f"lambda = {lam}: cond(Sigma) = {cond:.3g}, stop test fires at k = {stopk}", fontsize=9)
    ax.set_xlabel("iterations k")
    ax.set_ylim(1e-66, 10)
    ax.grid(True, which="major", alpha=0.3)
axes[0].set_ylabel("relative deviation from the 300-digit iterate")
fig.legend(loc="lower center", ncol=4, fontsize=8, frameon=False)
fig.suptitle("CG iterate for one LLA row (bf16 inputs, D = 64, query row %s, %s keys) in finite precision" % (row, int(row) + 1), fontsize=11)
fig.tight_layout(rect=(0, 0.14, 1, 0.96))
fig.savefig(dst, dpi=110)
