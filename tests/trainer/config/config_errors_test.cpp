// Every class of config error yields a ConfigError that names where the value came from (the file, with its line,
// or "--set"), the full key, and what is allowed. Each bad value is tried both in a file and on the command line.
#include <algorithm>

#include "tests/trainer/config/config_test_util.h"

namespace dytrain {
namespace {

using testing::expect_config_error;
using testing::kValidYaml;
using testing::TempDir;

// "a.b.c", "v" -> "a:\n  b:\n    c: v\n": one nested key in YAML.
std::string nested(const std::string& key, const std::string& value) {
  std::string out, indent;
  size_t b = 0;
  for (size_t dot = key.find('.'); dot != std::string::npos; b = dot + 1, dot = key.find('.', b)) {
    out += indent + key.substr(b, dot - b) + ":\n";
    indent += "  ";
  }
  return out + indent + key.substr(b) + ": " + value + "\n";
}

struct BadValue {
  std::string key, value, message;  // message: a piece of what must be said besides the origin and key
};

// One out-of-range or impossible value per row, applied on top of kValidYaml (dim 32, 4 heads, max_seq_len 64).
const std::vector<BadValue> kBadValues = {
    {"model.vocab_size", "0", "required"},
    {"model.dim", "-8", "must be > 0, got -8"},
    {"model.n_layers", "0", "must be > 0"},
    {"model.n_heads", "0", "must be > 0"},
    {"model.n_kv_heads", "-1", "must be >= 0"},
    {"model.ffn_dim", "-1", "must be >= 0"},
    {"model.multiple_of", "0", "must be > 0"},
    {"model.ffn_dim_multiplier", "0", "must be > 0"},
    {"model.max_seq_len", "0", "must be > 0"},
    {"model.rope_theta", "0", "must be > 0"},
    {"model.alpha_attn", "0", "must be > 0"},
    {"model.alpha_ffn", "-1", "must be > 0"},
    {"model.alpha_final", "0", "must be > 0"},
    {"model.rms_eps", "0", "must be > 0"},
    {"model.init_std", "0", "must be > 0"},
    {"model.init", "xavier", "must be fixed, scaled or scaled_depth"},
    {"model.alpha_init", "auto", "must be fixed or calibrated"},
    {"model.alpha_calib_c", "0", "must be > 0"},
    {"model.attention", "fused", "must be materialized or flash, got 'fused'"},
    {"model.attention", "flash", "flash has kernels for head_dim 64 and 128; dim / model.n_heads = 32 / 4 = 8"},
    {"optim.lr", "0", "must be > 0"},
    {"optim.min_lr", "-1e-5", "must be >= 0"},
    {"optim.min_lr", "0.5", "must be <= optim.lr"},
    {"optim.beta1", "1", "must be in [0, 1)"},
    {"optim.beta2", "-0.1", "must be in [0, 1)"},
    {"optim.eps", "0", "must be > 0"},
    {"optim.weight_decay", "-0.1", "must be >= 0"},
    {"optim.grad_clip", "-1", "must be >= 0"},
    {"optim.warmup_steps", "-1", "must be >= 0"},
    {"optim.matrices.lr", "0", "must be > 0"},
    {"optim.dyt_alpha.beta2", "1", "must be in [0, 1)"},
    {"train.micro_batch", "0", "must be > 0"},
    {"train.seq_len", "0", "must be > 0"},
    {"train.seq_len", "128", "exceeds model.max_seq_len (64)"},
    {"train.grad_accum", "0", "must be > 0"},
    {"train.max_steps", "0", "must be > 0"},
    {"train.log_every", "0", "must be > 0"},
    {"train.val_every", "-1", "must be >= 0"},
    {"train.val_batches", "0", "must be > 0"},
    {"train.ckpt_every", "-1", "must be >= 0"},
    {"train.keep_checkpoints", "0", "must be >= 1"},
    {"train.device", "gpu", "must be one of cpu, cuda, auto"},
    {"train.peak_tflops", "-1", "must be >= 0"},
    {"parallel.tp", "0", "must be > 0"},
    {"parallel.tp", "3", "must divide model.n_heads"},
    {"parallel.bucket_mb", "0", "must be > 0"},
    {"parallel.gpu_comm", "gloo", "must be nccl or mpi"},
    {"parallel.staged_bf16_sum", "tree", "must be fp32 (summed in fp32, rounded once) or ring"},
    {"parallel.staged_bf16_sum", "ring", "it needs parallel.gpu_comm: mpi"},
    {"parallel.timeout_s", "-1", "must be >= 0"},
    {"model.n_heads", "3", "does not divide model.dim (32)"},
    {"model.dim", "36", "must be even for RoPE"},  // 36 / 4 heads = 9
    {"model.n_kv_heads", "3", "must divide model.n_heads (4)"},
    {"model.ffn_dim_multiplier", "1e-9", "SwiGLU hidden size comes out as 0"},
    {"data.train", "\"\"", "required"},
    // Real numbers are checked in the precision they are used in (fp32): each of these is fine as a double and
    // made AdamW or the model produce NaN or inf.
    {"optim.beta2", "0.99999999", "rounds to 1 in fp32"},
    {"optim.beta1", "0.99999999999", "rounds to 1 in fp32"},
    {"optim.embeddings.beta2", "0.999999999", "rounds to 1 in fp32"},
    {"optim.eps", "1e-50", "is not a normal fp32 number"},
    {"optim.lr", "1e300", "is not a normal fp32 number"},
    {"optim.dyt_alpha.lr", "1e39", "is not a normal fp32 number"},
    {"optim.weight_decay", "1e300", "overflows fp32"},
    {"optim.weight_decay", "5000", "1 - lr * weight_decay of AdamW would be negative"},  // lr 3e-4
    {"model.init_std", "1e-40", "is not a normal fp32 number"},
    {"model.ffn_dim_multiplier", "1e300", "is not a normal fp32 number"},
};

TEST(ConfigErrors, EveryBadValueInAFileNamesTheFileLineAndKey) {
  TempDir dir;
  dir.write("base.yaml", kValidYaml);
  for (const BadValue& bad : kBadValues) {
    SCOPED_TRACE(bad.key + "=" + bad.value);
    // include + a comment line: the key's section header is on line 3 and the key itself deeper.
    const std::string text = "include: base.yaml\n# one bad value\n" + nested(bad.key, bad.value);
    const std::string path = dir.write("case.yaml", text);
    const int line = 3 + static_cast<int>(std::count(bad.key.begin(), bad.key.end(), '.'));
    const std::string where = "case.yaml:" + std::to_string(line) + ": " + bad.key + ": ";
    expect_config_error([&] { load_config(path); }, {where, bad.message});
  }
}

TEST(ConfigErrors, EveryBadValueOnTheCommandLineNamesSetAndKey) {
  TempDir dir;
  const std::string base = dir.write("base.yaml", kValidYaml);
  for (const BadValue& bad : kBadValues) {
    SCOPED_TRACE(bad.key + "=" + bad.value);
    expect_config_error([&] { load_config(base, {bad.key + "=" + bad.value}); },
                        {"--set: " + bad.key + ": ", bad.message});
  }
}

TEST(ConfigErrors, MissingRequiredKeysNameTheTopFile) {
  TempDir dir;
  const std::string path = dir.write("empty.yaml", "model:\n  dim: 64\n");
  const std::string msg = expect_config_error([&] { load_config(path); },
                                              {"empty.yaml: model.vocab_size: required", "empty.yaml: data.train: required"});
  EXPECT_EQ(std::count(msg.begin(), msg.end(), '\n'), 1) << "exactly two problems, one per line: " << msg;
}

TEST(ConfigErrors, WrongTypesSayWhatIsExpected) {
  TempDir dir;
  dir.write("base.yaml", kValidYaml);
  const std::vector<BadValue> cases = {
      {"model.dim", "abc", "model.dim: expected an integer, got 'abc'"},
      {"model.dim", "1.5", "expected an integer, got '1.5'"},
      {"model.dim", "1e3", "expected an integer, got '1e3'"},
      {"model.dim", "99999999999", "expected an integer"},
      {"model.dim", "[1, 2]", "expected an integer, got a list"},
      {"model.dim", "{a: 1}", "expected an integer, got a map"},
      {"model.dim", "", "expected an integer, got nothing (null)"},
      {"optim.lr", "fast", "optim.lr: expected a finite number, got 'fast'"},
      {"optim.lr", ".nan", "expected a finite number"},
      {"optim.lr", "inf", "expected a finite number"},
      {"model.dyt_bias", "maybe", "model.dyt_bias: expected true or false, got 'maybe'"},
      {"model.norm", "layernorm", "model.norm: expected one of dyt, rmsnorm, got 'layernorm'"},
      {"optim.schedule", "step", "optim.schedule: expected one of cosine, linear, constant, got 'step'"},
      {"optim.dyt_alpha.lr", "big", "optim.dyt_alpha.lr: expected a finite number, got 'big'"},
      {"train.seed", "-1", "train.seed: expected a non-negative integer, got '-1'"},
      {"data.train", "[a, b]", "data.train: expected a string, got a list"},
  };
  for (const BadValue& bad : cases) {
    SCOPED_TRACE(bad.key + "=" + bad.value);
    const std::string path = dir.write("case.yaml", "include: base.yaml\n" + nested(bad.key, bad.value));
    expect_config_error([&] { load_config(path); }, {"case.yaml:", bad.message});
    if (bad.key != "data.train")  // a --set string field takes non-scalar text verbatim
      expect_config_error([&] { load_config(dir.file("base.yaml"), {bad.key + "=" + bad.value}); },
                          {"--set: ", bad.message});
  }
  const std::string scalar_section = dir.write("section.yaml", "include: base.yaml\nmodel: 5\n");
  expect_config_error([&] { load_config(scalar_section); }, {"section.yaml:2: model: expected a map of keys", "dim"});
}

TEST(ConfigErrors, UnknownKeysSuggestTheClosestKnownKey) {
  TempDir dir;
  dir.write("base.yaml", kValidYaml);
  const std::vector<BadValue> cases = {
      {"model.dimm", "3", "did you mean 'model.dim'?"},
      {"model.lr", "3", "did you mean 'optim.lr'?"},  // the same name in another section
      {"optim.dyt_alpah.lr", "3", "did you mean 'optim.dyt_alpha'?"},
      {"optim.dyt_alpha.learning_rate", "3", "Keys of optim.dyt_alpha: weight_decay, lr, beta2."},
      {"modle.dim", "3", "did you mean 'model'?"},
      {"train.warmup_steps", "3", "did you mean 'optim.warmup_steps'?"},
  };
  for (const BadValue& bad : cases) {
    SCOPED_TRACE(bad.key);
    const std::string path = dir.write("case.yaml", "include: base.yaml\n" + nested(bad.key, bad.value));
    expect_config_error([&] { load_config(path); }, {"case.yaml:", "unknown key '", bad.message});
    expect_config_error([&] { load_config(dir.file("base.yaml"), {bad.key + "=" + bad.value}); },
                        {"--set: unknown key '", bad.message});
  }
  expect_config_error([&] { load_config(dir.write("top.yaml", "include: base.yaml\nmodels:\n  dim: 3\n")); },
                      {"top.yaml:2: unknown key 'models'", "did you mean 'model'?",
                       "Keys of the top level: include, model, optim, data, train, parallel."});
}

TEST(ConfigErrors, BadSetSyntax) {
  TempDir dir;
  const std::string base = dir.write("base.yaml", kValidYaml);
  expect_config_error([&] { load_config(base, {"model.dim"}); }, {"--set 'model.dim'", "key.path=value"});
  expect_config_error([&] { load_config(base, {"=3"}); }, {"--set '=3'", "key.path=value"});
  expect_config_error([&] { load_config(base, {"model=3"}); }, {"--set: model: is a section", "vocab_size"});
  expect_config_error([&] { load_config(base, {"include=x.yaml"}); }, {"--set: include", "top level"});
}

TEST(ConfigErrors, MissingFilesAndIncludesNameThePath) {
  TempDir dir;
  expect_config_error([&] { load_config(dir.file("nope.yaml")); }, {"nope.yaml", "not found"});
  const std::string top = dir.write("sub/top.yaml", "include: ../missing.yaml\n");
  expect_config_error([&] { load_config(top); }, {"top.yaml:1: include", "missing.yaml", "not found"});
  const std::string bad_include = dir.write("bad_include.yaml", "include:\n  a: b\n");
  expect_config_error([&] { load_config(bad_include); }, {"bad_include.yaml:1: include", "a path or a list"});
}

TEST(ConfigErrors, IncludeCyclesAreDetected) {
  TempDir dir;
  dir.write("a.yaml", "include: sub/b.yaml\n");
  dir.write("sub/b.yaml", "include: [../c.yaml]\n");
  dir.write("c.yaml", "include: a.yaml\n");
  expect_config_error([&] { load_config(dir.file("a.yaml")); },
                      {"c.yaml:1: include cycle: ", "a.yaml -> ", "sub/b.yaml -> ", "c.yaml -> ", "a.yaml"});
  const std::string self = dir.write("self.yaml", "include: ./self.yaml\n");
  expect_config_error([&] { load_config(self); }, {"include cycle", "self.yaml -> "});
}

TEST(ConfigErrors, YamlSyntaxAndTopLevelShape) {
  TempDir dir;
  const std::string broken = dir.write("broken.yaml", "model:\n  dim: [1, 2\n");
  expect_config_error([&] { load_config(broken); }, {"broken.yaml:", "YAML syntax error"});
  const std::string list = dir.write("list.yaml", "- 1\n- 2\n");
  expect_config_error([&] { load_config(list); }, {"list.yaml: expected a map", "model, optim, data, train"});
}

}  // namespace
}  // namespace dytrain
