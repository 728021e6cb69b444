#include "trainer/model/layout.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "trainer/model/init.h"

namespace dytrain {

LlamaLayout::LlamaLayout(const ModelConfig& c, int rank, int size) : cfg(c), tp_rank(rank), tp_size(size) {
  const int T = tp_size;
  if (cfg.n_heads % T || cfg.kv_heads() % T || cfg.hidden_dim() % T || cfg.vocab_size % T)
    throw std::invalid_argument("tensor parallelism over " + std::to_string(T) +
                                " ranks needs n_heads, n_kv_heads, the FFN size and vocab_size divisible by it");
  heads = cfg.n_heads / T;
  kv_heads = cfg.kv_heads() / T;
  hidden = cfg.hidden_dim() / T;
  vocab_rows = cfg.vocab_size / T;
  vocab_begin = vocab_rows * tp_rank;

  const int64_t C = cfg.dim, V = cfg.vocab_size, F = cfg.hidden_dim();
  const int64_t q_out = int64_t(cfg.n_heads) * cfg.head_dim(), kv_out = int64_t(cfg.kv_heads()) * cfg.head_dim();
  const ParamGroup M = ParamGroup::matrices;
  const TpSplit rows = TpSplit::rows, cols = TpSplit::cols;  // column-parallel / row-parallel linears

  embed = table.add("model.embed_tokens.weight", {V, C}, ParamGroup::embeddings, rows, T);
  if (cfg.embed_scale) embed_scale = table.add("model.embed_scale", {1}, ParamGroup::embed_scale);
  layers.resize(cfg.n_layers);
  for (int i = 0; i < cfg.n_layers; ++i) {
    LayerOffsets& l = layers[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add_norm_site(&l.attn_norm, p + "input_layernorm.");
    l.wq = table.add(p + "self_attn.q_proj.weight", {q_out, C}, M, rows, T);
    l.wk = table.add(p + "self_attn.k_proj.weight", {kv_out, C}, M, rows, T);
    l.wv = table.add(p + "self_attn.v_proj.weight", {kv_out, C}, M, rows, T);
    l.wo = table.add(p + "self_attn.o_proj.weight", {C, q_out}, M, cols, T);
    add_norm_site(&l.ffn_norm, p + "post_attention_layernorm.");
    l.w_gate = table.add(p + "mlp.gate_proj.weight", {F, C}, M, rows, T);
    l.w_up = table.add(p + "mlp.up_proj.weight", {F, C}, M, rows, T);
    l.w_down = table.add(p + "mlp.down_proj.weight", {C, F}, M, cols, T);
  }
  add_norm_site(&final_norm, "model.norm.");
  // Tied: the LM head reads the embedding table, and its gradient lands there too.
  lm_head = cfg.tie_embeddings ? embed : table.add("lm_head.weight", {V, C}, M, rows, T);
}

void LlamaLayout::add_norm_site(NormSiteOffsets* site, const std::string& prefix) {
  const int64_t C = cfg.dim;
  if (cfg.norm == NormKind::dyt) site->alpha = table.add(prefix + "alpha", {1}, ParamGroup::dyt_alpha);
  site->weight = table.add(prefix + "weight", {C}, ParamGroup::dyt_gamma_beta);
  if (cfg.norm == NormKind::dyt && cfg.dyt_bias) site->bias = table.add(prefix + "bias", {C}, ParamGroup::dyt_gamma_beta);
}

const NormSiteOffsets& LlamaLayout::site(int s) const {
  if (s == 2 * cfg.n_layers) return final_norm;
  return s % 2 == 0 ? layers[s / 2].attn_norm : layers[s / 2].ffn_norm;
}

std::pair<int64_t, int64_t> LlamaLayout::layer_range(int i) const {
  const auto first = [](const NormSiteOffsets& s) { return s.alpha >= 0 ? s.alpha : s.weight; };
  const int64_t end = i + 1 < cfg.n_layers ? first(layers[i + 1].attn_norm) : first(final_norm);
  return {first(layers[i].attn_norm), end};
}

bool LlamaLayout::fused_qkv() const {
  const int64_t q = int64_t(heads) * cfg.head_dim() * cfg.dim, kv = int64_t(kv_heads) * cfg.head_dim() * cfg.dim;
  for (const LayerOffsets& l : layers)
    if (l.wk != l.wq + q || l.wv != l.wk + kv) return false;
  return true;
}

bool LlamaLayout::fused_gate_up() const {
  for (const LayerOffsets& l : layers)
    if (l.w_up != l.w_gate + int64_t(hidden) * cfg.dim) return false;
  return true;
}

double init_std_of(const ModelConfig& cfg, const ParamSpec& spec) {
  if (cfg.init == "fixed") return cfg.init_std;
  // (out, in) for every matrix, (vocab, dim) for the embedding: the second full dimension is the fan-in (for the
  // embedding, the width its rows feed).
  const double fan_in = double(spec.full_shape.at(1));
  double std = cfg.init_std * std::sqrt(kInitReferenceWidth / fan_in);
  const auto ends_with = [&](const std::string& suffix) {
    return spec.name.size() >= suffix.size() &&
           spec.name.compare(spec.name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  // The projections that write into the residual stream: 2 n_layers of them add up (GPT-2's depth scaling).
  if (cfg.init == "scaled_depth" && (ends_with("o_proj.weight") || ends_with("down_proj.weight")))
    std /= std::sqrt(2.0 * cfg.n_layers);
  return std;
}

void LlamaLayout::init(float* params, uint64_t seed) const {
  std::fill(params, params + table.total(), 0.0f);
  std::vector<float> full;
  for (const ParamSpec& s : table.specs()) {
    float* p = params + s.offset;
    switch (s.group) {
      case ParamGroup::matrices:
      case ParamGroup::embeddings: {
        int64_t full_numel = 1;
        for (int64_t d : s.full_shape) full_numel *= d;
        full.resize(full_numel);
        fill_normal(full.data(), full_numel, init_std_of(cfg, s), seed, s.name);
        take_tp_block(p, full.data(), s, tp_rank);
        break;
      }
      case ParamGroup::dyt_gamma_beta: {
        const bool is_bias = s.name.size() >= 4 && s.name.compare(s.name.size() - 4, 4, "bias") == 0;
        std::fill(p, p + s.numel, is_bias ? 0.0f : 1.0f);
        break;
      }
      case ParamGroup::dyt_alpha:
        break;  // set per site below
      case ParamGroup::embed_scale:
        p[0] = float(std::sqrt(double(cfg.dim)));
        break;
    }
  }
  if (cfg.norm == NormKind::dyt) {
    for (const LayerOffsets& l : layers) {
      params[l.attn_norm.alpha] = float(cfg.alpha_attn);
      params[l.ffn_norm.alpha] = float(cfg.alpha_ffn);
    }
    params[final_norm.alpha] = float(cfg.alpha_final);
  }
}

}  // namespace dytrain
