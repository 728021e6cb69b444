// The whole model: its parameter names (the fixed HF format), its initial loss, causality, and its gradient
// against central finite differences of the loss along random directions, one direction per tensor.
#include <cmath>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/trainer/model/model_test_util.h"
#include "trainer/model/llama.h"

namespace dytrain {
namespace {

using testing::random_tokens;

ModelConfig tiny(NormKind norm, bool bias, bool tie, int kv_heads) {
  return testing::tiny_model(norm, bias, tie, kv_heads);
}

TEST(Llama, ParameterNamesFollowHuggingFace) {
  LlamaModel dyt(tiny(NormKind::dyt, true, false, 2));
  std::set<std::string> names;
  for (const ParamSpec& s : dyt.table().specs()) names.insert(s.name);
  for (const char* n : {"model.embed_tokens.weight", "model.embed_scale", "model.layers.1.input_layernorm.alpha",
                        "model.layers.1.input_layernorm.weight", "model.layers.1.input_layernorm.bias",
                        "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                        "model.layers.0.self_attn.v_proj.weight", "model.layers.0.self_attn.o_proj.weight",
                        "model.layers.0.post_attention_layernorm.alpha", "model.layers.0.mlp.gate_proj.weight",
                        "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight",
                        "model.norm.alpha", "model.norm.weight", "model.norm.bias", "lm_head.weight"})
    EXPECT_TRUE(names.count(n)) << n;
  EXPECT_EQ(dyt.table().at("model.layers.0.self_attn.k_proj.weight").shape, (std::vector<int64_t>{8, 16}));
  EXPECT_EQ(dyt.table().at("model.layers.0.mlp.down_proj.weight").shape, (std::vector<int64_t>{16, 24}));
  EXPECT_EQ(dyt.table().at("model.norm.alpha").shape, (std::vector<int64_t>{1}));

  LlamaModel rms(tiny(NormKind::rmsnorm, false, true, 4));
  EXPECT_EQ(rms.table().find("model.norm.alpha"), nullptr);
  EXPECT_EQ(rms.table().find("lm_head.weight"), nullptr);  // tied
  EXPECT_NE(rms.table().find("model.norm.weight"), nullptr);
}

TEST(Llama, InitValues) {
  ModelConfig cfg = tiny(NormKind::dyt, true, false, 2);
  LlamaModel m(cfg);
  m.init(3);
  const auto& P = m.params();
  EXPECT_FLOAT_EQ(P[m.table().at("model.embed_scale").offset], 4.0f);  // sqrt(16)
  EXPECT_FLOAT_EQ(P[m.table().at("model.layers.1.input_layernorm.alpha").offset], 1.0f);
  EXPECT_FLOAT_EQ(P[m.table().at("model.layers.1.post_attention_layernorm.alpha").offset], 0.5f);
  EXPECT_FLOAT_EQ(P[m.table().at("model.norm.alpha").offset], 0.7f);
  EXPECT_FLOAT_EQ(P[m.table().at("model.norm.weight").offset + 5], 1.0f);
  EXPECT_FLOAT_EQ(P[m.table().at("model.norm.bias").offset + 5], 0.0f);
  EXPECT_FLOAT_EQ(m.site_alpha(3), 0.5f);
  LlamaModel again(cfg);
  again.init(3);
  EXPECT_EQ(again.params(), m.params());
}

TEST(Llama, InitialLossIsNearUniform) {
  ModelConfig cfg = tiny(NormKind::dyt, false, false, 4);
  cfg.init = "fixed";
  cfg.init_std = 0.02;
  LlamaModel m(cfg);
  m.init(1);
  auto tok = random_tokens(3, 8, cfg.vocab_size, 1);
  // With N(0, 0.02) weights the logits are near zero: the loss is log(V) up to a few percent.
  EXPECT_NEAR(m.forward(tok.data(), 3, 8, nullptr), std::log(double(cfg.vocab_size)), 0.1);
}

TEST(Llama, IsCausal) {
  ModelConfig cfg = tiny(NormKind::dyt, false, false, 2);
  LlamaModel m(cfg);
  m.init(1);
  const int B = 2, T = 8;
  auto tok = random_tokens(B, T, cfg.vocab_size, 2);
  // The loss at position t only depends on tokens 0..t+1. Token T-1 is the last input and the target of position
  // T-2: changing it must leave the losses of positions 0..T-3 unchanged, bit for bit, and change position T-1's.
  m.forward(tok.data(), B, T, nullptr);
  const std::vector<float> before = m.token_losses();
  auto changed = tok;
  for (int b = 0; b < B; ++b) changed[b * (T + 1) + T - 1] = (changed[b * (T + 1) + T - 1] + 1) % cfg.vocab_size;
  m.forward(changed.data(), B, T, nullptr);
  const std::vector<float> after = m.token_losses();
  for (int b = 0; b < B; ++b) {
    for (int t = 0; t < T - 2; ++t) EXPECT_EQ(before[b * T + t], after[b * T + t]) << "b " << b << " t " << t;
    EXPECT_NE(before[b * T + T - 1], after[b * T + T - 1]);
  }
}

// dL/du along a random unit direction u within each tensor, by central differences, against grad . u.
void check_gradient(const ModelConfig& cfg) {
  LlamaModel m(cfg);
  m.init(11);
  const int B = 2, T = 6;
  auto tok = random_tokens(B, T, cfg.vocab_size, 5);
  m.zero_grad();
  m.forward(tok.data(), B, T, nullptr);
  m.backward(1.0f);
  const std::vector<float> grad = m.grads();
  std::mt19937 rng(9);
  std::normal_distribution<double> normal;
  for (const ParamSpec& s : m.table().specs()) {
    std::vector<double> u(s.numel);
    double norm = 0;
    for (auto& x : u) x = normal(rng), norm += x * x;
    double analytic = 0;
    for (int64_t i = 0; i < s.numel; ++i) u[i] /= std::sqrt(norm), analytic += u[i] * grad[s.offset + i];
    // h = 1% of the tensor's scale (at least 1e-2): the loss is fp32 (~3.6, ulp 2.4e-7), so the difference quotient
    // carries ~1.2e-5 of rounding noise, while the O(h^2) truncation of the central difference stays below it.
    double scale = 0;
    for (int64_t i = 0; i < s.numel; ++i) scale = std::max(scale, double(std::fabs(m.params()[s.offset + i])));
    const double h = 1e-2 * std::max(scale, 1.0);
    const std::vector<float> saved(m.params().begin() + s.offset, m.params().begin() + s.offset + s.numel);
    auto loss_at = [&](double step) {
      for (int64_t i = 0; i < s.numel; ++i) m.params()[s.offset + i] = float(saved[i] + step * u[i]);
      return double(m.forward(tok.data(), B, T, nullptr));
    };
    const double numeric = (loss_at(h) - loss_at(-h)) / (2 * h);
    std::copy(saved.begin(), saved.end(), m.params().begin() + s.offset);
    // The noise floor above (with margin) plus 0.2% relative: a gradient off by 1% fails for any slope > 4e-3.
    EXPECT_NEAR(analytic, numeric, 2e-3 * std::fabs(numeric) + 3e-5) << s.name;
  }
}

TEST(Llama, GradientMatchesFiniteDifferencesDyT) { check_gradient(tiny(NormKind::dyt, true, false, 2)); }
TEST(Llama, GradientMatchesFiniteDifferencesTied) { check_gradient(tiny(NormKind::dyt, false, true, 4)); }
TEST(Llama, GradientMatchesFiniteDifferencesRMSNorm) { check_gradient(tiny(NormKind::rmsnorm, false, false, 1)); }

TEST(Llama, BackwardAccumulatesAndMomentsCount) {
  ModelConfig cfg = tiny(NormKind::dyt, false, false, 2);
  LlamaModel m(cfg);
  m.init(1);
  auto tok = random_tokens(2, 5, cfg.vocab_size, 3);
  std::vector<cpu::SiteMoments> mom(n_norm_sites(cfg));
  m.zero_grad();
  m.forward(tok.data(), 2, 5, mom.data());
  m.backward(0.5f);
  const std::vector<float> once = m.grads();
  m.forward(tok.data(), 2, 5, mom.data());
  m.backward(0.5f);
  for (size_t i = 0; i < once.size(); i += 97) EXPECT_NEAR(m.grads()[i], 2 * once[i], 1e-6 + 1e-5 * std::fabs(once[i]));
  for (const auto& s : mom) EXPECT_EQ(s.count, 2.0 * 2 * 5 * cfg.dim);  // two passes over B*T*C inputs
}

TEST(Llama, CalibratedAlphaIsCOverTheInputStd) {
  ModelConfig cfg = tiny(NormKind::dyt, false, false, 2);
  LlamaModel m(cfg);
  m.init(4);
  const int B = 2, T = 6;
  auto tok = random_tokens(B, T, cfg.vocab_size, 8);
  m.calibrate_alphas(tok.data(), B, T, 0.5);
  // Measured afterwards with the calibrated alphas in place, every site's input std times its alpha is c: each site's
  // input only depends on earlier sites, which calibration had already set when it measured.
  std::vector<cpu::SiteMoments> mom(n_norm_sites(cfg));
  m.forward(tok.data(), B, T, mom.data());
  for (int s = 0; s < n_norm_sites(cfg); ++s) {
    const double mean = mom[s].sum / mom[s].count;
    const double std = std::sqrt(mom[s].sum_sq / mom[s].count - mean * mean);
    EXPECT_NEAR(m.site_alpha(s) * std, 0.5, 1e-4) << "site " << s;
  }
  EXPECT_NE(m.site_alpha(0), 1.0f);  // moved away from alpha_attn
}

}  // namespace
}  // namespace dytrain

namespace dytrain {
namespace {

TEST(Llama, GradsReadyReportsEachLayerWhenItsGradientIsFinal) {
  // The hook behind the overlapped dp average (grad_sync.h): layer by layer from the last, each range's gradient
  // must already be what it is at the end of the backward pass.
  const ModelConfig cfg = tiny(NormKind::dyt, true, false, 2);
  LlamaModel m(cfg);
  m.init(3);
  const std::vector<int32_t> tokens = random_tokens(2, 8, cfg.vocab_size, 5);
  m.forward(tokens.data(), 2, 8, nullptr);
  std::vector<std::pair<int64_t, int64_t>> ranges;
  std::vector<std::vector<float>> at_call;
  m.set_grads_ready([&](int64_t begin, int64_t end) {
    ranges.emplace_back(begin, end);
    at_call.emplace_back(m.grads().begin() + begin, m.grads().begin() + end);
  });
  m.backward(1.0f);
  ASSERT_EQ(ranges.size(), size_t(cfg.n_layers));
  for (int k = 0; k < cfg.n_layers; ++k) {
    const int layer = cfg.n_layers - 1 - k;
    EXPECT_EQ(ranges[k], m.layout().layer_range(layer));
    const std::vector<float> final_grads(m.grads().begin() + ranges[k].first, m.grads().begin() + ranges[k].second);
    EXPECT_EQ(at_call[k], final_grads) << "layer " << layer;
  }
  // The ranges hold exactly the layer tensors: every tensor of layer i lies in layer_range(i), nothing else does.
  for (const ParamSpec& s : m.table().specs()) {
    int inside = -1;
    for (int i = 0; i < cfg.n_layers; ++i) {
      const auto [b, e] = m.layout().layer_range(i);
      if (s.offset >= b && s.offset + s.numel <= e) inside = i;
    }
    const bool layer_tensor = s.name.rfind("model.layers.", 0) == 0;
    EXPECT_EQ(inside >= 0, layer_tensor) << s.name;
    if (layer_tensor) {
      EXPECT_EQ(s.name.rfind("model.layers." + std::to_string(inside) + ".", 0), 0u) << s.name;
    }
  }
}

}  // namespace
}  // namespace dytrain
