#!/usr/bin/env python3
"""PNG plots of dytrain runs and sweeps; called by `dytrain plot` and `dytrain sweep report`.

  dytrain_plots.py run RUN_DIR      RUN_DIR/plots/{loss,lr,grad_norm,alpha,alpha_vs_inv_std}.png
  dytrain_plots.py sweep SWEEP_DIR  SWEEP_DIR/report/heatmap_<panel>.png (from report/cells.csv) and
                                    SWEEP_DIR/report/alpha_inv_std/<point>.png for every point (report/points.csv)

A heatmap shows per cell the mean of the loss that ranks the panel (cells.csv rank_loss) over the finished seeds
that logged it, "mean ±h" (half their range) where two or more did, the best cell boxed in solid red and the cells
within the panel's seed spread of the best in dashed red (the report computes all of these; the plot only draws them).

Design decisions: the standard library reads metrics.jsonl (json) and the CSVs (csv), so matplotlib is the only
dependency (Debian: python3-matplotlib); the Agg backend draws without a display; each PNG is written under a
temporary name and renamed, like every other dytrain output; figures are small (dpi 90) to stay cheap to commit.
"""
import csv
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

DPI = 90


def save(fig, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def null_to_nan(value):
    """metrics.jsonl writes a non-finite value as null (JSON has no NaN): plot it as a gap."""
    if value is None:
        return float("nan")
    if isinstance(value, dict):
        return {k: null_to_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [null_to_nan(v) for v in value]
    return value


def read_metrics(run_dir):
    path = os.path.join(run_dir, "metrics.jsonl")
    lines = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                lines.append(null_to_nan(json.loads(line)))
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{n}: not a JSON metrics line ({e})")
    return lines


def site_series(lines):
    """{(layer, site): (steps, alpha, inv_std)} in the order the sites first appear."""
    out = {}
    for m in lines:
        for s in m.get("sites", []):
            steps, alpha, inv_std = out.setdefault((s["layer"], s["site"]), ([], [], []))
            steps.append(m["step"])
            alpha.append(s["alpha"])
            inv_std.append(s["inv_std"])
    return out


def pearson(x, y):
    n = len(x)
    if n < 3:
        return float("nan")
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx <= 0 or syy <= 0:
        return float("nan")
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / math.sqrt(sxx * syy)


def site_label(layer, site):
    return "final" if layer < 0 else f"layer {layer} {site}"


def line_plot(path, title, ylabel, curves, log_y=False):
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, xs, ys in curves:
        ax.plot(xs, ys, label=label, marker="o" if len(xs) < 3 else None)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log_y:
        ax.set_yscale("log")
    if len(curves) > 1:
        ax.legend(fontsize=7, ncol=2 if len(curves) > 6 else 1)
    ax.grid(alpha=0.3)
    save(fig, path)


def alpha_vs_inv_std(path, title, series):
    """alpha against 1/std of the DyT input: one panel per site kind (attn, ffn, final), one trajectory per layer
    over training (a dot marks its start), with the mean Pearson r over the layers in the panel title.

    A scatter of the pair shows directly whether alpha follows 1/std; three panels keep the figure cheap to draw
    for every run of a sweep, whatever the depth."""
    kinds = [k for k in ("attn", "ffn", "final") if any(site == k for _, site in series)]
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.4 * len(kinds), 3.2), squeeze=False)
    cmap = matplotlib.colormaps["viridis"]
    n_layers = max(1, max(layer for layer, _ in series) + 1)
    for ax, kind in zip(axes.flat, kinds):
        rs = []
        for (layer, site), (_, alpha, inv_std) in series.items():
            if site != kind:
                continue
            color = cmap(max(layer, 0) / max(1, n_layers - 1))
            ax.plot(inv_std, alpha, color=color, linewidth=1, label=site_label(layer, site) if layer >= 0 else None)
            ax.plot(inv_std[:1], alpha[:1], "o", color=color, markersize=3)
            r = pearson(alpha, inv_std)
            if not math.isnan(r):
                rs.append(r)
        mean_r = f"mean r = {sum(rs) / len(rs):+.2f}" if rs else "r undefined"
        ax.set_title(f"{kind} ({mean_r})", fontsize=9)
        ax.set_xlabel("1 / std of the DyT input", fontsize=8)
        ax.set_ylabel("alpha", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if kind != "final" and n_layers <= 8:
            ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    save(fig, path)


def plot_run(run_dir):
    lines = read_metrics(run_dir)
    if not lines:
        sys.exit(f"{run_dir}/metrics.jsonl holds no lines yet")
    name = os.path.basename(os.path.normpath(run_dir))
    out = os.path.join(run_dir, "plots")
    steps = [m["step"] for m in lines]
    val = [(m["step"], m["val_loss"]) for m in lines if "val_loss" in m]
    curves = [("train", steps, [m["loss"] for m in lines])]
    if val:
        curves.append(("val", [s for s, _ in val], [v for _, v in val]))
    line_plot(os.path.join(out, "loss.png"), f"{name}: loss", "loss (nats)", curves)
    line_plot(os.path.join(out, "lr.png"), f"{name}: learning rate", "lr", [("lr", steps, [m["lr"] for m in lines])])
    line_plot(os.path.join(out, "grad_norm.png"), f"{name}: gradient norm (before clipping)", "grad norm",
              [("grad_norm", steps, [m["grad_norm"] for m in lines])], log_y=True)
    series = site_series(lines)
    if series:
        line_plot(os.path.join(out, "alpha.png"), f"{name}: DyT alpha", "alpha",
                  [(site_label(*k), s, a) for k, (s, a, _) in series.items()])
        alpha_vs_inv_std(os.path.join(out, "alpha_vs_inv_std.png"), f"{name}: alpha and 1/std of the DyT input",
                         series)
    print(f"plots in {out}")


def heatmap(path, panel, cells, statuses):
    """cells: the rows of cells.csv for one panel; statuses: (alpha_attn, alpha_ffn) -> statuses of its points, to
    label a cell none of whose seeds finished."""
    aa = sorted({float(c["alpha_attn"]) for c in cells})
    af = sorted({float(c["alpha_ffn"]) for c in cells})
    # Colour by the loss the report ranked the panel by (rank_loss, the same in every row of it), so that the plot
    # and the report cannot disagree on the best cell.
    loss = cells[0]["rank_loss"]
    key = loss + "_mean"
    grid = [[float("nan")] * len(af) for _ in aa]
    labels = [[""] * len(af) for _ in aa]
    best, within = None, []
    for c in cells:
        i, j = aa.index(float(c["alpha_attn"])), af.index(float(c["alpha_ffn"]))
        if int(c["n_seeds"]) > 0 and c[key]:
            grid[i][j] = float(c[key])
            labels[i][j] = f"{grid[i][j]:.3f}"
            if int(c["n_seeds"]) >= 2:
                labels[i][j] += f"\n±{(float(c[loss + '_max']) - float(c[loss + '_min'])) / 2:.3f}"
            if c["n_seeds"] != c["n_points"]:
                labels[i][j] += f"\n({c['n_seeds']} of {c['n_points']} seeds)"
        else:
            labels[i][j] = ", ".join(sorted(set(statuses.get((c["alpha_attn"], c["alpha_ffn"]), ["-"]))))
        if c["best"] == "1":
            best = (i, j)
        if c["within_spread"] == "1":
            within.append((i, j))
    fig, ax = plt.subplots(figsize=(1.3 * len(af) + 2.2, 1.0 * len(aa) + 1.4))
    cmap = matplotlib.colormaps["viridis_r"].copy()
    cmap.set_bad("lightgray")
    im = ax.imshow(grid, cmap=cmap, origin="lower", aspect="auto")
    for i in range(len(aa)):
        for j in range(len(af)):
            ax.text(j, i, labels[i][j], ha="center", va="center", fontsize=8,
                    fontweight="bold" if (i, j) == best else "normal",
                    color="white" if not math.isnan(grid[i][j]) and im.norm(grid[i][j]) > 0.5 else "black")
    if best:
        ax.add_patch(plt.Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    for i, j in within:
        ax.add_patch(plt.Rectangle((j - 0.45, i - 0.45), 0.9, 0.9, fill=False, edgecolor="red", linewidth=1.5,
                                   linestyle="--"))
    ax.set_xticks(range(len(af)), [f"{v:g}" for v in af])
    ax.set_yticks(range(len(aa)), [f"{v:g}" for v in aa])
    ax.set_xlabel("alpha_ffn (and alpha_final)")
    ax.set_ylabel("alpha_attn")
    seeds = max(int(c["n_points"]) for c in cells)
    title = f"{panel}: {loss} loss"
    if seeds > 1:
        title += "\nmean over seeds ±h; dashed: within the seed spread of the best"
    ax.set_title(title, fontsize=10 if seeds == 1 else 8)
    fig.colorbar(im, ax=ax, label="loss (nats)")
    save(fig, path)


def read_csv(report, name, sweep_dir):
    path = os.path.join(report, name)
    if not os.path.exists(path):
        sys.exit(f"{path} not found: run `dytrain sweep report {sweep_dir}` first")
    with open(path) as f:
        return list(csv.DictReader(f))


def plot_sweep(sweep_dir):
    report = os.path.join(sweep_dir, "report")
    points = read_csv(report, "points.csv", sweep_dir)
    cells = read_csv(report, "cells.csv", sweep_dir)
    statuses = {}
    for p in points:
        statuses.setdefault((p["panel"], p["alpha_attn"], p["alpha_ffn"]), []).append(
            "non-finite" if p["status"] == "done" else p["status"])
    panels = {}
    for c in cells:
        # Calibrated cells (alpha_calib_c set; the column is absent from reports before it) have no alpha grid.
        if c["norm"] == "dyt" and not c.get("alpha_calib_c"):
            panels.setdefault(c["panel"], []).append(c)
    for panel, rows in panels.items():
        heatmap(os.path.join(report, f"heatmap_{panel}.png"), panel, rows,
                {(a, f): s for (p, a, f), s in statuses.items() if p == panel})
    for p in points:
        run_dir = os.path.join(sweep_dir, p["name"])
        if p["norm"] != "dyt" or not os.path.exists(os.path.join(run_dir, "metrics.jsonl")):
            continue
        series = site_series(read_metrics(run_dir))
        if series:
            alpha_vs_inv_std(os.path.join(report, "alpha_inv_std", p["name"] + ".png"),
                             f"{p['name']} ({p['status']}): alpha and 1/std of the DyT input", series)
    print(f"{len(panels)} heatmaps and per-run alpha plots in {report}")


def main(argv):
    if len(argv) != 3 or argv[1] not in ("run", "sweep"):
        sys.exit(__doc__)
    (plot_run if argv[1] == "run" else plot_sweep)(argv[2])


if __name__ == "__main__":
    main(sys.argv)
