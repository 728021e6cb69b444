#include "trainer/checkpoint/hf_config.h"

#include <cmath>
#include <stdexcept>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace dytrain {
namespace {

// fmt's "{}" for a double is the shortest string that parses back to the same double (and valid JSON: 10000,
// 1e-05, 0.8).
std::string json_number(const char* key, double v) {
  if (!std::isfinite(v))
    throw std::invalid_argument(fmt::format("config.json: model field for {} is {}, which JSON cannot hold", key, v));
  return fmt::format("{}", v);
}

std::string json_bool(bool b) { return b ? "true" : "false"; }

}  // namespace

std::string hf_config_json(const ModelConfig& m) {
  const std::vector<std::pair<const char*, std::string>> fields = {
      {"architectures", "[\"LlamaForCausalLM\"]"},
      {"model_type", "\"llama\""},
      {"torch_dtype", "\"float32\""},
      {"hidden_act", "\"silu\""},
      {"hidden_size", std::to_string(m.dim)},
      {"num_hidden_layers", std::to_string(m.n_layers)},
      {"num_attention_heads", std::to_string(m.n_heads)},
      {"num_key_value_heads", std::to_string(m.kv_heads())},
      {"intermediate_size", std::to_string(m.hidden_dim())},
      {"vocab_size", std::to_string(m.vocab_size)},
      {"max_position_embeddings", std::to_string(m.max_seq_len)},
      {"rope_theta", json_number("rope_theta", m.rope_theta)},
      {"rms_norm_eps", json_number("rms_norm_eps", m.rms_eps)},
      {"tie_word_embeddings", json_bool(m.tie_embeddings)},
      {"norm", m.norm == NormKind::dyt ? "\"dyt\"" : "\"rmsnorm\""},
      {"dyt_alpha_attn", json_number("dyt_alpha_attn", m.alpha_attn)},
      {"dyt_alpha_ffn", json_number("dyt_alpha_ffn", m.alpha_ffn)},
      {"dyt_alpha_final", json_number("dyt_alpha_final", m.alpha_final)},
      {"dyt_bias", json_bool(m.dyt_bias)},
      {"embed_scale", json_bool(m.embed_scale)},
  };
  std::string out = "{\n";
  for (size_t i = 0; i < fields.size(); ++i)
    out += fmt::format("  \"{}\": {}{}\n", fields[i].first, fields[i].second, i + 1 < fields.size() ? "," : "");
  return out + "}\n";
}

}  // namespace dytrain
