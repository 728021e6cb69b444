// Embedding with its scalar scale: forward gather, backward against finite differences for the table and the
// scale with repeated tokens, the += convention, and bit-identical scatter across thread counts.
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/embedding.h"
#include "tests/kernels/cpu/op_test_util.h"

namespace dytrain::cpu {
namespace {

using test::expect_grad_near;
using test::fd_gradient;
using test::random_vec;
using test::weighted_sum;

constexpr int64_t kN = 6;
constexpr int kC = 7, kV = 5;
const std::vector<int32_t> kTokens = {3, 0, 3, 4, 3, 0};  // token 3 three times, token 2 never

TEST(CpuEmbedding, ForwardGathersScaledRows) {
  const auto table = random_vec(kV * kC, 110);
  const float scale = 2.5f;
  std::vector<float> out(kN * kC);
  embedding_forward(out.data(), kTokens.data(), table.data(), scale, kN, kC);
  for (int64_t n = 0; n < kN; ++n) {
    for (int c = 0; c < kC; ++c) EXPECT_EQ(out[n * kC + c], scale * table[kTokens[n] * kC + c]);
  }
}

TEST(CpuEmbedding, BackwardMatchesFiniteDifferencesAndAccumulates) {
  auto table = random_vec(kV * kC, 111);
  float scale = 2.5f;
  const auto w = random_vec(kN * kC, 112);
  std::vector<float> dtable(kV * kC), dscale(1);
  embedding_backward(dtable.data(), dscale.data(), w.data(), kTokens.data(), table.data(), scale, kN, kC);
  auto obj = [&] {
    std::vector<float> out(kN * kC);
    embedding_forward(out.data(), kTokens.data(), table.data(), scale, kN, kC);
    return weighted_sum(out, w);
  };
  // Linear in each argument: no truncation. A table element moves up to 3 outputs of size <= 2.5 (noise
  // ~3 * 1.2e-7 / 2e-2 ~ 2e-5); the scale (h = 2.5e-2) moves all 42 (~sqrt(42) * 1.2e-7 / 5e-2 ~ 2e-5).
  expect_grad_near(dtable.data(), fd_gradient(table.data(), table.size(), 1e-2, obj), 2e-4, 1e-4, "dtable");
  expect_grad_near(dscale.data(), fd_gradient(&scale, 1, 1e-2, obj), 2e-4, 1e-4, "dscale");
  for (int c = 0; c < kC; ++c) EXPECT_EQ(dtable[2 * kC + c], 0.0f);  // token 2 is absent

  auto dtable2 = dtable;
  auto dscale2 = dscale;
  embedding_backward(dtable2.data(), dscale2.data(), w.data(), kTokens.data(), table.data(), scale, kN, kC);
  embedding_backward(dtable2.data(), nullptr, w.data(), kTokens.data(), table.data(), scale, kN, kC);
  EXPECT_EQ(dscale2[0], 2 * dscale[0]);  // g + g is exact; the nullptr call left it alone
  // Rows hit by repeated tokens round differently on the second and third passes: ~1e-7 of their size.
  for (size_t i = 0; i < dtable.size(); ++i) EXPECT_NEAR(dtable2[i], 3 * dtable[i], 1e-5);
}

TEST(CpuEmbedding, ScatterIndependentOfThreadCount) {
  const int64_t N = 400;
  const int C = 70;  // not a multiple of the channel slice
  const int V = 5;   // every token repeats ~80 times
  std::vector<int32_t> tokens(N);
  for (int64_t n = 0; n < N; ++n) tokens[n] = static_cast<int32_t>((n * 7 + n / 3) % V);
  const auto table = random_vec(static_cast<size_t>(V) * C, 113);
  const auto dout = random_vec(static_cast<size_t>(N) * C, 114);
  std::vector<float> dt1(static_cast<size_t>(V) * C), dt3(dt1.size()), ds1(1), ds3(1);
  {
    test::ScopedThreads threads(1);
    embedding_backward(dt1.data(), ds1.data(), dout.data(), tokens.data(), table.data(), 1.3f, N, C);
  }
  {
    test::ScopedThreads threads(3);
    embedding_backward(dt3.data(), ds3.data(), dout.data(), tokens.data(), table.data(), 1.3f, N, C);
  }
  EXPECT_EQ(dt1, dt3);
  EXPECT_EQ(ds1, ds3);
}

}  // namespace
}  // namespace dytrain::cpu
