// A tiny training run on the GPU follows the CPU run's loss curve (the same config, data, init and batches).
// Skips without a GPU.
//
// Tolerance. The two runs start from identical parameters and see identical batches; they differ only by the GPU's
// bf16 activations (relative rounding 2^-9 per value, ~0.5% in the loss of one forward, see llama_cuda_test.cpp), and
// the updates those slightly different gradients make, which move the two trajectories apart slowly over 60 steps at
// this lr. 3% of the loss (0.15 nats around 5) covers both; a wrong kernel or a missing term leaves the GPU run at the
// initial loss or sends it off by whole nats.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "tests/common/temp_dir.h"
#include "trainer/train/trainer.h"

namespace dytrain {
namespace {

namespace fs = std::filesystem;

TEST(CudaTrain, FollowsTheCpuLossCurve) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) GTEST_SKIP() << "no CUDA device";
  testing::TempDir tmp;
  const std::string data = std::string(DYTRAIN_SOURCE_DIR) + "/data/tests/";
  std::ofstream(tmp.path() / "tiny.yaml") << "model:\n"
                                             "  vocab_size: 256\n  dim: 64\n  n_layers: 2\n  n_heads: 4\n"
                                             "  n_kv_heads: 2\n  ffn_dim: 128\n  max_seq_len: 64\n"
                                             "optim:\n  lr: 0.003\n  min_lr: 0.0003\n  warmup_steps: 5\n"
                                             "data:\n  train: " << data << "text_bytes_train.bin\n"
                                             "  val: " << data << "text_bytes_val.bin\n"
                                             "train:\n  micro_batch: 8\n  seq_len: 64\n  grad_accum: 2\n"
                                             "  max_steps: 60\n  log_every: 1\n  val_every: 30\n  val_batches: 4\n";
  std::vector<std::vector<YAML::Node>> runs;
  for (const std::string device : {"cpu", "cuda"}) {
    TrainOptions o;
    o.config_path = (tmp.path() / "tiny.yaml").string();
    o.overrides = {"train.device=" + device};
    o.run_dir = (tmp.path() / device).string();
    ASSERT_EQ(train(o), kExitOk) << device;
    std::vector<YAML::Node> m;
    std::ifstream in(tmp.path() / device / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) m.push_back(YAML::Load(line));
    runs.push_back(m);
  }
  const auto& cpu = runs[0];
  const auto& gpu = runs[1];
  ASSERT_EQ(cpu.size(), gpu.size());
  ASSERT_GE(cpu.size(), 60u);
  for (size_t i = 0; i < cpu.size(); ++i) {
    const double a = cpu[i]["loss"].as<double>(), b = gpu[i]["loss"].as<double>();
    EXPECT_NEAR(b, a, 0.03 * a) << "step " << cpu[i]["step"].as<int>();
    if (cpu[i]["val_loss"]) {
      const double va = cpu[i]["val_loss"].as<double>();
      EXPECT_NEAR(gpu[i]["val_loss"].as<double>(), va, 0.03 * va) << "val at step " << cpu[i]["step"].as<int>();
    }
  }
  EXPECT_LT(gpu.back()["loss"].as<double>(), gpu.front()["loss"].as<double>() - 1.0);  // it learned
}

}  // namespace
}  // namespace dytrain
