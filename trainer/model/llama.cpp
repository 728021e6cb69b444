// Construction of the parameter table (in the Hugging Face LLaMA order), initialisation, and the norm site
// dispatch shared by forward and backward (llama_step.cpp).
#include "trainer/model/llama.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cpu/rmsnorm.h"
#include "trainer/model/init.h"

namespace dytrain {

LlamaModel::LlamaModel(const ModelConfig& cfg, Communicator* tp)
    : cfg_(cfg), own_tp_(tp ? nullptr : make_self_communicator()), tp_(tp ? tp : own_tp_.get()) {
  tp_rank_ = tp_->rank();
  tp_size_ = tp_->size();
  const int T = tp_size_;
  if (cfg.n_heads % T || cfg.kv_heads() % T || cfg.hidden_dim() % T || cfg.vocab_size % T)
    throw std::invalid_argument("tensor parallelism over " + std::to_string(T) +
                                " ranks needs n_heads, n_kv_heads, the FFN size and vocab_size divisible by it");
  heads_ = cfg.n_heads / T;
  kv_heads_ = cfg.kv_heads() / T;
  hidden_ = cfg.hidden_dim() / T;
  vocab_rows_ = cfg.vocab_size / T;
  vocab_begin_ = vocab_rows_ * tp_rank_;

  const int64_t C = cfg.dim, V = cfg.vocab_size, F = cfg.hidden_dim();
  const int64_t q_out = int64_t(cfg.n_heads) * cfg.head_dim(), kv_out = int64_t(cfg.kv_heads()) * cfg.head_dim();
  const ParamGroup M = ParamGroup::matrices;
  const TpSplit rows = TpSplit::rows, cols = TpSplit::cols;  // column-parallel / row-parallel linears

  embed_ = table_.add("model.embed_tokens.weight", {V, C}, ParamGroup::embeddings, rows, T);
  if (cfg.embed_scale) embed_scale_ = table_.add("model.embed_scale", {1}, ParamGroup::embed_scale);
  layers_.resize(cfg.n_layers);
  for (int i = 0; i < cfg.n_layers; ++i) {
    Layer& l = layers_[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add_norm_site(&l.attn_norm, p + "input_layernorm.");
    l.wq = table_.add(p + "self_attn.q_proj.weight", {q_out, C}, M, rows, T);
    l.wk = table_.add(p + "self_attn.k_proj.weight", {kv_out, C}, M, rows, T);
    l.wv = table_.add(p + "self_attn.v_proj.weight", {kv_out, C}, M, rows, T);
    l.wo = table_.add(p + "self_attn.o_proj.weight", {C, q_out}, M, cols, T);
    add_norm_site(&l.ffn_norm, p + "post_attention_layernorm.");
    l.w_gate = table_.add(p + "mlp.gate_proj.weight", {F, C}, M, rows, T);
    l.w_up = table_.add(p + "mlp.up_proj.weight", {F, C}, M, rows, T);
    l.w_down = table_.add(p + "mlp.down_proj.weight", {C, F}, M, cols, T);
  }
  add_norm_site(&final_norm_, "model.norm.");
  // Tied: the LM head reads the embedding table, and its gradient lands there too.
  lm_head_ = cfg.tie_embeddings ? embed_ : table_.add("lm_head.weight", {V, C}, M, rows, T);

  params_.assign(table_.total(), 0.0f);
  grads_.assign(table_.total(), 0.0f);
}

void LlamaModel::add_norm_site(NormSite* site, const std::string& prefix) {
  const int64_t C = cfg_.dim;
  if (cfg_.norm == NormKind::dyt) site->alpha = table_.add(prefix + "alpha", {1}, ParamGroup::dyt_alpha);
  site->weight = table_.add(prefix + "weight", {C}, ParamGroup::dyt_gamma_beta);
  if (cfg_.norm == NormKind::dyt && cfg_.dyt_bias) site->bias = table_.add(prefix + "bias", {C}, ParamGroup::dyt_gamma_beta);
}

void LlamaModel::init(uint64_t seed) {
  std::vector<float> full;
  for (const ParamSpec& s : table_.specs()) {
    float* p = params_.data() + s.offset;
    switch (s.group) {
      case ParamGroup::matrices:
      case ParamGroup::embeddings: {
        // The whole tensor's stream, then this rank's block: every layout starts from the same numbers.
        int64_t full_numel = 1;
        for (int64_t d : s.full_shape) full_numel *= d;
        full.resize(full_numel);
        fill_normal(full.data(), full_numel, cfg_.init_std, seed, s.name);
        take_tp_block(p, full.data(), s, tp_rank_);
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
        p[0] = float(std::sqrt(double(cfg_.dim)));
        break;
    }
  }
  if (cfg_.norm == NormKind::dyt) {
    for (Layer& l : layers_) {
      params_[l.attn_norm.alpha] = float(cfg_.alpha_attn);
      params_[l.ffn_norm.alpha] = float(cfg_.alpha_ffn);
    }
    params_[final_norm_.alpha] = float(cfg_.alpha_final);
  }
  zero_grad();
}

void LlamaModel::zero_grad() { std::fill(grads_.begin(), grads_.end(), 0.0f); }

float LlamaModel::site_alpha(int site) const {
  const NormSite& s = site == 2 * cfg_.n_layers ? final_norm_
                      : (site % 2 == 0 ? layers_[site / 2].attn_norm : layers_[site / 2].ffn_norm);
  return s.alpha >= 0 ? params_[s.alpha] : 0.0f;
}

void LlamaModel::calibrate_alphas(const int32_t* tokens, int B, int T, double c) {
  if (cfg_.norm != NormKind::dyt) return;
  calibrate_c_ = c;
  forward(tokens, B, T, nullptr);
  calibrate_c_ = 0.0;
}

void LlamaModel::norm_forward(float* y, float* rstd, const float* x, const NormSite& s, int64_t N,
                              cpu::SiteMoments* m) {
  float* P = params_.data();
  if (cfg_.norm == NormKind::dyt && calibrate_c_ > 0) {
    cpu::SiteMoments in;
    cpu::dyt_forward(y, x, P[s.alpha], P + s.weight, s.bias >= 0 ? P + s.bias : nullptr, N, cfg_.dim, &in);
    const double mean = in.sum / in.count, std = std::sqrt(std::max(0.0, in.sum_sq / in.count - mean * mean));
    if (std > 0) P[s.alpha] = float(calibrate_c_ / std);
  }
  if (cfg_.norm == NormKind::dyt)
    cpu::dyt_forward(y, x, P[s.alpha], P + s.weight, s.bias >= 0 ? P + s.bias : nullptr, N, cfg_.dim, m);
  else
    cpu::rmsnorm_forward(y, rstd, x, P + s.weight, float(cfg_.rms_eps), N, cfg_.dim, m);
}

void LlamaModel::norm_backward(float* dx, const float* dy, const float* x, const float* rstd, const NormSite& s,
                               int64_t N) {
  const float* P = params_.data();
  float* G = grads_.data();
  if (cfg_.norm == NormKind::dyt)
    cpu::dyt_backward(dx, G + s.alpha, G + s.weight, s.bias >= 0 ? G + s.bias : nullptr, dy, x, P[s.alpha],
                      P + s.weight, N, cfg_.dim);
  else
    cpu::rmsnorm_backward(dx, G + s.weight, dy, x, P + s.weight, rstd, N, cfg_.dim);
}

}  // namespace dytrain
