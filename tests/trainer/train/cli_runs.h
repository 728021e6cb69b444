// dytrain CLI runs from a test: one config file in a temporary directory, `dytrain train` alone or under mpirun,
// each run's metrics.jsonl read back, and the step-by-step comparison of two runs. Shared by the parallel training
// tests on the CPU (parallel_train_test.cpp) and on the GPU (cuda_parallel_train_test.cpp). Needs DYTRAIN_BIN and
// DYTRAIN_MPIEXEC (the test's compile definitions).
#pragma once
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "tests/common/temp_dir.h"

namespace dytrain::testing {

class CliRuns {
 public:
  explicit CliRuns(const std::string& config_yaml) { std::ofstream(dir() / "c.yaml") << config_yaml; }
  // A failed test may leave a background job behind: nothing of this test outlives it. ("[/]tmp..." matches the path
  // in the jobs' command lines but not in the command line of the shell running pkill.)
  ~CliRuns() {
    const std::string path = dir().string();
    std::system(("pkill -9 -f '[" + path.substr(0, 1) + "]" + path.substr(1) + "' 2>/dev/null").c_str());
  }
  CliRuns(const CliRuns&) = delete;
  CliRuns& operator=(const CliRuns&) = delete;

  const std::filesystem::path& dir() const { return tmp_.path(); }
  std::string config() const { return (dir() / "c.yaml").string(); }

  // Runs dytrain train on np ranks (np 0: a plain single process) into dir()/run_dir, output in run_dir.log.
  // Returns the exit code.
  int run(int np, const std::string& run_dir, const std::string& flags) const {
    std::string cmd = "OMP_NUM_THREADS=1 ";
    if (np > 0) cmd += std::string(DYTRAIN_MPIEXEC) + " -np " + std::to_string(np) + " ";
    cmd += std::string(DYTRAIN_BIN) + " train " + config() + " --run-dir " + (dir() / run_dir).string() + " " +
           flags + " > " + (dir() / (run_dir + ".log")).string() + " 2>&1";
    const int status = std::system(cmd.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  std::vector<YAML::Node> metrics(const std::string& run_dir) const {
    std::vector<YAML::Node> out;
    std::ifstream in(dir() / run_dir / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) out.push_back(YAML::Load(line));
    return out;
  }

  // Runs a and b log the same steps with loss, grad norm, validation loss and every site's act_std within rel_tol
  // of each other (relative), from the first-th log line on.
  void expect_same_trajectory(const std::string& a, const std::string& b, double rel_tol, size_t first = 0) const {
    const auto ma = metrics(a), mb = metrics(b);
    ASSERT_EQ(ma.size(), mb.size()) << a << " vs " << b;
    ASSERT_GT(ma.size(), first);
    for (size_t i = first; i < ma.size(); ++i) {
      ASSERT_EQ(ma[i]["step"].as<int>(), mb[i]["step"].as<int>());
      for (const char* key : {"loss", "grad_norm"}) {
        const double x = ma[i][key].as<double>(), y = mb[i][key].as<double>();
        EXPECT_NEAR(x, y, rel_tol * std::fabs(x)) << key << " at step " << ma[i]["step"].as<int>() << ", " << b;
      }
      if (ma[i]["val_loss"]) {
        EXPECT_NEAR(ma[i]["val_loss"].as<double>(), mb[i]["val_loss"].as<double>(),
                    rel_tol * ma[i]["loss"].as<double>());
      }
      const YAML::Node sa = ma[i]["sites"], sb = mb[i]["sites"];
      for (size_t s = 0; s < sa.size(); ++s)
        EXPECT_NEAR(sa[s]["act_std"].as<double>(), sb[s]["act_std"].as<double>(),
                    rel_tol * sa[s]["act_std"].as<double>());
    }
  }

 private:
  TempDir tmp_;
};

}  // namespace dytrain::testing
