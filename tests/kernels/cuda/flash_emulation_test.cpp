// The flash-attention kernels' tiling on the host, without a GPU: the tile ranges of
// kernels/cuda/flash_attention_tiles.h (the forward's and the dQ kernel's key tiles per query tile, the dK, dV
// kernel's query tiles per key tile) cover exactly the causal (query, key) pairs, and the host emulation of the
// kernels' block loops (flash_emulation.h) matches the naive CPU attention (kernels/cpu/attention.h): out and lse,
// dq, dk and dv, on ragged T, GQA ratios 1, 2 and 4, head dims 64 and 128, with q, k, v and dq, dk, dv as column
// slices of padded qkv buffers (padding untouched).
//
// Tolerances, from fp32 rounding (u = 2^-24) of both sides, worst case per element. S_x = max |x| over the case,
// sigma = 1/sqrt(D), G = D S_dout S_v (a bound on |dP| and on |delta|).
// - A score is an fp32 dot product of D terms: |error| <= eps_s = sigma D u D S_q S_k on each side.
// - Probabilities: shifting every score of a row by at most eps_s moves each p by a relative 2 eps_s; exp, the
//   running sum of up to T terms with its rescalings and the final 1 / sum add at most (2 T + 8) u relative:
//   e_p = 2 eps_s + (2 T + 8) u per side.
// - out = sum_j p_j v_j: (e_p + T u) S_v per side (sum p = 1), so 2 (e_p + T u) S_v for the difference.
// - lse against double: eps_s + (2 T + 8) u + 2 u |lse| (the final add, and the double reference's rounding to
//   float; it has no other error at this scale).
// - dS_j = p_j (dP_j - delta) sigma: dP has D u G of error, delta (a sum of out or of p dP) (e_p + T u + D u) G, and
//   p its e_p against |dP - delta| <= 2 G, so |dS error| <= sigma G p_j e_ds with e_ds = 3 e_p + (2 D + T) u.
// - dq = sum_j dS_j k_j: sigma G S_k (e_ds + 2 T u) per side (sum_j |dS_j| <= 2 sigma G).
// - dk_j, dv_j sum over the rep T query rows of the group: with W_j = sum of the probabilities of key j over those
//   rows (from the CPU op), dk_j: sigma G S_q W_j (e_ds + 2 rep T u), dv_j: S_dout W_j (e_p + rep T u) per side.
// Each bound is doubled for the two sides. Being worst cases they sit far above the observed differences (those are
// near u), yet far below what a tiling or masking error makes: a key tile skipped, a mask off by one or a missing
// rescale moves outputs by a sizeable fraction of the values themselves.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/cuda/flash_attention_tiles.h"
#include "tests/kernels/cuda/flash_emulation.h"

namespace dytrain::test {
namespace {

namespace fl = cuda::flash;

constexpr double kU = 0x1p-24;
constexpr float kPad = 7.0f;  // value of the padding columns of the qkv buffers; must survive every call

// Every (query tile, key tile) pair: from the query side (forward, dQ) and the key side (dK, dV) the same set, and
// each visited pair holds a visible (query, key) element while every visible element lies in a visited pair.
TEST(FlashTiles, BothLoopOrdersVisitExactlyTheCausalTiles) {
  for (int T = 1; T <= 4 * fl::kBlockQ + 3; ++T) {
    std::set<std::pair<int, int>> by_query, by_key;
    for (int qb = 0; qb < fl::block_count(T, fl::kBlockQ); ++qb) {
      for (int kb = 0; kb < fl::key_block_end(qb, T); ++kb) by_query.insert({qb, kb});
    }
    for (int kb = 0; kb < fl::block_count(T, fl::kBlockK); ++kb) {
      for (int qb = fl::query_block_begin(kb); qb < fl::block_count(T, fl::kBlockQ); ++qb) by_key.insert({qb, kb});
    }
    ASSERT_EQ(by_query, by_key) << "T = " << T;
    std::set<std::pair<int, int>> needed;
    for (int t = 0; t < T; ++t) {
      for (int j = 0; j <= t; ++j) {
        ASSERT_TRUE(fl::key_visible(t, j, T)) << "t = " << t << ", j = " << j;
        needed.insert({t / fl::kBlockQ, j / fl::kBlockK});
      }
      ASSERT_FALSE(fl::key_visible(t, t + 1, T));
    }
    ASSERT_EQ(by_query, needed) << "T = " << T << ": a visited tile holds no visible key, or a needed one is skipped";
  }
  // Rows past T (the zero-filled rows of the last tile) see nothing.
  EXPECT_FALSE(fl::key_visible(70, 0, 70));
}

// The online-softmax step's edge: before any visible key the rescale is 0, not NaN.
TEST(FlashTiles, SoftmaxStepsHandleRowsWithoutKeys) {
  const fl::MaxStep empty = fl::next_max(-INFINITY, -INFINITY);
  EXPECT_EQ(empty.max, -INFINITY);
  EXPECT_EQ(empty.rescale, 0.0f);
  EXPECT_EQ(fl::exp_score(-INFINITY, -INFINITY), 0.0f);
  EXPECT_EQ(fl::output_scale(0.0f), 0.0f);
  EXPECT_EQ(fl::probability(-INFINITY, 3.0f), 0.0f);
  const fl::MaxStep first = fl::next_max(-INFINITY, 2.0f);
  EXPECT_EQ(first.max, 2.0f);
  EXPECT_EQ(first.rescale, 0.0f);
  const fl::MaxStep next = fl::next_max(2.0f, 3.0f);
  EXPECT_EQ(next.max, 3.0f);
  EXPECT_FLOAT_EQ(next.rescale, std::exp(-1.0f));
}

struct Shape {
  int B, T, Hq, Hkv, D;
};

std::string shape_name(const testing::TestParamInfo<Shape>& info) {
  const Shape& s = info.param;
  return "B" + std::to_string(s.B) + "_T" + std::to_string(s.T) + "_Hq" + std::to_string(s.Hq) + "_Hkv" +
         std::to_string(s.Hkv) + "_D" + std::to_string(s.D);
}

std::vector<float> uniform(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

double max_abs(const std::vector<float>& a) {
  double m = 0.0;
  for (float x : a) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}

// Columns [col, col + width) of the (rows, ld) buffer, dense.
std::vector<float> columns(const std::vector<float>& buffer, int64_t ld, int64_t col, int64_t width) {
  const size_t rows = buffer.size() / ld;
  std::vector<float> out(rows * width);
  for (size_t r = 0; r < rows; ++r) std::copy_n(&buffer[r * ld + col], width, &out[r * width]);
  return out;
}

// |got[i] - want[i]| <= tol(i) for every i, the first failures named.
template <class Tol>
void expect_near(const std::vector<float>& got, const std::vector<float>& want, Tol tol, const std::string& name) {
  ASSERT_EQ(got.size(), want.size()) << name;
  int failures = 0;
  for (size_t i = 0; i < got.size() && failures < 5; ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(err <= tol(i))) {
      ADD_FAILURE() << name << "[" << i << "]: emulation " << got[i] << ", CPU op " << want[i] << ", |error| " << err
                    << " > tolerance " << tol(i);
      ++failures;
    }
  }
}

class FlashEmulation : public testing::TestWithParam<Shape> {};

TEST_P(FlashEmulation, MatchesNaiveAttention) {
  const Shape s = GetParam();
  const int rep = s.Hq / s.Hkv;
  const int64_t q_cols = static_cast<int64_t>(s.Hq) * s.D;
  const int64_t kv_cols = static_cast<int64_t>(s.Hkv) * s.D;
  const int64_t ld = q_cols + 2 * kv_cols + 8;
  const size_t rows = static_cast<size_t>(s.B) * s.T;
  // Scores with a standard deviation of about 4/3, as in the GPU tests: peaked enough that the running max moves.
  const std::vector<float> q = uniform(rows * q_cols, 21, -2.0f, 2.0f);
  const std::vector<float> k = uniform(rows * kv_cols, 22, -2.0f, 2.0f);
  const std::vector<float> v = uniform(rows * kv_cols, 23, -1.0f, 1.0f);
  const std::vector<float> dout = uniform(rows * q_cols, 24, -1.0f, 1.0f);
  std::vector<float> qkv(rows * ld, kPad);
  for (size_t r = 0; r < rows; ++r) {
    std::copy_n(&q[r * q_cols], q_cols, &qkv[r * ld]);
    std::copy_n(&k[r * kv_cols], kv_cols, &qkv[r * ld + q_cols]);
    std::copy_n(&v[r * kv_cols], kv_cols, &qkv[r * ld + q_cols + kv_cols]);
  }

  std::vector<float> out(rows * q_cols, kPad), lse(static_cast<size_t>(s.B) * s.Hq * s.T, kPad);
  std::vector<float> dqkv(qkv.size(), kPad);
  const float* qp = qkv.data();
  flash_forward_emulated(out.data(), lse.data(), qp, qp + q_cols, qp + q_cols + kv_cols, ld, s.B, s.T, s.Hq, s.Hkv,
                         s.D);
  flash_backward_emulated(dqkv.data(), dqkv.data() + q_cols, dqkv.data() + q_cols + kv_cols, dout.data(), out.data(),
                          lse.data(), qp, qp + q_cols, qp + q_cols + kv_cols, ld, s.B, s.T, s.Hq, s.Hkv, s.D);

  std::vector<float> ref_out(out.size(), 0.0f), probs(static_cast<size_t>(s.B) * s.Hq * s.T * s.T);
  cpu::attention_forward(ref_out.data(), probs.data(), q.data(), k.data(), v.data(), s.B, s.T, s.Hq, s.Hkv, s.D);
  std::vector<float> ref_dq(q.size(), 0.0f), ref_dk(k.size(), 0.0f), ref_dv(v.size(), 0.0f);
  cpu::attention_backward(ref_dq.data(), ref_dk.data(), ref_dv.data(), dout.data(), probs.data(), q.data(), k.data(),
                          v.data(), s.B, s.T, s.Hq, s.Hkv, s.D);

  // The bounds of the header comment.
  const double sigma = 1.0 / std::sqrt(static_cast<double>(s.D));
  const double Sq = max_abs(q), Sk = max_abs(k), Sv = max_abs(v), Sg = max_abs(dout);
  const double G = s.D * Sg * Sv;
  const double eps_s = sigma * s.D * kU * s.D * Sq * Sk;
  const double e_p = 2 * eps_s + (2.0 * s.T + 8) * kU;
  const double e_ds = 3 * e_p + (2.0 * s.D + s.T) * kU;
  // W (B, T, Hkv): the probability mass on each key over the rows of its group.
  std::vector<double> W(static_cast<size_t>(s.B) * s.T * s.Hkv, 0.0);
  for (int b = 0; b < s.B; ++b) {
    for (int h = 0; h < s.Hq; ++h) {
      for (int t = 0; t < s.T; ++t) {
        for (int j = 0; j <= t; ++j) {
          W[(static_cast<size_t>(b) * s.T + j) * s.Hkv + h / rep] +=
              probs[((static_cast<size_t>(b) * s.Hq + h) * s.T + t) * s.T + j];
        }
      }
    }
  }
  auto kv_weight = [&](size_t i) { return W[i / s.D]; };  // element i of a (B, T, Hkv, D) tensor

  expect_near(out, ref_out, [&](size_t) { return 2 * (e_p + s.T * kU) * Sv; }, "out");
  expect_near(columns(dqkv, ld, 0, q_cols), ref_dq, [&](size_t) { return 2 * sigma * G * Sk * (e_ds + 2 * s.T * kU); },
              "dq");
  expect_near(columns(dqkv, ld, q_cols, kv_cols), ref_dk,
              [&](size_t i) { return 2 * sigma * G * Sq * kv_weight(i) * (e_ds + 2.0 * rep * s.T * kU); }, "dk");
  expect_near(columns(dqkv, ld, q_cols + kv_cols, kv_cols), ref_dv,
              [&](size_t i) { return 2 * Sg * kv_weight(i) * (e_p + 1.0 * rep * s.T * kU); }, "dv");

  // lse against double precision.
  std::vector<float> ref_lse(lse.size());
  for (int b = 0; b < s.B; ++b) {
    for (int h = 0; h < s.Hq; ++h) {
      for (int t = 0; t < s.T; ++t) {
        const float* qt = &q[((static_cast<size_t>(b) * s.T + t) * s.Hq + h) * s.D];
        std::vector<double> sc(t + 1);
        double mx = -INFINITY;
        for (int j = 0; j <= t; ++j) {
          const float* kj = &k[((static_cast<size_t>(b) * s.T + j) * s.Hkv + h / rep) * s.D];
          double a = 0.0;
          for (int d = 0; d < s.D; ++d) a += static_cast<double>(qt[d]) * kj[d];
          sc[j] = sigma * a;
          mx = std::max(mx, sc[j]);
        }
        double sum = 0.0;
        for (double x : sc) sum += std::exp(x - mx);
        ref_lse[(static_cast<size_t>(b) * s.Hq + h) * s.T + t] = static_cast<float>(mx + std::log(sum));
      }
    }
  }
  expect_near(lse, ref_lse, [&](size_t i) { return eps_s + (2.0 * s.T + 8) * kU + 2 * kU * std::fabs(ref_lse[i]); },
              "lse");

  const int64_t used = q_cols + 2 * kv_cols;
  size_t pad_changed = 0;
  for (size_t i = 0; i < dqkv.size(); ++i) pad_changed += static_cast<int64_t>(i % ld) >= used && dqkv[i] != kPad;
  EXPECT_EQ(pad_changed, 0u) << "the d_qkv padding columns beyond (Hq + 2 Hkv) * D were written";
}

// Ragged T around the 64-row tiles (1, 37, 65, 130, 200: a partial first, second, third and fourth tile) and whole
// tiles (64, 128), GQA ratios 1, 2 and 4, both head dims, B = 2 where a batch offset could go wrong.
INSTANTIATE_TEST_SUITE_P(Shapes, FlashEmulation,
                         testing::Values(Shape{1, 1, 2, 2, 64}, Shape{2, 37, 4, 2, 64}, Shape{1, 64, 4, 1, 64},
                                         Shape{2, 65, 4, 4, 128}, Shape{1, 128, 8, 2, 128},
                                         Shape{2, 130, 4, 1, 64}, Shape{1, 200, 8, 4, 128}, Shape{1, 200, 2, 2, 64}),
                         shape_name);

}  // namespace
}  // namespace dytrain::test
