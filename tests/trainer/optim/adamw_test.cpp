// AdamW over parameter groups against values computed by hand from the formula, and the clip factor.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "trainer/optim/adamw.h"

namespace dytrain {
namespace {

TEST(AdamW, TwoStepsAgainstHandComputedValues) {
  ParamTable table;
  table.add("w", {2}, ParamGroup::matrices);         // decayed, default lr and beta2
  table.add("alpha", {1}, ParamGroup::dyt_alpha);   // no decay, own lr and beta2
  OptimConfig opt;
  opt.lr = 0.1;
  opt.beta1 = 0.9;
  opt.beta2 = 0.99;
  opt.eps = 1e-8;
  opt.weight_decay = 0.5;
  opt.dyt_alpha.lr = 0.01;
  opt.dyt_alpha.beta2 = 0.5;
  AdamW adam(opt, table);
  // The flat buffer: w at offset 0, alpha at the next aligned offset (params.h); p and g name the three values.
  const int64_t a = table.at("alpha").offset;
  std::vector<float> buf(table.total(), 0.0f), grad(table.total(), 0.0f);
  const auto p = [&](int i) -> float& { return buf[i < 2 ? i : a]; };
  const auto set_grads = [&](float g0, float g1, float g2) { grad[0] = g0, grad[1] = g1, grad[a] = g2; };
  p(0) = 1.0f, p(1) = -2.0f, p(2) = 0.8f;
  set_grads(0.5f, 0.25f, -2.0f);
  adam.step(buf.data(), grad.data(), /*lr_factor=*/1.0, /*grad_scale=*/0.5f);
  // Step 1, w[0]: g = 0.25, m = 0.025, v = 0.01 * 0.0625; m_hat = 0.25, v_hat = 0.0625, update = 0.25 / 0.25 = 1
  //   p = 1 - 0.1 * (1 + 0.5 * 1) = 0.85.  w[1]: g = 0.125, update 1: p = -2 - 0.1 * (1 + 0.5 * -2) = -2.
  // alpha: g = -1, update -1, no decay: p = 0.8 + 0.01 = 0.81.
  EXPECT_NEAR(p(0), 0.85f, 1e-6);
  EXPECT_NEAR(p(1), -2.0f, 1e-6);
  EXPECT_NEAR(p(2), 0.81f, 1e-6);
  set_grads(-1.0f, 0.0f, 1.0f);
  adam.step(buf.data(), grad.data(), /*lr_factor=*/0.5, /*grad_scale=*/1.0f);
  // Step 2, w[0]: m = 0.9 * 0.025 - 0.1 = -0.0775, v = 0.99 * 0.000625 + 0.01 = 0.01061875;
  //   m_hat = m / (1 - 0.9^2), v_hat = v / (1 - 0.99^2); lr = 0.1 * 0.5; decay acts on the current p = 0.85
  const double m0 = -0.0775 / 0.19, v0 = (0.99 * 0.000625 + 0.01) / (1 - 0.99 * 0.99);
  EXPECT_NEAR(p(0), 0.85 - 0.05 * (m0 / (std::sqrt(v0) + 1e-8) + 0.5 * 0.85), 1e-6);
  // alpha: m = 0.9 * -0.1 + 0.1 = 0.01, v = 0.5 * 0.5 + 0.5 = 0.75; m_hat = 0.01 / 0.19, v_hat = 0.75 / 0.75
  const double ma = 0.01 / 0.19;
  EXPECT_NEAR(p(2), 0.81 - 0.005 * ma, 1e-6);
  EXPECT_EQ(adam.t(), 2);
}

TEST(AdamW, RangesTogetherEqualTheWholeUpdate) {
  // ZeRO-1: two ranks updating the halves of a buffer, split inside tensor b and so across tensor and group
  // boundaries and the alignment gaps, give exactly the update of one optimizer over the whole buffer.
  ParamTable table;
  table.add("a", {3}, ParamGroup::matrices);
  table.add("b", {100}, ParamGroup::dyt_gamma_beta);
  table.add("c", {3}, ParamGroup::embeddings);
  OptimConfig opt;
  opt.dyt_gamma_beta.lr = 0.5;
  const int64_t n = table.total(), half = table.at("b").offset + 50;
  std::vector<float> grads(n, 0.0f), whole(n, 0.0f);
  for (const ParamSpec& s : table.specs())
    for (int64_t i = s.offset; i < s.offset + s.numel; ++i) {
      whole[i] = float(i % 7) - 2.5f;
      grads[i] = 0.1f * float(i % 5) - 0.15f;
    }
  std::vector<float> split = whole;
  AdamW all(opt, table), lo(opt, table, 0, half), hi(opt, table, half, n);
  for (int step = 0; step < 3; ++step) {
    all.step(whole.data(), grads.data(), 1.0, 1.0f);
    lo.step(split.data(), grads.data(), 1.0, 1.0f);
    hi.step(split.data(), grads.data() + half, 1.0, 1.0f);
  }
  EXPECT_EQ(whole, split);
  EXPECT_NE(whole[table.at("c").offset], float(table.at("c").offset % 7) - 2.5f);  // c was updated
  EXPECT_EQ(hi.exp_avg().size(), size_t(n - half));
  EXPECT_EQ(hi.exp_avg()[0], all.exp_avg()[half]);
}

TEST(AdamW, GroupHyperResolvesOverrides) {
  OptimConfig opt;
  opt.lr = 1e-3;
  opt.beta2 = 0.95;
  opt.weight_decay = 0.1;
  opt.embeddings.weight_decay = false;
  opt.embed_scale.beta2 = 0.999;
  EXPECT_DOUBLE_EQ(group_hyper(opt, ParamGroup::matrices).weight_decay, 0.1);
  EXPECT_DOUBLE_EQ(group_hyper(opt, ParamGroup::embeddings).weight_decay, 0.0);
  EXPECT_DOUBLE_EQ(group_hyper(opt, ParamGroup::embed_scale).beta2, 0.999);
  EXPECT_DOUBLE_EQ(group_hyper(opt, ParamGroup::dyt_alpha).lr, 1e-3);
}

TEST(ClipScale, BringsTheNormToTheLimit) {
  EXPECT_EQ(clip_scale(0.5, 1.0), 1.0f);
  EXPECT_EQ(clip_scale(5.0, 0.0), 1.0f);  // 0 disables clipping
  EXPECT_NEAR(clip_scale(4.0, 1.0) * 4.0, 1.0, 1e-6);
}

}  // namespace
}  // namespace dytrain
