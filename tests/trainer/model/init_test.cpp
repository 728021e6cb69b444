// The parameter init streams: keyed by (seed, name), reproducible, and with the asked-for statistics.
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "trainer/model/init.h"
#include "trainer/model/layout.h"

namespace dytrain {
namespace {

TEST(Init, NormalStatistics) {
  const int64_t n = 200000;
  std::vector<float> x(n);
  fill_normal(x.data(), n, 0.02, 7, "w");
  double s = 0, s2 = 0, s4 = 0;
  for (float v : x) s += v, s2 += double(v) * v, s4 += std::pow(double(v), 4);
  const double mean = s / n, var = s2 / n - mean * mean;
  // Standard errors at n = 2e5: mean 0.02/sqrt(n) = 4.5e-5, std relative 1/sqrt(2n) = 0.16%; bounds are ~5 sigma.
  EXPECT_NEAR(mean, 0.0, 2.5e-4);
  EXPECT_NEAR(std::sqrt(var), 0.02, 0.02 * 0.008);
  // Gaussian kurtosis is 3 (a uniform would give 1.8): checks the shape, not only the moments.
  EXPECT_NEAR(s4 / n / (var * var), 3.0, 0.1);
}

TEST(Init, StreamsAreKeyedBySeedAndName) {
  std::vector<float> a(64), b(64), c(64), d(64);
  fill_normal(a.data(), 64, 1.0, 1, "model.layers.0.mlp.up_proj.weight");
  fill_normal(b.data(), 64, 1.0, 1, "model.layers.0.mlp.up_proj.weight");
  fill_normal(c.data(), 64, 1.0, 2, "model.layers.0.mlp.up_proj.weight");
  fill_normal(d.data(), 64, 1.0, 1, "model.layers.1.mlp.up_proj.weight");
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a, d);
  // A prefix of a longer draw is the shorter draw: slices of one tensor agree.
  std::vector<float> e(65);
  fill_normal(e.data(), 65, 1.0, 1, "model.layers.0.mlp.up_proj.weight");
  EXPECT_TRUE(std::equal(a.begin(), a.end(), e.begin()));
}

// model.init pins each tensor's std: the rule's values for known shapes, and every initialised tensor's sample std
// against its rule (standard error 1/sqrt(2n): 1.1% for the smallest matrix here, 64 x 64; bounds ~5 sigma).
TEST(Init, EachTensorFollowsTheInitRule) {
  ModelConfig m;
  m.vocab_size = 96;
  m.dim = 64;
  m.n_layers = 2;
  m.n_heads = 4;
  m.ffn_dim = 160;
  m.max_seq_len = 16;
  m.init_std = 0.02;
  const auto find = [](const LlamaLayout& l, const std::string& name) -> const ParamSpec& {
    for (const ParamSpec& s : l.table.specs())
      if (s.name == name) return s;
    throw std::runtime_error("no tensor " + name);
  };
  const std::string q = "model.layers.1.self_attn.q_proj.weight", o = "model.layers.1.self_attn.o_proj.weight";
  const std::string down = "model.layers.0.mlp.down_proj.weight", embed = "model.embed_tokens.weight";
  for (const char* mode : {"fixed", "scaled", "scaled_depth"}) {
    SCOPED_TRACE(mode);
    m.init = mode;
    const LlamaLayout layout(m, 0, 1);
    const std::string how = mode;
    const double wide = how == "fixed" ? 0.02 : 0.02 * std::sqrt(4096.0 / 64);   // fan-in 64: 0.16
    const double narrow = how == "fixed" ? 0.02 : 0.02 * std::sqrt(4096.0 / 160);  // down_proj: fan-in 160
    const double depth = how == "scaled_depth" ? 2.0 : 1.0;                        // sqrt(2 x 2 layers)
    EXPECT_DOUBLE_EQ(init_std_of(m, find(layout, q)), wide);
    EXPECT_DOUBLE_EQ(init_std_of(m, find(layout, embed)), wide);
    EXPECT_DOUBLE_EQ(init_std_of(m, find(layout, o)), wide / depth);
    EXPECT_DOUBLE_EQ(init_std_of(m, find(layout, down)), narrow / depth);

    std::vector<float> params(layout.table.total());
    layout.init(params.data(), 3);
    for (const ParamSpec& s : layout.table.specs()) {
      if (s.group != ParamGroup::matrices && s.group != ParamGroup::embeddings) continue;
      double sq = 0;
      for (int64_t i = 0; i < s.numel; ++i) sq += double(params[s.offset + i]) * params[s.offset + i];
      const double want = init_std_of(m, s);
      EXPECT_NEAR(std::sqrt(sq / double(s.numel)), want, 0.06 * want) << s.name;
    }
  }
  // The 7B preset keeps the official code's init (fixed 0.02): checked on the preset in config_test.
}

}  // namespace
}  // namespace dytrain
