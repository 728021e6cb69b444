#include "trainer/sweep/report_cells.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

namespace dytrain {
namespace {

// Losses in metrics.jsonl carry 9 significant digits: two means closer than this are equal as far as the logs know,
// so a cell exactly one spread from the best is not lost to rounding.
constexpr double kLoggedPrecision = 1e-8;

std::optional<LossRange> range_of(const std::vector<double>& xs) {
  if (xs.empty()) return std::nullopt;
  LossRange r{0, xs[0], xs[0], int(xs.size())};
  for (double x : xs) {
    r.mean += x;
    r.min = std::min(r.min, x);
    r.max = std::max(r.max, x);
  }
  r.mean /= double(xs.size());
  return r;
}

std::optional<double> mean_of(const std::vector<double>& xs) {
  const auto r = range_of(xs);
  return r ? std::optional(r->mean) : std::nullopt;
}

}  // namespace

bool finished(const PointResult& p) {
  if (p.status != "done" || (!p.train_loss && !p.val_loss)) return false;
  // A non-finite loss (null in metrics.jsonl) would make the mean NaN, and NaN compares false: it would stick as best.
  return (!p.train_loss || std::isfinite(*p.train_loss)) && (!p.val_loss || std::isfinite(*p.val_loss));
}

std::vector<CellResult> group_cells(const std::vector<PointResult>& points) {
  using Key = std::tuple<std::string, int, std::string, double, double, double, double, double, double,
                         std::optional<double>>;
  std::map<Key, size_t> index;
  std::vector<CellResult> cells;
  for (const auto& p : points) {
    const Key key{p.panel, p.width, p.norm, p.alpha_attn, p.alpha_ffn, p.alpha_final, p.beta2, p.eps, p.lr,
                  p.alpha_calib_c};
    const auto [it, added] = index.emplace(key, cells.size());
    if (added) {
      CellResult c;
      c.panel = p.panel;
      c.width = p.width;
      c.norm = p.norm;
      c.alpha_attn = p.alpha_attn;
      c.alpha_ffn = p.alpha_ffn;
      c.alpha_final = p.alpha_final;
      c.beta2 = p.beta2;
      c.eps = p.eps;
      c.lr = p.lr;
      c.alpha_calib_c = p.alpha_calib_c;
      cells.push_back(c);
    }
    cells[it->second].points.push_back(&p);
  }
  for (auto& c : cells) {
    std::vector<double> train, val, alpha0_attn, alpha0_ffn;
    for (const PointResult* p : c.points) {
      if (p->alpha0_attn) alpha0_attn.push_back(*p->alpha0_attn);
      if (p->alpha0_ffn) alpha0_ffn.push_back(*p->alpha0_ffn);
      if (!finished(*p)) continue;
      ++c.n_finished;
      if (p->train_loss) train.push_back(*p->train_loss);
      if (p->val_loss) val.push_back(*p->val_loss);
    }
    c.train = range_of(train);
    c.val = range_of(val);
    c.alpha0_attn = mean_of(alpha0_attn);
    c.alpha0_ffn = mean_of(alpha0_ffn);
  }
  return cells;
}

bool rank_by_val(const std::vector<const CellResult*>& cells) {
  for (const CellResult* c : cells)
    for (const PointResult* p : c->points)
      if (finished(*p) && !p->val_loss) return false;
  return true;
}

const std::optional<LossRange>& rank_range(const CellResult& c, bool by_val) { return by_val ? c.val : c.train; }

PanelNoise panel_noise(const std::vector<const CellResult*>& cells) {
  PanelNoise n;
  n.by_val = rank_by_val(cells);
  for (const CellResult* c : cells) {
    const auto& r = rank_range(*c, n.by_val);
    if (!r) continue;
    if (!n.best || r->mean < rank_range(*n.best, n.by_val)->mean) n.best = c;
    if (r->n < 2) continue;
    n.spread = std::max(n.spread.value_or(0.0), r->max - r->min);
    n.min_seeds = n.spread_cells ? std::min(n.min_seeds, r->n) : r->n;
    n.max_seeds = std::max(n.max_seeds, r->n);
    ++n.spread_cells;
  }
  if (!n.best || !n.spread) return n;
  const double best = rank_range(*n.best, n.by_val)->mean;
  for (const CellResult* c : cells) {
    const auto& r = rank_range(*c, n.by_val);
    if (c != n.best && r && within_spread(r->mean - best, *n.spread)) n.within.push_back(c);
  }
  return n;
}

bool within_spread(double diff, double spread) { return std::abs(diff) <= spread + kLoggedPrecision; }

std::optional<AlphaSpan> alphas_near_best(const PanelNoise& n) {
  if (!n.best || !n.spread) return std::nullopt;
  const CellResult& b = *n.best;
  AlphaSpan s{b.alpha_attn, b.alpha_attn, b.alpha_ffn, b.alpha_ffn};
  for (const CellResult* c : n.within) {
    s.attn_min = std::min(s.attn_min, c->alpha_attn);
    s.attn_max = std::max(s.attn_max, c->alpha_attn);
    s.ffn_min = std::min(s.ffn_min, c->alpha_ffn);
    s.ffn_max = std::max(s.ffn_max, c->alpha_ffn);
  }
  return s;
}

}  // namespace dytrain
