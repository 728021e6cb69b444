// The learning-rate schedule: linear warmup to the peak, then cosine, linear or constant decay to min_lr.
// Expressed as a factor of the peak so parameter groups with their own peak lr follow the same shape.
#pragma once
#include <cstdint>

#include "trainer/config/config.h"

namespace dytrain {

// Factor of the peak lr at optimizer step `step` (0-based) of a run of max_steps steps:
//   step < warmup:  (step + 1) / warmup
//   after:          min_lr/lr + (1 - min_lr/lr) * shape(p),  p = (step - warmup) / (max_steps - warmup) in [0, 1]
//                   shape = (1 + cos(pi p)) / 2 (cosine), 1 - p (linear), 1 (constant)
double lr_factor(const OptimConfig& opt, int64_t step, int64_t max_steps);

}  // namespace dytrain
