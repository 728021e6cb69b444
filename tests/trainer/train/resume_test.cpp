// Resume trusts nothing (end to end on the shipped real-text shard, in process): a checkpoint whose trainer_state.yaml
// is damaged, edited or copied, or that does not fit the config, stops the run with exit 2 naming the file and key
// before the run directory changes (config.yaml and metrics.jsonl stay byte for byte); --resume skips a damaged newest
// checkpoint with a warning and continues the exact trajectory from the one before; --resume-from continues from a
// checkpoint of another run; `dytrain check` refuses a checkpoint holding NaN; no checkpoint is written with NaN.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "tests/common/read_file.h"
#include "parallel/mesh.h"
#include "tests/common/temp_dir.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/safetensors.h"
#include "trainer/optim/adamw.h"
#include "trainer/train/check.h"
#include "trainer/train/distributed_checkpoint.h"
#include "trainer/train/trainer.h"

namespace dytrain {
namespace {

using dytrain::testing::read_file;

namespace fs = std::filesystem;

class ResumeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The model and data of train_test.cpp: byte-level tokens of English text, seconds per run on 2 cores.
    std::ofstream(dir_ / "tiny.yaml") << "model:\n"
                                        "  vocab_size: 256\n  dim: 32\n  n_layers: 2\n  n_heads: 4\n"
                                        "  n_kv_heads: 2\n  ffn_dim: 64\n  max_seq_len: 64\n"
                                        "optim:\n  lr: 0.003\n  min_lr: 0.0003\n  warmup_steps: 5\n"
                                        "data:\n  train: " << data_ << "text_bytes_train.bin\n"
                                        "  val: " << data_ << "text_bytes_val.bin\n"
                                        "train:\n  micro_batch: 8\n  seq_len: 32\n  grad_accum: 2\n"
                                        "  max_steps: 12\n  log_every: 1\n  val_every: 6\n  val_batches: 2\n"
                                        "  keep_checkpoints: 5\n  device: cpu\n";
  }

  // train() on tiny.yaml; its console output (stdout and stderr) is kept in out_.
  int run(const std::string& run_dir, std::vector<std::string> overrides, bool resume = false,
          const std::string& resume_from = "") {
    TrainOptions o;
    o.config_path = (dir_ / "tiny.yaml").string();
    o.overrides = std::move(overrides);
    o.run_dir = (dir_ / run_dir).string();
    o.resume = resume;
    o.resume_from = resume_from;
    ::testing::internal::CaptureStdout();
    ::testing::internal::CaptureStderr();
    const int code = train(o);
    out_ = ::testing::internal::GetCapturedStdout();
    out_ += ::testing::internal::GetCapturedStderr();
    return code;
  }

  fs::path ckpt(const std::string& run_dir, int step) const {
    return dir_ / run_dir / "checkpoints" / checkpoint_dir_name(step);
  }

  std::vector<YAML::Node> metrics(const std::string& run_dir) const {
    std::vector<YAML::Node> out;
    std::ifstream in(dir_ / run_dir / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) out.push_back(YAML::Load(line));
    return out;
  }

  // Lines [first, last) of run a's and run b's metrics hold the same steps, losses and grad norms, bit for bit (the
  // printed values round-trip fp32).
  void expect_same_steps(const std::string& a, const std::string& b, size_t first, size_t last) const {
    const auto ma = metrics(a), mb = metrics(b);
    ASSERT_GE(ma.size(), last);
    ASSERT_GE(mb.size(), last - first);
    const size_t offset = mb.size() == last ? 0 : first;  // b may hold only the lines from `first` on
    for (size_t i = first; i < last; ++i) {
      EXPECT_EQ(ma[i]["step"].as<int>(), mb[i - offset]["step"].as<int>());
      EXPECT_EQ(ma[i]["loss"].as<std::string>(), mb[i - offset]["loss"].as<std::string>()) << "line " << i;
      EXPECT_EQ(ma[i]["grad_norm"].as<std::string>(), mb[i - offset]["grad_norm"].as<std::string>()) << "line " << i;
    }
  }

  static void edit_state(const fs::path& ckpt_dir, const std::function<void(YAML::Node&)>& edit) {
    const fs::path path = ckpt_dir / "trainer_state.yaml";
    YAML::Node n = YAML::LoadFile(path.string());
    edit(n);
    YAML::Emitter e;
    e << n;
    std::ofstream(path) << e.c_str() << "\n";
  }

  testing::TempDir tmp_;
  const fs::path& dir_ = tmp_.path();
  const std::string data_ = std::string(DYTRAIN_SOURCE_DIR) + "/data/tests/";
  std::string out_;
};

TEST_F(ResumeTest, BadTrainerStateStopsBeforeTheRunDirectoryChanges) {
  ASSERT_EQ(run("r", {"train.max_steps=2"}), kExitOk);
  const fs::path ck = ckpt("r", 2), state_path = ck / "trainer_state.yaml";
  const std::string config = read_file(dir_ / "r" / "config.yaml"), metrics = read_file(dir_ / "r" / "metrics.jsonl");
  const std::string state = read_file(state_path);
  ASSERT_FALSE(metrics.empty());
  struct Case {
    const char* what;
    std::function<void(YAML::Node&)> edit;
    std::string phrase;
  };
  const std::vector<Case> cases = {
      {"step of another directory", [](YAML::Node& n) { n["step"] = 5; },
       "key 'step' is 5 but the directory is named step_00000002"},
      {"negative step", [](YAML::Node& n) { n["step"] = -3; }, "key 'step' is -3"},
      {"adam_t -1", [](YAML::Node& n) { n["adam_t"] = -1; }, "key 'adam_t' is -1"},
      {"dp 0", [](YAML::Node& n) { n["dp"] = 0; }, "key 'dp' is 0"},
      {"negative cursor", [](YAML::Node& n) { n["train_loader"]["cursor"] = -8; }, "key 'train_loader.cursor' is -8"},
      {"cursor off the batch grid", [](YAML::Node& n) { n["train_loader"]["cursor"] = 3; }, "key 'cursor': 3"},
      {"cursor past the epoch", [](YAML::Node& n) { n["train_loader"]["cursor"] = int64_t(1) << 40; },
       "key 'cursor': 1099511627776"},
      {"missing key", [](YAML::Node& n) { n.remove("tokens"); }, "key 'tokens' is missing"},
      {"wrong type", [](YAML::Node& n) { n["step"] = "two"; }, "key 'step' is not an integer"},
      // Accepted by the reader, but counting on from it would overflow int64 (a negative count in the metrics and a
      // next checkpoint that no longer reads).
      {"tokens near 2^63", [](YAML::Node& n) { n["tokens"] = int64_t(9223372036854775807); },
       "key 'tokens' is 9223372036854775807, which would overflow"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    std::ofstream(state_path) << state;
    edit_state(ck, c.edit);
    // A changed max_steps: a resume that went ahead would rewrite config.yaml.
    EXPECT_EQ(run("r", {"train.max_steps=10"}, /*resume=*/true), kExitBadInput) << out_;
    EXPECT_NE(out_.find(state_path.string()), std::string::npos) << out_;
    EXPECT_NE(out_.find(c.phrase), std::string::npos) << out_;
    EXPECT_EQ(read_file(dir_ / "r" / "config.yaml"), config);
    EXPECT_EQ(read_file(dir_ / "r" / "metrics.jsonl"), metrics);
    EXPECT_FALSE(fs::exists(ckpt("r", 10)));
  }
}

// A sound checkpoint of another model (the config changed) is not damage: the resume stops with exit 2 and the hint
// to compare configs, instead of trying every older checkpoint and advising to remove them.
TEST_F(ResumeTest, ACheckpointOfAnotherModelStopsTheResume) {
  ASSERT_EQ(run("r", {"train.max_steps=4", "train.ckpt_every=2"}), kExitOk);
  const std::string metrics = read_file(dir_ / "r" / "metrics.jsonl");
  EXPECT_EQ(run("r", {"train.max_steps=6", "model.ffn_dim=96"}, /*resume=*/true), kExitBadInput);
  EXPECT_NE(out_.find("the checkpoint holds another model than the config describes"), std::string::npos) << out_;
  EXPECT_EQ(out_.find("does not load"), std::string::npos) << "fell back to an older checkpoint: " << out_;
  EXPECT_EQ(read_file(dir_ / "r" / "metrics.jsonl"), metrics);
  EXPECT_TRUE(fs::exists(ckpt("r", 2)));
  EXPECT_TRUE(fs::exists(ckpt("r", 4)));
}

TEST_F(ResumeTest, ACheckpointBeyondMaxStepsStopsTheResume) {
  ASSERT_EQ(run("r", {"train.max_steps=4", "train.ckpt_every=2"}), kExitOk);
  const std::string config = read_file(dir_ / "r" / "config.yaml"), metrics = read_file(dir_ / "r" / "metrics.jsonl");
  // Falling back to step 2 would quietly rewind the run: the resume stops and says what to change.
  EXPECT_EQ(run("r", {"train.max_steps=3", "train.ckpt_every=2"}, /*resume=*/true), kExitBadInput);
  EXPECT_NE(out_.find((ckpt("r", 4) / "trainer_state.yaml").string() + ": key 'step' is 4, beyond train.max_steps = 3"),
            std::string::npos)
      << out_;
  EXPECT_EQ(read_file(dir_ / "r" / "config.yaml"), config);
  EXPECT_EQ(read_file(dir_ / "r" / "metrics.jsonl"), metrics);
}

TEST_F(ResumeTest, ACopiedHugeStepDirectoryDoesNotWin) {
  ASSERT_EQ(run("h", {"train.max_steps=4", "train.ckpt_every=2"}), kExitOk);
  const fs::path huge = dir_ / "h" / "checkpoints" / "step_999999999999999999";
  fs::copy(ckpt("h", 2), huge);
  ASSERT_EQ(run("h", {"train.max_steps=6", "train.ckpt_every=2"}, /*resume=*/true), kExitOk) << out_;
  EXPECT_NE(out_.find(huge.string() + " does not load"), std::string::npos) << out_;
  EXPECT_NE(out_.find("resumed from " + ckpt("h", 4).string() + " at step 4"), std::string::npos) << out_;
  EXPECT_EQ(metrics("h").size(), 6u);
  EXPECT_EQ(metrics("h").back()["step"].as<int>(), 6);

  // Made consistent with its name, it is a checkpoint far beyond max_steps: a clear stop, not a silent pick.
  edit_state(huge, [](YAML::Node& n) {
    n["step"] = int64_t(999999999999999999);
    n["adam_t"] = int64_t(999999999999999999);
  });
  const std::string metrics_before = read_file(dir_ / "h" / "metrics.jsonl");
  EXPECT_EQ(run("h", {"train.max_steps=8", "train.ckpt_every=2"}, /*resume=*/true), kExitBadInput);
  EXPECT_NE(out_.find("key 'step' is 999999999999999999, beyond train.max_steps = 8"), std::string::npos) << out_;
  EXPECT_EQ(read_file(dir_ / "h" / "metrics.jsonl"), metrics_before);
}

TEST_F(ResumeTest, ADamagedNewestCheckpointIsSkippedAndTheRunContinuesExactly) {
  const std::vector<std::string> every6 = {"train.ckpt_every=6"};
  ASSERT_EQ(run("straight", {}), kExitOk);
  ASSERT_EQ(run("stopped", every6), kExitOk);
  // The newest checkpoint fails late: its loader position, weights and first moments are taken before a NaN in its
  // second moments is found, so the trajectory below also shows that the fallback overwrites all of them.
  const fs::path moments = ckpt("stopped", 12) / "optimizer.st";
  std::map<std::string, StTensor> tensors = read_safetensors(moments.string());
  tensors.at("exp_avg_sq.model.norm.weight").data[0] = std::nanf("");
  std::vector<TensorRef> refs;
  for (const auto& [name, t] : tensors) refs.push_back({name, t.shape, t.data.data()});
  write_safetensors(moments.string(), refs, {{"format", "pt"}});
  ASSERT_EQ(run("stopped", every6, /*resume=*/true), kExitOk) << out_;
  EXPECT_NE(out_.find(ckpt("stopped", 12).string() + " does not load: " + moments.string() +
                      ": tensor exp_avg_sq.model.norm.weight holds NaN or inf"),
            std::string::npos)
      << out_;
  EXPECT_NE(out_.find("resumed from " + ckpt("stopped", 6).string() + " at step 6"), std::string::npos) << out_;
  ASSERT_EQ(metrics("stopped").size(), 12u);
  expect_same_steps("straight", "stopped", 0, 12);
  // The damaged checkpoint was replaced by the rerun of step 12.
  EXPECT_EQ(read_file(moments), read_file(ckpt("straight", 12) / "optimizer.st"));

  // Every checkpoint damaged (a truncated file, a file that is not safetensors): exit 2, each named, the run
  // directory as it was.
  fs::resize_file(ckpt("stopped", 12) / "model.safetensors", 10);
  fs::remove(ckpt("stopped", 6) / "optimizer.st");
  std::ofstream(ckpt("stopped", 6) / "optimizer.st") << "not safetensors";
  const std::string metrics_before = read_file(dir_ / "stopped" / "metrics.jsonl");
  EXPECT_EQ(run("stopped", every6, /*resume=*/true), kExitBadInput);
  EXPECT_NE(out_.find(ckpt("stopped", 12).string() + " does not load"), std::string::npos) << out_;
  EXPECT_NE(out_.find(ckpt("stopped", 6).string() + " does not load"), std::string::npos) << out_;
  EXPECT_NE(out_.find("none of the 2 checkpoints"), std::string::npos) << out_;
  EXPECT_EQ(read_file(dir_ / "stopped" / "metrics.jsonl"), metrics_before);
}

TEST_F(ResumeTest, ResumeFromContinuesFromACheckpointOfAnotherRun) {
  ASSERT_EQ(run("src", {"train.ckpt_every=6"}), kExitOk);
  ASSERT_EQ(run("dst", {}, /*resume=*/false, ckpt("src", 6).string()), kExitOk) << out_;
  EXPECT_NE(out_.find("resumed from " + ckpt("src", 6).string() + " at step 6"), std::string::npos) << out_;
  ASSERT_EQ(metrics("dst").size(), 6u);  // steps 7..12, as the source run logged them
  expect_same_steps("src", "dst", 6, 12);
  EXPECT_TRUE(fs::exists(ckpt("dst", 12) / "model.safetensors"));
  EXPECT_TRUE(fs::exists(ckpt("src", 12) / "model.safetensors"));  // the source run is left alone

  const std::string missing = (dir_ / "nowhere" / "step_00000006").string();
  EXPECT_EQ(run("dst2", {}, /*resume=*/false, missing), kExitBadInput);
  EXPECT_NE(out_.find("--resume-from " + missing), std::string::npos) << out_;
  EXPECT_FALSE(fs::exists(dir_ / "dst2" / "config.yaml"));
  EXPECT_FALSE(fs::exists(dir_ / "dst2" / "metrics.jsonl"));
}

TEST_F(ResumeTest, CheckRefusesACheckpointHoldingNaN) {
  ASSERT_EQ(run("c", {"train.max_steps=2"}), kExitOk);
  CheckOptions opt;
  opt.checkpoint_dir = ckpt("c", 2).string();
  opt.shard = data_ + "text_bytes_val.bin";
  const YAML::Node ok = YAML::Load(check_checkpoint(opt));
  EXPECT_TRUE(std::isfinite(ok["loss"].as<double>()));

  const std::string weights = opt.checkpoint_dir + "/model.safetensors";
  std::map<std::string, StTensor> tensors = read_safetensors(weights);
  tensors.at("model.norm.weight").data[1] = std::nanf("");
  std::vector<TensorRef> refs;
  for (const auto& [name, t] : tensors) refs.push_back({name, t.shape, t.data.data()});
  write_safetensors(weights, refs, {{"format", "pt"}});
  try {
    check_checkpoint(opt);
    ADD_FAILURE() << "no CheckpointError thrown";
  } catch (const CheckpointError& e) {  // `dytrain check` turns it into exit 2
    EXPECT_NE(std::string(e.what()).find(weights + ": tensor model.norm.weight holds NaN or inf"), std::string::npos)
        << e.what();
  }
}

TEST(DistributedCheckpoint, ANonFiniteStateIsRefusedAndNothingIsWritten) {
  testing::TempDir run;
  Config cfg;
  ParamTable table;
  table.add("model.norm.weight", {8}, ParamGroup::dyt_gamma_beta);
  table.add("lm_head.weight", {4, 8}, ParamGroup::matrices);
  AdamW optim(cfg.optim, table);
  std::vector<float> params(table.total(), 0.5f);
  Mesh mesh = make_mesh(1);
  YAML::Node state;
  state["step"] = 3;
  EXPECT_NO_THROW(save_checkpoint_distributed(mesh, run.path().string(), 3, cfg, table, params.data(), optim, state));
  params[table.at("lm_head.weight").offset + 5] = -INFINITY;
  try {
    save_checkpoint_distributed(mesh, run.path().string(), 4, cfg, table, params.data(), optim, state);
    ADD_FAILURE() << "no NonFiniteError thrown";
  } catch (const NonFiniteError& e) {  // the trainer's exit 3
    EXPECT_NE(std::string(e.what()).find("parameter lm_head.weight holds NaN or inf"), std::string::npos) << e.what();
  }
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(run.path() / "checkpoints")) names.push_back(e.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"step_00000003"});
}

}  // namespace
}  // namespace dytrain
