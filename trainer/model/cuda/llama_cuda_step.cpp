// Forward and backward of one micro-batch on the GPU, op for op the CPU model's (llama_step.cpp) with the fusions
// listed in llama_cuda.h. Backward walks the forward in reverse; the residual gradient d_res_ is the one buffer every
// branch's norm backward adds into. Sizes are this tensor-parallel rank's; each tp step is named as in tp_mappings.h,
// with its twin's identity written out.
#include <stdexcept>

#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/check.h"
#include "kernels/cuda/cross_entropy.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/flash_attention.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/swiglu.cuh"
#include "trainer/model/cuda/llama_cuda.h"

namespace dytrain {

float LlamaModelCuda::forward(const int32_t* tokens, int B, int T, cpu::SiteMoments* moments) {
  plan_activations(B, T);
  const ModelConfig& cfg = layout_.cfg;
  const int64_t BT = int64_t(B) * T, C = cfg.dim, F = layout_.hidden, D = cfg.head_dim(), V = layout_.vocab_rows;
  const int HQ = layout_.heads, HKV = layout_.kv_heads;
  const int64_t Q = HQ * D, KV = HKV * D, QKV = Q + 2 * KV;
  const float* P = params_;
  const bf16* W = params_bf16_;
  cuda::Blas& blas = *blas_;
  const bool flash = cfg.attention == "flash";  // model.attention: the flash kernels, else the materialized path

  inputs_host_.resize(BT);
  targets_host_.resize(BT);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      inputs_host_[int64_t(b) * T + t] = tokens[int64_t(b) * (T + 1) + t];
      targets_host_[int64_t(b) * T + t] = tokens[int64_t(b) * (T + 1) + t + 1];
    }
  // The embedding backward sums each token's positions in a fixed order: group them now, on the host.
  cuda::TokenBuckets buckets;
  cuda::bucket_tokens(&buckets, inputs_host_.data(), BT, layout_.vocab_begin, layout_.vocab_rows, cfg.vocab_size);
  n_buckets_ = int(buckets.rows.size());
  auto upload = [&](int32_t* dst, const std::vector<int32_t>& src) {
    DYTRAIN_CUDA_CHECK(
        cudaMemcpyAsync(dst, src.data(), src.size() * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
  };
  upload(inputs_, inputs_host_);
  upload(targets_, targets_host_);
  upload(bucket_positions_, buckets.positions);
  upload(bucket_rows_, buckets.rows);
  upload(bucket_begins_, buckets.begins);
  if (moments) DYTRAIN_CUDA_CHECK(cudaMemsetAsync(moments_, 0, n_norm_sites(cfg) * sizeof(cpu::SiteMoments), stream_));

  const float* scale = layout_.embed_scale >= 0 ? P + layout_.embed_scale : one_;
  cuda::embedding_forward(x_[0], inputs_, W + layout_.embed, scale, BT, int(C), layout_.vocab_begin, V, stream_);
  tp_sum(x_[0], BT * C);  // reduce_from_tp_region forward: each token's row comes from the rank that holds it
  // Without tensor parallelism the o and down GEMMs' epilogue adds the residual. Under it those GEMMs give partial
  // branch outputs; the tp sum completes the branch, and the norm that reads the new residual next adds the old one
  // to it (its fused residual kernel: one rounding at the residual's scale, as the epilogue). Added to one rank's
  // partial before the sum, the large residual would be rounded again at every hop of NCCL's ring and swamp small
  // branch updates (issue 19). residual_to_add: the residual that the next norm adds, nullptr when there is none.
  const bool epilogue_adds_residual = tp_ == nullptr;
  const bf16* residual_to_add = nullptr;

  for (int i = 0; i < cfg.n_layers; ++i) {
    const LayerOffsets& l = layout_.layers[i];
    LayerActs& a = acts_[i];
    bf16* q = a.qkv;
    bf16* k = a.qkv + Q;
    bf16* v = a.qkv + Q + KV;

    norm_forward(a.n_attn, a.rstd_attn, x_[i], residual_to_add, l.attn_norm, 2 * i, moments != nullptr);
    // copy_to_tp_region forward: identity (its backward sums d_n_ after the q/k/v GEMM's backward).
    cuda::matmul_forward(blas, a.qkv, a.n_attn, W + l.wq, nullptr, BT, C, QKV);
    cuda::rope_forward(q, rope_cos_, rope_sin_, B, T, HQ, int(D), QKV, stream_);
    cuda::rope_forward(k, rope_cos_, rope_sin_, B, T, HKV, int(D), QKV, stream_);
    if (flash) {
      cuda::flash_attention_forward(a.att, a.lse_attn, q, k, v, QKV, B, T, HQ, HKV, int(D), stream_);
    } else {
      cuda::attention_forward(blas, a.att, a.lse_attn, q, k, v, QKV, B, T, HQ, HKV, int(D), workspace_,
                              workspace_bytes_);
    }
    cuda::matmul_forward(blas, a.x_mid, a.att, W + l.wo, epilogue_adds_residual ? x_[i] : nullptr, BT, Q, C);
    tp_sum(a.x_mid, BT * C);  // reduce_from_tp_region forward (backward: identity)
    residual_to_add = epilogue_adds_residual ? nullptr : x_[i];

    norm_forward(a.n_ffn, a.rstd_ffn, a.x_mid, residual_to_add, l.ffn_norm, 2 * i + 1, moments != nullptr);
    // copy_to_tp_region forward: identity.
    cuda::matmul_forward(blas, a.gate_up, a.n_ffn, W + l.w_gate, nullptr, BT, C, 2 * F);
    cuda::swiglu_forward(a.h, a.gate_up, BT, int(F), stream_);
    cuda::matmul_forward(blas, x_[i + 1], a.h, W + l.w_down, epilogue_adds_residual ? a.x_mid : nullptr, BT, F, C);
    tp_sum(x_[i + 1], BT * C);  // reduce_from_tp_region forward (backward: identity)
    residual_to_add = epilogue_adds_residual ? nullptr : a.x_mid;  // x_[i + 1] holds the branch until the next norm
  }

  bf16* x_final = x_[cfg.n_layers];
  norm_forward(n_final_, rstd_final_, x_final, residual_to_add, layout_.final_norm, 2 * cfg.n_layers,
               moments != nullptr);
  cuda::matmul_forward(blas, logits_, n_final_, W + layout_.lm_head, nullptr, BT, C, V);  // copy_to_tp_region: identity
  if (tp_) {
    const int ranks = tp_->size();
    cuda::cross_entropy_partial_forward(lse_parts_ + layout_.tp_rank * BT, target_logit_, logits_, targets_,
                                        layout_.vocab_begin, BT, int(V), stream_);
    on_tp_stream([&](DeviceCommunicator& tp) {
      tp.all_gather(lse_parts_, lse_parts_ + layout_.tp_rank * BT, BT);
      tp.all_reduce(target_logit_, BT, ReduceOp::sum);  // one rank's logit and zeros: exact
    });
    cuda::cross_entropy_combine(losses_, lse_ce_, lse_parts_, target_logit_, BT, ranks, stream_);
    tp_->synchronize();  // surfaces a peer's failure here instead of hanging in the stream synchronize below
  } else {
    cuda::cross_entropy_forward(losses_, lse_ce_, logits_, targets_, BT, int(V), stream_);
  }

  DYTRAIN_CUDA_CHECK(
      cudaMemcpyAsync(losses_host_.data(), losses_, BT * sizeof(float), cudaMemcpyDeviceToHost, stream_));
  std::vector<cpu::SiteMoments> m(moments ? n_norm_sites(cfg) : 0);
  if (moments)
    DYTRAIN_CUDA_CHECK(cudaMemcpyAsync(m.data(), moments_, m.size() * sizeof(cpu::SiteMoments), cudaMemcpyDeviceToHost,
                                       stream_));
  DYTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));
  for (size_t s = 0; s < m.size(); ++s) {
    moments[s].sum += m[s].sum;
    moments[s].sum_sq += m[s].sum_sq;
    moments[s].saturated += m[s].saturated;
    moments[s].count += m[s].count;
  }
  double sum = 0.0;
  for (float x : losses_host_) sum += x;
  return float(sum / double(BT));
}

void LlamaModelCuda::backward(float loss_weight) {
  if (B_ == 0) throw std::logic_error("LlamaModelCuda::backward called before forward");
  const ModelConfig& cfg = layout_.cfg;
  const int B = B_, T = T_;
  const int64_t BT = int64_t(B) * T, C = cfg.dim, F = layout_.hidden, D = cfg.head_dim(), V = layout_.vocab_rows;
  const int HQ = layout_.heads, HKV = layout_.kv_heads;
  const int64_t Q = HQ * D, KV = HKV * D, QKV = Q + 2 * KV;
  const float* P = params_;
  const bf16* W = params_bf16_;
  float* G = grads_;
  cuda::Blas& blas = *blas_;
  const bool flash = cfg.attention == "flash";  // model.attention: the flash kernels, else the materialized path

  // The loss is a mean over BT tokens: each row's weight is loss_weight / BT. dlogits overwrite the logits.
  cuda::cross_entropy_backward(logits_, logits_, lse_ce_, targets_, loss_weight / float(BT), BT, int(V), stream_,
                               layout_.vocab_begin, cfg.vocab_size);
  cuda::matmul_backward(blas, d_n_, G + layout_.lm_head, logits_, n_final_, W + layout_.lm_head, BT, C, V);
  tp_sum(d_n_, BT * C);  // copy_to_tp_region backward: the LM head is column-parallel
  norm_backward(d_res_, d_n_, x_[cfg.n_layers], rstd_final_, layout_.final_norm, /*accumulate=*/false);

  for (int i = cfg.n_layers - 1; i >= 0; --i) {
    const LayerOffsets& l = layout_.layers[i];
    const LayerActs& a = acts_[i];

    // FFN branch: d_res_ is dL/dx_out; the residual passes it to x_mid unchanged, the branch adds its share.
    // reduce_from_tp_region backward: identity (d_res_ is the same on every tp rank).
    cuda::matmul_backward(blas, d_h_, G + l.w_down, d_res_, a.h, W + l.w_down, BT, F, C);
    cuda::swiglu_backward(d_gate_up_, d_h_, a.gate_up, BT, int(F), stream_);
    cuda::matmul_backward(blas, d_n_, G + l.w_gate, d_gate_up_, a.n_ffn, W + l.w_gate, BT, C, 2 * F);
    tp_sum(d_n_, BT * C);  // copy_to_tp_region backward
    norm_backward(d_res_, d_n_, a.x_mid, a.rstd_ffn, l.ffn_norm, /*accumulate=*/true);

    // Attention branch: d_res_ is now dL/dx_mid. reduce_from_tp_region backward: identity.
    cuda::matmul_backward(blas, d_att_, G + l.wo, d_res_, a.att, W + l.wo, BT, Q, C);
    bf16* dq = d_qkv_;
    bf16* dk = d_qkv_ + Q;
    bf16* dv = d_qkv_ + Q + KV;
    if (flash) {
      cuda::flash_attention_backward(dq, dk, dv, d_att_, a.att, a.lse_attn, a.qkv, a.qkv + Q, a.qkv + Q + KV, QKV, B,
                                     T, HQ, HKV, int(D), workspace_, workspace_bytes_, stream_);
    } else {
      cuda::attention_backward(blas, dq, dk, dv, d_att_, a.att, a.lse_attn, a.qkv, a.qkv + Q, a.qkv + Q + KV, QKV, B,
                               T, HQ, HKV, int(D), workspace_, workspace_bytes_);
    }
    cuda::rope_backward(dq, rope_cos_, rope_sin_, B, T, HQ, int(D), QKV, stream_);
    cuda::rope_backward(dk, rope_cos_, rope_sin_, B, T, HKV, int(D), QKV, stream_);
    cuda::matmul_backward(blas, d_n_, G + l.wq, d_qkv_, a.n_attn, W + l.wq, BT, C, QKV);
    tp_sum(d_n_, BT * C);  // copy_to_tp_region backward
    norm_backward(d_res_, d_n_, x_[i], a.rstd_attn, l.attn_norm, /*accumulate=*/true);
    if (grads_ready_) {
      const auto [begin, end] = layout_.layer_range(i);
      grads_ready_(begin, end);
    }
  }

  // reduce_from_tp_region backward: identity; each rank's embedding rows take the gradients of its own tokens.
  const bool has_scale = layout_.embed_scale >= 0;
  const float* scale = has_scale ? P + layout_.embed_scale : one_;
  float* d_scale = !has_scale ? nullptr : tp_ ? embed_scale_partial_ : G + layout_.embed_scale;
  cuda::embedding_backward(G + layout_.embed, d_scale, d_res_, W + layout_.embed, scale, bucket_positions_,
                           bucket_rows_, bucket_begins_, n_buckets_, BT, int(C), workspace_, workspace_bytes_, stream_);
  if (tp_ && has_scale) {
    // The replicated scalar's gradient is the sum of every rank's tokens' share: the tp sum of the partial
    // accumulated since zero_grad() overwrites it, so each backward leaves the total of all micro-batches so far.
    DYTRAIN_CUDA_CHECK(cudaMemcpyAsync(embed_scale_sum_, embed_scale_partial_, sizeof(float),
                                       cudaMemcpyDeviceToDevice, stream_));
    on_tp_stream([&](DeviceCommunicator& tp) { tp.all_reduce(embed_scale_sum_, 1, ReduceOp::sum); });
    DYTRAIN_CUDA_CHECK(cudaMemcpyAsync(G + layout_.embed_scale, embed_scale_sum_, sizeof(float),
                                       cudaMemcpyDeviceToDevice, stream_));
  }
  if (tp_) tp_->synchronize();  // a peer's failure surfaces here, not as a hang in the next stream synchronize
}

}  // namespace dytrain
