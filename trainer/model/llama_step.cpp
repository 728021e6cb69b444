// Forward and backward of one micro-batch. Backward walks the forward in reverse; activation gradients flow
// through one residual-gradient buffer (d_res_) that every branch adds into, matching the += convention of the ops.
// Sizes below are this rank's: layout_.heads, layout_.kv_heads, layout_.hidden and layout_.vocab_rows are the full sizes divided by tp.
#include <algorithm>
#include <stdexcept>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/swiglu.h"
#include "parallel/tp_mappings.h"
#include "trainer/model/llama.h"

namespace dytrain {
namespace {

void zero(std::vector<float>& v) { std::fill(v.begin(), v.end(), 0.0f); }

}  // namespace

void LlamaModel::ensure_activations(int B, int T) {
  if (B == B_ && T == T_) return;
  if (T > cfg_.max_seq_len)
    throw std::invalid_argument("sequence length " + std::to_string(T) + " exceeds model.max_seq_len " +
                                std::to_string(cfg_.max_seq_len));
  B_ = B;
  T_ = T;
  const int64_t BT = int64_t(B) * T, C = cfg_.dim, F = layout_.hidden, D = cfg_.head_dim();
  const int64_t HQ = int64_t(layout_.heads) * D, HKV = int64_t(layout_.kv_heads) * D;
  const bool rms = cfg_.norm == NormKind::rmsnorm;
  inputs_.assign(BT, 0);
  targets_.assign(BT, 0);
  rope_cos_.assign(int64_t(T) * D / 2, 0.0f);
  rope_sin_.assign(int64_t(T) * D / 2, 0.0f);
  cpu::rope_tables(rope_cos_.data(), rope_sin_.data(), T, int(D), cfg_.rope_theta);
  acts_.resize(cfg_.n_layers);
  for (LayerActs& a : acts_) {
    a.x_in.assign(BT * C, 0.0f);
    a.n_attn.assign(BT * C, 0.0f);
    a.rstd_attn.assign(rms ? BT : 0, 0.0f);
    a.rstd_ffn.assign(rms ? BT : 0, 0.0f);
    a.q.assign(BT * HQ, 0.0f);
    a.k.assign(BT * HKV, 0.0f);
    a.v.assign(BT * HKV, 0.0f);
    a.probs.assign(int64_t(B) * layout_.heads * T * T, 0.0f);
    a.att.assign(BT * HQ, 0.0f);
    a.x_mid.assign(BT * C, 0.0f);
    a.n_ffn.assign(BT * C, 0.0f);
    a.gate.assign(BT * F, 0.0f);
    a.up.assign(BT * F, 0.0f);
    a.h.assign(BT * F, 0.0f);
  }
  x_final_.assign(BT * C, 0.0f);
  n_final_.assign(BT * C, 0.0f);
  rstd_final_.assign(rms ? BT : 0, 0.0f);
  logits_.assign(BT * layout_.vocab_rows, 0.0f);
  losses_.assign(BT, 0.0f);
  row_max_.assign(tp_size_ > 1 ? BT : 0, 0.0f);
  row_sum_.assign(tp_size_ > 1 ? BT : 0, 0.0f);
  for (auto* d : {&d_res_, &d_n_}) d->assign(BT * C, 0.0f);
  for (auto* d : {&d_att_, &d_q_, &d_q_rot_}) d->assign(BT * HQ, 0.0f);
  for (auto* d : {&d_k_, &d_v_, &d_k_rot_}) d->assign(BT * HKV, 0.0f);
  for (auto* d : {&d_h_, &d_gate_, &d_up_}) d->assign(BT * F, 0.0f);
}

float LlamaModel::forward(const int32_t* tokens, int B, int T, cpu::SiteMoments* moments) {
  ensure_activations(B, T);
  const int64_t BT = int64_t(B) * T, C = cfg_.dim, F = layout_.hidden, D = cfg_.head_dim(), V = layout_.vocab_rows;
  const int HQ = layout_.heads, HKV = layout_.kv_heads;
  const float* P = params_.data();

  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      inputs_[int64_t(b) * T + t] = tokens[int64_t(b) * (T + 1) + t];
      targets_[int64_t(b) * T + t] = tokens[int64_t(b) * (T + 1) + t + 1];
    }

  const float scale = layout_.embed_scale >= 0 ? P[layout_.embed_scale] : 1.0f;
  float* x = cfg_.n_layers > 0 ? acts_[0].x_in.data() : x_final_.data();
  if (tp_size_ == 1)
    cpu::embedding_forward(x, inputs_.data(), P + layout_.embed, scale, BT, int(C));
  else
    vocab_parallel_embedding_forward(*tp_, x, inputs_.data(), P + layout_.embed, scale, layout_.vocab_begin, V, BT, int(C));

  for (int i = 0; i < cfg_.n_layers; ++i) {
    const LayerOffsets& l = layout_.layers[i];
    LayerActs& a = acts_[i];
    cpu::SiteMoments* m_attn = moments ? moments + 2 * i : nullptr;
    cpu::SiteMoments* m_ffn = moments ? moments + 2 * i + 1 : nullptr;

    norm_forward(a.n_attn.data(), a.rstd_attn.data(), a.x_in.data(), l.attn_norm, BT, m_attn);
    copy_to_tp_region_forward(*tp_, a.n_attn.data(), BT * C);
    cpu::matmul_forward(a.q.data(), a.n_attn.data(), P + l.wq, BT, C, HQ * D);
    cpu::matmul_forward(a.k.data(), a.n_attn.data(), P + l.wk, BT, C, HKV * D);
    cpu::matmul_forward(a.v.data(), a.n_attn.data(), P + l.wv, BT, C, HKV * D);
    cpu::rope_forward(a.q.data(), a.q.data(), rope_cos_.data(), rope_sin_.data(), B, T, HQ, int(D));
    cpu::rope_forward(a.k.data(), a.k.data(), rope_cos_.data(), rope_sin_.data(), B, T, HKV, int(D));
    cpu::attention_forward(a.att.data(), a.probs.data(), a.q.data(), a.k.data(), a.v.data(), B, T, HQ, HKV, int(D));
    // x_mid = x_in + o(att); o is row-parallel: each rank holds a partial sum
    cpu::matmul_forward(a.x_mid.data(), a.att.data(), P + l.wo, BT, HQ * D, C);
    reduce_from_tp_region_forward(*tp_, a.x_mid.data(), BT * C);
    for (int64_t j = 0; j < BT * C; ++j) a.x_mid[j] += a.x_in[j];

    norm_forward(a.n_ffn.data(), a.rstd_ffn.data(), a.x_mid.data(), l.ffn_norm, BT, m_ffn);
    copy_to_tp_region_forward(*tp_, a.n_ffn.data(), BT * C);
    cpu::matmul_forward(a.gate.data(), a.n_ffn.data(), P + l.w_gate, BT, C, F);
    cpu::matmul_forward(a.up.data(), a.n_ffn.data(), P + l.w_up, BT, C, F);
    cpu::swiglu_forward(a.h.data(), a.gate.data(), a.up.data(), BT * F);
    // x_out = x_mid + down(h), written where the next layer (or the final norm) reads its input
    float* x_out = i + 1 < cfg_.n_layers ? acts_[i + 1].x_in.data() : x_final_.data();
    cpu::matmul_forward(x_out, a.h.data(), P + l.w_down, BT, F, C);
    reduce_from_tp_region_forward(*tp_, x_out, BT * C);
    for (int64_t j = 0; j < BT * C; ++j) x_out[j] += a.x_mid[j];
  }

  norm_forward(n_final_.data(), rstd_final_.data(), x_final_.data(), layout_.final_norm, BT,
               moments ? moments + 2 * cfg_.n_layers : nullptr);
  copy_to_tp_region_forward(*tp_, n_final_.data(), BT * C);
  cpu::matmul_forward(logits_.data(), n_final_.data(), P + layout_.lm_head, BT, C, V);
  if (tp_size_ == 1)
    cpu::cross_entropy_forward(losses_.data(), logits_.data(), targets_.data(), BT, int(V));
  else
    vocab_parallel_cross_entropy_forward(*tp_, losses_.data(), row_max_.data(), row_sum_.data(), logits_.data(),
                                         targets_.data(), layout_.vocab_begin, V, BT);
  double sum = 0.0;
  for (float v : losses_) sum += v;
  return float(sum / double(BT));
}

void LlamaModel::backward(float loss_weight) {
  if (B_ == 0) throw std::logic_error("LlamaModel::backward called before forward");
  const int B = B_, T = T_;
  const int64_t BT = int64_t(B) * T, C = cfg_.dim, F = layout_.hidden, D = cfg_.head_dim(), V = layout_.vocab_rows;
  const int HQ = layout_.heads, HKV = layout_.kv_heads;
  const float* P = params_.data();
  float* G = grads_.data();

  // The loss is a mean over BT tokens: each row's weight is loss_weight / BT. dlogits overwrite the logits.
  const float dloss = loss_weight / float(BT);
  if (tp_size_ == 1)
    cpu::cross_entropy_backward(logits_.data(), logits_.data(), targets_.data(), dloss, BT, int(V));
  else
    vocab_parallel_cross_entropy_backward(logits_.data(), logits_.data(), row_max_.data(), row_sum_.data(),
                                          targets_.data(), dloss, layout_.vocab_begin, V, BT);
  zero(d_n_);
  cpu::matmul_backward(d_n_.data(), G + layout_.lm_head, logits_.data(), n_final_.data(), P + layout_.lm_head, BT, C, V);
  copy_to_tp_region_backward(*tp_, d_n_.data(), BT * C);
  zero(d_res_);
  norm_backward(d_res_.data(), d_n_.data(), x_final_.data(), rstd_final_.data(), layout_.final_norm, BT);

  for (int i = cfg_.n_layers - 1; i >= 0; --i) {
    const LayerOffsets& l = layout_.layers[i];
    const LayerActs& a = acts_[i];

    // FFN branch: d_res_ is dL/dx_out; the residual passes it to x_mid unchanged, the branch adds its share.
    reduce_from_tp_region_backward(*tp_, d_res_.data(), BT * C);
    zero(d_h_);
    cpu::matmul_backward(d_h_.data(), G + l.w_down, d_res_.data(), a.h.data(), P + l.w_down, BT, F, C);
    zero(d_gate_);
    zero(d_up_);
    cpu::swiglu_backward(d_gate_.data(), d_up_.data(), d_h_.data(), a.gate.data(), a.up.data(), BT * F);
    zero(d_n_);
    cpu::matmul_backward(d_n_.data(), G + l.w_gate, d_gate_.data(), a.n_ffn.data(), P + l.w_gate, BT, C, F);
    cpu::matmul_backward(d_n_.data(), G + l.w_up, d_up_.data(), a.n_ffn.data(), P + l.w_up, BT, C, F);
    copy_to_tp_region_backward(*tp_, d_n_.data(), BT * C);
    norm_backward(d_res_.data(), d_n_.data(), a.x_mid.data(), a.rstd_ffn.data(), l.ffn_norm, BT);

    // Attention branch: d_res_ is now dL/dx_mid.
    reduce_from_tp_region_backward(*tp_, d_res_.data(), BT * C);
    zero(d_att_);
    cpu::matmul_backward(d_att_.data(), G + l.wo, d_res_.data(), a.att.data(), P + l.wo, BT, HQ * D, C);
    zero(d_q_rot_);
    zero(d_k_rot_);
    zero(d_v_);
    cpu::attention_backward(d_q_rot_.data(), d_k_rot_.data(), d_v_.data(), d_att_.data(), a.probs.data(), a.q.data(),
                            a.k.data(), a.v.data(), B, T, HQ, HKV, int(D));
    zero(d_q_);
    zero(d_k_);
    cpu::rope_backward(d_q_.data(), d_q_rot_.data(), rope_cos_.data(), rope_sin_.data(), B, T, HQ, int(D));
    cpu::rope_backward(d_k_.data(), d_k_rot_.data(), rope_cos_.data(), rope_sin_.data(), B, T, HKV, int(D));
    zero(d_n_);
    cpu::matmul_backward(d_n_.data(), G + l.wq, d_q_.data(), a.n_attn.data(), P + l.wq, BT, C, HQ * D);
    cpu::matmul_backward(d_n_.data(), G + l.wk, d_k_.data(), a.n_attn.data(), P + l.wk, BT, C, HKV * D);
    cpu::matmul_backward(d_n_.data(), G + l.wv, d_v_.data(), a.n_attn.data(), P + l.wv, BT, C, HKV * D);
    copy_to_tp_region_backward(*tp_, d_n_.data(), BT * C);
    norm_backward(d_res_.data(), d_n_.data(), a.x_in.data(), a.rstd_attn.data(), l.attn_norm, BT);
    if (grads_ready_) {
      const auto [begin, end] = layout_.layer_range(i);
      grads_ready_(begin, end);
    }
  }

  float* d_scale = layout_.embed_scale >= 0 ? G + layout_.embed_scale : nullptr;
  const float scale = layout_.embed_scale >= 0 ? P[layout_.embed_scale] : 1.0f;
  if (tp_size_ == 1)
    cpu::embedding_backward(G + layout_.embed, d_scale, d_res_.data(), inputs_.data(), P + layout_.embed, scale, BT, int(C));
  else
    vocab_parallel_embedding_backward(*tp_, G + layout_.embed, d_scale, d_res_.data(), inputs_.data(), P + layout_.embed, scale,
                                      layout_.vocab_begin, V, BT, int(C));
}

}  // namespace dytrain
