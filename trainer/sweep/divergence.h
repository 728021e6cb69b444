// Deciding from a run's metrics lines that it has diverged, so the sweep can stop it early instead of letting it
// burn its steps. The trainer itself stops on NaN / inf (exit 3); this catches the loss that explodes while staying
// finite: after warmup, loss > first logged loss + margin. The first loss of a run at init is ~ln(vocab) (uniform
// predictions), so a loss well above it means the model does worse than knowing nothing.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "trainer/train/metrics.h"

namespace dytrain {

class DivergenceWatch {
 public:
  DivergenceWatch(double margin_nats, int64_t after_step) : margin_nats_(margin_nats), after_step_(after_step) {}

  // Feeds the next metrics line; returns the reason once the run counts as diverged.
  std::optional<std::string> feed(const StepMetrics& m);

 private:
  double margin_nats_;
  int64_t after_step_;
  std::optional<double> first_loss_;
};

}  // namespace dytrain
