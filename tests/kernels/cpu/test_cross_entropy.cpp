// Cross-entropy: forward against log(sum exp) in double, stability under a large logit offset, backward against
// finite differences, overwrite semantics, aliasing dlogits with logits, and rejection of an out-of-range target.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/cross_entropy.h"
#include "tests/kernels/cpu/op_test_util.h"

namespace dytrain::cpu {
namespace {

using test::expect_grad_near;
using test::fd_gradient;
using test::random_vec;

constexpr int64_t kN = 5;
constexpr int kV = 7;
const std::vector<int32_t> kTargets = {0, 6, 3, 3, 1};

TEST(CpuCrossEntropy, ForwardMatchesLogSumExp) {
  const auto logits = random_vec(kN * kV, 100, -4.0f, 4.0f);
  std::vector<float> losses(kN);
  cross_entropy_forward(losses.data(), logits.data(), kTargets.data(), kN, kV);
  for (int64_t n = 0; n < kN; ++n) {
    double z = 0.0;
    for (int i = 0; i < kV; ++i) z += std::exp(static_cast<double>(logits[n * kV + i]));
    // Losses of a few units, computed through fp32 expf summed in double: ~1e-7 relative.
    EXPECT_NEAR(losses[n], std::log(z) - logits[n * kV + kTargets[n]], 1e-6);
  }
}

TEST(CpuCrossEntropy, StableUnderLargeLogits) {
  const auto logits = random_vec(kN * kV, 101, -4.0f, 4.0f);
  auto shifted = logits;
  for (float& x : shifted) x += 1000.0f;  // exp(1000) overflows without the max subtracted
  std::vector<float> a(kN), b(kN);
  cross_entropy_forward(a.data(), logits.data(), kTargets.data(), kN, kV);
  cross_entropy_forward(b.data(), shifted.data(), kTargets.data(), kN, kV);
  for (int64_t n = 0; n < kN; ++n) {
    ASSERT_TRUE(std::isfinite(b[n]));
    // x + 1000 in fp32 is rounded to 6e-5 (the ulp at 1000), which moves the loss by up to ~1e-4.
    EXPECT_NEAR(a[n], b[n], 2e-4);
  }
}

TEST(CpuCrossEntropy, BackwardMatchesFiniteDifferences) {
  auto logits = random_vec(kN * kV, 102, -4.0f, 4.0f);
  const float dloss = 0.37f;
  std::vector<float> dlogits(kN * kV, 55.0f);  // overwritten, not accumulated
  cross_entropy_backward(dlogits.data(), logits.data(), kTargets.data(), dloss, kN, kV);
  auto obj = [&] {
    std::vector<float> losses(kN);
    cross_entropy_forward(losses.data(), logits.data(), kTargets.data(), kN, kV);
    double s = 0.0;
    for (float l : losses) s += static_cast<double>(dloss) * l;
    return s;
  };
  // Step 1e-3 relative to max(1, |x|) (<= 4e-3): one loss of ~3 moves, noise 0.37 * 2.4e-7 / 8e-3 ~ 1e-5;
  // softmax truncation h^2/6 |p'' | <= 2.7e-6. Tolerance 1e-4, while the gradient's entries are 0.37 * O(0.1..1).
  expect_grad_near(dlogits.data(), fd_gradient(logits.data(), logits.size(), 1e-3, obj), 1e-4, 1e-3, "dlogits");

  for (int64_t n = 0; n < kN; ++n) {
    double row = 0.0;
    for (int i = 0; i < kV; ++i) row += dlogits[n * kV + i];
    EXPECT_NEAR(row, 0.0, 1e-6);  // softmax sums to one, minus the one-hot: each row sums to zero
  }
}

TEST(CpuCrossEntropy, BackwardMayAliasLogits) {
  auto logits = random_vec(kN * kV, 103, -4.0f, 4.0f);
  std::vector<float> separate(kN * kV);
  cross_entropy_backward(separate.data(), logits.data(), kTargets.data(), 0.5f, kN, kV);
  cross_entropy_backward(logits.data(), logits.data(), kTargets.data(), 0.5f, kN, kV);
  EXPECT_EQ(logits, separate);
}

TEST(CpuCrossEntropy, TargetOutsideVocabularyIsRejected) {
  const auto logits = random_vec(kN * kV, 104);
  std::vector<int32_t> bad = kTargets;
  bad[2] = kV;
  std::vector<float> losses(kN);
  EXPECT_THROW(cross_entropy_forward(losses.data(), logits.data(), bad.data(), kN, kV), std::invalid_argument);
}

// Every column at 0 but the target at L over V = 32000: 1 - p from 7e-2 down to 1.2e-6. The gradient at the target,
// dloss * (p - 1), keeps its relative accuracy (1e-6: fp32 exponentials and the final rounding) when 1 - p is taken
// from the other columns' double sum; as p - 1 in fp32 it lost fp32's rounding of p (6e-8) over 1 - p, up to 5%.
TEST(CpuCrossEntropy, TheTargetGradientOfAConfidentPredictionKeepsItsRelativeAccuracy) {
  const int V = 32000;
  const int32_t target = 1234;
  const float dloss = 1.0f / 4096.0f;
  for (float L : {13.0f, 17.0f, 20.0f, 24.0f}) {
    std::vector<float> x(V, 0.0f), dx(V);
    x[target] = L;
    cross_entropy_backward(dx.data(), x.data(), &target, dloss, 1, V);
    const double rest = (V - 1) * std::exp(-double(L)) / (1.0 + (V - 1) * std::exp(-double(L)));
    EXPECT_NEAR(dx[target], -double(dloss) * rest, 1e-6 * double(dloss) * rest) << "L " << L;
  }
}

// Columns masked to -inf (a padded vocabulary) have probability and gradient 0, and leave the loss and the other
// gradients of the row as the unpadded row has them.
TEST(CpuCrossEntropy, ColumnsMaskedToMinusInfinityChangeNothing) {
  const int V = 13, padded = 24;
  const auto row = random_vec(V, 105, -4.0f, 4.0f);
  std::vector<float> x(padded, -INFINITY);
  std::copy(row.begin(), row.end(), x.begin());
  const int32_t target = 5;
  float loss = 0.0f, loss_padded = 0.0f;
  std::vector<float> d(V), d_padded(padded, 55.0f);
  cross_entropy_forward(&loss, row.data(), &target, 1, V);
  cross_entropy_forward(&loss_padded, x.data(), &target, 1, padded);
  cross_entropy_backward(d.data(), row.data(), &target, 0.5f, 1, V);
  cross_entropy_backward(d_padded.data(), x.data(), &target, 0.5f, 1, padded);
  EXPECT_EQ(loss_padded, loss);
  for (int i = 0; i < V; ++i) EXPECT_EQ(d_padded[i], d[i]) << i;
  for (int i = V; i < padded; ++i) EXPECT_EQ(d_padded[i], 0.0f) << i;
}

}  // namespace
}  // namespace dytrain::cpu
