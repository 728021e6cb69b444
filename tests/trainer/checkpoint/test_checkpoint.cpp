// Checkpoint directories: save -> load is bit-exact for params, both AdamW moments and the trainer state; the files
// are what PyTorch tools and a later resume read; latest_checkpoint picks the highest complete step by number;
// rotation keeps the newest; loading into a table of a different model fails before touching the buffers; no
// non-finite value is ever written or loaded; directory names never overflow.
#include "trainer/checkpoint/checkpoint.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>

#include <fmt/format.h>

#include "tests/common/temp_dir.h"
#include "trainer/checkpoint/hf_config.h"
#include "trainer/checkpoint/safetensors.h"

namespace dytrain {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

Config tiny_config() {
  Config cfg;
  cfg.model.vocab_size = 16;
  cfg.model.dim = 8;
  cfg.model.n_layers = 1;
  cfg.model.n_heads = 2;
  cfg.model.ffn_dim = 12;
  cfg.model.max_seq_len = 32;
  return cfg;
}

// One layer of a LLaMA-DyT under its HF names, untied. `ffn` lets a test build a differently shaped model.
ParamTable tiny_table(int64_t ffn = 12, bool with_lm_head = true) {
  const int64_t V = 16, C = 8;
  ParamTable t;
  t.add("model.embed_tokens.weight", {V, C}, ParamGroup::embeddings);
  t.add("model.embed_scale", {1}, ParamGroup::embed_scale);
  t.add("model.layers.0.input_layernorm.alpha", {1}, ParamGroup::dyt_alpha);
  t.add("model.layers.0.input_layernorm.weight", {C}, ParamGroup::dyt_gamma_beta);
  for (const char* p : {"q", "k", "v", "o"})
    t.add(std::string("model.layers.0.self_attn.") + p + "_proj.weight", {C, C}, ParamGroup::matrices);
  t.add("model.layers.0.post_attention_layernorm.alpha", {1}, ParamGroup::dyt_alpha);
  t.add("model.layers.0.post_attention_layernorm.weight", {C}, ParamGroup::dyt_gamma_beta);
  t.add("model.layers.0.mlp.gate_proj.weight", {ffn, C}, ParamGroup::matrices);
  t.add("model.layers.0.mlp.up_proj.weight", {ffn, C}, ParamGroup::matrices);
  t.add("model.layers.0.mlp.down_proj.weight", {C, ffn}, ParamGroup::matrices);
  t.add("model.norm.alpha", {1}, ParamGroup::dyt_alpha);
  t.add("model.norm.weight", {C}, ParamGroup::dyt_gamma_beta);
  if (with_lm_head) t.add("lm_head.weight", {V, C}, ParamGroup::matrices);
  return t;
}

std::vector<float> random_buffer(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// Random values in the tensors, zeros in the table's alignment gaps (which hold no state and are not saved).
std::vector<float> random_params(const ParamTable& table, uint32_t seed) {
  std::vector<float> v = random_buffer(table.total(), seed), out(v.size(), 0.0f);
  for (const ParamSpec& s : table.specs()) std::copy_n(v.begin() + s.offset, s.numel, out.begin() + s.offset);
  return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A model's full training state, ready to save.
struct State {
  Config cfg = tiny_config();
  ParamTable table = tiny_table();
  std::vector<float> params, m, v;
  YAML::Node trainer_state;

  explicit State(uint32_t seed) {
    params = random_params(table, seed);
    m = random_params(table, seed + 1);
    v = random_params(table, seed + 2);
    for (float& x : v) x = x * x;
    trainer_state["step"] = 100;
    trainer_state["loader"]["shard"] = 3;
    trainer_state["loader"]["position"] = int64_t(12345678901);
    trainer_state["rng"] = uint64_t(18446744073709551615ull);
  }
  CheckpointData data() const { return {&cfg, &table, params.data(), m.data(), v.data(), trainer_state}; }
};

std::string save(const TempDir& run, int64_t step, const State& s, int keep_last = 0) {
  return save_checkpoint(run.path().string(), step, s.data(), keep_last);
}

TEST(Checkpoint, SaveThenLoadIsBitExact) {
  TempDir run;
  const State s(7);
  const std::string dir = save(run, 100, s, 2);
  EXPECT_EQ(dir, (run.path() / "checkpoints" / "step_00000100").string());
  for (const char* f : kCheckpointFiles) EXPECT_TRUE(fs::is_regular_file(fs::path(dir) / f)) << f;
  EXPECT_FALSE(fs::exists(dir + ".tmp"));
  EXPECT_EQ(read_text(fs::path(dir) / "config.yaml"), to_yaml(s.cfg));
  EXPECT_EQ(read_text(fs::path(dir) / "config.json"), hf_config_json(s.cfg.model));

  std::vector<float> params(s.table.total()), m(s.table.total()), v(s.table.total());
  const YAML::Node st = load_checkpoint(params.data(), m.data(), v.data(), dir, s.table);
  EXPECT_TRUE(same_bits(params, s.params));
  EXPECT_TRUE(same_bits(m, s.m));
  EXPECT_TRUE(same_bits(v, s.v));
  EXPECT_EQ(st["step"].as<int>(), 100);
  EXPECT_EQ(st["loader"]["shard"].as<int>(), 3);
  EXPECT_EQ(st["loader"]["position"].as<int64_t>(), 12345678901);
  EXPECT_EQ(st["rng"].as<uint64_t>(), 18446744073709551615ull);

  // Weights only (inference, or a fresh optimizer): the moments are skipped.
  std::vector<float> params2(s.table.total());
  load_checkpoint(params2.data(), nullptr, nullptr, dir, s.table);
  EXPECT_TRUE(same_bits(params2, s.params));
}

// What each rank of dp2 x tp2 reads, read here by one process: every tp rank's blocks (rows of the vocabulary and
// of q/k/v/gate/up, columns of o and down, the norms whole) and each ZeRO-1 half of the moments are exactly what
// take_tp_block cuts out of the whole buffers.
TEST(Checkpoint, SlicesAreTheTpBlocksAndTheMomentRanges) {
  TempDir run;
  const State s(11);
  const std::string dir = save(run, 5, s);
  ParamTable local;
  for (const ParamSpec& w : s.table.specs()) {
    const bool cols = w.name.find("o_proj") != std::string::npos || w.name.find("down_proj") != std::string::npos;
    const TpSplit split = w.shape.size() < 2 ? TpSplit::replicated : cols ? TpSplit::cols : TpSplit::rows;
    local.add(w.name, w.shape, w.group, split, 2);
  }
  const int64_t n = local.total(), half = (n + 1) / 2;
  for (int r = 0; r < 2; ++r) {
    std::vector<float> want_p(n, 0.0f), want_m(n, 0.0f), want_v(n, 0.0f);
    for (size_t i = 0; i < local.specs().size(); ++i) {
      const ParamSpec& ls = local.specs()[i];
      const int64_t at = s.table.specs()[i].offset;
      take_tp_block(want_p.data() + ls.offset, s.params.data() + at, ls, r);
      take_tp_block(want_m.data() + ls.offset, s.m.data() + at, ls, r);
      take_tp_block(want_v.data() + ls.offset, s.v.data() + at, ls, r);
    }
    for (int64_t begin : {int64_t(0), half}) {
      SCOPED_TRACE(::testing::Message() << "tp rank " << r << ", moments from " << begin);
      const int64_t end = std::min(n, begin + half);
      std::vector<float> p(n, 0.0f), m(end - begin, -1.0f), v(end - begin, -1.0f);
      load_checkpoint_slice(p.data(), m.data(), v.data(), dir, CheckpointSlice{&local, r, begin, end});
      EXPECT_TRUE(same_bits(p, want_p));
      EXPECT_TRUE(same_bits(m, std::vector<float>(want_m.begin() + begin, want_m.begin() + end)));
      EXPECT_TRUE(same_bits(v, std::vector<float>(want_v.begin() + begin, want_v.begin() + end)));
    }
  }
}

// A streamed save abandoned before commit (a failure mid-way) leaves neither its temp directory nor a checkpoint,
// and one missing a piece is refused at commit.
TEST(Checkpoint, AnAbandonedOrIncompleteStreamedSaveLeavesNothing) {
  TempDir run;
  const State s(3);
  const fs::path tmp = run.path() / "checkpoints" / "step_00000009.tmp";
  {
    CheckpointWriter w(run.path().string(), 9, s.table);
    EXPECT_TRUE(fs::is_directory(tmp));
    for (const ParamSpec& p : s.table.specs()) {
      w.write(StateBuffer::params, p.name, 0, s.params.data() + p.offset, p.numel);
      w.write(StateBuffer::exp_avg, p.name, 0, s.m.data() + p.offset, p.numel);
      if (p.name != "lm_head.weight") w.write(StateBuffer::exp_avg_sq, p.name, 0, s.v.data() + p.offset, p.numel);
    }
    EXPECT_THROW(w.commit(s.cfg, s.trainer_state, 0), SafetensorsError);
  }
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_FALSE(fs::exists(run.path() / "checkpoints" / "step_00000009"));
}

TEST(Checkpoint, FilesHoldHfNamesAndMomentNames) {
  TempDir run;
  const State s(11);
  const std::string dir = save(run, 5, s);
  const SafetensorsIndex model = read_safetensors_index(dir + "/model.safetensors");
  EXPECT_EQ(model.metadata.at("format"), "pt");
  ASSERT_EQ(model.tensors.size(), s.table.specs().size());
  const auto opt = read_safetensors(dir + "/optimizer.st");
  ASSERT_EQ(opt.size(), 2 * s.table.specs().size());
  const ParamSpec& q = s.table.at("model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(model.tensors.at(q.name).shape, q.shape);
  const std::vector<float> q_sq(s.v.begin() + q.offset, s.v.begin() + q.offset + q.numel);
  EXPECT_TRUE(same_bits(opt.at("exp_avg_sq." + q.name).data, q_sq));
  EXPECT_EQ(opt.count("exp_avg." + q.name), 1u);
}

TEST(Checkpoint, LatestIgnoresTmpAndIncompleteAndComparesStepsAsNumbers) {
  TempDir run;
  EXPECT_FALSE(latest_checkpoint(run.path().string()).has_value());
  const State s(3);
  save(run, 99999999, s);
  const std::string newest = save(run, 100000000, s);  // sorts before 99999999 as text
  save(run, 5, s);
  const fs::path root = run.path() / "checkpoints";
  // A complete-looking .tmp (a save interrupted before its rename) and a later step missing one file.
  fs::copy(newest, root / "step_200000000.tmp");
  fs::copy(newest, root / "step_300000000");
  fs::remove(root / "step_300000000" / "optimizer.st");
  fs::create_directory(root / "step_9x");
  std::ofstream(root / "step_400000000") << "a file, not a directory";
  const auto latest = latest_checkpoint(run.path().string());
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(*latest, newest);
}

std::vector<std::string> entries(const fs::path& root) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(root)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(Checkpoint, KeepLastRotatesOlderCompleteCheckpointsOnly) {
  TempDir run;
  const State s(5);
  const fs::path root = run.path() / "checkpoints";
  fs::create_directories(root / "step_00000001");  // incomplete: not a checkpoint, left alone
  for (int step = 10; step <= 50; step += 10) save(run, step, s, 2);
  EXPECT_EQ(entries(root), (std::vector<std::string>{"step_00000001", "step_00000040", "step_00000050"}));
  // Saving an earlier step (a resume from an older checkpoint) keeps itself and never deletes later steps.
  save(run, 45, s, 1);
  EXPECT_EQ(entries(root), (std::vector<std::string>{"step_00000001", "step_00000045", "step_00000050"}));
  save(run, 60, s, 0);  // keep_last <= 0 keeps all
  EXPECT_EQ(entries(root).size(), 4u);
}

TEST(Checkpoint, StaleTmpAndSameStepAreReplaced) {
  TempDir run;
  const fs::path root = run.path() / "checkpoints";
  fs::create_directories(root / "step_00000007.tmp");
  std::ofstream(root / "step_00000007.tmp" / "junk") << "left by a crash";
  const State a(1), b(2);
  save(run, 7, a);
  const std::string dir = save(run, 7, b);  // a rerun of the same step
  EXPECT_EQ(entries(root), std::vector<std::string>{"step_00000007"});
  EXPECT_FALSE(fs::exists(fs::path(dir) / "junk"));
  std::vector<float> params(b.table.total());
  load_checkpoint(params.data(), nullptr, nullptr, dir, b.table);
  EXPECT_TRUE(same_bits(params, b.params));
}

// The CheckpointError `f` throws; fails the test when it throws nothing.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const CheckpointError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no CheckpointError thrown";
  return "";
}

TEST(Checkpoint, LoadRejectsADifferentModelWithoutTouchingTheBuffers) {
  TempDir run;
  const State s(9);
  const std::string dir = save(run, 1, s);
  const std::string model_file = dir + "/model.safetensors";
  struct Case {
    const char* what;
    ParamTable table;
    std::string tensor, phrase;
  };
  ParamTable extra_in_model = tiny_table();
  extra_in_model.add("model.layers.1.input_layernorm.alpha", {1}, ParamGroup::dyt_alpha);
  const std::vector<Case> cases = {
      {"model has a tensor the file lacks", extra_in_model, "model.layers.1.input_layernorm.alpha", "is missing"},
      {"shape differs", tiny_table(16), "model.layers.0.mlp.gate_proj.weight", "has shape [12, 8], the model expects [16, 8]"},
      {"file has a tensor the model lacks (tied)", tiny_table(12, false), "lm_head.weight", "not a tensor of the model"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    std::vector<float> params(c.table.total(), 42.0f);
    const std::string msg = error_of([&] { load_checkpoint(params.data(), nullptr, nullptr, dir, c.table); });
    EXPECT_NE(msg.find(model_file), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.tensor), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.phrase), std::string::npos) << msg;
    EXPECT_NE(msg.find("different model config"), std::string::npos) << msg;
    EXPECT_EQ(params, std::vector<float>(c.table.total(), 42.0f));
  }
}

TEST(Checkpoint, LoadRejectsIncompleteOptimizerState) {
  TempDir run;
  const State s(4);
  const std::string dir = save(run, 1, s);
  // Rewrite the moments file without one exp_avg_sq.
  std::vector<TensorRef> refs;
  for (const ParamSpec& p : s.table.specs()) {
    refs.push_back({"exp_avg." + p.name, p.shape, s.m.data() + p.offset});
    if (p.name != "model.norm.alpha") refs.push_back({"exp_avg_sq." + p.name, p.shape, s.v.data() + p.offset});
  }
  write_safetensors(dir + "/optimizer.st", refs);
  std::vector<float> params(s.table.total()), m(s.table.total());
  // Asking for exp_avg only still checks the whole moments file.
  const std::string msg = error_of([&] { load_checkpoint(params.data(), m.data(), nullptr, dir, s.table); });
  EXPECT_NE(msg.find(dir + "/optimizer.st"), std::string::npos) << msg;
  EXPECT_NE(msg.find("exp_avg_sq.model.norm.alpha"), std::string::npos) << msg;
  // The weights alone still load.
  EXPECT_NO_THROW(load_checkpoint(params.data(), nullptr, nullptr, dir, s.table));

  fs::remove(dir + "/optimizer.st");
  const std::string missing = error_of([&] { load_checkpoint(params.data(), m.data(), nullptr, dir, s.table); });
  EXPECT_NE(missing.find("optimizer.st is missing"), std::string::npos) << missing;
  EXPECT_NE(missing.find(dir), std::string::npos) << missing;
}

TEST(Checkpoint, TrainerStateWithAKeyTwiceIsRejected) {
  // yaml-cpp keeps both pairs and state["step"] would read the first: an edited file must not resume half-trusted.
  TempDir run;
  const State s(5);
  const std::string dir = save(run, 1, s);
  const std::string state_file = dir + "/trainer_state.yaml";
  const std::string text = read_text(state_file);
  std::ofstream(state_file, std::ios::app) << "step: 7\n";
  const size_t step_line = size_t(std::count(text.begin(), text.begin() + text.find("step:"), '\n')) + 1;
  const size_t last_line = size_t(std::count(text.begin(), text.end(), '\n')) + 1;
  std::vector<float> params(s.table.total());
  const std::string msg = error_of([&] { load_checkpoint(params.data(), nullptr, nullptr, dir, s.table); });
  EXPECT_NE(msg.find(fmt::format("{}:{}: key 'step' is given twice (first at line {})", state_file, last_line,
                                 step_line)),
            std::string::npos)
      << msg;
}

TEST(Checkpoint, SaveRefusesNonFiniteValuesAndWritesNothing) {
  TempDir run;
  const State good(6);
  save(run, 10, good);
  const fs::path root = run.path() / "checkpoints";
  const ParamSpec& q = good.table.at("model.layers.0.self_attn.q_proj.weight");
  const ParamSpec& alpha = good.table.at("model.norm.alpha");
  const ParamSpec& head = good.table.at("lm_head.weight");
  struct Case {
    const char* what;
    std::function<void(State&)> poison;
    std::string phrase;
  };
  const std::vector<Case> cases = {
      {"NaN param", [&](State& s) { s.params[q.offset + 3] = std::nanf(""); }, "parameter " + q.name},
      {"inf exp_avg", [&](State& s) { s.m[alpha.offset] = -INFINITY; }, "exp_avg of " + alpha.name},
      {"NaN exp_avg_sq", [&](State& s) { s.v[head.offset + head.numel - 1] = std::nanf(""); },
       "exp_avg_sq of lm_head.weight"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    State bad(6);
    c.poison(bad);
    try {
      save(run, 20, bad);
      ADD_FAILURE() << "no NonFiniteError thrown";
    } catch (const NonFiniteError& e) {
      EXPECT_NE(std::string(e.what()).find(c.phrase), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("NaN or inf"), std::string::npos) << e.what();
    }
    // Neither the step nor its temp directory exists, and the earlier checkpoint is untouched.
    EXPECT_EQ(entries(root), std::vector<std::string>{"step_00000010"});
  }
  std::vector<float> params(good.table.total());
  load_checkpoint(params.data(), nullptr, nullptr, (root / "step_00000010").string(), good.table);
  EXPECT_TRUE(same_bits(params, good.params));
}

TEST(Checkpoint, LoadRejectsNonFiniteTensorsNamingFileAndTensor) {
  TempDir run;
  const State s(8);
  const std::string dir = save(run, 3, s);
  const ParamSpec& up = s.table.at("model.layers.0.mlp.up_proj.weight");
  std::vector<float> poisoned = s.v;
  poisoned[up.offset + 5] = INFINITY;
  std::vector<TensorRef> refs;
  for (const ParamSpec& p : s.table.specs()) {
    refs.push_back({"exp_avg." + p.name, p.shape, s.m.data() + p.offset});
    refs.push_back({"exp_avg_sq." + p.name, p.shape, poisoned.data() + p.offset});
  }
  write_safetensors(dir + "/optimizer.st", refs);
  std::vector<float> params(s.table.total()), m(s.table.total()), v(s.table.total());
  const std::string msg = error_of([&] { load_checkpoint(params.data(), m.data(), v.data(), dir, s.table); });
  EXPECT_NE(msg.find(dir + "/optimizer.st"), std::string::npos) << msg;
  EXPECT_NE(msg.find("exp_avg_sq." + up.name), std::string::npos) << msg;
  EXPECT_NE(msg.find("NaN or inf"), std::string::npos) << msg;
  // The weights alone are finite and load.
  EXPECT_NO_THROW(load_checkpoint(params.data(), nullptr, nullptr, dir, s.table));

  std::vector<float> nan_params = s.params;
  nan_params[up.offset] = std::nanf("");
  std::vector<TensorRef> model;
  for (const ParamSpec& p : s.table.specs()) model.push_back({p.name, p.shape, nan_params.data() + p.offset});
  write_safetensors(dir + "/model.safetensors", model);
  const std::string weights = error_of([&] { load_checkpoint(params.data(), nullptr, nullptr, dir, s.table); });
  EXPECT_NE(weights.find(dir + "/model.safetensors"), std::string::npos) << weights;
  EXPECT_NE(weights.find(up.name), std::string::npos) << weights;
}

TEST(Checkpoint, StepOfADirectoryNameNeverOverflows) {
  EXPECT_EQ(checkpoint_step("/runs/a/checkpoints/step_00000100"), 100);
  EXPECT_EQ(checkpoint_step("step_0"), 0);
  EXPECT_EQ(checkpoint_step("step_999999999999999999"), 999999999999999999);
  EXPECT_EQ(checkpoint_step("step_9223372036854775807"), INT64_MAX);
  for (const char* name : {"step_9223372036854775808", "step_99999999999999999999", "step_18446744073709551617",
                           "step_", "step_-1", "step_+1", "step_1x", "step_100.tmp", "notes", "Step_1"})
    EXPECT_FALSE(checkpoint_step(name).has_value()) << name;
}

TEST(Checkpoint, CompleteCheckpointsAreListedNewestFirst) {
  TempDir run;
  EXPECT_TRUE(complete_checkpoints_newest_first(run.path().string()).empty());
  const State s(2);
  const std::string a = save(run, 7, s), b = save(run, 30, s), c = save(run, 100000000, s);
  fs::create_directories(run.path() / "checkpoints" / "step_99999999999999999999");  // not a step: ignored
  fs::copy(c, run.path() / "checkpoints" / "step_99999999999999999999");
  EXPECT_EQ(complete_checkpoints_newest_first(run.path().string()), (std::vector<std::string>{c, b, a}));
}

}  // namespace
}  // namespace dytrain
