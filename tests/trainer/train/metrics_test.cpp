// Site metrics from moments against direct computation, and the JSON line format.
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

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

TEST(Metrics, ParseReadsBackEveryFieldWritten) {
  StepMetrics m;
  m.step = 12;
  m.loss = 3.25;
  m.val_loss = 3.5;
  m.lr = 2.5e-4;
  m.grad_norm = 0.75;
  m.tokens = 98304;
  m.step_ms = 125;
  m.tok_s = 65536;
  m.elapsed_s = 1.5;
  m.eta_s = 30;
  m.embed_scale = 5.5;
  m.mfu = 0.375;
  m.sites = site_metrics(std::vector<cpu::SiteMoments>(3, cpu::SiteMoments{3, 5, 1, 2}), {1.0f, 0.5f, 0.25f});
  // Every value above is exact in the file's decimal form, so the round trip is exact.
  const StepMetrics r = parse_metrics_line(to_json_line(m), "here");
  EXPECT_EQ(r.step, m.step);
  EXPECT_EQ(r.loss, m.loss);
  EXPECT_EQ(r.val_loss, m.val_loss);
  EXPECT_EQ(r.lr, m.lr);
  EXPECT_EQ(r.grad_norm, m.grad_norm);
  EXPECT_EQ(r.tokens, m.tokens);
  EXPECT_EQ(r.step_ms, m.step_ms);
  EXPECT_EQ(r.tok_s, m.tok_s);
  EXPECT_EQ(r.elapsed_s, m.elapsed_s);
  EXPECT_EQ(r.eta_s, m.eta_s);
  EXPECT_EQ(r.embed_scale, m.embed_scale);
  EXPECT_EQ(r.mfu, m.mfu);
  ASSERT_EQ(r.sites.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(r.sites[i].layer, m.sites[i].layer);
    EXPECT_EQ(r.sites[i].site, m.sites[i].site);
    EXPECT_EQ(r.sites[i].alpha, m.sites[i].alpha);
    EXPECT_EQ(r.sites[i].act_mean, m.sites[i].act_mean);
    EXPECT_NEAR(r.sites[i].act_std, m.sites[i].act_std, 1e-8 * m.sites[i].act_std);  // irrational: 9 digits
    EXPECT_EQ(r.sites[i].sat, m.sites[i].sat);
  }
  StepMetrics bare = m;
  bare.mfu.reset();
  bare.val_loss.reset();
  const StepMetrics rb = parse_metrics_line(to_json_line(bare), "here");
  EXPECT_FALSE(rb.mfu);
  EXPECT_FALSE(rb.val_loss);
  try {
    parse_metrics_line("{\"lr\": 1}", "run/metrics.jsonl:3");
    FAIL() << "a line without step and loss must not parse";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("run/metrics.jsonl:3"), std::string::npos) << e.what();
  }
}

// JSON has no NaN or infinity: a non-finite value is written as null (every JSON parser reads the line) and read
// back as NaN by the monitor and the sweep report.
TEST(Metrics, NonFiniteValuesAreJsonNull) {
  StepMetrics m;
  m.step = 7;
  m.loss = std::numeric_limits<double>::quiet_NaN();
  m.val_loss = -std::numeric_limits<double>::infinity();
  m.grad_norm = std::numeric_limits<double>::infinity();
  m.lr = 1e-3;
  SiteMetrics site;
  site.inv_std = std::numeric_limits<double>::infinity();
  site.alpha = 0.5;
  m.sites.push_back(site);
  const std::string line = to_json_line(m);
  for (const char* bad : {"nan", "inf", "NaN", "Inf"}) EXPECT_EQ(line.find(bad), std::string::npos) << line;
  for (const char* null : {"\"loss\":null", "\"val_loss\":null", "\"grad_norm\":null", "\"inv_std\":null"})
    EXPECT_NE(line.find(null), std::string::npos) << null << " not in " << line;
  const StepMetrics r = parse_metrics_line(line, "here");
  EXPECT_TRUE(std::isnan(r.loss));
  ASSERT_TRUE(r.val_loss);
  EXPECT_TRUE(std::isnan(*r.val_loss));
  EXPECT_TRUE(std::isnan(r.grad_norm));
  EXPECT_EQ(r.lr, 1e-3);
  ASSERT_EQ(r.sites.size(), 1u);
  EXPECT_TRUE(std::isnan(r.sites[0].inv_std));
  EXPECT_EQ(r.sites[0].alpha, 0.5);
}

// Files written before null was used hold nan / inf spellings; they are read, not refused.
TEST(Metrics, OldNanSpellingsAreRead) {
  const StepMetrics r = parse_metrics_line("{\"step\":3,\"loss\":2.5,\"val_loss\":-nan,\"grad_norm\":inf}", "here");
  EXPECT_EQ(r.loss, 2.5);
  ASSERT_TRUE(r.val_loss);
  EXPECT_TRUE(std::isnan(*r.val_loss));
  EXPECT_TRUE(std::isinf(r.grad_norm));
}

}  // namespace
}  // namespace dytrain
