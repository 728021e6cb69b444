// Causal GQA attention: forward and probs against a straightforward double implementation, backward against
// finite differences for q, k and v, causality, GQA equals MHA with repeated k/v heads, the += convention,
// bit-identical results across thread counts, and rejection of a head count that does not divide.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/attention.h"
#include "tests/kernels/cpu/op_test_util.h"

namespace dytrain::cpu {
namespace {

using test::expect_grad_near;
using test::fd_gradient;
using test::random_vec;
using test::weighted_sum;

struct AttnCase {
  int B = 2, T = 5, Hq = 4, Hkv = 2, D = 6;
  std::vector<float> q = random_vec(static_cast<size_t>(B) * T * Hq * D, 80, -1.5f, 1.5f);
  std::vector<float> k = random_vec(static_cast<size_t>(B) * T * Hkv * D, 81, -1.5f, 1.5f);
  std::vector<float> v = random_vec(static_cast<size_t>(B) * T * Hkv * D, 82);
  std::vector<float> w = random_vec(q.size(), 83);  // objective weights, i.e. dout

  std::vector<float> forward(std::vector<float>* probs = nullptr) const {
    std::vector<float> out(q.size()), p(static_cast<size_t>(B) * Hq * T * T, -1.0f);
    attention_forward(out.data(), p.data(), q.data(), k.data(), v.data(), B, T, Hq, Hkv, D);
    if (probs) *probs = p;
    return out;
  }
  // dq, dk, dv must already have the shapes of q, k, v.
  void backward(std::vector<float>& dq, std::vector<float>& dk, std::vector<float>& dv) const {
    std::vector<float> probs;
    forward(&probs);
    attention_backward(dq.data(), dk.data(), dv.data(), w.data(), probs.data(), q.data(), k.data(), v.data(), B, T,
                       Hq, Hkv, D);
  }
};

TEST(CpuAttention, ForwardMatchesDoubleReference) {
  AttnCase tc;
  std::vector<float> probs;
  const auto out = tc.forward(&probs);
  const int group = tc.Hq / tc.Hkv;
  for (int b = 0; b < tc.B; ++b) {
    for (int h = 0; h < tc.Hq; ++h) {
      const int hk = h / group;
      for (int t = 0; t < tc.T; ++t) {
        auto qi = [&](int d) { return tc.q[((static_cast<size_t>(b) * tc.T + t) * tc.Hq + h) * tc.D + d]; };
        auto kv = [&](const std::vector<float>& x, int j, int d) {
          return x[((static_cast<size_t>(b) * tc.T + j) * tc.Hkv + hk) * tc.D + d];
        };
        std::vector<double> s(tc.T, -INFINITY);
        for (int j = 0; j <= t; ++j) {
          double dot = 0.0;
          for (int d = 0; d < tc.D; ++d) dot += static_cast<double>(qi(d)) * kv(tc.k, j, d);
          s[j] = dot / std::sqrt(static_cast<double>(tc.D));
        }
        const double mx = *std::max_element(s.begin(), s.end());
        double z = 0.0;
        for (int j = 0; j <= t; ++j) z += std::exp(s[j] - mx);
        const float* p = probs.data() + ((static_cast<size_t>(b) * tc.Hq + h) * tc.T + t) * tc.T;
        for (int j = 0; j < tc.T; ++j) {
          const double pref = j <= t ? std::exp(s[j] - mx) / z : 0.0;
          // fp32 scores (|s| < 4, a few ulps) through exp: probability errors ~1e-6 relative.
          if (j > t) {
            EXPECT_EQ(p[j], 0.0f) << "above the diagonal";
          }
          EXPECT_NEAR(p[j], pref, 2e-6);
        }
        for (int d = 0; d < tc.D; ++d) {
          double oref = 0.0;
          for (int j = 0; j <= t; ++j) oref += std::exp(s[j] - mx) / z * kv(tc.v, j, d);
          // A convex combination of |v| <= 1 with probability errors ~2e-6 each over <= 5 keys.
          EXPECT_NEAR(out[((static_cast<size_t>(b) * tc.T + t) * tc.Hq + h) * tc.D + d], oref, 1e-5);
        }
      }
    }
  }
}

TEST(CpuAttention, BackwardMatchesFiniteDifferences) {
  AttnCase tc;
  std::vector<float> dq(tc.q.size()), dk(tc.k.size()), dv(tc.v.size());
  tc.backward(dq, dk, dv);
  auto obj = [&] { return weighted_sum(tc.forward(), tc.w); };
  // Step 1e-3: a k or v element moves up to T * group * D = 60 outputs of size <= 1: noise
  // ~sqrt(60) * 6e-8 / 2e-3 ~ 2.5e-4; softmax curvature with |q k| / sqrt(D) < 4 keeps truncation h^2/6 |f'''|
  // below 1e-5. Tolerance 1e-3 + 1e-3 relative, while a wrong scale or a missing softmax term is O(0.1).
  expect_grad_near(dq.data(), fd_gradient(tc.q.data(), tc.q.size(), 1e-3, obj), 1e-3, 1e-3, "dq");
  expect_grad_near(dk.data(), fd_gradient(tc.k.data(), tc.k.size(), 1e-3, obj), 1e-3, 1e-3, "dk");
  expect_grad_near(dv.data(), fd_gradient(tc.v.data(), tc.v.size(), 1e-3, obj), 1e-3, 1e-3, "dv");
}

TEST(CpuAttention, LaterKeysDoNotChangeEarlierOutputs) {
  AttnCase tc;
  const auto before = tc.forward();
  const int j = 3;  // perturb key and value at position j in every batch and kv head
  for (int b = 0; b < tc.B; ++b) {
    for (int i = 0; i < tc.Hkv * tc.D; ++i) {
      const size_t idx = (static_cast<size_t>(b) * tc.T + j) * tc.Hkv * tc.D + i;
      tc.k[idx] += 0.5f;
      tc.v[idx] -= 0.7f;
    }
  }
  const auto after = tc.forward();
  const size_t row = static_cast<size_t>(tc.Hq) * tc.D;
  for (int b = 0; b < tc.B; ++b) {
    for (int t = 0; t < tc.T; ++t) {
      const size_t off = (static_cast<size_t>(b) * tc.T + t) * row;
      const std::vector<float> x(before.begin() + off, before.begin() + off + row);
      const std::vector<float> y(after.begin() + off, after.begin() + off + row);
      if (t < j) {
        EXPECT_EQ(x, y) << "b=" << b << " t=" << t;  // bit-identical: the masked part is never read
      } else {
        EXPECT_NE(x, y) << "b=" << b << " t=" << t;
      }
    }
  }
}

TEST(CpuAttention, GroupedQueryEqualsRepeatedHeads) {
  AttnCase gqa;
  AttnCase mha = gqa;
  mha.Hkv = gqa.Hq;
  const int group = gqa.Hq / gqa.Hkv;
  const size_t rows = static_cast<size_t>(gqa.B) * gqa.T;
  mha.k.assign(rows * mha.Hkv * gqa.D, 0.0f);
  mha.v.assign(mha.k.size(), 0.0f);
  for (size_t r = 0; r < rows; ++r) {
    for (int h = 0; h < gqa.Hq; ++h) {
      for (int d = 0; d < gqa.D; ++d) {
        mha.k[(r * mha.Hkv + h) * gqa.D + d] = gqa.k[(r * gqa.Hkv + h / group) * gqa.D + d];
        mha.v[(r * mha.Hkv + h) * gqa.D + d] = gqa.v[(r * gqa.Hkv + h / group) * gqa.D + d];
      }
    }
  }
  EXPECT_EQ(gqa.forward(), mha.forward());  // the same fp32 operations on the same numbers

  std::vector<float> dq_g(gqa.q.size()), dk_g(gqa.k.size()), dv_g(gqa.v.size());
  std::vector<float> dq_m(mha.q.size()), dk_m(mha.k.size()), dv_m(mha.v.size());
  gqa.backward(dq_g, dk_g, dv_g);
  mha.backward(dq_m, dk_m, dv_m);
  EXPECT_EQ(dq_g, dq_m);
  // A shared kv head's gradient is the sum over its query heads; summed here in another order: ~1e-7 differences.
  for (size_t r = 0; r < rows; ++r) {
    for (int hk = 0; hk < gqa.Hkv; ++hk) {
      for (int d = 0; d < gqa.D; ++d) {
        float sk = 0.0f, sv = 0.0f;
        for (int h = hk * group; h < (hk + 1) * group; ++h) {
          sk += dk_m[(r * mha.Hkv + h) * gqa.D + d];
          sv += dv_m[(r * mha.Hkv + h) * gqa.D + d];
        }
        EXPECT_NEAR(dk_g[(r * gqa.Hkv + hk) * gqa.D + d], sk, 1e-6);
        EXPECT_NEAR(dv_g[(r * gqa.Hkv + hk) * gqa.D + d], sv, 1e-6);
      }
    }
  }
}

TEST(CpuAttention, BackwardAccumulates) {
  AttnCase tc;
  std::vector<float> dq1(tc.q.size()), dk1(tc.k.size()), dv1(tc.v.size());
  std::vector<float> dq2(tc.q.size()), dk2(tc.k.size()), dv2(tc.v.size());
  tc.backward(dq1, dk1, dv1);
  tc.backward(dq2, dk2, dv2);
  tc.backward(dq2, dk2, dv2);
  // Terms are added one by one into the buffers, so the second pass rounds differently from 2x: ~1e-7 of |grad|.
  for (size_t i = 0; i < dq1.size(); ++i) EXPECT_NEAR(dq2[i], 2 * dq1[i], 1e-6);
  for (size_t i = 0; i < dk1.size(); ++i) {
    EXPECT_NEAR(dk2[i], 2 * dk1[i], 1e-6);
    EXPECT_NEAR(dv2[i], 2 * dv1[i], 1e-6);
  }
}

TEST(CpuAttention, ResultsIndependentOfThreadCount) {
  AttnCase tc;
  tc.B = 3;
  tc.T = 17;
  tc.q = random_vec(static_cast<size_t>(tc.B) * tc.T * tc.Hq * tc.D, 90);
  tc.k = random_vec(static_cast<size_t>(tc.B) * tc.T * tc.Hkv * tc.D, 91);
  tc.v = random_vec(tc.k.size(), 92);
  tc.w = random_vec(tc.q.size(), 93);
  std::vector<float> out1, out3, dq1(tc.q.size()), dk1(tc.k.size()), dv1(tc.v.size());
  std::vector<float> dq3(tc.q.size()), dk3(tc.k.size()), dv3(tc.v.size());
  {
    test::ScopedThreads threads(1);
    out1 = tc.forward();
    tc.backward(dq1, dk1, dv1);
  }
  {
    test::ScopedThreads threads(3);
    out3 = tc.forward();
    tc.backward(dq3, dk3, dv3);
  }
  EXPECT_EQ(out1, out3);
  EXPECT_EQ(dq1, dq3);
  EXPECT_EQ(dk1, dk3);
  EXPECT_EQ(dv1, dv3);
}

TEST(CpuAttention, HeadsThatDoNotDivideAreRejected) {
  AttnCase tc;
  std::vector<float> out(tc.q.size()), probs(static_cast<size_t>(tc.B) * tc.Hq * tc.T * tc.T);
  EXPECT_THROW(attention_forward(out.data(), probs.data(), tc.q.data(), tc.k.data(), tc.v.data(), tc.B, tc.T, 4, 3,
                                 tc.D),
               std::invalid_argument);
}

}  // namespace
}  // namespace dytrain::cpu
