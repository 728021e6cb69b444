#include "parallel/watchdog.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

namespace dytrain {
namespace {

// Twenty times the slowest step leaves room for a slow validation or a straggler without waiting minutes for a
// peer that is gone.
constexpr double kStepFactor = 20.0;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// An OMPI_MCA_ variable as a number, or `fallback` when unset or not a number.
double mca_number(const char* name, double fallback) {
  const char* text = std::getenv(name);
  if (!text || !*text) return fallback;
  char* end = nullptr;
  const double value = std::strtod(text, &end);
  return *end == '\0' ? value : fallback;
}

}  // namespace

double openmpi_keepalive_grace_s() {
  const double time = mca_number("OMPI_MCA_oob_tcp_keepalive_time", 300);
  if (time <= 0) return 30.0;
  const double interval = mca_number("OMPI_MCA_oob_tcp_keepalive_intvl", 20);
  const double probes = mca_number("OMPI_MCA_oob_tcp_keepalive_probes", 9);
  return time + interval * probes + 5.0;
}

void WatchdogState::begin(const char* op, const std::string* group, double now) {
  op_ = op;
  group_ = group;
  op_start_ = now;
  warned_ = false;
}

void WatchdogState::end() { op_ = nullptr; }

void WatchdogState::step_done(double step_s) {
  stepped_ = true;
  slowest_step_s_ = std::max(slowest_step_s_, step_s);
}

double WatchdogState::limit_s() const {
  double limit = std::max(timeout_s_, kStepFactor * slowest_step_s_);
  if (!stepped_ || relaxed_) limit = std::max(limit, kSlowPhaseFloorS);
  return limit;
}

std::string WatchdogState::limit_reason() const {
  std::string reason = fmt::format("parallel.timeout_s = {:g}, 20 x the slowest step {:.3g} s", timeout_s_,
                                   slowest_step_s_);
  if (!stepped_) reason += fmt::format(", {:g} s before the first step ends", kSlowPhaseFloorS);
  if (relaxed_) reason += fmt::format(", {:g} s while a checkpoint is written or read", kSlowPhaseFloorS);
  return reason;
}

WatchdogState::Verdict WatchdogState::check(double now) {
  if (!op_) return {};
  const double waited = now - op_start_;
  const double limit = limit_s();
  if (waited > limit + grace_s_) {
    return {Verdict::exit, fmt::format("watchdog: {} in {} still waits after {:.1f} s: ending this rank so mpirun "
                                       "ends the job; the last checkpoint is intact, continue with --resume",
                                       op_, *group_, waited)};
  }
  if (waited <= limit || warned_) return {};
  warned_ = true;
  return {Verdict::warn,
          fmt::format("watchdog: {} in {} has waited {:.1f} s for its peers (limit {:g} s: {}): a peer stopped "
                      "answering (network down, host gone or rank stuck). This rank ends in {:g} s unless it "
                      "completes; the last checkpoint is intact, continue with --resume",
                      op_, *group_, waited, limit, limit_reason(), grace_s_)};
}

Watchdog::Watchdog(double timeout_s, double grace_s, std::string self, int exit_code, double poll_s)
    : state_(timeout_s, grace_s), self_(std::move(self)), exit_code_(exit_code), poll_s_(poll_s) {
  thread_ = std::thread([this] { watch(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void Watchdog::begin(const char* op, const std::string* group) {
  std::lock_guard<std::mutex> lock(mutex_);
  state_.begin(op, group, now_s());
}

void Watchdog::end() {
  std::lock_guard<std::mutex> lock(mutex_);
  state_.end();
}

void Watchdog::step_done(double step_s) {
  std::lock_guard<std::mutex> lock(mutex_);
  state_.step_done(step_s);
}

Watchdog::Relaxed::Relaxed(Watchdog* w) : w_(w) {
  if (!w_) return;
  std::lock_guard<std::mutex> lock(w_->mutex_);
  w_->state_.set_relaxed(true);
}

Watchdog::Relaxed::~Relaxed() {
  if (!w_) return;
  std::lock_guard<std::mutex> lock(w_->mutex_);
  w_->state_.set_relaxed(false);
}

void Watchdog::watch() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!wake_.wait_for(lock, std::chrono::duration<double>(poll_s_), [this] { return stop_; })) {
    const WatchdogState::Verdict verdict = state_.check(now_s());
    if (verdict.action == WatchdogState::Verdict::none) continue;
    std::fflush(stdout);
    std::fprintf(stderr, "%s: %s\n", self_.c_str(), verdict.line.c_str());
    std::fflush(stderr);
    if (verdict.action == WatchdogState::Verdict::exit) std::_Exit(exit_code_);
  }
}

}  // namespace dytrain
