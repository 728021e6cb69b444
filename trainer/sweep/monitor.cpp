#include "trainer/sweep/monitor.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "trainer/config/config.h"
#include "trainer/sweep/status.h"
#include "trainer/sweep/text.h"

namespace dytrain {
namespace {

namespace fs = std::filesystem;

std::string loss_text(const std::optional<double>& x) { return x ? fmt::format("{:.4f}", *x) : "-"; }

}  // namespace

RunView::RunView(std::string dir, int max_steps)
    : dir_(std::move(dir)), tail_((fs::path(dir_) / "metrics.jsonl").string()), max_steps_(max_steps) {}

void RunView::refresh() {
  if (max_steps_ == 0 && fs::is_regular_file(fs::path(dir_) / "config.yaml")) {
    try {
      max_steps_ = load_config((fs::path(dir_) / "config.yaml").string()).train.max_steps;
    } catch (const ConfigError&) {
      // Shown as "?" until the trainer has written a config that reads back.
    }
  }
  bool restarted = false;
  for (StepMetrics& m : tail_.read_new(&restarted)) {
    if (restarted) {
      last_val_.reset();
      last_sites_.reset();
      restarted = false;
    }
    if (m.val_loss) last_val_ = std::make_pair(m.step, *m.val_loss);
    if (!m.sites.empty()) last_sites_ = m;
    last_ = std::move(m);
  }
  if (const auto s = read_point_status(dir_)) {
    status_ = s->status;
    elapsed_s_ = s->elapsed_s;
  }
  std::error_code ec;
  const auto t = fs::last_write_time(fs::path(dir_) / "metrics.jsonl", ec);
  if (!ec) seconds_since_write_ = std::chrono::duration<double>(fs::file_time_type::clock::now() - t).count();
}

std::string RunView::status() const {
  if (!status_.empty()) return status_;
  if (!last_) return fs::exists(dir_) ? "starting" : "pending";
  return max_steps_ > 0 && last_->step >= max_steps_ ? "finished" : "running";
}

std::string RunView::frame() const {
  std::string s = fmt::format("{}  [{}]", dir_, status());
  if (!last_) return s + "  no metrics yet\n";
  const StepMetrics& m = *last_;
  s += fmt::format("  step {}/{}", m.step, max_steps_ > 0 ? std::to_string(max_steps_) : "?");
  if (max_steps_ > 0) s += fmt::format(" ({:.1f}%)", 100.0 * m.step / max_steps_);
  s += fmt::format("  updated {} ago\n", human_duration(seconds_since_write_));
  s += fmt::format("loss {:.4f}  val {}  lr {:.3e}  grad {:.3f}  tok/s {:.0f}  MFU {}  elapsed {}  ETA {}\n", m.loss,
                   last_val_ ? fmt::format("{:.4f} (step {})", last_val_->second, last_val_->first) : "-", m.lr,
                   m.grad_norm, m.tok_s, m.mfu ? fmt::format("{:.1f}%", 100.0 * *m.mfu) : "-",
                   human_duration(m.elapsed_s), human_duration(m.eta_s));
  if (last_sites_) {
    s += fmt::format("sites at step {}:\n{:>5}  {:<5}  {:>9}  {:>9}  {:>9}  {:>6}\n", last_sites_->step, "layer", "site",
                     "alpha", "inv_std", "act_std", "sat");
    for (const SiteMetrics& r : last_sites_->sites)
      s += fmt::format("{:>5}  {:<5}  {:>9.4f}  {:>9.4f}  {:>9.4f}  {:>6.3f}\n",
                       r.layer < 0 ? std::string("-") : std::to_string(r.layer), r.site, r.alpha, r.inv_std,
                       r.act_std, r.sat);
  }
  return s;
}

std::string RunView::summary_line() const {
  return fmt::format("{:<36} {:<11} {:>7}/{:<7} {:<8} {}\n", fs::path(dir_).filename().string(), status(),
                     step(), max_steps_ > 0 ? std::to_string(max_steps_) : "?",
                     last_ ? fmt::format("{:.4f}", last_->loss) : "-",
                     loss_text(last_val_ ? std::optional<double>(last_val_->second) : std::nullopt));
}

Monitor::Monitor(std::string dir) : dir_(std::move(dir)) {
  const fs::path d(dir_);
  is_sweep_ = fs::is_regular_file(d / "sweep.yaml") ||
              (!fs::exists(d / "metrics.jsonl") && !fs::exists(d / "config.yaml"));
  if (!is_sweep_) run_ = std::make_unique<RunView>(dir_);
}

void Monitor::refresh() {
  if (run_) return run_->refresh();
  // The index lists every point (pending ones too); without it (a hand-made directory), the sub-dirs with a config.
  std::vector<std::string> names;
  std::map<std::string, int> max_steps;
  if (const auto index = read_sweep_index(dir_)) {
    for (const auto& p : index->points) {
      names.push_back(p.name);
      max_steps[p.name] = p.max_steps;
    }
  } else if (fs::is_directory(dir_)) {
    for (const auto& e : fs::directory_iterator(dir_))
      if (fs::is_regular_file(e.path() / "config.yaml")) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
  }
  order_ = names;
  for (const auto& n : order_) {
    auto& v = points_[n];
    if (!v) v = std::make_unique<RunView>((fs::path(dir_) / n).string(), max_steps.count(n) ? max_steps[n] : 0);
    v->refresh();
  }
}

bool Monitor::finished() const {
  if (run_) {
    const std::string s = run_->status();
    return s != "running" && s != "starting" && s != "pending";
  }
  for (const auto& n : order_) {
    const std::string s = points_.at(n)->status();
    if (s == "running" || s == "starting" || s == "pending") return false;
  }
  return !order_.empty();
}

std::string Monitor::frame() const {
  if (run_) return run_->frame();
  std::string s = fmt::format("sweep {}\n{:<36} {:<11} {:>7}/{:<7} {:<8} {}\n", dir_, "point", "status", "step", "max",
                              "loss", "val");
  int finished = 0, done = 0, diverged = 0, failed = 0, running = 0;
  double finished_s = 0.0;
  for (const auto& n : order_) {
    const RunView& v = *points_.at(n);
    s += v.summary_line();
    const std::string st = v.status();
    done += st == "done";
    diverged += st == "diverged";
    failed += st == "failed";
    running += st == "running";
    if (st == "done" || st == "diverged" || st == "failed") {
      ++finished;
      finished_s += v.elapsed_s();
    }
  }
  const int total = int(order_.size());
  s += fmt::format("progress: {}/{} points finished ({} done, {} diverged, {} failed), {} running", finished, total, done,
                   diverged, failed, running);
  if (finished > 0 && finished < total)
    s += fmt::format(" | ETA {}", human_duration(finished_s / finished * (total - finished)));
  return s + "\n";
}

int run_monitor(const MonitorOptions& opt) {
  if (!fs::is_directory(opt.dir)) {
    std::fprintf(stderr, "dytrain monitor: %s is not a directory; give a run directory (with metrics.jsonl) or a "
                         "sweep directory\n", opt.dir.c_str());
    return 2;
  }
  Monitor m(opt.dir);
  for (;;) {
    try {
      m.refresh();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "dytrain monitor: %s\n", e.what());
      return 2;
    }
    if (opt.once) {
      std::fputs(m.frame().c_str(), stdout);
      return 0;
    }
    // Clear, home, frame: one write, so the terminal never shows a half-drawn view.
    std::fputs(("\033[H\033[2J" + m.frame()).c_str(), stdout);
    std::fflush(stdout);
    if (m.finished()) return 0;
    std::this_thread::sleep_for(std::chrono::duration<double>(opt.interval_s));
  }
}

}  // namespace dytrain
