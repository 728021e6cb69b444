// The cross-entropy kernels' per-row math (kernels/cuda/cross_entropy_math.h) on the host, against double precision:
// built and run without a GPU. A row is taken as the kernel takes an aligned one (vectors of 8 through
// vector_max_sum, the rest as scalars, pairs merged) and its target gradient in both of the kernel's forms.
// - A padded vocabulary masked to -inf: an all -inf vector made the kernel's sum NaN (exp(-inf - -inf)) before
//   vector_max_sum returned the empty pair for it.
// - A confident prediction: dloss * (p - 1) from the fp32 lse loses ulp(lse) / (1 - p) of relative accuracy (0.5% at
//   lse ~ 10 and 1 - p ~ 1e-4, all of it at 1 - p ~ 1e-6); the sum of the other probabilities keeps it.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "kernels/cuda/cross_entropy_math.h"

namespace dytrain::cuda::ce_math {
namespace {

constexpr double kF32 = 0x1p-24;

constexpr int kThreads = 512;  // cross_entropy.cu's block

// The kernel's reduction of one value per thread of a block, in its order: xor butterflies within each warp of 32
// (lane 0's result), then the same across the warps' results in warp 0 (lanes past the last warp empty).
template <class T, class Op>
T block_reduce(const std::vector<T>& v, T empty, Op op) {
  auto butterfly = [&](std::array<T, 32> lanes) {
    for (int offset = 16; offset > 0; offset >>= 1) {
      std::array<T, 32> next;
      for (int l = 0; l < 32; ++l) next[l] = op(lanes[l], lanes[l ^ offset]);
      lanes = next;
    }
    return lanes[0];
  };
  std::array<T, 32> warps;
  warps.fill(empty);
  for (int w = 0; w < kThreads / 32; ++w) {
    std::array<T, 32> lanes;
    std::copy_n(v.begin() + 32 * w, 32, lanes.begin());
    warps[w] = butterfly(lanes);
  }
  return butterfly(warps);
}

// Which thread of the block handles column i of a 16-byte aligned row of V columns: vectors of 8 round-robin, the
// scalar tail one column per thread.
int thread_of(int i, int V) {
  const int tail = V / kVec * kVec;
  return i < tail ? (i / kVec) % kThreads : i - tail;
}

// The kernel's forward of one aligned row: (lse, loss) in fp32, each thread merging its vectors in order.
struct RowForward {
  float lse, loss;
};
RowForward emulate_forward(const std::vector<float>& x, int target) {
  const int V = static_cast<int>(x.size());
  const int tail = V / kVec * kVec;
  std::vector<MaxSum> acc(kThreads, MaxSum{-INFINITY, 0.0f});
  for (int i = tail; i < V; ++i) acc[thread_of(i, V)] = merge(acc[thread_of(i, V)], {x[i], 1.0f});
  for (int i = 0; i < tail; i += kVec) acc[thread_of(i, V)] = merge(acc[thread_of(i, V)], vector_max_sum(&x[i]));
  const MaxSum row = block_reduce(acc, MaxSum{-INFINITY, 0.0f}, merge);
  const float log_sum = logf(row.sum);
  return {row.max + log_sum, (row.max - x[target]) + log_sum};
}

// The sum of the probabilities of the columns other than the target, as the backward kernel accumulates it.
float emulate_rest(const std::vector<float>& x, int target, float lse) {
  const int V = static_cast<int>(x.size());
  const int tail = V / kVec * kVec;
  std::vector<float> rest(kThreads, 0.0f);
  for (int i = tail; i < V; ++i)
    if (i != target) rest[thread_of(i, V)] += probability(x[i], lse);
  for (int i = 0; i < tail; ++i)
    if (i != target) rest[thread_of(i, V)] += probability(x[i], lse);
  return block_reduce(rest, 0.0f, [](float a, float b) { return a + b; });
}

double reference_lse(const std::vector<float>& x) {
  double mx = -INFINITY;
  for (float v : x) mx = std::fmax(mx, v);
  double sum = 0.0;
  for (float v : x) sum += std::exp(double(v) - mx);
  return mx + std::log(sum);
}

// 1 - p_target in double, from the other columns (no cancellation).
double reference_rest(const std::vector<float>& x, int target) {
  const double lse = reference_lse(x);
  double rest = 0.0;
  for (int i = 0; i < static_cast<int>(x.size()); ++i)
    if (i != target) rest += std::exp(double(x[i]) - lse);
  return rest;
}

TEST(CrossEntropyMath, AVectorOfMaskedLogitsIsEmptyNotNaN) {
  const MaxSum masked = vector_max_sum(std::vector<float>(kVec, -INFINITY).data());
  EXPECT_EQ(masked.max, -INFINITY);
  EXPECT_EQ(masked.sum, 0.0f);
  const MaxSum finite{2.0f, 3.0f};
  for (const MaxSum m : {merge(finite, masked), merge(masked, finite)}) {
    EXPECT_EQ(m.max, 2.0f);
    EXPECT_EQ(m.sum, 3.0f);
  }
  const MaxSum both_masked = merge(masked, masked);
  EXPECT_EQ(both_masked.max, -INFINITY);
  EXPECT_EQ(both_masked.sum, 0.0f);
}

// A vocabulary of 40 padded to 64 with -inf: vectors 5..7 are masked, and so are the first vector and a scalar tail
// in the second row (the padding anywhere in the row).
TEST(CrossEntropyMath, APaddedVocabularyMaskedToMinusInfinityGivesTheUnpaddedLoss) {
  std::vector<float> row(64, -INFINITY);
  for (int i = 0; i < 40; ++i) row[i] = 0.37f * float((i * 7) % 11) - 1.5f;
  std::vector<float> shifted(67, -INFINITY);
  for (int i = 0; i < 40; ++i) shifted[8 + i] = row[i];
  for (const auto& [x, target] : {std::pair{row, 5}, std::pair{shifted, 13}}) {
    std::vector<float> finite;
    for (float v : x)
      if (v != -INFINITY) finite.push_back(v);
    const double lse = reference_lse(finite);
    const RowForward f = emulate_forward(x, target);
    ASSERT_TRUE(std::isfinite(f.lse) && std::isfinite(f.loss)) << "lse " << f.lse << " loss " << f.loss;
    EXPECT_NEAR(f.lse, lse, 64 * kF32 * std::fabs(lse));
    EXPECT_NEAR(f.loss, lse - x[target], 64 * kF32 * std::fabs(lse));
    EXPECT_EQ(probability(-INFINITY, f.lse), 0.0f) << "a masked column's gradient is 0";
    const float rest = emulate_rest(x, target, f.lse);
    EXPECT_NEAR(rest, reference_rest(x, target), 64 * kF32);
  }
}

// Every column at 0 but the target at L over V = 32000 (a LLaMA vocabulary): 1 - p = (V - 1) e^-L / (1 + (V - 1)
// e^-L), from 7e-2 down to 1.2e-6. Whatever lse's fp32 error (err, measured against double), the whole-row form keeps
// the target gradient's relative accuracy: err scales every probability alike (a relative error of err), and the
// sum adds 72 fp32 roundings (64 terms per thread, 8 levels of reduction; expf's 2 ulp on top). The expm1 form is off
// by err / (1 - p) and the form of the kernel before, p - 1, by that and expf's error / (1 - p) as well.
TEST(CrossEntropyMath, TheTargetGradientOfAConfidentPredictionKeepsItsRelativeAccuracy) {
  const int V = 32000, target = 1234;
  const float dloss = 1.0f / 4096.0f;
  double worst_naive = 0.0;
  for (float L : {13.0f, 17.0f, 20.0f, 24.0f}) {
    std::vector<float> x(V, 0.0f);
    x[target] = L;
    const double rest = reference_rest(x, target), want = -double(dloss) * rest;
    const float lse = emulate_forward(x, target).lse;
    const double err = std::fabs(double(lse) - reference_lse(x));
    EXPECT_LT(err, 200 * kF32 * std::fabs(lse)) << "the forward's lse, L " << L;
    const float from_rest = target_grad_from_rest(emulate_rest(x, target, lse), dloss);
    EXPECT_NEAR(from_rest, want, (1.01 * err + 80 * kF32) * std::fabs(want)) << "L " << L;
    EXPECT_NEAR(from_rest, want, 2e-5 * std::fabs(want)) << "L " << L;
    const float expm1_form = target_grad_expm1(L, lse, dloss);
    EXPECT_NEAR(expm1_form, want, (1.01 * err / rest + 4 * kF32) * std::fabs(want)) << "L " << L;
    const float naive = dloss * probability(L, lse) - dloss;  // the kernel's form before
    worst_naive = std::fmax(worst_naive, std::fabs(naive - want) / std::fabs(want));
  }
  EXPECT_GT(worst_naive, 5e-3) << "the form before should show the loss of accuracy this test is about";
}

}  // namespace
}  // namespace dytrain::cuda::ce_math
