// End to end on the shipped real-text shard (data/tests/): the loss falls, metrics.jsonl holds every field, a run
// stopped and resumed continues bit for bit, and bad input fails with exit code 2 before anything is written.
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "tests/common/temp_dir.h"

#include "trainer/train/trainer.h"

namespace dytrain {
namespace {

namespace fs = std::filesystem;

class TrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string data = std::string(DYTRAIN_SOURCE_DIR) + "/data/tests/";
    // Byte-level tokens (vocab 256) of real English text; a model small enough to train in seconds on 2 cores.
    std::ofstream(dir_ / "tiny.yaml") << "model:\n"
                                        "  vocab_size: 256\n  dim: 32\n  n_layers: 2\n  n_heads: 4\n"
                                        "  n_kv_heads: 2\n  ffn_dim: 64\n  max_seq_len: 64\n  init: fixed\n"
                                        "optim:\n  lr: 0.003\n  min_lr: 0.0003\n  warmup_steps: 5\n"
                                        "data:\n  train: " << data << "text_bytes_train.bin\n"
                                        "  val: " << data << "text_bytes_val.bin\n"
                                        "train:\n  micro_batch: 8\n  seq_len: 32\n  grad_accum: 2\n"
                                        "  max_steps: 60\n  log_every: 1\n  val_every: 20\n  val_batches: 2\n"
                                        "  device: cpu\n";
  }

  int run(const std::string& run_dir, std::vector<std::string> overrides = {}, bool resume = false) {
    TrainOptions o;
    o.config_path = (dir_ / "tiny.yaml").string();
    o.overrides = std::move(overrides);
    o.run_dir = (dir_ / run_dir).string();
    o.resume = resume;
    return train(o);
  }

  std::vector<YAML::Node> metrics(const std::string& run_dir) {
    std::vector<YAML::Node> out;
    std::ifstream in(dir_ / run_dir / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) out.push_back(YAML::Load(line));
    return out;
  }

  testing::TempDir tmp_;
  const fs::path& dir_ = tmp_.path();
};

TEST_F(TrainTest, MfuIsMeasuredAgainstTheGivenPeak) {
  ASSERT_EQ(run("mfu", {"train.max_steps=3", "train.peak_tflops=1e-6"}), kExitOk);
  // FLOPs per token counted by hand as ../shared/bench/torch_llama_dyt.py does for this model (V 256, d 32, 2
  // layers, 2 kv heads of 8, FFN 64, DyT without beta, embedding scale, untied head): per layer q,o 2 x 32^2 + k,v
  // 2 x 32 x 16 + SwiGLU 3 x 32 x 64 + 2 DyT x 33 = 9282; + head 256 x 32 + final DyT 33 + scale 1 = 26790
  // parameters past the embedding; 6 x 26790 + 12 x 2 layers x 32 x 32 tokens = 185316.
  const double flops_per_token = 185316.0;
  const auto m = metrics("mfu");
  ASSERT_EQ(m.size(), 3u);
  for (const auto& line : m) {
    ASSERT_TRUE(line["mfu"]);
    // Against 1 MFLOP/s on the one process; 1e-3: the 4 and 6 significant digits of mfu and tok_s in the file.
    EXPECT_NEAR(line["mfu"].as<double>() * 1e6 / line["tok_s"].as<double>(), flops_per_token, 1e-3 * flops_per_token);
  }
}

TEST_F(TrainTest, LossFallsAndMetricsAreComplete) {
  ASSERT_EQ(run("a"), kExitOk);
  const auto m = metrics("a");
  ASSERT_EQ(m.size(), 60u);
  const double first = m.front()["loss"].as<double>(), last = m.back()["loss"].as<double>();
  EXPECT_NEAR(first, std::log(256.0), 0.2);  // N(0, 0.02) init: near-uniform predictions
  EXPECT_LT(last, first - 1.5) << "60 steps of byte-level English should cut the loss from 5.5 nats to below 4";
  EXPECT_TRUE(m.back()["val_loss"]);
  EXPECT_LT(m.back()["val_loss"].as<double>(), first - 1.0);
  for (const char* key : {"step", "loss", "lr", "grad_norm", "tokens", "step_ms", "tok_s", "elapsed_s", "eta_s",
                          "embed_scale", "sites"})
    EXPECT_TRUE(m.back()[key]) << key;
  EXPECT_EQ(m.back()["tokens"].as<int64_t>(), 60 * 8 * 32 * 2);
  EXPECT_FALSE(m.back()["mfu"]) << "a CPU has no peak to measure against unless train.peak_tflops gives one";
  const YAML::Node sites = m.back()["sites"];
  ASSERT_EQ(sites.size(), 5u);  // 2 layers x (attn, ffn) + final
  EXPECT_EQ(sites[4]["site"].as<std::string>(), "final");
  for (const auto& s : sites) {
    EXPECT_NEAR(s["inv_std"].as<double>() * s["act_std"].as<double>(), 1.0, 1e-6);
    EXPECT_GE(s["sat"].as<double>(), 0.0);
    EXPECT_LE(s["sat"].as<double>(), 1.0);
  }
  // The first step's alpha is the init; the embedding scale starts at sqrt(32) and is trained.
  EXPECT_DOUBLE_EQ(m.front()["sites"][0]["alpha"].as<double>(), 1.0);
  EXPECT_TRUE(fs::exists(dir_ / "a" / "config.yaml"));
  EXPECT_TRUE(fs::exists(dir_ / "a" / "checkpoints" / "step_00000060" / "model.safetensors"));
}

TEST_F(TrainTest, ResumeContinuesTheExactTrajectory) {
  const std::vector<std::string> every20 = {"train.ckpt_every=20", "train.keep_checkpoints=5", "train.max_steps=40"};
  ASSERT_EQ(run("straight", {"train.max_steps=40"}), kExitOk);
  ASSERT_EQ(run("stopped", every20), kExitOk);
  // Pretend the run died after step 20: its later checkpoint is gone and --resume starts from step 20.
  fs::remove_all(dir_ / "stopped" / "checkpoints" / "step_00000040");
  ASSERT_EQ(run("stopped", every20, /*resume=*/true), kExitOk);
  const auto a = metrics("straight"), b = metrics("stopped");
  ASSERT_EQ(a.size(), 40u);
  ASSERT_EQ(b.size(), 40u);  // the lines past step 20 of the first attempt were replaced
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["step"].as<int>(), b[i]["step"].as<int>());
    // Bit for bit: the printed values round-trip fp32, so equal strings mean equal floats.
    EXPECT_EQ(a[i]["loss"].as<std::string>(), b[i]["loss"].as<std::string>()) << "step " << i + 1;
    EXPECT_EQ(a[i]["grad_norm"].as<std::string>(), b[i]["grad_norm"].as<std::string>()) << "step " << i + 1;
  }
}

TEST_F(TrainTest, CalibratedInitSetsAlphaFromTheInputStd) {
  ASSERT_EQ(run("calib", {"train.max_steps=1", "train.grad_accum=1", "model.alpha_init=calibrated", "model.alpha_calib_c=0.5"}), kExitOk);
  // Step 1 is logged with the alphas its forward pass used, i.e. the calibrated ones, on the same first batch.
  for (const auto& s : metrics("calib")[0]["sites"])
    EXPECT_NEAR(s["alpha"].as<double>() * s["act_std"].as<double>(), 0.5, 1e-4) << s["site"].as<std::string>();
}

TEST_F(TrainTest, SigtermWritesACheckpointAndStops) {
  // A preemption: SIGTERM arrives mid-run (once the first metrics line shows the handler is installed); the run
  // finishes its step, writes a checkpoint and exits with code 4, and --resume continues from there.
  const fs::path metrics_path = dir_ / "term" / "metrics.jsonl";
  std::thread preempt([&] {
    while (!fs::exists(metrics_path)) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ::kill(::getpid(), SIGTERM);
  });
  const int code = run("term", {"train.max_steps=100000"});
  preempt.join();
  ASSERT_EQ(code, kExitInterrupted);
  const auto m = metrics("term");
  ASSERT_FALSE(m.empty());
  const int last = m.back()["step"].as<int>();
  char name[32];
  std::snprintf(name, sizeof(name), "step_%08d", last);
  EXPECT_TRUE(fs::exists(dir_ / "term" / "checkpoints" / name / "model.safetensors")) << name;
  EXPECT_EQ(run("term", {"train.max_steps=" + std::to_string(last + 2)}, /*resume=*/true), kExitOk);
  EXPECT_EQ(metrics("term").back()["step"].as<int>(), last + 2);
}

TEST_F(TrainTest, BadConfigFailsBeforeWritingAnything) {
  EXPECT_EQ(run("bad_key", {"model.dimm=64"}), kExitBadInput);
  EXPECT_FALSE(fs::exists(dir_ / "bad_key"));
  EXPECT_EQ(run("bad_heads", {"model.n_heads=5"}), kExitBadInput);
  EXPECT_FALSE(fs::exists(dir_ / "bad_heads"));
  EXPECT_EQ(run("no_data", {"data.train=" + (dir_ / "missing.bin").string()}), kExitBadInput);
  EXPECT_FALSE(fs::exists(dir_ / "no_data"));
}

// Sizes that cannot fit the host used to end in std::bad_alloc (exit 1, no key named) after the run directory was
// made; the host memory plan refuses them up front.
TEST_F(TrainTest, ConfigsThatCannotFitFailBeforeAllocatingAnything) {
  for (const char* big : {"train.micro_batch=1000000000", "model.vocab_size=2000000000", "model.dim=65536"}) {
    SCOPED_TRACE(big);
    EXPECT_EQ(run("big", {big}), kExitBadInput);
    EXPECT_FALSE(fs::exists(dir_ / "big"));
  }
}

TEST_F(TrainTest, CudaWithoutAGpuFailsAsBadInput) {
  // Hide any GPU (each test runs in its own process, so CUDA has not read the variable yet): the same outcome on a
  // CPU host and a GPU host, in builds with and without CUDA.
  setenv("CUDA_VISIBLE_DEVICES", "", 1);
  EXPECT_EQ(run("cuda", {"train.device=cuda"}), kExitBadInput);
  EXPECT_FALSE(fs::exists(dir_ / "cuda"));
  EXPECT_EQ(run("auto", {"train.device=auto", "train.max_steps=2"}), kExitOk);  // auto falls back to the CPU
}

TEST_F(TrainTest, RefusesToOverwriteARunAndToResumeNothing) {
  EXPECT_EQ(run("r", {"train.max_steps=2"}, /*resume=*/true), kExitBadInput);
  ASSERT_EQ(run("r", {"train.max_steps=2"}), kExitOk);
  EXPECT_EQ(run("r", {"train.max_steps=2"}), kExitBadInput);
}

}  // namespace
}  // namespace dytrain
