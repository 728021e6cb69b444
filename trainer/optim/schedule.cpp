#include "trainer/optim/schedule.h"

#include <algorithm>
#include <cmath>

namespace dytrain {

double lr_factor(const OptimConfig& opt, int64_t step, int64_t max_steps) {
  if (step < opt.warmup_steps) return double(step + 1) / double(opt.warmup_steps);
  const double floor = opt.min_lr / opt.lr;
  const int64_t decay_steps = max_steps - opt.warmup_steps;
  const double p = decay_steps > 1 ? std::clamp(double(step - opt.warmup_steps) / double(decay_steps - 1), 0.0, 1.0)
                                   : 1.0;
  double shape = 1.0;
  switch (opt.schedule) {
    case ScheduleKind::cosine: shape = 0.5 * (1.0 + std::cos(M_PI * p)); break;
    case ScheduleKind::linear: shape = 1.0 - p; break;
    case ScheduleKind::constant: return 1.0;
  }
  return floor + (1.0 - floor) * shape;
}

}  // namespace dytrain
