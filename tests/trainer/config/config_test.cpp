// The config reader and writer against the spec: shipped presets and recipes with their shapes written out here
// (from the paper and the PyTorch bench), include / --set precedence, the derived SwiGLU size against the HF configs
// of the LLaMA family, exact round trips, the fixed key order and the hash (checked against an independent FNV-1a).
// Error cases are in config_errors_test.cpp.
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "tests/trainer/config/config_test_util.h"

namespace dytrain {
namespace {

using testing::kValidYaml;
using testing::TempDir;
namespace fs = std::filesystem;

const fs::path kConfigs = fs::path(DYTRAIN_SOURCE_DIR) / "configs";

struct PresetShape {
  int dim, n_layers, n_heads, kv_heads, head_dim, hidden, max_seq_len;
  double alpha_attn, alpha_other;  // the paper's alpha0 for the width (1.0/1.0 below 1024)
};

// The shapes the presets must have, from the product brief, the PyTorch bench presets and the paper.
const std::map<std::string, PresetShape> kPresets = {
    {"tiny", {128, 4, 4, 2, 32, 352, 256, 1.0, 1.0}},        // 8 * 128 / 3 = 341 -> multiple of 32 -> 352
    {"d256", {256, 4, 4, 4, 64, 768, 1024, 1.0, 1.0}},       // 682 -> 768
    {"d512", {512, 8, 8, 8, 64, 1536, 1024, 1.0, 1.0}},      // 1365 -> 1536
    {"d768", {768, 12, 12, 12, 64, 2048, 1024, 1.0, 1.0}},   // bench d768
    {"d1024", {1024, 24, 16, 16, 64, 2816, 2048, 1.0, 1.0}},  // bench d1024, paper width 1024: 1.0/1.0
    {"d2048", {2048, 16, 16, 16, 128, 5632, 2048, 1.0, 0.5}},  // bench d2048, paper width 2048: 1.0/0.5
    {"llama2-7b", {4096, 32, 32, 32, 128, 11008, 4096, 0.8, 0.2}},  // LLaMA-2 7B, paper 7B: 0.8/0.2
};

TEST(ConfigPresets, EveryModelPresetLoadsWithItsShape) {
  std::set<std::string> seen;
  for (const auto& entry : fs::directory_iterator(kConfigs / "models")) {
    if (entry.path().extension() != ".yaml") continue;
    const std::string name = entry.path().stem().string();
    SCOPED_TRACE(name);
    seen.insert(name);
    ASSERT_TRUE(kPresets.count(name)) << "no expected shape written for preset " << name;
    const PresetShape& s = kPresets.at(name);
    // Presets describe the model only: the recipe adds the vocabulary (llama2-7b has its own) and the data.
    std::vector<std::string> sets = {"data.train=x.bin"};
    if (name != "llama2-7b") sets.push_back("model.vocab_size=4096");
    const Config cfg = load_config(entry.path().string(), sets);
    EXPECT_EQ(cfg.model.dim, s.dim);
    EXPECT_EQ(cfg.model.n_layers, s.n_layers);
    EXPECT_EQ(cfg.model.n_heads, s.n_heads);
    EXPECT_EQ(cfg.model.kv_heads(), s.kv_heads);
    EXPECT_EQ(cfg.model.hidden_dim(), s.hidden);
    EXPECT_EQ(cfg.model.max_seq_len, s.max_seq_len);
    EXPECT_EQ(cfg.model.head_dim(), s.head_dim);
    EXPECT_EQ(cfg.model.alpha_attn, s.alpha_attn);
    EXPECT_EQ(cfg.model.alpha_ffn, s.alpha_other);
    EXPECT_EQ(cfg.model.alpha_final, s.alpha_other);
    EXPECT_EQ(cfg.model.norm, NormKind::dyt);

    // Nothing outside model.* differs from the defaults.
    Config rest = cfg;
    rest.model = ModelConfig{};
    rest.data = DataConfig{};
    EXPECT_EQ(to_yaml(rest), to_yaml(Config{}));
  }
  EXPECT_EQ(seen.size(), kPresets.size()) << "a preset listed here is missing from configs/models/";
}

TEST(ConfigPresets, Llama27bSetsTheLlamaVocabulary) {
  const Config cfg = load_config((kConfigs / "models/llama2-7b.yaml").string(), {"data.train=x.bin"});
  // The official LLaMA-DyT init, whatever the default init becomes for small widths.
  EXPECT_EQ(cfg.model.init, "fixed");
  EXPECT_EQ(cfg.model.init_std, 0.02);
  EXPECT_EQ(cfg.model.vocab_size, 32000);
}

TEST(ConfigPresets, TinyRecipeIsTheQuickStart) {
  const Config cfg = load_config((kConfigs / "train/tiny.yaml").string());
  EXPECT_EQ(cfg.model.dim, 128);  // from ../models/tiny.yaml
  EXPECT_EQ(cfg.model.kv_heads(), 2);
  EXPECT_EQ(cfg.model.vocab_size, 4096);
  EXPECT_EQ(cfg.data.train, "data/prepared/austen/sp4096/train_*.bin");
  EXPECT_EQ(cfg.data.val, "data/prepared/austen/sp4096/val_*.bin");
  EXPECT_EQ(cfg.train.micro_batch, 16);
  EXPECT_EQ(cfg.train.seq_len, 128);
  EXPECT_EQ(cfg.train.max_steps, 300);
  EXPECT_EQ(cfg.optim.warmup_steps, 30);
  // The paper's optimizer, alpha at the base lr, with the width-aware init (the config explains).
  EXPECT_EQ(cfg.optim.lr, 3e-3);
  EXPECT_EQ(cfg.optim.min_lr, 3e-4);
  EXPECT_EQ(cfg.optim.eps, 1e-8);
  EXPECT_FALSE(cfg.optim.dyt_alpha.lr.has_value());
  EXPECT_FALSE(cfg.optim.dyt_alpha.weight_decay);
  EXPECT_EQ(cfg.optim.beta1, 0.9);
  EXPECT_EQ(cfg.optim.beta2, 0.95);
  EXPECT_EQ(cfg.model.init, "scaled_depth");
  // alpha0 from the alpha0 search at this width (docs/results/2026-12-06-alpha-widths-cpu).
  EXPECT_EQ(cfg.model.alpha_attn, 0.5);
  EXPECT_EQ(cfg.model.alpha_ffn, 0.5);
  EXPECT_EQ(cfg.model.alpha_final, 0.5);
  EXPECT_EQ(cfg.model.init_std, 0.02);
  EXPECT_EQ(cfg.train.log_every, 10);
  EXPECT_EQ(cfg.train.val_every, 100);
  EXPECT_EQ(cfg.train.val_batches, 8);
  EXPECT_EQ(cfg.optim.weight_decay, 0.1);
  EXPECT_EQ(cfg.optim.grad_clip, 1.0);
  EXPECT_EQ(cfg.optim.beta2, 0.95);
}

TEST(ConfigPresets, EveryTrainingRecipeLoads) {
  int n = 0;
  for (const auto& entry : fs::directory_iterator(kConfigs / "train")) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    const Config cfg = load_config(entry.path().string());
    EXPECT_GT(cfg.model.vocab_size, 0);
    ++n;
  }
  EXPECT_GE(n, 2);  // tiny and d256 at least
}

// Intermediate sizes of the LLaMA family's HF configs, derived by the rule from dim, multiplier and multiple_of.
TEST(ConfigHiddenDim, MatchesTheLlamaFamily) {
  const std::string p7b = (kConfigs / "models/llama2-7b.yaml").string();
  const auto derived = [&](std::vector<std::string> sets) {
    sets.insert(sets.end(), {"data.train=x.bin", "model.ffn_dim=0"});
    return load_config(p7b, sets).model.hidden_dim();
  };
  EXPECT_EQ(derived({}), 11008);                                             // LLaMA-2 7B
  EXPECT_EQ(derived({"model.dim=5120", "model.n_heads=40"}), 13824);         // LLaMA-2 13B
  EXPECT_EQ(derived({"model.ffn_dim_multiplier=1.3", "model.multiple_of=1024"}), 14336);  // LLaMA-3 8B
  EXPECT_EQ(derived({"model.dim=8192", "model.n_heads=64", "model.ffn_dim_multiplier=1.3",
                     "model.multiple_of=4096"}), 28672);                     // LLaMA-2/3 70B
  const Config d768 = load_config((kConfigs / "models/d768.yaml").string(), {"data.train=x", "model.vocab_size=8"});
  EXPECT_EQ(d768.model.hidden_dim(), 2048);
  ModelConfig explicit_ffn;
  explicit_ffn.ffn_dim = 1000;  // ffn_dim wins over the rule, even when it is not a multiple of multiple_of
  EXPECT_EQ(explicit_ffn.hidden_dim(), 1000);
}

TEST(ConfigInclude, LaterSourcesOverrideEarlierOnesKeyByKey) {
  TempDir dir;
  dir.write("base.yaml",
            "model:\n  vocab_size: 100\n  dim: 64\n  n_layers: 3\n  n_heads: 4\n  max_seq_len: 64\n"
            "optim:\n  lr: 1.0e-3\n  matrices:\n    weight_decay: false\n"
            "data:\n  train: base.bin\n"
            "train:\n  seq_len: 16\n");
  dir.write("sub/mid.yaml", "include: ../base.yaml\nmodel:\n  dim: 96\n");  // relative to sub/
  dir.write("sub/other.yaml", "model:\n  n_layers: 5\noptim:\n  dyt_alpha:\n    lr: 0.01\n");
  const std::string top = dir.write("sub/top.yaml",
                                    "include: [mid.yaml, other.yaml]\nmodel:\n  n_heads: 8\ntrain:\n  seq_len: 32\n");

  const Config cfg = load_config(top);
  EXPECT_EQ(cfg.model.vocab_size, 100);        // only in base
  EXPECT_EQ(cfg.model.dim, 96);                // mid over base
  EXPECT_EQ(cfg.model.n_layers, 5);            // other (later in the list) over base (through mid)
  EXPECT_EQ(cfg.model.n_heads, 8);             // the file's own key over its includes
  EXPECT_EQ(cfg.train.seq_len, 32);
  EXPECT_EQ(cfg.optim.lr, 1e-3);               // a section merged, not replaced, by other.yaml's optim
  EXPECT_FALSE(cfg.optim.matrices.weight_decay);
  EXPECT_EQ(cfg.optim.dyt_alpha.lr, 0.01);
  EXPECT_EQ(cfg.data.train, "base.bin");
  EXPECT_EQ(cfg.model.max_seq_len, 64);

  // Own keys beat every include, --set beats every file.
  const std::string own = dir.write("sub/own.yaml", "include: [mid.yaml, other.yaml]\nmodel:\n  n_layers: 7\n");
  EXPECT_EQ(load_config(own).model.n_layers, 7);
  EXPECT_EQ(load_config(own, {"model.n_layers=9"}).model.n_layers, 9);
}

TEST(ConfigInclude, DiamondIsNotACycle) {
  TempDir dir;
  dir.write("base.yaml", kValidYaml);
  dir.write("a.yaml", "include: base.yaml\nmodel:\n  n_layers: 3\n");
  dir.write("b.yaml", "include: base.yaml\nmodel:\n  dim: 64\n");
  // b includes base again after a set n_layers: base's n_layers: 2 comes back, as a deep merge in order says.
  const Config cfg = load_config(dir.write("top.yaml", "include: [a.yaml, b.yaml]\n"));
  EXPECT_EQ(cfg.model.dim, 64);
  EXPECT_EQ(cfg.model.n_layers, 2);
}

TEST(ConfigOverride, SetsScalarsEnumsStringsAndGroupKeys) {
  TempDir dir;
  const std::string base = dir.write("base.yaml", std::string(kValidYaml) + "optim:\n  dyt_alpha:\n    lr: 0.5\n");
  const Config cfg = load_config(base, {"model.dim=512", "optim.dyt_alpha.lr=1e-3", "model.norm=rmsnorm",
                                        "data.train=x/*.bin", "optim.embeddings.beta2=0.99",
                                        "optim.matrices.weight_decay=false", "model.n_layers=2", "model.n_layers=6",
                                        "optim.schedule=linear", " train.seed = 18446744073709551615 ",
                                        "data.val=*.bin"});
  EXPECT_EQ(cfg.model.dim, 512);
  EXPECT_EQ(cfg.optim.dyt_alpha.lr, 1e-3);
  EXPECT_EQ(cfg.model.norm, NormKind::rmsnorm);
  EXPECT_EQ(cfg.data.train, "x/*.bin");
  EXPECT_EQ(cfg.optim.embeddings.beta2, 0.99);
  EXPECT_FALSE(cfg.optim.embeddings.lr.has_value());
  EXPECT_FALSE(cfg.optim.matrices.weight_decay);
  EXPECT_EQ(cfg.model.n_layers, 6);  // the later --set wins
  EXPECT_EQ(cfg.optim.schedule, ScheduleKind::linear);
  EXPECT_EQ(cfg.train.seed, UINT64_MAX);
  EXPECT_EQ(cfg.data.val, "*.bin");  // a YAML alias character, taken as the text it is

  // null unsets a group override; an empty value clears a string.
  const Config cleared = load_config(base, {"optim.dyt_alpha.lr=null", "data.val="});
  EXPECT_FALSE(cleared.optim.dyt_alpha.lr.has_value());
  EXPECT_EQ(cleared.data.val, "");
  // Quotes make a YAML string of anything.
  EXPECT_EQ(load_config(base, {"data.val=\"a: b # c\""}).data.val, "a: b # c");
}

// A config with every field away from its default, doubles chosen to need all 17 digits.
Config unusual_config() {
  Config c;
  ModelConfig& m = c.model;
  m.vocab_size = 50304;
  m.dim = 384;  // head_dim 64, which model.attention: flash needs
  m.n_layers = 3;
  m.n_heads = 6;
  m.n_kv_heads = 3;
  m.ffn_dim = 252;
  m.multiple_of = 64;
  m.ffn_dim_multiplier = 1.0 / 3.0;
  m.max_seq_len = 300;
  m.rope_theta = 500000.0;
  m.norm = NormKind::rmsnorm;
  m.alpha_attn = 0.1 + 0.2;
  m.alpha_ffn = std::nextafter(0.2, 1.0);
  m.alpha_final = 1e-30;  // tiny, but a normal fp32 number (the model uses alphas in fp32)
  m.dyt_bias = true;
  m.rms_eps = 1e-6;
  m.embed_scale = false;
  m.tie_embeddings = true;
  m.init = "scaled_depth";
  m.init_std = 0.017;
  m.alpha_init = "calibrated";
  m.alpha_calib_c = 0.75;
  m.attention = "flash";
  OptimConfig& o = c.optim;
  o.lr = 6e-4;
  o.min_lr = 6e-5;
  o.beta1 = 0.8;
  o.beta2 = 0.999;
  o.eps = 1e-10;
  o.weight_decay = 0.05;
  o.grad_clip = 0.0;
  o.schedule = ScheduleKind::constant;
  o.warmup_steps = 0;
  o.matrices = {false, 1e-3, 0.98};
  o.embeddings = {false, std::nullopt, 0.9};
  o.dyt_alpha = {true, 2e-2, std::nullopt};
  o.dyt_gamma_beta = {true, std::nullopt, std::nullopt};
  o.embed_scale = {true, 5.0, 0.5};
  c.data.train = "*weird \"path\"\\ with: #chars\t/train_*.bin";
  c.data.val = "";
  TrainConfig& t = c.train;
  t.micro_batch = 3;
  t.seq_len = 300;
  t.grad_accum = 7;
  t.max_steps = 11;
  t.log_every = 2;
  t.val_every = 0;
  t.val_batches = 5;
  t.ckpt_every = 4;
  t.keep_checkpoints = 9;
  t.seed = 0xFFFFFFFFFFFFFFF0ull;
  t.device = "cpu";
  c.parallel.tp = 3;  // divides n_heads, n_kv_heads, ffn_dim and vocab_size
  c.parallel.zero1 = true;
  c.parallel.bucket_mb = 7;
  c.parallel.gpu_comm = "mpi";
  c.parallel.staged_bf16_sum = "ring";
  c.parallel.timeout_s = 12.5;
  return c;
}

void expect_group_eq(const GroupConfig& a, const GroupConfig& b) {
  EXPECT_EQ(a.weight_decay, b.weight_decay);
  EXPECT_EQ(a.lr, b.lr);
  EXPECT_EQ(a.beta2, b.beta2);
}

TEST(ConfigYaml, RoundTripsEveryFieldExactly) {
  TempDir dir;
  const Config a = unusual_config();
  validate(a, "unusual_config");
  const Config b = load_config(dir.write("resolved.yaml", to_yaml(a)));
  const ModelConfig &ma = a.model, &mb = b.model;
  EXPECT_EQ(ma.vocab_size, mb.vocab_size);
  EXPECT_EQ(ma.dim, mb.dim);
  EXPECT_EQ(ma.n_layers, mb.n_layers);
  EXPECT_EQ(ma.n_heads, mb.n_heads);
  EXPECT_EQ(ma.n_kv_heads, mb.n_kv_heads);
  EXPECT_EQ(ma.ffn_dim, mb.ffn_dim);
  EXPECT_EQ(ma.multiple_of, mb.multiple_of);
  EXPECT_EQ(ma.ffn_dim_multiplier, mb.ffn_dim_multiplier);  // doubles compared exactly: the text must round-trip
  EXPECT_EQ(ma.max_seq_len, mb.max_seq_len);
  EXPECT_EQ(ma.rope_theta, mb.rope_theta);
  EXPECT_EQ(ma.norm, mb.norm);
  EXPECT_EQ(ma.alpha_attn, mb.alpha_attn);
  EXPECT_EQ(ma.alpha_ffn, mb.alpha_ffn);
  EXPECT_EQ(ma.alpha_final, mb.alpha_final);
  EXPECT_EQ(ma.dyt_bias, mb.dyt_bias);
  EXPECT_EQ(ma.rms_eps, mb.rms_eps);
  EXPECT_EQ(ma.embed_scale, mb.embed_scale);
  EXPECT_EQ(ma.tie_embeddings, mb.tie_embeddings);
  EXPECT_EQ(ma.init, mb.init);
  EXPECT_EQ(ma.init_std, mb.init_std);
  EXPECT_EQ(ma.alpha_init, mb.alpha_init);
  EXPECT_EQ(ma.alpha_calib_c, mb.alpha_calib_c);
  EXPECT_EQ(ma.attention, mb.attention);
  const OptimConfig &oa = a.optim, &ob = b.optim;
  EXPECT_EQ(oa.lr, ob.lr);
  EXPECT_EQ(oa.min_lr, ob.min_lr);
  EXPECT_EQ(oa.beta1, ob.beta1);
  EXPECT_EQ(oa.beta2, ob.beta2);
  EXPECT_EQ(oa.eps, ob.eps);
  EXPECT_EQ(oa.weight_decay, ob.weight_decay);
  EXPECT_EQ(oa.grad_clip, ob.grad_clip);
  EXPECT_EQ(oa.schedule, ob.schedule);
  EXPECT_EQ(oa.warmup_steps, ob.warmup_steps);
  expect_group_eq(oa.matrices, ob.matrices);
  expect_group_eq(oa.embeddings, ob.embeddings);
  expect_group_eq(oa.dyt_alpha, ob.dyt_alpha);
  expect_group_eq(oa.dyt_gamma_beta, ob.dyt_gamma_beta);
  expect_group_eq(oa.embed_scale, ob.embed_scale);
  EXPECT_EQ(a.data.train, b.data.train);
  EXPECT_EQ(a.data.val, b.data.val);
  const TrainConfig &ta = a.train, &tb = b.train;
  EXPECT_EQ(ta.micro_batch, tb.micro_batch);
  EXPECT_EQ(ta.seq_len, tb.seq_len);
  EXPECT_EQ(ta.grad_accum, tb.grad_accum);
  EXPECT_EQ(ta.max_steps, tb.max_steps);
  EXPECT_EQ(ta.log_every, tb.log_every);
  EXPECT_EQ(ta.val_every, tb.val_every);
  EXPECT_EQ(ta.val_batches, tb.val_batches);
  EXPECT_EQ(ta.ckpt_every, tb.ckpt_every);
  EXPECT_EQ(ta.keep_checkpoints, tb.keep_checkpoints);
  EXPECT_EQ(ta.seed, tb.seed);
  EXPECT_EQ(ta.device, tb.device);
  EXPECT_EQ(a.parallel.tp, b.parallel.tp);
  EXPECT_EQ(a.parallel.zero1, b.parallel.zero1);
  EXPECT_EQ(a.parallel.bucket_mb, b.parallel.bucket_mb);
  EXPECT_EQ(a.parallel.gpu_comm, b.parallel.gpu_comm);
  EXPECT_EQ(a.parallel.staged_bf16_sum, b.parallel.staged_bf16_sum);
  EXPECT_EQ(a.parallel.timeout_s, b.parallel.timeout_s);
  EXPECT_EQ(to_yaml(a), to_yaml(b));
  EXPECT_EQ(config_hash(a), config_hash(b));
}

// The keys of to_yaml as full paths, read back from the indentation.
std::vector<std::string> yaml_keys(const std::string& yaml) {
  std::vector<std::string> keys, stack;
  std::istringstream in(yaml);
  for (std::string line; std::getline(in, line);) {
    const size_t indent = line.find_first_not_of(' ');
    const size_t colon = line.find(':');
    stack.resize(indent / 2);
    const std::string name = line.substr(indent, colon - indent);
    if (colon + 1 == line.size()) {
      stack.push_back(name);
    } else {
      std::string key;
      for (const std::string& s : stack) key += s + ".";
      keys.push_back(key + name);
    }
  }
  return keys;
}

TEST(ConfigYaml, WritesEveryKeyInTheFixedOrder) {
  const std::vector<std::string> expected = {
      "model.vocab_size", "model.dim", "model.n_layers", "model.n_heads", "model.n_kv_heads", "model.ffn_dim",
      "model.multiple_of", "model.ffn_dim_multiplier", "model.max_seq_len", "model.rope_theta", "model.norm",
      "model.alpha_attn", "model.alpha_ffn", "model.alpha_final", "model.dyt_bias", "model.rms_eps",
      "model.embed_scale", "model.tie_embeddings", "model.init", "model.init_std", "model.alpha_init", "model.alpha_calib_c",
      "model.attention",
      "optim.lr", "optim.min_lr", "optim.beta1", "optim.beta2", "optim.eps", "optim.weight_decay", "optim.grad_clip",
      "optim.schedule", "optim.warmup_steps",
      "optim.matrices.weight_decay", "optim.matrices.lr", "optim.matrices.beta2",
      "optim.embeddings.weight_decay", "optim.embeddings.lr", "optim.embeddings.beta2",
      "optim.dyt_alpha.weight_decay", "optim.dyt_alpha.lr", "optim.dyt_alpha.beta2",
      "optim.dyt_gamma_beta.weight_decay", "optim.dyt_gamma_beta.lr", "optim.dyt_gamma_beta.beta2",
      "optim.embed_scale.weight_decay", "optim.embed_scale.lr", "optim.embed_scale.beta2",
      "data.train", "data.val",
      "train.micro_batch", "train.seq_len", "train.grad_accum", "train.max_steps", "train.log_every",
      "train.val_every", "train.val_batches", "train.ckpt_every", "train.keep_checkpoints", "train.seed",
      "train.device", "train.peak_tflops", "parallel.tp", "parallel.zero1", "parallel.bucket_mb",
      "parallel.gpu_comm", "parallel.staged_bf16_sum", "parallel.timeout_s"};
  Config all = Config{};
  for (GroupConfig* g : {&all.optim.matrices, &all.optim.embeddings, &all.optim.dyt_alpha, &all.optim.dyt_gamma_beta,
                         &all.optim.embed_scale})
    g->lr = 1.0, g->beta2 = 0.5;
  EXPECT_EQ(yaml_keys(to_yaml(all)), expected);

  // Unset group overrides are left out; everything else is always written.
  std::vector<std::string> without_optional;
  for (const std::string& k : expected)
    if (k.find(".lr") == std::string::npos || k == "optim.lr") {
      if (k.find(".beta2") == std::string::npos || k == "optim.beta2") without_optional.push_back(k);
    }
  EXPECT_EQ(yaml_keys(to_yaml(Config{})), without_optional);
}

uint64_t reference_fnv1a64(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;  // the published FNV-1a 64 offset basis and prime
  for (const unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

TEST(ConfigHash, IsFnv1aOfTheYamlAndSeesEveryField) {
  ASSERT_EQ(reference_fnv1a64("a"), 0xaf63dc4c8601ec8cull);  // the published test vector
  const Config base = unusual_config();
  EXPECT_EQ(config_hash(base), reference_fnv1a64(to_yaml(base)));
  Config copy = base;
  EXPECT_EQ(config_hash(copy), config_hash(base));

  const std::vector<std::function<void(Config&)>> changes = {
      [](Config& c) { c.model.alpha_final = std::nextafter(c.model.alpha_final, 1.0); },  // one ulp
      [](Config& c) { c.model.dim += 1; },
      [](Config& c) { c.model.norm = NormKind::dyt; },
      [](Config& c) { c.optim.dyt_gamma_beta.lr = 1e-3; },  // unset -> set
      [](Config& c) { c.optim.matrices.lr.reset(); },       // set -> unset
      [](Config& c) { c.optim.embed_scale.weight_decay = false; },
      [](Config& c) { c.data.val = "v.bin"; },
      [](Config& c) { c.train.seed ^= 1; },
      [](Config& c) { c.train.device = "cuda"; },
      [](Config& c) { c.model.attention = "materialized"; },
  };
  std::set<uint64_t> hashes = {config_hash(base)};
  for (const auto& change : changes) {
    Config c = base;
    change(c);
    hashes.insert(config_hash(c));
  }
  EXPECT_EQ(hashes.size(), changes.size() + 1);
}

TEST(ConfigValidate, PublicValidateNamesTheSource) {
  validate(unusual_config(), "ok");
  testing::expect_config_error([] { validate(Config{}, "my-source"); },
                               {"my-source: model.vocab_size", "my-source: data.train", "required"});
}

TEST(ConfigEnums, SpellingsRoundTrip) {
  for (const NormKind k : {NormKind::dyt, NormKind::rmsnorm}) EXPECT_EQ(parse_norm_kind(to_string(k)), k);
  for (const ScheduleKind k : {ScheduleKind::cosine, ScheduleKind::linear, ScheduleKind::constant})
    EXPECT_EQ(parse_schedule_kind(to_string(k)), k);
  testing::expect_config_error([] { parse_norm_kind("layernorm"); }, {"dyt, rmsnorm", "layernorm"});
}

}  // namespace
}  // namespace dytrain
