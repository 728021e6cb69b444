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

#include "trainer/checkpoint/atomic_file.h"
#include "trainer/sweep/fit.h"
#include "trainer/sweep/plots.h"
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

std::vector<const PointResult*> select(const std::vector<PointResult>& points,
                                       const std::function<bool(const PointResult&)>& keep) {
  std::vector<const PointResult*> out;
  for (const auto& p : points)
    if (keep(p)) out.push_back(&p);
  return out;
}

// One alpha_attn x alpha_ffn table of a panel; the best cell in bold.
void panel_table(std::ostringstream& s, const std::vector<const PointResult*>& panel) {
  std::set<double> aa, af;
  for (const auto* p : panel) {
    aa.insert(p->alpha_attn);
    af.insert(p->alpha_ffn);
  }
  const PointResult* best = best_point(panel);
  s << "| alpha_attn \\ alpha_ffn |";
  for (double f : af) s << " " << format_number(f) << " |";
  s << "\n|---|";
  for (size_t i = 0; i < af.size(); ++i) s << "---|";
  s << "\n";
  for (double a : aa) {
    s << "| " << format_number(a) << " |";
    for (double f : af) {
      const auto it = std::find_if(panel.begin(), panel.end(),
                                   [&](const PointResult* p) { return p->alpha_attn == a && p->alpha_ffn == f; });
      if (it == panel.end()) s << "  |";
      else if (*it == best) s << " **" << cell(**it) << "** |";
      else s << " " << cell(**it) << " |";
    }
    s << "\n";
  }
}

// Whether the best value lies on the edge of a grid of three or more values: the optimum may lie outside.
bool on_edge(double v, const std::set<double>& values) {
  return values.size() >= 3 && (v == *values.begin() || v == *values.rbegin());
}

struct WidthBest {
  int width;
  const PointResult* best;
  bool edge;  // alpha_attn or alpha_ffn at the edge of its swept range
};

std::vector<WidthBest> best_per_width(const std::vector<PointResult>& points) {
  std::vector<WidthBest> out;
  std::set<int> widths;
  for (const auto& p : points)
    if (p.norm == "dyt") widths.insert(p.width);
  for (int w : widths) {
    const auto cands = select(points, [&](const PointResult& p) { return p.norm == "dyt" && p.width == w; });
    const PointResult* b = best_point(cands);
    if (!b) continue;
    std::set<double> aa, af;
    for (const auto* p : cands) {
      aa.insert(p->alpha_attn);
      af.insert(p->alpha_ffn);
    }
    out.push_back({w, b, on_edge(b->alpha_attn, aa) || on_edge(b->alpha_ffn, af)});
  }
  return out;
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
  if (best.size() < 3)
    fit.note = "two widths: any power law passes through both points, so R^2 = 1 says nothing; sweep three or more "
               "widths for a fit that can be judged";
  return fit;
}

std::string points_csv(const std::vector<PointResult>& points) {
  std::string s =
      "name,panel,width,norm,alpha_attn,alpha_ffn,alpha_final,beta2,eps,lr,seed,status,steps,max_steps,train_loss,"
      "val_loss,max_sat\n";
  for (const auto& p : points)
    s += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", p.name, p.panel, p.width, p.norm,
                     format_number(p.alpha_attn), format_number(p.alpha_ffn), format_number(p.alpha_final),
                     format_number(p.beta2), format_number(p.eps), format_number(p.lr), p.seed, p.status, p.steps, p.max_steps,
                     csv_number(p.train_loss), csv_number(p.val_loss), csv_number(p.max_sat));
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
  s << "# Sweep report: " << fs::path(opt.sweep_dir).filename().string() << "\n\n" << points.size() << " points:";
  for (const auto& [status, n] : counts) s << " " << n << " " << status << ";";
  s << fmt::format(
      "\n\nCells: final train loss (mean of the last {} logged losses) / validation loss (last logged), in nats. "
      "**Bold**: best of the table, by validation loss (by train loss when a finished run has none). Diverged "
      "points were stopped early and are never best.\n",
      opt.smooth_k);

  std::set<int> widths;
  for (const auto& p : points) widths.insert(p.width);
  for (int w : widths) {
    s << "\n## Width " << w << "\n";
    std::vector<std::string> panels;
    for (const auto& p : points)
      if (p.width == w && p.norm == "dyt" && std::find(panels.begin(), panels.end(), p.panel) == panels.end())
        panels.push_back(p.panel);
    for (const auto& name : panels) {
      const auto panel = select(points, [&](const PointResult& p) { return p.panel == name; });
      s << "\n### " << name << fmt::format(" (beta2 {}, eps {}, lr {})\n\n", format_number(panel[0]->beta2),
                                           format_number(panel[0]->eps), format_number(panel[0]->lr));
      panel_table(s, panel);
      if (const PointResult* b = best_point(panel))
        s << fmt::format("\nBest: alpha_attn {}, alpha_ffn {} ({} loss {:.4f}).\n", format_number(b->alpha_attn),
                         format_number(b->alpha_ffn), rank_by_val(panel) ? "val" : "train",
                         rank_by_val(panel) ? *b->val_loss : *b->train_loss);
    }
    const auto baselines = select(points, [&](const PointResult& p) { return p.width == w && p.norm != "dyt"; });
    if (!baselines.empty()) {
      s << "\nBaselines:\n\n| run | train / val |\n|---|---|\n";
      for (const auto* p : baselines) s << "| " << p->name << " | " << cell(*p) << " |\n";
    }
  }

  const auto best = best_per_width(points);
  s << "\n## Best alpha0 per width\n\n| width | alpha_attn | alpha_ffn | beta2 | train loss | val loss | point |\n"
       "|---|---|---|---|---|---|---|\n";
  for (const auto& b : best)
    s << fmt::format("| {} | {} | {} | {} | {} | {} | {}{} |\n", b.width, format_number(b.best->alpha_attn),
                     format_number(b.best->alpha_ffn), format_number(b.best->beta2), loss_text(b.best->train_loss),
                     loss_text(b.best->val_loss), b.best->name,
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
  write_file_atomic((dir / "alpha_inv_std_corr.csv").string(), correlations_csv(points));
  std::vector<int> unswept;
  std::set<int> swept;
  for (const auto& p : points) swept.insert(p.width);
  for (int w : opt.recommend_widths)
    if (!swept.count(w)) unswept.push_back(w);
  // A fit from an earlier report of this directory must not outlive the points it came from.
  if (const auto fit = fit_alpha(best_per_width(points)))
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
