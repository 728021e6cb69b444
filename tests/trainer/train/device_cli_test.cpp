// train.device: auto through the CLI, alone and under mpirun -np 2: the log names the device the run trains on and
// why, whatever this host has (no CUDA in the build, no GPU, GPUs), and the run trains.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "tests/common/read_file.h"
#include "tests/trainer/train/cli_runs.h"

namespace {

using dytrain::testing::have_mpi;

const std::string kData = std::string(DYTRAIN_SOURCE_DIR) + "/data/tests/";

TEST(DeviceCliTest, AutoSaysWhichDeviceAndWhy) {
  const dytrain::testing::CliRuns runs(
      "model: {vocab_size: 256, dim: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_dim: 128, max_seq_len: 64}\n"
      "data: {train: " + kData + "text_bytes_train.bin}\n"
      "train: {micro_batch: 2, seq_len: 32, max_steps: 1, device: auto}\n"
      "parallel: {gpu_comm: mpi}\n");
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  for (int np : {0, 2}) {
    if (np > 0 && !have_mpi()) continue;
    const std::string name = "np" + std::to_string(np);
    EXPECT_EQ(runs.run(np, name, ""), 0);
    std::ifstream f(runs.dir() / (name + ".log"));
    std::stringstream log;
    log << f.rdbuf();
    const std::string out = log.str();
    const std::string line = std::string("rank 0 on ") + host + ": training on ";
    const size_t at = out.find(line);
    ASSERT_NE(at, std::string::npos) << out;
    const std::string said = out.substr(at, out.find('\n', at) - at);
    const bool cpu_why = said.find("the CPU: this build of dytrain has no CUDA backend") != std::string::npos ||
                         said.find("the CPU: no GPU is visible on") != std::string::npos;
    const bool gpu_which = said.find("training on GPU ") != std::string::npos && said.find("GPU-") != std::string::npos;
    EXPECT_TRUE(cpu_why || gpu_which) << said;
  }
}

}  // namespace
