#include "trainer/sweep/divergence.h"

#include <cmath>

#include <fmt/format.h>

namespace dytrain {

std::optional<std::string> DivergenceWatch::feed(const StepMetrics& m) {
  if (!std::isfinite(m.loss)) return fmt::format("loss {} at step {}", m.loss, m.step);
  if (!first_loss_) first_loss_ = m.loss;
  if (m.step > after_step_ && m.loss > *first_loss_ + margin_nats_)
    return fmt::format("loss {:.4f} at step {} exceeds the first logged loss {:.4f} + {} nats", m.loss, m.step,
                       *first_loss_, margin_nats_);
  return std::nullopt;
}

}  // namespace dytrain
