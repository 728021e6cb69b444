// The host emulation of NCCL's bf16 ring all-reduce (parallel/bf16_ring_sum.h): the rounding itself on known bits,
// ring sums worked out by hand where rounding after each hop differs from rounding the exact sum once, the chunk
// boundaries when the rank count does not divide the length, and the finding of issue 19 that motivated it: adding
// the large residual on tp rank 0 before the ring sum loses more of the small branch update than adding it once
// after, and more with every rank added.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "parallel/bf16_ring_sum.h"

namespace dytrain {
namespace {

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

// bf16 numbers near 1 are spaced 2^-7 apart; s = 3 * 2^-10 is below half that spacing, 2 s above it.
constexpr float kOne = 1.0f, kSmall = 0x3p-10f, kOneUp = 1.0f + 0x1p-7f;

TEST(RoundToBf16, NearestTiesToEven) {
  EXPECT_EQ(bits(round_to_bf16(1.0f + 0x1p-8f)), bits(1.0f));                  // tie, 1.0 is even
  EXPECT_EQ(bits(round_to_bf16(kOneUp + 0x1p-8f)), bits(1.0f + 0x1p-6f));      // tie, the odd one rounds up
  EXPECT_EQ(bits(round_to_bf16(1.0f + 0x1p-8f + 0x1p-20f)), bits(kOneUp));     // just past the tie
  EXPECT_EQ(bits(round_to_bf16(-(1.0f + 0x3p-9f))), bits(-kOneUp));  // sign kept, nearest
  EXPECT_TRUE(std::isinf(round_to_bf16(3.4e38f)));                             // past bf16's largest
  EXPECT_TRUE(std::isnan(round_to_bf16(std::nanf(""))));
  EXPECT_EQ(bits(round_to_bf16(0x1.fffffep127f)), 0x7f800000u);                // rounds up into +inf, not NaN
}

// ranks rows of n values each: rank `big` holds 1.0, every other rank kSmall.
std::vector<float> one_big(int ranks, int big, int64_t n) {
  std::vector<float> in(size_t(ranks) * n, kSmall);
  for (int64_t i = 0; i < n; ++i) in[size_t(big) * n + i] = kOne;
  return in;
}

std::vector<float> ring_sum(const std::vector<float>& in, int ranks) {
  std::vector<float> out(in.size() / ranks);
  bf16_ring_sum(out.data(), in.data(), ranks, int64_t(out.size()));
  return out;
}

TEST(Bf16RingSum, TwoRanksRoundTheExactSumOnce) {
  // Rank 0: 1 and 1 + 2^-7; rank 1: 2^-8 twice. Both sums are ties: to even, 1 and 1 + 2^-6.
  const std::vector<float> in = {kOne, kOneUp, 0x1p-8f, 0x1p-8f};
  EXPECT_EQ(ring_sum(in, 2), (std::vector<float>{1.0f, 1.0f + 0x1p-6f}));
}

TEST(Bf16RingSum, ThreeRanksRoundAfterEveryHop) {
  // 1 + 2 s = 1 + 6 * 2^-10 rounds once to 1 + 2^-7. Chunk c walks c+1, c+2, c:
  //   chunk 0: s + s = 2 s exactly, then 1 + 2 s -> 1 + 2^-7;
  //   chunk 1: s + 1 -> 1 (s is below half a spacing), then 1 + s -> 1;
  //   chunk 2: 1 + s -> 1, 1 + s -> 1.
  EXPECT_EQ(ring_sum(one_big(3, 0, 3), 3), (std::vector<float>{kOneUp, kOne, kOne}));
}

TEST(Bf16RingSum, FourRanksRoundAfterEveryHop) {
  // 1 + 3 s = 1 + 9 * 2^-10 rounds once to 1 + 2^-7. Chunk c walks c+1, c+2, c+3, c:
  //   chunk 0: s + s + s = 3 s exactly, + 1 -> 1 + 2^-7;
  //   chunk 1: s + s = 2 s, + 1 -> 1 + 2^-7, + s = 1 + 11 * 2^-10 -> 1 + 2^-7 (nearer than 1 + 2^-6);
  //   chunk 2: s + 1 -> 1, then 1 + s -> 1 twice;  chunk 3: 1 first, the same.
  EXPECT_EQ(ring_sum(one_big(4, 0, 4), 4), (std::vector<float>{kOneUp, kOneUp, kOne, kOne}));
}

TEST(Bf16RingSum, ChunksOfCeilNOverRanksWithAShortOrEmptyTail) {
  // 3 ranks, 7 elements: chunks [0, 3), [3, 6), [6, 7). With 1 on rank 0 only chunk 0 (which adds it last) keeps the
  // small values; with 1 on rank 1 only chunk 1 does.
  EXPECT_EQ(ring_sum(one_big(3, 0, 7), 3), (std::vector<float>{kOneUp, kOneUp, kOneUp, kOne, kOne, kOne, kOne}));
  EXPECT_EQ(ring_sum(one_big(3, 1, 7), 3), (std::vector<float>{kOne, kOne, kOne, kOneUp, kOneUp, kOneUp, kOne}));
  // 3 ranks, 2 elements: chunks [0, 1), [1, 2) and an empty one.
  EXPECT_EQ(ring_sum(one_big(3, 1, 2), 3), (std::vector<float>{kOne, kOneUp}));
  EXPECT_TRUE(ring_sum(std::vector<float>{}, 3).empty());
}

TEST(Bf16RingSum, OneRankCopiesAndBadArgumentsThrow) {
  EXPECT_EQ(ring_sum({kOne, kSmall}, 1), (std::vector<float>{kOne, kSmall}));
  float out = 0.0f;
  EXPECT_THROW(bf16_ring_sum(&out, &out, 0, 1), std::invalid_argument);
  EXPECT_THROW(bf16_ring_sum(&out, &out, 2, -1), std::invalid_argument);
}

// Issue 19, finding 1. A residual stream of magnitude ~100 (bf16 spacing 0.5 there) takes a branch update of ~0.6
// whose o or down GEMM output is split into tp partial sums. The part of the update lost, ||result - exact|| /
// ||update||, against the exact sum in double:
// - one rank: the GEMM epilogue rounds residual + branch once;
// - residual added on rank 0 before the ring sum (the old tensor-parallel path): the epilogue rounds x + p0, then
//   every hop after rank 0's rounds the running sum again at the residual's scale;
// - residual added once after the ring sum (the fix): the partials are rounded at their own small scale, the ring
//   sums them, and one rounding at the residual's scale follows.
struct Lost {
  double one_rank, before, after;
};

Lost update_lost(int tp, unsigned seed) {
  const int64_t n = 1 << 15;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> magnitude(80.0f, 120.0f);
  std::normal_distribution<float> partial(0.0f, 0.6f / std::sqrt(float(tp)));  // the branch is ~0.6 in total
  std::vector<float> x(n), p(size_t(tp) * n);
  for (float& v : x) v = round_to_bf16((rng() & 1 ? 1.0f : -1.0f) * magnitude(rng));
  for (float& v : p) v = partial(rng);

  std::vector<float> before_in(p.size()), after_in(p.size()), before(n), after(n);
  for (int r = 0; r < tp; ++r)
    for (int64_t i = 0; i < n; ++i) {
      const float v = p[size_t(r) * n + i];
      before_in[size_t(r) * n + i] = round_to_bf16(r == 0 ? x[i] + v : v);
      after_in[size_t(r) * n + i] = round_to_bf16(v);
    }
  bf16_ring_sum(before.data(), before_in.data(), tp, n);
  bf16_ring_sum(after.data(), after_in.data(), tp, n);

  double e_one = 0.0, e_before = 0.0, e_after = 0.0, update = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    double u = 0.0;
    float u_fp32 = 0.0f;
    for (int r = 0; r < tp; ++r) {
      u += p[size_t(r) * n + i];
      u_fp32 += p[size_t(r) * n + i];
    }
    const double exact = double(x[i]) + u;
    const double one_rank = round_to_bf16(x[i] + u_fp32);
    const double fixed = round_to_bf16(x[i] + after[i]);
    e_one += (one_rank - exact) * (one_rank - exact);
    e_before += (before[i] - exact) * (before[i] - exact);
    e_after += (fixed - exact) * (fixed - exact);
    update += u * u;
  }
  return {std::sqrt(e_one / update), std::sqrt(e_before / update), std::sqrt(e_after / update)};
}

TEST(Bf16RingSum, ResidualAddedBeforeTheRingSumSwampsTheBranchUpdate) {
  const Lost tp2 = update_lost(2, 11), tp4 = update_lost(4, 12), tp8 = update_lost(8, 13);
  for (const auto& [tp, lost] : {std::pair{2, tp2}, std::pair{4, tp4}, std::pair{8, tp8}}) {
    SCOPED_TRACE(testing::Message() << "tp " << tp << ": lost one rank " << lost.one_rank << ", residual before the"
                                    << " sum " << lost.before << ", after " << lost.after);
    // One rounding at spacing 0.5 loses ~0.5 / sqrt(12) = 0.144 of RMS against a 0.6 RMS update: ~0.24.
    EXPECT_NEAR(lost.one_rank, 0.24, 0.03);
    // The fix rounds the residual once, as one rank does; the partials' own roundings (spacing ~2^-8) add ~nothing.
    EXPECT_NEAR(lost.after, lost.one_rank, 0.02 * lost.one_rank);
    EXPECT_GT(lost.before, 1.3 * lost.after);  // measured 1.41, 1.79, 2.28 at tp 2, 4, 8
  }
  EXPECT_GT(tp4.before, 1.2 * tp2.before);  // measured 1.26
  EXPECT_GT(tp8.before, 1.2 * tp4.before);  // measured 1.27
}

}  // namespace
}  // namespace dytrain
