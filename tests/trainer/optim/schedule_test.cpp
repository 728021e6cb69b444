// The learning-rate schedule at its landmarks: warmup ramp, peak, midpoint and end of each decay shape.
#include <cmath>

#include <gtest/gtest.h>

#include "trainer/optim/schedule.h"

namespace dytrain {
namespace {

OptimConfig opt(ScheduleKind kind) {
  OptimConfig o;
  o.lr = 1.0;
  o.min_lr = 0.1;
  o.warmup_steps = 10;
  o.schedule = kind;
  return o;
}

TEST(Schedule, Warmup) {
  EXPECT_DOUBLE_EQ(lr_factor(opt(ScheduleKind::cosine), 0, 111), 0.1);
  EXPECT_DOUBLE_EQ(lr_factor(opt(ScheduleKind::cosine), 4, 111), 0.5);
  EXPECT_DOUBLE_EQ(lr_factor(opt(ScheduleKind::cosine), 9, 111), 1.0);
}

TEST(Schedule, CosineEndsAtMinLr) {
  // Decay over steps 10..110 (101 steps): p = (step - 10) / 100.
  EXPECT_DOUBLE_EQ(lr_factor(opt(ScheduleKind::cosine), 10, 111), 1.0);
  EXPECT_NEAR(lr_factor(opt(ScheduleKind::cosine), 60, 111), 0.55, 1e-12);  // cos(pi/2) = 0: halfway
  EXPECT_NEAR(lr_factor(opt(ScheduleKind::cosine), 110, 111), 0.1, 1e-12);
}

TEST(Schedule, LinearAndConstant) {
  EXPECT_NEAR(lr_factor(opt(ScheduleKind::linear), 35, 111), 1.0 - 0.9 * 0.25, 1e-12);
  EXPECT_NEAR(lr_factor(opt(ScheduleKind::linear), 110, 111), 0.1, 1e-12);
  EXPECT_DOUBLE_EQ(lr_factor(opt(ScheduleKind::constant), 80, 111), 1.0);
}

}  // namespace
}  // namespace dytrain
