#include "trainer/sweep/report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "trainer/checkpoint/atomic_file.h"
#include "trainer/sweep/fit.h"
#include "trainer/sweep/plots.h"
#include "trainer/sweep/report_cells.h"
#include "trainer/sweep/spec.h"

namespace dytrain {
namespace {

namespace fs = std::filesystem;

std::string loss_text(const std::optional<double>& x) { return x ? fmt::format("{:.4f}", *x) : "-"; }
std::string csv_number(const std::optional<double>& x) { return x ? fmt::format("{:.17g}", *x) : ""; }

std::string cell(const PointResult& p) {
  if (p.status == "diverged") return "diverged";
  if (p.status == "failed") return "failed";
  std::string s = loss_text(p.train_loss) + " / " + loss_text(p.val_loss);
  if (p.status != "done") s += fmt::format(" ({} {}/{})", p.status, p.steps, p.max_steps);
  return s;
}

std::vector<const CellResult*> select_cells(const std::vector<CellResult>& cells,
                                            const std::function<bool(const CellResult&)>& keep) {
  std::vector<const CellResult*> out;
  for (const auto& c : cells)
    if (keep(c)) out.push_back(&c);
  return out;
}

std::optional<double> mean_of(const std::optional<LossRange>& r) {
  return r ? std::optional(r->mean) : std::nullopt;
}

std::string seeds_text(int n) { return fmt::format("{} seed{}", n, n == 1 ? "" : "s"); }

// A cell of one run keeps the text of that run. Several seeds: the means over the finished seeds, +- half the range
// of the ranking loss after it, how many seeds that range holds (its spread needs two), and how many of the others
// ended how.
std::string cell_text(const CellResult& c, bool by_val) {
  if (c.points.size() == 1) return cell(*c.points[0]);
  std::map<std::string, int> left_out;
  for (const PointResult* p : c.points)
    if (!finished(*p)) ++left_out[p->status == "done" ? "non-finite" : p->status];
  std::string missing;
  for (const auto& [status, n] : left_out)
    missing += fmt::format("{}{} of {} {}", missing.empty() ? "" : "; ", n, seeds_text(int(c.points.size())), status);
  if (c.n_finished == 0) return missing;
  const auto& r = rank_range(c, by_val);
  const std::string pm = r && r->n >= 2 ? fmt::format(" ± {:.4f}", (r->max - r->min) / 2) : "";
  // No seed with the ranking loss (it logged only the other one): the count is of the seeds the shown mean holds.
  const int n = r ? r->n : c.n_finished;
  return loss_text(mean_of(c.train)) + (by_val ? "" : pm) + " / " + loss_text(mean_of(c.val)) + (by_val ? pm : "") +
         " (" + seeds_text(n) + (missing.empty() ? "" : "; " + missing) + ")";
}

std::string point_names(const CellResult& c) {
  std::string names;
  for (const PointResult* p : c.points) names += (names.empty() ? "" : ", ") + p->name;
  return names;
}

std::string alphas_text(const CellResult& c) {
  return fmt::format("alpha_attn {}, alpha_ffn {}", format_number(c.alpha_attn), format_number(c.alpha_ffn));
}

bool is_within(const PanelNoise& noise, const CellResult* c) {
  return std::find(noise.within.begin(), noise.within.end(), c) != noise.within.end();
}

// One alpha_attn x alpha_ffn table of a panel; the best cell in bold, the cells within the seed spread of it marked.
void panel_table(std::ostringstream& s, const std::vector<const CellResult*>& panel, const PanelNoise& noise) {
  std::set<double> aa, af;
  for (const auto* c : panel) {
    aa.insert(c->alpha_attn);
    af.insert(c->alpha_ffn);
  }
  s << "| alpha_attn \\ alpha_ffn |";
  for (double f : af) s << " " << format_number(f) << " |";
  s << "\n|---|";
  for (size_t i = 0; i < af.size(); ++i) s << "---|";
  s << "\n";
  for (double a : aa) {
    s << "| " << format_number(a) << " |";
    for (double f : af) {
      const auto it = std::find_if(panel.begin(), panel.end(),
                                   [&](const CellResult* c) { return c->alpha_attn == a && c->alpha_ffn == f; });
      if (it == panel.end()) s << "  |";
      else if (*it == noise.best) s << " **" << cell_text(**it, noise.by_val) << "** |";
      else s << " " << cell_text(**it, noise.by_val) << (is_within(noise, *it) ? " ≈ |" : " |");
    }
    s << "\n";
  }
}

// The "Best:" line of a panel: the winner, and whether the sweep measured enough noise to call it one.
void best_line(std::ostringstream& s, const PanelNoise& noise) {
  const CellResult* b = noise.best;
  if (!b) return;
  const char* loss = noise.by_val ? "val" : "train";
  const LossRange& r = *rank_range(*b, noise.by_val);
  s << fmt::format("\nBest: {} ({} loss {:.4f}{}).", alphas_text(*b), loss, r.mean,
                   r.n >= 2 ? fmt::format(", mean of {} seeds", r.n) : "");
  // Covers one seed per cell as well as cells whose other seeds diverged, failed, did not finish or lack the loss.
  if (!noise.spread) {
    s << fmt::format(" No cell has two seeds finished with a {} loss: the run-to-run spread is not measured; "
                     "differences below it cannot be judged.\n",
                     loss);
    return;
  }
  const std::string seeds = noise.min_seeds == noise.max_seeds ? std::to_string(noise.min_seeds)
                                                              : fmt::format("{}-{}", noise.min_seeds, noise.max_seeds);
  s << fmt::format(" Seed spread {:.4f} (the largest max - min over the {} cell{} with {} seeds).", *noise.spread,
                   noise.spread_cells, noise.spread_cells == 1 ? "" : "s", seeds);
  if (noise.within.empty()) {
    s << " No other cell is within it: the best leads every other cell by more than the seed spread.\n";
    return;
  }
  s << " Within it of the best (≈), not distinguishable from it:";
  const double best = rank_range(*b, noise.by_val)->mean;
  for (size_t i = 0; i < noise.within.size(); ++i)
    s << fmt::format("{} {} (+{:.4f})", i ? ";" : "", alphas_text(*noise.within[i]),
                     rank_range(*noise.within[i], noise.by_val)->mean - best);
  s << ".\n";
}

// Whether the best value lies on the edge of a grid of three or more values: the optimum may lie outside.
bool on_edge(double v, const std::set<double>& values) {
  return values.size() >= 3 && (v == *values.begin() || v == *values.rbegin());
}

// A panel's cells, keyed by the panel name.
std::map<std::string, PanelNoise> noise_per_panel(const std::vector<CellResult>& cells) {
  std::map<std::string, PanelNoise> out;
  for (const auto& c : cells)
    if (!out.count(c.panel))
      out[c.panel] = panel_noise(select_cells(cells, [&](const CellResult& o) { return o.panel == c.panel; }));
  return out;
}

struct WidthBest {
  int width;
  const CellResult* best;
  bool by_val;                   // the loss it was ranked by
  bool edge;                     // alpha_attn or alpha_ffn at the edge of its swept range
  int seeds;                     // the seeds of its ranking loss's range
  std::optional<double> spread;  // the seed spread of the best cell's panel
  std::optional<AlphaSpan> near; // the alphas its panel cannot tell from it; nullopt: no spread to judge them by
};

// A DyT cell with alpha0 set by alpha_attn / alpha_ffn, not calibrated: a cell of an alpha_attn x alpha_ffn table.
bool fixed_alpha(const CellResult& c) { return c.norm == "dyt" && !c.alpha_calib_c; }

// Per width the best fixed-alpha DyT cell over every panel of that width, by mean loss.
std::vector<WidthBest> best_per_width(const std::vector<CellResult>& cells) {
  std::vector<WidthBest> out;
  std::set<int> widths;
  for (const auto& c : cells)
    if (fixed_alpha(c)) widths.insert(c.width);
  const auto noise = noise_per_panel(cells);
  for (int w : widths) {
    const auto cands = select_cells(cells, [&](const CellResult& c) { return fixed_alpha(c) && c.width == w; });
    const PanelNoise n = panel_noise(cands);
    const CellResult* b = n.best;
    if (!b) continue;
    std::set<double> aa, af;
    for (const auto* c : cands) {
      aa.insert(c->alpha_attn);
      af.insert(c->alpha_ffn);
    }
    // The panel's ≈ cells are relative to its own best: this cell, unless the panel ranks by the other loss than the
    // width does (a seed of another panel of this width lacks a val loss), and then its spread cannot judge this one.
    const PanelNoise& pn = noise.at(b->panel);
    out.push_back({w, b, n.by_val, on_edge(b->alpha_attn, aa) || on_edge(b->alpha_ffn, af), rank_range(*b, n.by_val)->n,
                   pn.spread, pn.best == b ? alphas_near_best(pn) : std::nullopt});
  }
  return out;
}

// The sweep folder's own name, also when it is given as "." or with the trailing slash a shell's completion adds
// (the last component of those is "." or empty).
std::string sweep_name(const std::string& dir) {
  const fs::path p = fs::weakly_canonical(fs::absolute(dir));
  return (p.has_filename() ? p : p.parent_path()).filename().string();
}

std::string alpha0_text(const std::optional<double>& a) { return a ? fmt::format("{:.4g}", *a) : "-"; }

// One panel of calibrated cells against the best fixed-alpha cell of their width (nullptr: none finished). The
// difference uses the loss that ranked that cell, and the same ≈ rule as a table, with that cell's table's spread.
void calibrated_table(std::ostringstream& s, const std::vector<const CellResult*>& panel, const WidthBest* fixed) {
  const bool by_val = fixed ? fixed->by_val : rank_by_val(panel);
  const char* loss = by_val ? "val" : "train";
  s << "\n### Calibrated alpha0: " << panel[0]->panel
    << fmt::format(" (beta2 {}, eps {}, lr {})\n\n", format_number(panel[0]->beta2), format_number(panel[0]->eps),
                   format_number(panel[0]->lr))
    << "Each DyT site's alpha0 = c / std of its input on the first batch (model.alpha_init: calibrated). alpha0 "
       "attn / ffn: the alphas at the first logged step (step 1, whose forward runs with alpha0), averaged over the "
       "attention / FFN sites and over the seeds. ";
  if (!fixed) {
    s << "No fixed-alpha cell of this width finished: there is nothing to compare with.\n";
  } else {
    s << fmt::format("Δ best fixed: the mean {} loss minus that of the best fixed-alpha cell of this width ({}, "
                     "{} loss {:.4f})",
                     loss, alphas_text(*fixed->best), loss, rank_range(*fixed->best, by_val)->mean);
    if (fixed->spread)
      s << fmt::format("; ≈: |Δ| within the seed spread of that cell's table ({:.4f}), not distinguishable "
                       "from it.\n",
                       *fixed->spread);
    else
      s << "; its table measured no seed spread, so no difference can be judged.\n";
  }
  s << "\n| c | train / val | alpha0 attn | alpha0 ffn | Δ best fixed | points |\n|---|---|---|---|---|---|\n";
  for (const CellResult* c : panel) {
    std::string delta = "-";
    if (const auto& r = rank_range(*c, by_val); fixed && r) {
      const double d = r->mean - rank_range(*fixed->best, by_val)->mean;
      delta = fmt::format("{:+.4f}", d) + (fixed->spread && within_spread(d, *fixed->spread) ? " ≈" : "");
    }
    s << fmt::format("| {} | {} | {} | {} | {} | {} |\n", format_number(*c->alpha_calib_c), cell_text(*c, by_val),
                     alpha0_text(c->alpha0_attn), alpha0_text(c->alpha0_ffn), delta, point_names(*c));
  }
}

// The "≈ best" column: per site the alpha of the best cell, or the range of those its panel cannot tell from it.
std::string near_text(const std::optional<AlphaSpan>& s) {
  if (!s) return "-";
  auto range = [](double lo, double hi) { return format_number(lo) + (lo == hi ? "" : "-" + format_number(hi)); };
  return "attn " + range(s->attn_min, s->attn_max) + ", ffn " + range(s->ffn_min, s->ffn_max);
}

std::string join_widths(const std::vector<int>& ws) {
  return fmt::format("width{} {}", ws.size() == 1 ? "" : "s", fmt::join(ws, ", "));
}

// A site's optimum is unresolved at a width when a cell with another alpha of that site is within the seed spread of
// the best, or no spread is measured: noise picks the best alpha there, and with it the fitted exponent (on a flat
// axis the winner can alternate between neighbours from width to width, and any slope results). Empty: resolved.
std::string unresolved_note(const std::vector<WidthBest>& best, const char* site, bool attn) {
  std::vector<int> widths, unmeasured;
  std::vector<std::string> ranges;
  for (const auto& b : best) {
    if (!b.near) {
      widths.push_back(b.width);
      unmeasured.push_back(b.width);
      continue;
    }
    const double lo = attn ? b.near->attn_min : b.near->ffn_min, hi = attn ? b.near->attn_max : b.near->ffn_max;
    if (lo == hi) continue;
    widths.push_back(b.width);
    ranges.push_back(fmt::format("{} to {} at width {}", format_number(lo), format_number(hi), b.width));
  }
  if (widths.empty()) return "";
  std::vector<std::string> why;
  if (!ranges.empty()) why.push_back(fmt::format("within the seed spread of the best: {}", fmt::join(ranges, ", ")));
  if (!unmeasured.empty()) why.push_back("no seed spread measured at " + join_widths(unmeasured));
  return fmt::format("{}'s optimum is not resolved at {} ({}): its fitted exponent is not a measurement; repeat "
                     "seeds there, or train longer, to separate those cells",
                     site, join_widths(widths), fmt::join(why, "; "));
}

std::optional<AlphaFit> fit_alpha(const std::vector<WidthBest>& best) {
  if (best.size() < 2) return std::nullopt;
  std::vector<double> w, aa, af;
  AlphaFit fit;
  for (const auto& b : best) {
    w.push_back(b.width);
    aa.push_back(b.best->alpha_attn);
    af.push_back(b.best->alpha_ffn);
    fit.widths.push_back(b.width);
  }
  fit.attn = fit_power_law(w, aa);
  fit.ffn = fit_power_law(w, af);
  std::vector<std::string> notes;
  if (best.size() < 3)
    notes.push_back("two widths: any power law passes through both points, so R^2 = 1 says nothing; sweep three or "
                    "more widths for a fit that can be judged");
  for (const auto& note : {unresolved_note(best, "alpha_attn", true), unresolved_note(best, "alpha_ffn", false)})
    if (!note.empty()) notes.push_back(note);
  fit.note = fmt::format("{}", fmt::join(notes, "; "));
  return fit;
}

// Empty for a fixed-alpha point or cell.
std::string calib_csv(const std::optional<double>& c) { return c ? format_number(*c) : ""; }

std::string points_csv(const std::vector<PointResult>& points) {
  std::string s =
      "name,panel,width,norm,alpha_attn,alpha_ffn,alpha_final,beta2,eps,lr,seed,status,steps,max_steps,train_loss,"
      "val_loss,max_sat,alpha_calib_c\n";
  for (const auto& p : points)
    s += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", p.name, p.panel, p.width, p.norm,
                     format_number(p.alpha_attn), format_number(p.alpha_ffn), format_number(p.alpha_final),
                     format_number(p.beta2), format_number(p.eps), format_number(p.lr), p.seed, p.status, p.steps,
                     p.max_steps, csv_number(p.train_loss), csv_number(p.val_loss), csv_number(p.max_sat),
                     calib_csv(p.alpha_calib_c));
  return s;
}

std::string csv_min(const std::optional<LossRange>& r) { return csv_number(r ? std::optional(r->min) : std::nullopt); }
std::string csv_max(const std::optional<LossRange>& r) { return csv_number(r ? std::optional(r->max) : std::nullopt); }

// One row per cell (several seeds, or one): the means the tables show, the ranges of both losses, which of them
// ranks the panel (the heatmap colours by it, so plot and report cannot disagree), the best cell of its panel and
// the cells within the seed spread of it, for the heatmaps and for scripts. n_seeds is the n of the ranking range.
std::string cells_csv(const std::vector<CellResult>& cells) {
  const auto noise = noise_per_panel(cells);
  std::string s =
      "panel,width,norm,alpha_attn,alpha_ffn,alpha_final,beta2,eps,lr,n_seeds,n_points,train_mean,val_mean,"
      "train_min,train_max,val_min,val_max,rank_loss,best,within_spread,alpha_calib_c\n";
  for (const auto& c : cells) {
    const PanelNoise& n = noise.at(c.panel);
    const auto& r = rank_range(c, n.by_val);
    s += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", c.panel, c.width, c.norm,
                     format_number(c.alpha_attn), format_number(c.alpha_ffn), format_number(c.alpha_final),
                     format_number(c.beta2), format_number(c.eps), format_number(c.lr), r ? r->n : 0,
                     c.points.size(), csv_number(mean_of(c.train)), csv_number(mean_of(c.val)), csv_min(c.train),
                     csv_max(c.train), csv_min(c.val), csv_max(c.val), n.by_val ? "val" : "train",
                     n.best == &c ? 1 : 0, is_within(n, &c) ? 1 : 0, calib_csv(c.alpha_calib_c));
  }
  return s;
}

std::string correlations_csv(const std::vector<PointResult>& points) {
  std::string s = "name,layer,site,r,n\n";
  for (const auto& p : points)
    for (const auto& c : p.correlations)
      s += fmt::format("{},{},{},{},{}\n", p.name, c.layer, c.site, std::isnan(c.r) ? "" : fmt::format("{:.6f}", c.r),
                       c.n);
  return s;
}

// Mean r over the layers of one site kind; "-" when no layer has a defined r.
std::string mean_r(const PointResult& p, const std::string& site) {
  double sum = 0;
  int n = 0;
  for (const auto& c : p.correlations)
    if (c.site == site && !std::isnan(c.r)) {
      sum += c.r;
      ++n;
    }
  return n ? fmt::format("{:+.3f}", sum / n) : "-";
}

}  // namespace

std::string report_markdown(const std::vector<PointResult>& points, const ReportOptions& opt) {
  std::ostringstream s;
  std::map<std::string, int> counts;
  for (const auto& p : points) ++counts[p.status];
  const auto cells = group_cells(points);
  const bool several_seeds =
      std::any_of(cells.begin(), cells.end(), [](const CellResult& c) { return c.points.size() > 1; });
  s << "# Sweep report: " << sweep_name(opt.sweep_dir) << "\n\n" << points.size() << " points:";
  for (const auto& [status, n] : counts) s << " " << n << " " << status << ";";
  s << fmt::format(
      "\n\nCells: final train loss (mean of the last {} logged losses) / validation loss (last logged), in nats. "
      "**Bold**: best of the table, by validation loss (by train loss when a finished run has none). Diverged "
      "points were stopped early and are never best.\n",
      opt.smooth_k);
  if (several_seeds)
    s << "\nA cell with several seeds shows train / val ± h (n seeds): the means over the n seeds that finished "
         "(diverged, failed and unfinished seeds are left out and counted), and h half the range of the ranking loss "
         "over them, so mean ± h spans the lowest and highest seed. The seed spread of a table is the largest "
         "max - min over its cells with two or more seeds; ≈ marks a cell whose mean is within that spread of the "
         "best mean: the sweep cannot tell it from the best.\n";

  const auto noise = noise_per_panel(cells);
  const auto best = best_per_width(cells);
  std::set<int> widths;
  for (const auto& p : points) widths.insert(p.width);
  for (int w : widths) {
    s << "\n## Width " << w << "\n";
    // The DyT panels of this width: the fixed-alpha tables first, then the calibrated ones.
    std::vector<std::string> panels, calibrated;
    for (const auto& c : cells) {
      auto& list = c.alpha_calib_c ? calibrated : panels;
      if (c.width == w && c.norm == "dyt" && std::find(list.begin(), list.end(), c.panel) == list.end())
        list.push_back(c.panel);
    }
    for (const auto& name : panels) {
      const auto panel = select_cells(cells, [&](const CellResult& c) { return c.panel == name; });
      s << "\n### " << name << fmt::format(" (beta2 {}, eps {}, lr {})\n\n", format_number(panel[0]->beta2),
                                           format_number(panel[0]->eps), format_number(panel[0]->lr));
      panel_table(s, panel, noise.at(name));
      best_line(s, noise.at(name));
    }
    const auto fixed = std::find_if(best.begin(), best.end(), [&](const WidthBest& b) { return b.width == w; });
    for (const auto& name : calibrated)
      calibrated_table(s, select_cells(cells, [&](const CellResult& c) { return c.panel == name; }),
                       fixed == best.end() ? nullptr : &*fixed);
    const auto baselines = select_cells(cells, [&](const CellResult& c) { return c.width == w && c.norm != "dyt"; });
    if (!baselines.empty()) {
      const bool by_val = rank_by_val(baselines);
      s << "\nBaselines:\n\n| run | train / val |\n|---|---|\n";
      for (const auto* c : baselines) s << "| " << point_names(*c) << " | " << cell_text(*c, by_val) << " |\n";
    }
  }

  const bool any_calibrated =
      std::any_of(cells.begin(), cells.end(), [](const CellResult& c) { return c.alpha_calib_c.has_value(); });
  s << "\n## Best alpha0 per width\n\nBy mean over the seeds of a cell; seed spread: that of the best cell's table "
       "(- when no cell of it has two seeds); ≈ best: per site, the alphas (min-max) of the best cell and of the "
       "cells of its table marked ≈, which the sweep cannot tell from it: a range means that site's optimum is not "
       "resolved (- when no spread is measured: then no cell can be told apart)."
    << (any_calibrated ? " Fixed-alpha cells only: the calibrated ones are compared with these in their own tables."
                       : "")
    << "\n\n"
       "| width | alpha_attn | alpha_ffn | beta2 | train loss | val loss | seeds | seed spread | ≈ best | points |\n"
       "|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& b : best)
    s << fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {}{} |\n", b.width,
                     format_number(b.best->alpha_attn), format_number(b.best->alpha_ffn), format_number(b.best->beta2),
                     loss_text(mean_of(b.best->train)), loss_text(mean_of(b.best->val)), b.seeds,
                     b.spread ? fmt::format("{:.4f}", *b.spread) : "-", near_text(b.near), point_names(*b.best),
                     b.edge ? " (at the edge of the grid: the optimum may lie outside)" : "");

  s << "\n## Fitted alpha0(width) = a * width^b\n\n";
  if (const auto fit = fit_alpha(best)) {
    s << "| site | a | b | R^2 (log-log) |\n|---|---|---|---|\n"
      << fmt::format("| attn | {:.4g} | {:.4f} | {:.4f} |\n", fit->attn.a, fit->attn.b, fit->attn.r2)
      << fmt::format("| ffn (and final) | {:.4g} | {:.4f} | {:.4f} |\n", fit->ffn.a, fit->ffn.b, fit->ffn.r2);
    if (!fit->note.empty()) s << "\nNote: " << fit->note << ".\n";
    s << "\nRecommended alpha0 for widths not swept (`dytrain sweep recommend report/alpha_fit.yaml --width W`):\n\n"
         "| width | alpha_attn | alpha_ffn |\n|---|---|---|\n";
    for (int w : opt.recommend_widths)
      if (!widths.count(w)) {
        const auto r = recommend_alpha(*fit, w);
        s << fmt::format("| {} | {:.3g} | {:.3g} |\n", w, r.alpha_attn, r.alpha_ffn);
      }
  } else {
    s << "No fit: it needs finished points at two or more widths (three for a fit that can be judged).\n";
  }

  s << "\n## alpha against inv_std\n\nPearson r of alpha with inv_std (1 / std of the DyT input) over the logged "
       "steps, averaged over layers per site (per layer in alpha_inv_std_corr.csv), and the saturation of the most "
       "saturated site at the end (the fraction of its inputs with |alpha x| > 2: near 1, that DyT passes only "
       "signs).\n\n| point | status | attn | ffn | final | max sat |\n|---|---|---|---|---|---|\n";
  for (const auto& p : points)
    if (p.norm == "dyt")
      s << fmt::format("| {} | {} | {} | {} | {} | {} |\n", p.name, p.status, mean_r(p, "attn"), mean_r(p, "ffn"),
                       mean_r(p, "final"), p.max_sat ? fmt::format("{:.3f}", *p.max_sat) : "-");
  return s.str();
}

int sweep_report(const ReportOptions& opt) {
  std::vector<PointResult> points;
  try {
    points = collect_results(opt.sweep_dir, opt.smooth_k);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dytrain sweep report: %s\n", e.what());
    return 2;
  }
  const fs::path dir = fs::path(opt.sweep_dir) / "report";
  fs::create_directories(dir);
  const std::string md = report_markdown(points, opt);
  write_file_atomic((dir / "report.md").string(), md);
  write_file_atomic((dir / "points.csv").string(), points_csv(points));
  const auto cells = group_cells(points);
  write_file_atomic((dir / "cells.csv").string(), cells_csv(cells));
  write_file_atomic((dir / "alpha_inv_std_corr.csv").string(), correlations_csv(points));
  std::vector<int> unswept;
  std::set<int> swept;
  for (const auto& p : points) swept.insert(p.width);
  for (int w : opt.recommend_widths)
    if (!swept.count(w)) unswept.push_back(w);
  // A fit from an earlier report of this directory must not outlive the points it came from.
  if (const auto fit = fit_alpha(best_per_width(cells)))
    write_file_atomic((dir / "alpha_fit.yaml").string(), alpha_fit_yaml(*fit, unswept));
  else
    fs::remove(dir / "alpha_fit.yaml");
  std::fputs(md.c_str(), opt.out);

  if (opt.plots) {
    std::string why;
    const int rc = run_plot_script({"sweep", opt.sweep_dir}, &why);
    if (rc < 0) std::fprintf(stderr, "dytrain sweep report: warning: heatmaps skipped: %s\n", why.c_str());
    else if (rc != 0) std::fprintf(stderr, "dytrain sweep report: warning: the plot script failed (exit %d)\n", rc);
    else std::fprintf(opt.out, "\nPlots in %s\n", dir.string().c_str());
  }
  std::fprintf(opt.out, "Report written to %s\n", (dir / "report.md").string().c_str());
  return 0;
}

}  // namespace dytrain
