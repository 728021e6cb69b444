// Sweep spec parsing and point expansion: counts, names, overrides, the alpha_final tie, the width rule, the
// RMSNorm collapse and the errors for bad specs. Each point's overrides are checked by loading the config they give.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "tests/trainer/sweep/sweep_test_util.h"
#include "trainer/config/config.h"
#include "trainer/sweep/spec.h"

namespace dytrain {
namespace {

using testing::TempDir;
using testing::write_text;

class SpecTest : public ::testing::Test {
 protected:
  void SetUp() override { write_text(dir_.file("base.yaml"), testing::tiny_base_yaml()); }

  SweepSpec load(const std::string& body) {
    write_text(dir_.file("sweeps/s.yaml"), "base: ../base.yaml\n" + body);
    return load_sweep_spec(dir_.file("sweeps/s.yaml"));
  }

  // The config a point resolves to: base + its overrides, as the trainer will see it.
  Config resolved(const SweepSpec& spec, const SweepPoint& p) { return load_config(spec.base, p.overrides); }

  std::string spec_path() const { return dir_.file("sweeps/s.yaml"); }
  std::string error(const std::string& body);

  TempDir dir_;
};

TEST_F(SpecTest, GridExpandsToTheProductWithStableNames) {
  const SweepSpec s = load(
      "name: t\nwidth_rule: {n_layers: 3, head_dim: 16, kv_group: 2}\n"
      "grid:\n  width: [32, 64]\n  alpha_attn: [0.5, 1.0]\n  alpha_ffn: [0.25, 1]\n  beta2: [0.95, 0.99]\n"
      "  seed: 7\n");
  ASSERT_EQ(s.points.size(), 2u * 2 * 2 * 2);
  EXPECT_EQ(s.name, "t");
  EXPECT_EQ(s.points[0].name, "w32_aa0.5_af0.25_b2-0.95_s7");
  EXPECT_EQ(s.points[1].name, "w32_aa0.5_af0.25_b2-0.99_s7");  // innermost axis varies fastest
  EXPECT_EQ(s.points.back().name, "w64_aa1_af1_b2-0.99_s7");
  for (size_t i = 0; i < s.points.size(); ++i) EXPECT_EQ(s.points[i].index, int(i));

  const Config c = resolved(s, s.points.back());
  EXPECT_EQ(c.model.dim, 64);
  EXPECT_EQ(c.model.n_layers, 3);
  EXPECT_EQ(c.model.n_heads, 4);     // 64 / head_dim 16
  EXPECT_EQ(c.model.n_kv_heads, 2);  // 4 heads / kv_group 2
  EXPECT_EQ(c.model.ffn_dim, 0);     // LLaMA's rule from the base's multiple_of
  EXPECT_EQ(c.model.alpha_attn, 1.0);
  EXPECT_EQ(c.model.alpha_ffn, 1.0);
  EXPECT_EQ(c.optim.beta2, 0.99);
  EXPECT_EQ(c.train.seed, 7u);
  const Config c0 = resolved(s, s.points[0]);
  EXPECT_EQ(c0.model.n_heads, 2);
  EXPECT_EQ(c0.model.n_kv_heads, 1);
}

TEST_F(SpecTest, AlphaFinalIsTiedToAlphaFfnUnlessSwept) {
  const SweepSpec tied = load("grid: {alpha_attn: 1, alpha_ffn: [0.25, 0.5]}\n");
  ASSERT_EQ(tied.points.size(), 2u);
  EXPECT_EQ(resolved(tied, tied.points[0]).model.alpha_final, 0.25);
  EXPECT_EQ(resolved(tied, tied.points[1]).model.alpha_final, 0.5);
  EXPECT_EQ(tied.points[1].name, "aa1_af0.5");

  const SweepSpec free = load("grid: {alpha_ffn: 0.5, alpha_final: [0.1, 2]}\n");
  ASSERT_EQ(free.points.size(), 2u);
  EXPECT_EQ(free.points[0].name, "af0.5_afin0.1");
  EXPECT_EQ(resolved(free, free.points[0]).model.alpha_final, 0.1);
  EXPECT_EQ(resolved(free, free.points[0]).model.alpha_ffn, 0.5);
}

TEST_F(SpecTest, SetAppliesToEveryPointAndAxesWinOverIt) {
  const SweepSpec s = load("set: {train.max_steps: 5, optim.beta2: 0.9}\ngrid: {beta2: [0.95, 0.999]}\n");
  ASSERT_EQ(s.points.size(), 2u);
  for (const auto& p : s.points) EXPECT_EQ(resolved(s, p).train.max_steps, 5);
  EXPECT_EQ(resolved(s, s.points[0]).optim.beta2, 0.95);
  EXPECT_EQ(resolved(s, s.points[1]).optim.beta2, 0.999);
}

TEST_F(SpecTest, LrAxisKeepsTheMinLrRatio) {
  const SweepSpec s = load("grid: {lr: [0.01, 0.001]}\n");
  ASSERT_EQ(s.points.size(), 2u);
  EXPECT_EQ(s.points[0].name, "lr0.01");
  const Config c = resolved(s, s.points[0]);
  EXPECT_DOUBLE_EQ(c.optim.lr, 0.01);
  EXPECT_DOUBLE_EQ(c.optim.min_lr, 0.001);  // base 3e-4 / 3e-3 = 0.1 of the peak
}

TEST_F(SpecTest, EpsAxisSetsAdamWEps) {
  const SweepSpec s = load("grid: {beta2: 0.95, eps: [1.0e-8, 0.01]}\n");
  ASSERT_EQ(s.points.size(), 2u);
  EXPECT_EQ(s.points[0].name, "b2-0.95_eps1e-08");
  EXPECT_EQ(s.points[1].name, "b2-0.95_eps0.01");
  EXPECT_EQ(resolved(s, s.points[0]).optim.eps, 1e-8);
  EXPECT_EQ(resolved(s, s.points[1]).optim.eps, 0.01);
  EXPECT_THROW(load("grid: {eps: [0, 1e-8]}\n"), ConfigError);  // AdamW's eps must be positive
}

TEST_F(SpecTest, WidthRuleWithFfnMultAndPerWidthShape) {
  const SweepSpec s = load(
      "width_rule: {head_dim: 8, ffn_mult: 2.5}\nper_width: {64: {n_layers: 1, n_heads: 2, ffn_dim: 96}}\n"
      "grid: {width: [32, 64]}\n");
  const Config a = resolved(s, s.points[0]), b = resolved(s, s.points[1]);
  EXPECT_EQ(a.model.n_heads, 4);
  EXPECT_EQ(a.model.n_kv_heads, 4);  // kv_group defaults to 1
  EXPECT_EQ(a.model.ffn_dim, 80);    // 2.5 * 32
  EXPECT_EQ(a.model.n_layers, 2);    // the base's depth
  EXPECT_EQ(b.model.n_layers, 1);
  EXPECT_EQ(b.model.n_heads, 2);
  EXPECT_EQ(b.model.n_kv_heads, 2);
  EXPECT_EQ(b.model.ffn_dim, 96);
}

TEST_F(SpecTest, RmsnormBaselinesCollapseTheAlphaAxes) {
  const SweepSpec s = load("grid: {norm: [dyt, rmsnorm], alpha_attn: [0.5, 1], alpha_ffn: [0.5, 1]}\n");
  ASSERT_EQ(s.points.size(), 4u + 1u);
  const auto it = std::find_if(s.points.begin(), s.points.end(), [](const SweepPoint& p) { return p.name == "rmsnorm"; });
  ASSERT_NE(it, s.points.end());
  EXPECT_EQ(resolved(s, *it).model.norm, NormKind::rmsnorm);
}

// Runs may already have been launched by hand under these names and overrides: the format is fixed.
TEST_F(SpecTest, CalibratedPointsHaveAFixedNameAndOverrideOrder) {
  const SweepSpec s = load("set: {train.max_steps: 5}\n"
                           "points:\n  - {width: 64, alpha_calib_c: 1, seed: 1}\n"
                           "  - {width: 256, alpha_calib_c: 0.5, seed: 2}\n");
  ASSERT_EQ(s.points.size(), 2u);
  EXPECT_EQ(s.points[0].name, "w64_cal1_s1");
  EXPECT_EQ(s.points[1].name, "w256_cal0.5_s2");
  EXPECT_EQ(s.points[0].overrides,
            (std::vector<std::string>{"train.max_steps=5", "model.dim=64", "model.n_layers=2", "model.n_heads=2",
                                      "model.n_kv_heads=2", "model.ffn_dim=0", "model.alpha_init=calibrated",
                                      "model.alpha_calib_c=1", "train.seed=1"}));
  const Config c = resolved(s, s.points[1]);
  EXPECT_EQ(c.model.alpha_init, "calibrated");
  EXPECT_EQ(c.model.alpha_calib_c, 0.5);
  EXPECT_EQ(c.model.dim, 256);
  EXPECT_EQ(c.train.seed, 2u);
  // In a grid, after the alpha parts and before beta2.
  EXPECT_EQ(load("grid: {width: 64, alpha_calib_c: 2, beta2: 0.9}\n").points[0].name, "w64_cal2_b2-0.9");
}

// The alpha axes mean nothing for a calibrated point and collapse as for RMSNorm; an RMSNorm point drops c as well
// (the trainer calibrates DyT sites only), so norm can be crossed with c. Fixed points of the same spec keep theirs.
TEST_F(SpecTest, CalibratedPointsCollapseTheAlphaAxes) {
  const SweepSpec s = load("grid: {alpha_attn: [0.5, 1], alpha_ffn: [0.5, 2], alpha_calib_c: [0.5, 1]}\n");
  ASSERT_EQ(s.points.size(), 2u);
  EXPECT_EQ(s.points[0].name, "cal0.5");
  EXPECT_EQ(s.points[1].name, "cal1");
  EXPECT_EQ(s.points[1].overrides,
            (std::vector<std::string>{"model.alpha_init=calibrated", "model.alpha_calib_c=1"}));

  const SweepSpec n = load("grid: {norm: [dyt, rmsnorm], alpha_calib_c: [0.5, 1]}\npoints:\n  - {alpha_attn: 2}\n");
  std::vector<std::string> names;
  for (const auto& p : n.points) names.push_back(p.name);
  EXPECT_EQ(names, (std::vector<std::string>{"dyt_cal0.5", "dyt_cal1", "rmsnorm", "aa2"}));
  EXPECT_EQ(n.points[2].overrides, (std::vector<std::string>{"model.norm=rmsnorm"}));
  EXPECT_EQ(resolved(n, n.points[2]).model.alpha_init, "fixed");
  EXPECT_EQ(resolved(n, n.points[3]).model.alpha_init, "fixed");
  EXPECT_EQ(resolved(n, n.points[3]).model.alpha_attn, 2);
}

TEST_F(SpecTest, CalibrationConstantMustBeAPositiveFiniteNumber) {
  for (const char* bad : {"0", "-1", ".nan", ".inf", "one"}) {
    const std::string msg = error(std::string("grid: {alpha_calib_c: [1, ") + bad + "]}\n");
    EXPECT_NE(msg.find(spec_path() + ":2: alpha_calib_c: expected a finite number greater than 0"), std::string::npos)
        << bad << ": " << msg;
  }
  EXPECT_NE(error("points:\n  - {width: 64}\n  - {width: 64, alpha_calib_c: -0.5}\n")
                .find(spec_path() + ":4: alpha_calib_c: expected a finite number greater than 0, got '-0.5'"),
            std::string::npos);
  EXPECT_NE(error("points:\n  - {alpha_calib: 1}\n").find("points[].alpha_calib: unknown key"), std::string::npos);
}

TEST_F(SpecTest, PointsListAndDuplicates) {
  const SweepSpec s = load("points:\n  - {width: 32, alpha_attn: 0.5}\n  - {width: 64, alpha_ffn: 2}\n");
  ASSERT_EQ(s.points.size(), 2u);
  EXPECT_EQ(s.points[0].name, "w32_aa0.5");
  EXPECT_EQ(s.points[1].name, "w64_af2");
  EXPECT_THROW(load("points:\n  - {alpha_attn: 0.5}\n  - {alpha_attn: 0.50}\n"), ConfigError);
}

TEST_F(SpecTest, ErrorsNameTheKey) {
  auto message = [&](const std::string& body) {
    try {
      load(body);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("grid: {widht: [32]}\n").find("widht"), std::string::npos);
  EXPECT_NE(message("grid: {alpha_attn: [-1]}\n").find("alpha_attn"), std::string::npos);
  EXPECT_NE(message("width_rule: {head_dim: 24}\ngrid: {width: [32]}\n").find("head_dim"), std::string::npos);
  EXPECT_NE(message("set: {train.max_stepz: 3}\ngrid: {seed: 1}\n").find("max_stepz"), std::string::npos);
  EXPECT_NE(message("launch: {mode: ssh}\ngrid: {seed: 1}\n").find("launch.mode"), std::string::npos);
  EXPECT_NE(message("name: x\n").find("grid"), std::string::npos);
}

TEST_F(SpecTest, ASpecThatIsNoMapSaysSoAtTheTopLevel) {
  // A list item left at the top level (a stray "- {width: 64}") once gave "s.yaml:1: : expected a map".
  write_text(spec_path(), "- {width: 64}\n");
  try {
    load_sweep_spec(spec_path());
    FAIL() << "a list as the whole spec was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("s.yaml:1: top level: expected a map"), std::string::npos) << e.what();
  }
}

// The message of the ConfigError that loading `body` gives, or "no error".
std::string SpecTest::error(const std::string& body) {
  try {
    load(body);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

TEST_F(SpecTest, DivergenceMarginMustBeFiniteAndPositive) {
  // -2 marked healthy points diverged (and reruns skipped them); .nan and .inf turned the watch off.
  for (const char* bad : {"-2", "0", ".nan", ".inf", "-.inf", "nan", "1e400", "two"}) {
    const std::string msg = error(std::string("divergence: {margin_nats: ") + bad + "}\ngrid: {seed: 1}\n");
    EXPECT_NE(msg.find(spec_path() + ":2: divergence.margin_nats: expected a finite number greater than 0"),
              std::string::npos)
        << bad << ": " << msg;
  }
  EXPECT_EQ(load("divergence: {margin_nats: 0.5, after_step: 0}\ngrid: {seed: 1}\n").divergence.margin_nats, 0.5);
  for (const char* bad : {"-1", "1e3", "99999999999", "1.5", ".nan"})
    EXPECT_NE(error(std::string("divergence: {after_step: ") + bad + "}\ngrid: {seed: 1}\n")
                  .find("divergence.after_step: expected an integer from 0 to 2147483647"),
              std::string::npos)
        << bad;
}

// An anchor reused on seven axes of 20 values is 1.28e9 points from 250 bytes: refused by its size, before anything
// is expanded (it used to build the product and hang). A grid just under the cap still expands.
TEST_F(SpecTest, GridsBeyondTheCapAreRefusedBeforeExpanding) {
  std::string twenty = "[1";
  for (int i = 2; i <= 20; ++i) twenty += "," + std::to_string(i);
  twenty += "]";
  const std::string msg = error("grid:\n  seed: &s " + twenty + "\n  alpha_attn: *s\n  alpha_ffn: *s\n"
                                "  alpha_final: *s\n  beta2: [0.9]\n  eps: *s\n  lr: *s\n");
  EXPECT_NE(msg.find(spec_path() + ":3: grid: 20 alpha_attn x 20 alpha_ffn x 20 alpha_final x 1 beta2 x 20 eps x 20 lr "
                     "x 20 seed is more than 1024 points"),
            std::string::npos)
      << msg;
  EXPECT_EQ(load("grid: {seed: " + twenty + ", alpha_attn: " + twenty + "}\n").points.size(), 400u);
}

TEST_F(SpecTest, EveryNumberIsRangeChecked) {
  auto expect = [&](const std::string& body, const std::string& piece) {
    const std::string msg = error(body);
    EXPECT_NE(msg.find(spec_path()), std::string::npos) << body << ": " << msg;
    EXPECT_NE(msg.find(piece), std::string::npos) << body << ": " << msg;
  };
  expect("launch: {np: 0}\ngrid: {seed: 1}\n", "launch.np: expected an integer from 1 to 2147483647, got '0'");
  expect("launch: {np: 99999999999}\ngrid: {seed: 1}\n", "launch.np: expected an integer from 1");
  expect("launch: {max_parallel: -3}\ngrid: {seed: 1}\n", "launch.max_parallel: expected an integer from 1");
  expect("grid: {seed: [1, -1]}\n", "seed: expected an integer from 0 to 9223372036854775807, got '-1'");
  expect("grid: {seed: 99999999999999999999}\n", "seed: expected an integer");
  expect("grid: {width: [32, 1e9]}\n", "width: expected an integer from 1");
  expect("grid: {alpha_attn: [.nan]}\n", "alpha_attn: expected a finite number greater than 0, got '.nan'");
  expect("grid: {alpha_ffn: [.inf]}\n", "alpha_ffn: expected a finite number greater than 0");
  expect("grid: {lr: [1e-3, -1e-3]}\n", "lr: expected a finite number greater than 0");
  expect("grid: {eps: [1e-400x]}\n", "eps: expected a finite number greater than 0");
  expect("grid: {beta2: [0.95, 1.5]}\n", "beta2: expected a number greater than 0 and less than 1, got '1.5'");
  expect("points:\n  - {beta2: 1}\n", ":3: beta2: expected a number greater than 0 and less than 1");
  expect("width_rule: {ffn_mult: .inf}\ngrid: {width: 32}\n", "width_rule.ffn_mult: expected a finite number");
  expect("width_rule: {ffn_mult: 1e300}\ngrid: {width: 32}\n", "width_rule.ffn_mult: 1e+300 x width 32 is too large");
  // Integers are decimal as in a config: yaml-cpp alone reads 012 as octal 10.
  EXPECT_EQ(*load("grid: {seed: 012}\n").points[0].axes.seed, 12);
}

TEST_F(SpecTest, NamesMustBePlainFolderNames) {
  for (const char* bad : {"../../x", "a/b", "/abs", "..", ".", ".hidden", "''", "\"a\\nb\"", "\"tab\\there\""}) {
    const std::string msg = error(std::string("name: ") + bad + "\ngrid: {seed: 1}\n");
    EXPECT_NE(msg.find(spec_path() + ":2: name: "), std::string::npos) << bad << ": " << msg;
  }
  EXPECT_NE(error("name: ../../x\ngrid: {seed: 1}\n").find("contains '/'"), std::string::npos);
  EXPECT_NE(error("name: " + std::string(256, 'n') + "\ngrid: {seed: 1}\n").find("at most 255 bytes"),
            std::string::npos);
  EXPECT_EQ(load("name: my-sweep_2.v1\ngrid: {seed: 1}\n").name, "my-sweep_2.v1");
  // Without name: the file's stem is the name, and must pass the same check.
  write_text(dir_.file("sweeps/.hidden.yaml"), "base: ../base.yaml\ngrid: {seed: 1}\n");
  try {
    load_sweep_spec(dir_.file("sweeps/.hidden.yaml"));
    ADD_FAILURE() << "a spec named .hidden must be rejected";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("name: missing, and the file name '.hidden'"), std::string::npos) << e.what();
  }
}

TEST_F(SpecTest, LaunchStringsHaveNoControlCharacters) {
  // They become lines of the Slurm script: a newline would start a command there.
  EXPECT_NE(error("launch: {partition: \"gpu\\nrm -rf ~\"}\ngrid: {seed: 1}\n")
                .find(":2: launch.partition: control characters"),
            std::string::npos);
  EXPECT_NE(error("launch: {sbatch: [\"--account=a\\n\"]}\ngrid: {seed: 1}\n").find("launch.sbatch: control"),
            std::string::npos);
}

TEST_F(SpecTest, KeysGivenTwiceAreRejectedWithBothLines) {
  EXPECT_NE(error("grid: {seed: 1}\ndivergence: {margin_nats: 2}\ngrid: {seed: 2}\n")
                .find(spec_path() + ":4: key 'grid' is given twice (first at line 2)"),
            std::string::npos);
  EXPECT_NE(error("set:\n  train.max_steps: 5\n  train.max_steps: 6\ngrid: {seed: 1}\n")
                .find(spec_path() + ":4: key 'set.train.max_steps' is given twice (first at line 3)"),
            std::string::npos);
}

TEST(SweepSpecShipped, TinyCiHas36Points) {
  const SweepSpec s = load_sweep_spec(std::string(DYTRAIN_SOURCE_DIR) + "/configs/sweeps/tiny_ci.yaml");
  EXPECT_EQ(s.points.size(), 36u);
  EXPECT_EQ(s.launch.mode, "local");
}

TEST(SweepSpecShipped, AlphaWidthsExpands) {
  const SweepSpec s = load_sweep_spec(std::string(DYTRAIN_SOURCE_DIR) + "/configs/sweeps/alpha_widths.yaml");
  EXPECT_GT(s.points.size(), 100u);
}

TEST(SweepSpecShipped, AlphaWidthsCpuIsTheInitStudysShapeAndRecipe) {
  const SweepSpec s = load_sweep_spec(std::string(DYTRAIN_SOURCE_DIR) + "/configs/sweeps/alpha_widths_cpu.yaml");
  // docs/results/2026-12-06-alpha-widths-cpu: fixed-alpha cells, calibrated alpha0 and a second seed at each width.
  std::map<int, int> fixed, calibrated, second_seed;
  for (const auto& p : s.points) {
    const Config c = load_config(s.base, p.overrides);
    // docs/results/2026-12-06-init-choice-cpu's runs: head_dim 32, GQA 2:1, 4 layers, 200 steps, paper optimizer.
    EXPECT_EQ(c.model.head_dim(), 32) << p.name;
    EXPECT_EQ(c.model.kv_heads(), c.model.n_heads / 2) << p.name;
    EXPECT_EQ(c.model.n_layers, 4) << p.name;
    EXPECT_EQ(c.model.init, "scaled_depth") << p.name;
    EXPECT_EQ(c.train.max_steps, 200) << p.name;
    EXPECT_EQ(c.optim.eps, 1e-8) << p.name;
    EXPECT_EQ(c.optim.lr, 3e-3) << p.name;
    EXPECT_FALSE(c.optim.dyt_alpha.lr.has_value()) << p.name;
    EXPECT_EQ(c.model.alpha_final, c.model.alpha_ffn) << p.name;
    EXPECT_TRUE(c.train.seed == 1 || c.train.seed == 2) << p.name;
    ++(c.model.alpha_init == "calibrated" ? calibrated : fixed)[c.model.dim];
    if (c.train.seed == 2) ++second_seed[c.model.dim];
  }
  EXPECT_EQ(fixed, (std::map<int, int>{{64, 25}, {128, 13}, {256, 8}}));
  EXPECT_EQ(calibrated, (std::map<int, int>{{64, 3}, {128, 3}, {256, 1}}));
  EXPECT_EQ(second_seed, (std::map<int, int>{{64, 4}, {128, 3}, {256, 2}}));
}

TEST(SweepSpecShipped, AlphaWidthsGpuHas27DytPointsAndThreeBaselines) {
  const SweepSpec s = load_sweep_spec(std::string(DYTRAIN_SOURCE_DIR) + "/configs/sweeps/alpha_widths_gpu.yaml");
  ASSERT_EQ(s.points.size(), 30u);
  EXPECT_EQ(std::count_if(s.points.begin(), s.points.end(),
                          [](const SweepPoint& p) { return p.name.find("rmsnorm") != std::string::npos; }),
            3);
  // Every point must resolve to a valid config (width rule, vocab and data overrides together).
  for (const auto& p : s.points) EXPECT_NO_THROW(load_config(s.base, p.overrides)) << p.name;
}

}  // namespace
}  // namespace dytrain
