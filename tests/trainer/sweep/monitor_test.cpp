// The monitor on run and sweep directories written by the trainer's own writers: `monitor --once` shows the step
// and loss of the last line and the per-layer table; a growing metrics file is read incrementally, a half-written
// last line waits for its newline; a sweep view counts finished points and shows pending ones.
#include <gtest/gtest.h>

#include <fstream>

#include "tests/trainer/sweep/sweep_test_util.h"
#include "trainer/sweep/cli.h"
#include "trainer/sweep/monitor.h"
#include "trainer/train/metrics.h"
#include "trainer/sweep/status.h"

namespace dytrain {
namespace {

namespace fs = std::filesystem;

StepMetrics step_line(int64_t step, double loss) {
  StepMetrics m;
  m.step = step;
  m.loss = loss;
  m.lr = 1e-3;
  m.tok_s = 5000;
  m.sites = {{0, "attn", 0.75, 0.0, 0.5, 2.0, 0.01}, {-1, "final", 0.5, 0.0, 0.25, 4.0, 0.0}};
  return m;
}

class MonitorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::write_text(dir_.file("base.yaml"), testing::tiny_base_yaml());
    cfg_ = load_config(dir_.file("base.yaml"));  // max_steps 12
  }
  testing::TempDir dir_;
  Config cfg_;
};

TEST_F(MonitorTest, OnceShowsTheLastStepLossAndSites) {
  testing::write_run(dir_.path() / "run", cfg_, {step_line(1, 5.5), step_line(8, 2.71828)}, "");
  ::testing::internal::CaptureStdout();
  ASSERT_EQ(monitor_main({dir_.file("run"), "--once"}), 0);
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find("step 8/12"), std::string::npos) << out;
  EXPECT_NE(out.find("loss 2.7183"), std::string::npos) << out;
  EXPECT_NE(out.find("MFU -"), std::string::npos) << out;
  EXPECT_NE(out.find("attn      0.7500     2.0000"), std::string::npos) << out;  // layer 0: alpha, inv_std
  EXPECT_EQ(out.find("\033["), std::string::npos);  // --once prints no terminal escapes
}

TEST_F(MonitorTest, ReadsAGrowingFileIncrementally) {
  testing::write_run(dir_.path() / "run", cfg_, {step_line(1, 5.5)}, "");
  const std::string path = dir_.file("run/metrics.jsonl");
  MetricsTail tail(path);
  EXPECT_EQ(tail.read_new().size(), 1u);
  EXPECT_EQ(tail.read_new().size(), 0u);
  const std::string next = to_json_line(step_line(2, 4.25));
  {
    std::ofstream f(path, std::ios::app);
    f << next.substr(0, 20);  // the trainer is mid-write
  }
  EXPECT_EQ(tail.read_new().size(), 0u);
  {
    std::ofstream f(path, std::ios::app);
    f << next.substr(20) << "\n";
  }
  const auto lines = tail.read_new();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].step, 2);
  EXPECT_EQ(lines[0].loss, 4.25);
  ASSERT_EQ(lines[0].sites.size(), 2u);
  EXPECT_EQ(lines[0].sites[1].layer, -1);
  EXPECT_EQ(lines[0].sites[1].inv_std, 4.0);

  Monitor m(dir_.file("run"));
  m.refresh();
  EXPECT_NE(m.frame().find("step 2/12"), std::string::npos) << m.frame();
  EXPECT_FALSE(m.finished());
}

TEST_F(MonitorTest, SweepViewCountsPointsAndShowsPending) {
  const std::string sweep = dir_.file("sweep");
  write_sweep_index(sweep, {"t", "/spec.yaml", {{"a", 12}, {"b", 12}, {"c", 12}}});
  testing::write_run(fs::path(sweep) / "a", cfg_, {step_line(12, 3.0)}, "done");
  testing::write_run(fs::path(sweep) / "b", cfg_, {step_line(4, 3.5)}, "");
  ::testing::internal::CaptureStdout();
  ASSERT_EQ(monitor_main({sweep, "--once"}), 0);
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find("1/3 points finished (1 done, 0 diverged, 0 failed), 1 running"), std::string::npos) << out;
  EXPECT_NE(out.find("pending"), std::string::npos) << out;
  EXPECT_NE(out.find("0/12"), std::string::npos) << out;  // a pending point's max_steps comes from the index
  EXPECT_NE(out.find("3.5000"), std::string::npos) << out;
}

TEST_F(MonitorTest, NotADirectoryIsAnInputError) { EXPECT_EQ(monitor_main({dir_.file("nope"), "--once"}), 2); }

}  // namespace
}  // namespace dytrain
