// The sweep, report, recommend and monitor commands of the real dytrain binary on bad input: every number on the
// command line is read whole and range-checked (overflow, trailing garbage, negative, non-finite), and bad specs,
// folders and fit files give exit 2 with a message that names the flag, the key or the file; and recommend passes a
// fit's caveat on to a user who never reads the report.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "tests/trainer/sweep/sweep_test_util.h"
#include "trainer/config/config.h"
#include "trainer/train/trainer.h"

namespace dytrain {
namespace {

struct Result {
  int rc = -1;
  std::string output;  // stdout and stderr
};

Result dytrain(const std::string& args) {
  Result r;
  std::FILE* p = popen(("OMP_NUM_THREADS=1 " + std::string(DYTRAIN_EXE) + " " + args + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.output.append(buf, n);
  const int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

class SweepCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::write_text(dir_.file("base.yaml"), testing::tiny_base_yaml());
    spec_ = dir_.write("spec.yaml", "name: t\nbase: base.yaml\ngrid: {seed: 1}\n");
  }

  // Expects exit 2 and every piece in the output.
  void expect_bad_input(const std::string& args, const std::vector<std::string>& pieces) {
    const Result r = dytrain(args);
    EXPECT_EQ(r.rc, kExitBadInput) << args << "\n" << r.output;
    for (const auto& p : pieces)
      EXPECT_NE(r.output.find(p), std::string::npos) << args << ": " << p << "\n" << r.output;
  }

  testing::TempDir dir_;
  std::string spec_;
};

TEST_F(SweepCliTest, NumbersOnTheCommandLineAreReadWholeAndInRange) {
  const std::string sweep = dir_.file("sweep");
  for (const char* bad : {"99999999999", "3abc", "-1", "0", "1.5", ""})
    expect_bad_input("sweep report " + sweep + " --smooth '" + bad + "'",
                     {std::string("--smooth needs an integer from 1 to 2147483647, got '") + bad + "'"});
  for (const char* bad : {"1e3", "-64", "99999999999", "64px"})
    expect_bad_input("sweep recommend fit.yaml --width " + std::string(bad),
                     {std::string("--width needs an integer from 1 to 2147483647, got '") + bad + "'"});
  for (const char* bad : {"1e300", "nan", "inf", "-1", "0", "2s"})
    expect_bad_input("monitor " + sweep + " --once --interval " + std::string(bad),
                     {std::string("--interval needs a number greater than 0 and at most 86400, got '") + bad + "'"});
  for (const char* bad : {"99999999999999999999", "4294967296", "-1", "1x"})
    expect_bad_input("sweep run " + spec_ + " --dry-run --point " + std::string(bad),
                     {std::string("--point needs an integer from 0 to 2147483647, got '") + bad + "'"});
  expect_bad_input("sweep run " + spec_ + " --dry-run --point 1", {"--point 1 is out of range", spec_});
}

TEST_F(SweepCliTest, DirMustBeADirectory) {
  const std::string file = dir_.write("a_file", "x");
  expect_bad_input("sweep run " + spec_ + " --dry-run --dir " + file,
                   {"--dir " + file + " exists and is not a directory"});
  expect_bad_input("sweep run " + spec_ + " --dry-run --dir ''", {"--dir needs a directory"});
}

TEST_F(SweepCliTest, BadSpecsAreBadInput) {
  const std::string escape = dir_.write("escape.yaml", "name: ../../x\nbase: base.yaml\ngrid: {seed: 1}\n");
  expect_bad_input("sweep run " + escape + " --dry-run", {escape + ":1: name: '../../x' contains '/'"});
  const std::string margin =
      dir_.write("margin.yaml", "name: m\nbase: base.yaml\ndivergence: {margin_nats: -2}\ngrid: {seed: 1}\n");
  expect_bad_input("sweep run " + margin + " --dry-run", {margin + ":3: divergence.margin_nats"});
  const std::string twice = dir_.write("twice.yaml", "name: a\nbase: base.yaml\nname: b\ngrid: {seed: 1}\n");
  expect_bad_input("sweep run " + twice + " --dry-run", {twice + ":3: key 'name' is given twice (first at line 1)"});
}

TEST_F(SweepCliTest, AlphaFitWithAKeyTwiceOrNoNumbersIsBadInput) {
  const std::string twice =
      dir_.write("twice.yaml", "attn: {a: 1, b: -0.5}\nffn: {a: 1, b: -0.5}\nattn: {a: 2, b: 0}\n");
  expect_bad_input("sweep recommend " + twice + " --width 64",
                   {twice + ":3: key 'attn' is given twice (first at line 1)"});
  const std::string nan = dir_.write("nan.yaml", "attn: {a: .nan, b: -0.5}\nffn: {a: 1, b: -0.5}\n");
  expect_bad_input("sweep recommend " + nan + " --width 64", {nan + ": attn: a = nan and b = -0.5 must be finite"});
}

// One seed per cell at widths 32, 64 and 128: the report fits a law but cannot tell any best alpha from its
// neighbours, and recommend, which prints the flags on stdout, warns about it on stderr.
TEST_F(SweepCliTest, RecommendPrintsTheNoteOfAnUnresolvedFit) {
  const Config base = load_config(dir_.file("base.yaml"));
  for (int w : {32, 64, 128})
    for (double aa : {0.5, 1.0}) {
      Config c = base;
      c.model.dim = w;
      c.model.alpha_attn = aa;
      StepMetrics m;
      m.step = 12;
      m.loss = 3.0 + aa;
      m.val_loss = 3.1 + aa;
      testing::write_run(dir_.path() / "sweep" / ("w" + std::to_string(w) + "_aa" + std::to_string(aa)), c, {m},
                         "done");
    }
  const Result report = dytrain("sweep report " + dir_.file("sweep") + " --no-plots");
  ASSERT_EQ(report.rc, 0) << report.output;
  const Result r = dytrain("sweep recommend " + dir_.file("sweep") + "/report/alpha_fit.yaml --width 4096");
  EXPECT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("--set model.alpha_attn=0.5 "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("note from the fit: alpha_attn's optimum is not resolved at widths 32, 64, 128 (no seed "
                          "spread measured at widths 32, 64, 128)"),
            std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace dytrain
