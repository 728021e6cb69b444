// Resume and check through the real CLI: under mpirun every rank agrees on skipping a damaged newest checkpoint and
// the run follows the uninterrupted one; a trainer state that stops one rank stops all of them with exit 2;
// --resume-from is parsed and implies a resume; `dytrain check` exits 2 on a checkpoint holding NaN and on integers
// that do not fit, instead of printing nan or wrapping around.
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/common/read_file.h"
#include "tests/trainer/train/cli_runs.h"
#include "trainer/checkpoint/safetensors.h"

namespace {

using dytrain::testing::read_file;

namespace fs = std::filesystem;

std::string tiny_config() {
  const std::string data = std::string(DYTRAIN_SOURCE_DIR) + "/data/tests/";
  return "model: {vocab_size: 256, dim: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_dim: 64, max_seq_len: 64}\n"
         "optim: {lr: 0.003, min_lr: 0.0003, warmup_steps: 2}\n"
         "data: {train: " + data + "text_bytes_train.bin, val: " + data + "text_bytes_val.bin}\n"
         "train: {micro_batch: 4, seq_len: 32, max_steps: 6, log_every: 1, val_every: 3, val_batches: 2, "
         "ckpt_every: 2, keep_checkpoints: 5, device: cpu}\n";
}

class ResumeCliTest : public ::testing::Test {
 protected:
  fs::path ckpt(const std::string& run_dir, const char* step) const {
    return dir_ / run_dir / "checkpoints" / (std::string("step_0000000") + step);
  }
  // `dytrain ARGS`, output in out_; returns the exit code.
  int dytrain(const std::string& args) {
    const fs::path log = dir_ / "cmd.log";
    const int status = std::system((std::string(DYTRAIN_BIN) + " " + args + " > " + log.string() + " 2>&1").c_str());
    out_ = read_file(log);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  dytrain::testing::CliRuns runs_{tiny_config()};
  const fs::path& dir_ = runs_.dir();
  std::string out_;
};

TEST_F(ResumeCliTest, EveryRankSkipsADamagedNewestCheckpointTogether) {
  ASSERT_EQ(runs_.run(2, "straight", ""), 0);
  ASSERT_EQ(runs_.run(2, "stopped", "--set train.max_steps=4"), 0);
  fs::resize_file(ckpt("stopped", "4") / "model.safetensors", 100);  // a disk error in the newest checkpoint
  ASSERT_EQ(runs_.run(2, "stopped", "--resume"), 0);
  const std::string log = read_file(dir_ / "stopped.log");
  EXPECT_NE(log.find(ckpt("stopped", "4").string() + " does not load"), std::string::npos) << log;
  EXPECT_NE(log.find("resumed from " + ckpt("stopped", "2").string() + " at step 2"), std::string::npos) << log;
  runs_.expect_same_trajectory("straight", "stopped", 0.0);

  // A trainer state beyond max_steps stops every rank with exit 2 and the metrics as they were.
  const std::string metrics = read_file(dir_ / "stopped" / "metrics.jsonl");
  EXPECT_EQ(runs_.run(2, "stopped", "--resume --set train.max_steps=5"), 2);
  EXPECT_NE(read_file(dir_ / "stopped.log").find("beyond train.max_steps = 5"), std::string::npos);
  EXPECT_EQ(read_file(dir_ / "stopped" / "metrics.jsonl"), metrics);
}

TEST_F(ResumeCliTest, ResumeFromIsParsedAndImpliesResume) {
  ASSERT_EQ(runs_.run(0, "src", ""), 0);
  ASSERT_EQ(runs_.run(0, "dst", "--resume-from " + ckpt("src", "4").string()), 0);
  EXPECT_EQ(runs_.metrics("dst").front()["step"].as<int>(), 5);
  EXPECT_EQ(dytrain("train " + runs_.config() + " --resume-from"), 2);
  EXPECT_NE(out_.find("--resume-from needs a checkpoint directory"), std::string::npos) << out_;
}

TEST_F(ResumeCliTest, CheckExitsTwoOnNaNAndOnIntegersThatDoNotFit) {
  ASSERT_EQ(runs_.run(0, "c", "--set train.max_steps=2"), 0);
  const std::string ck = ckpt("c", "2").string();
  const std::string shard = std::string(DYTRAIN_SOURCE_DIR) + "/data/tests/text_bytes_val.bin";
  ASSERT_EQ(dytrain("check " + ck + " " + shard + " --batch 2"), 0) << out_;
  for (const char* bad : {"99999999999", "4294967298", "-1", "0", "2x", "1e3"}) {
    EXPECT_EQ(dytrain("check " + ck + " " + shard + " --batch " + bad), 2) << bad;
    EXPECT_NE(out_.find("--batch needs an integer from 1 to 2147483647, got '" + std::string(bad) + "'"),
              std::string::npos)
        << out_;
  }
  EXPECT_EQ(dytrain("check " + ck + " " + shard + " --seq"), 2);

  const std::string weights = ck + "/model.safetensors";
  std::map<std::string, dytrain::StTensor> tensors = dytrain::read_safetensors(weights);
  tensors.at("model.embed_tokens.weight").data[7] = std::nanf("");
  std::vector<dytrain::TensorRef> refs;
  for (const auto& [name, t] : tensors) refs.push_back({name, t.shape, t.data.data()});
  dytrain::write_safetensors(weights, refs, {{"format", "pt"}});
  EXPECT_EQ(dytrain("check " + ck + " " + shard + " --batch 2"), 2);
  EXPECT_NE(out_.find(weights + ": tensor model.embed_tokens.weight holds NaN or inf"), std::string::npos) << out_;
  EXPECT_EQ(out_.find("\"loss\""), std::string::npos) << out_;
}

}  // namespace
