#!/usr/bin/env python3
"""Validation loss at step 200 against width, per recipe: the mean over seeds, bars from the lowest to the highest
seed. Usage: /usr/bin/python3 plot_width.py RUNS_DIR OUT.png   (python3 with matplotlib)"""
import json, os, sys
from collections import defaultdict
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

runs, out = sys.argv[1], sys.argv[2]
recipes = ["dyt_fixed", "dyt_depth", "rms_fixed", "rms_depth"]
vals = defaultdict(list)  # (recipe, width) -> val losses over seeds
for name in os.listdir(runs):
    path = os.path.join(runs, name, "metrics.jsonl")
    if not os.path.isfile(path):
        continue
    width, rest = name.split("_", 1)
    recipe = rest.rsplit("_s", 1)[0]
    lines = [json.loads(l) for l in open(path) if l.strip()]
    if recipe in recipes and lines and lines[-1]["step"] == 200:
        vals[(recipe, int(width[1:]))].append([l["val_loss"] for l in lines if l.get("val_loss") is not None][-1])
fig, ax = plt.subplots(figsize=(6, 4))
for i, recipe in enumerate(recipes):
    widths = sorted(w for r, w in vals if r == recipe)
    mean = [sum(vals[(recipe, w)]) / len(vals[(recipe, w)]) for w in widths]
    lo = [m - min(vals[(recipe, w)]) for m, w in zip(mean, widths)]
    hi = [max(vals[(recipe, w)]) - m for m, w in zip(mean, widths)]
    x = [w * (1 + 0.03 * (i - 1.5)) for w in widths]  # side by side, so the bars do not overlap
    ax.errorbar(x, mean, yerr=[lo, hi], marker="o" if recipe.startswith("dyt") else "s", capsize=3,
                linestyle="-" if recipe.endswith("depth") else "--", label=recipe)
ax.set_xscale("log", base=2)
ax.set_xticks([64, 128, 256], ["64", "128", "256"])
ax.set_xlabel("width")
ax.set_ylabel("validation loss at step 200 (nats)")
ax.set_title("DyT and RMSNorm, fixed 0.02 vs scaled_depth init, paper optimizer", fontsize=9)
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(out, dpi=120)
