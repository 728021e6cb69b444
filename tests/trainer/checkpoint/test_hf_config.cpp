// config.json: every key the PyTorch reference and transformers' LlamaConfig read is present with the model's value,
// floats read back bit-exact, and the text parses as JSON (through yaml-cpp, as the checkpoint reader does).
#include "trainer/checkpoint/hf_config.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <limits>

namespace dytrain {
namespace {

ModelConfig sample_model() {
  ModelConfig m;
  m.vocab_size = 50257;
  m.dim = 384;
  m.n_layers = 3;
  m.n_heads = 6;
  m.n_kv_heads = 2;
  m.ffn_dim = 1000;
  m.max_seq_len = 2048;
  m.rope_theta = 500000.0;
  m.norm = NormKind::dyt;
  m.alpha_attn = 0.8;
  m.alpha_ffn = 0.2;
  m.alpha_final = 0.1 + 0.2;  // 0.30000000000000004: needs all 17 digits
  m.dyt_bias = true;
  m.rms_eps = 1e-6;
  m.embed_scale = true;
  m.tie_embeddings = false;
  return m;
}

TEST(HfConfig, HoldsEveryKeyWithTheModelsValues) {
  const ModelConfig m = sample_model();
  const YAML::Node j = YAML::Load(hf_config_json(m));
  ASSERT_TRUE(j.IsMap());
  EXPECT_EQ(j["hidden_size"].as<int>(), 384);
  EXPECT_EQ(j["num_hidden_layers"].as<int>(), 3);
  EXPECT_EQ(j["num_attention_heads"].as<int>(), 6);
  EXPECT_EQ(j["num_key_value_heads"].as<int>(), 2);
  EXPECT_EQ(j["intermediate_size"].as<int>(), 1000);
  EXPECT_EQ(j["vocab_size"].as<int>(), 50257);
  EXPECT_EQ(j["max_position_embeddings"].as<int>(), 2048);
  // Exact equality: the numbers are printed in their shortest round-trip form.
  EXPECT_EQ(j["rope_theta"].as<double>(), 500000.0);
  EXPECT_EQ(j["rms_norm_eps"].as<double>(), 1e-6);
  EXPECT_EQ(j["dyt_alpha_attn"].as<double>(), 0.8);
  EXPECT_EQ(j["dyt_alpha_ffn"].as<double>(), 0.2);
  EXPECT_EQ(j["dyt_alpha_final"].as<double>(), 0.1 + 0.2);
  EXPECT_EQ(j["tie_word_embeddings"].as<bool>(), false);
  EXPECT_EQ(j["dyt_bias"].as<bool>(), true);
  EXPECT_EQ(j["embed_scale"].as<bool>(), true);
  EXPECT_EQ(j["norm"].as<std::string>(), "dyt");
  EXPECT_EQ(j["model_type"].as<std::string>(), "llama");
  EXPECT_EQ(j["torch_dtype"].as<std::string>(), "float32");
  ASSERT_TRUE(j["architectures"].IsSequence());
  ASSERT_EQ(j["architectures"].size(), 1u);
  EXPECT_EQ(j["architectures"][0].as<std::string>(), "LlamaForCausalLM");
}

TEST(HfConfig, DerivedSizesAndTheBaseline) {
  ModelConfig m = sample_model();
  m.ffn_dim = 0;  // derived by the multiple_of rule
  m.n_kv_heads = 0;  // means n_heads
  m.norm = NormKind::rmsnorm;
  m.tie_embeddings = true;
  m.embed_scale = false;
  const YAML::Node j = YAML::Load(hf_config_json(m));
  EXPECT_EQ(j["intermediate_size"].as<int>(), m.hidden_dim());
  EXPECT_EQ(j["num_key_value_heads"].as<int>(), 6);
  EXPECT_EQ(j["norm"].as<std::string>(), "rmsnorm");
  EXPECT_EQ(j["tie_word_embeddings"].as<bool>(), true);
  EXPECT_EQ(j["embed_scale"].as<bool>(), false);
}

TEST(HfConfig, JsonLiteralsAreStrict) {
  // yaml-cpp also accepts YAML spellings (True, trailing commas) that Python's json module rejects: pin the text.
  const std::string s = hf_config_json(sample_model());
  EXPECT_NE(s.find("\"tie_word_embeddings\": false"), std::string::npos) << s;
  EXPECT_NE(s.find("\"rms_norm_eps\": 1e-06"), std::string::npos) << s;
  EXPECT_NE(s.find("\"rope_theta\": 500000,"), std::string::npos) << s;
  EXPECT_EQ(s.find(",\n}"), std::string::npos) << "trailing comma: " << s;
}

TEST(HfConfig, NonFiniteFloatIsRejectedNamingTheKey) {
  ModelConfig m = sample_model();
  m.alpha_ffn = std::numeric_limits<double>::quiet_NaN();
  try {
    hf_config_json(m);
    FAIL() << "no exception for a NaN alpha";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("dyt_alpha_ffn"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dytrain
