// Site metrics from moments against direct computation, and the JSON line format.
#include <cmath>

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "trainer/train/metrics.h"

namespace dytrain {
namespace {

TEST(Metrics, SiteStatisticsFromMoments) {
  // Inputs {1, 2, 3, 6} at alpha 0.5: mean 3, population variance (4 + 1 + 0 + 9) / 4 = 3.5, |0.5 x| > 2 for 6 only.
  cpu::SiteMoments m{1 + 2 + 3 + 6, 1 + 4 + 9 + 36, 1, 4};
  std::vector<cpu::SiteMoments> moments(3, m);  // one layer: attn, ffn, final
  const auto s = site_metrics(moments, {0.5f, 0.25f, 1.0f});
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].site, "attn");
  EXPECT_EQ(s[1].site, "ffn");
  EXPECT_EQ(s[2].site, "final");
  EXPECT_EQ(s[2].layer, -1);
  EXPECT_DOUBLE_EQ(s[0].act_mean, 3.0);
  EXPECT_NEAR(s[0].act_std, std::sqrt(3.5), 1e-12);
  EXPECT_NEAR(s[0].inv_std, 1 / std::sqrt(3.5), 1e-12);
  EXPECT_DOUBLE_EQ(s[0].sat, 0.25);
  EXPECT_DOUBLE_EQ(s[1].alpha, 0.25);
}

TEST(Metrics, JsonLineParses) {
  StepMetrics m;
  m.step = 7;
  m.loss = 2.5;
  m.val_loss = 2.75;
  m.lr = 1e-3;
  m.sites = site_metrics(std::vector<cpu::SiteMoments>(3, cpu::SiteMoments{3, 5, 0, 2}), {1.0f, 1.0f, 1.0f});
  const YAML::Node j = YAML::Load(to_json_line(m));
  EXPECT_EQ(j["step"].as<int>(), 7);
  EXPECT_DOUBLE_EQ(j["val_loss"].as<double>(), 2.75);
  EXPECT_DOUBLE_EQ(j["lr"].as<double>(), 1e-3);
  EXPECT_EQ(j["sites"].size(), 3u);
  EXPECT_DOUBLE_EQ(j["sites"][1]["act_mean"].as<double>(), 1.5);
  StepMetrics no_val = m;
  no_val.val_loss.reset();
  EXPECT_FALSE(YAML::Load(to_json_line(no_val))["val_loss"]);
}

}  // namespace
}  // namespace dytrain
