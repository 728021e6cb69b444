#!/usr/bin/env python3
"""Summarizes the runs of run.sh: per width and recipe, validation loss at step 200 (mean and spread over seeds),
final saturation and alpha per site type, and Pearson r of alpha with inv_std over training, per site type.
Usage: summarize.py RUNS_DIR > table.md"""
import json, math, os, sys
from collections import defaultdict

def pearson(x, y):
    n = len(x)
    if n < 3: return float("nan")
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x); syy = sum((b - my) ** 2 for b in y)
    if sxx <= 0 or syy <= 0: return float("nan")
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / math.sqrt(sxx * syy)

runs = sys.argv[1]
rows = defaultdict(list)  # (width, recipe) -> per-seed dicts
for name in sorted(os.listdir(runs)):
    path = os.path.join(runs, name, "metrics.jsonl")
    if not os.path.isfile(path): continue
    w, recipe, seed = name.split("_", 1)[0][1:], name.rsplit("_", 1)[0].split("_", 1)[1], name.rsplit("_s", 1)[1]
    lines = [json.loads(l) for l in open(path) if l.strip()]
    if not lines or lines[-1]["step"] != 200: continue
    val = [l["val_loss"] for l in lines if l.get("val_loss") is not None][-1]
    per = defaultdict(lambda: {"alpha": [], "inv": []})
    for l in lines:
        for s in l["sites"]:
            per[s["site"]]["alpha"].append(s["alpha"]); per[s["site"]]["inv"].append(s["inv_std"])
    last = lines[-1]["sites"]
    stats = {}
    for kind in ("attn", "ffn", "final"):
        sites = [s for s in last if s["site"] == kind]
        stats[kind] = dict(sat=sum(s["sat"] for s in sites) / len(sites),
                           alpha=sum(s["alpha"] for s in sites) / len(sites))
        # r per site, averaged over the layers of that type
        rs = []
        for layer in sorted({s["layer"] for s in sites}):
            a = [x["alpha"] for l in lines for x in l["sites"] if x["site"] == kind and x["layer"] == layer]
            i = [x["inv_std"] for l in lines for x in l["sites"] if x["site"] == kind and x["layer"] == layer]
            rs.append(pearson(a, i))
        stats[kind]["r"] = sum(rs) / len(rs)
    rows[(int(w), recipe)].append(dict(seed=seed, val=val, **{k: v for k, v in stats.items()}))

print("| width | recipe | seeds | val loss (mean, spread) | sat attn / ffn / final | "
      "alpha attn / ffn / final (step 200) | r(alpha, inv_std) attn / ffn / final |")
print("|---|---|---|---|---|---|---|")
for (w, recipe), rs in sorted(rows.items()):
    vals = [r["val"] for r in rs]
    mean = sum(vals) / len(vals)
    spread = (max(vals) - min(vals)) if len(vals) > 1 else float("nan")
    def avg(kind, key): return sum(r[kind][key] for r in rs) / len(rs)
    dyt = recipe.startswith("dyt")
    sat = " / ".join(f"{avg(k, 'sat'):.2f}" for k in ("attn", "ffn", "final")) if dyt else "-"
    alpha = " / ".join(f"{avg(k, 'alpha'):.2f}" for k in ("attn", "ffn", "final")) if dyt else "-"
    r = " / ".join(f"{avg(k, 'r'):+.2f}" for k in ("attn", "ffn", "final")) if dyt else "-"
    spread_s = f"{spread:.3f}" if not math.isnan(spread) else "one seed"
    print(f"| {w} | {recipe} | {len(rs)} | {mean:.3f} ({spread_s}) | {sat} | {alpha} | {r} |")
