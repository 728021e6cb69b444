#!/usr/bin/env python3
"""Validation loss along each alpha axis at each width, from a sweep report's cells.csv.

Left: against alpha_attn, right: against alpha_ffn, each along the line of the grid with the most cells (through the
best cell when that ties; a cross's arm otherwise). Losses are relative to the width's best cell, so the widths
share one scale; bars span the seeds' min-max where two finished.

    /usr/bin/python3 plot_axes.py SWEEP_DIR/report/cells.csv axes.png
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(cells_csv, out_png):
    with open(cells_csv) as f:
        cells = [c for c in csv.DictReader(f) if c["norm"] == "dyt" and not c.get("alpha_calib_c") and c["val_mean"]]
    widths = sorted({int(c["width"]) for c in cells})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for w in widths:
        mine = [c for c in cells if int(c["width"]) == w]
        best = min(mine, key=lambda c: float(c["val_mean"]))
        base = float(best["val_mean"])
        for ax, axis, other in ((axes[0], "alpha_attn", "alpha_ffn"), (axes[1], "alpha_ffn", "alpha_attn")):
            # The line with the most cells (a cross's arm), through the best cell when that ties.
            counts = {}
            for c in mine:
                counts[c[other]] = counts.get(c[other], 0) + 1
            at = max(counts, key=lambda v: (counts[v], v == best[other]))
            line = sorted((c for c in mine if c[other] == at), key=lambda c: float(c[axis]))
            x = [float(c[axis]) for c in line]
            y = [float(c["val_mean"]) - base for c in line]
            lo = [float(c["val_mean"]) - float(c["val_min"]) for c in line]
            hi = [float(c["val_max"]) - float(c["val_mean"]) for c in line]
            ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3,
                        label=f"width {w} ({other} {float(at):g})")
    for ax, axis in zip(axes, ("alpha_attn", "alpha_ffn")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"{axis} (alpha0)")
        ax.axhline(0, color="grey", lw=0.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("val loss - best cell of the width (nats)")
    fig.suptitle("alpha0 axes at each width (200 steps, seed 1; bars: seeds 1-2 min-max)")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
