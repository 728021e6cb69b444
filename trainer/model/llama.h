// LLaMA with Dynamic Tanh in place of every RMSNorm (or RMSNorm itself, the baseline), in fp32 on the CPU op set.
//
//   x = embed_scale * embed(tokens)                                   (B, T, C)
//   for each layer:  x += o(attn(rope(q(n)), rope(k(n)), v(n)))   with n = DyT_attn(x)
//                    x += down(silu(gate(n)) * up(n))             with n = DyT_ffn(x)
//   logits = lm_head(DyT_final(x))                                    (B, T, V)
//
// The model owns its parameters and gradients as flat buffers described by a ParamTable (HF names), and the
// activations of the last forward pass, which backward() consumes. Under tensor parallelism (a tp communicator of
// size > 1) it holds its rank's block of every split tensor (params.h) and calls the Megatron communication steps
// of parallel/tp_mappings.h; with one rank those are identities. It knows nothing of data parallelism or optimizers.
#pragma once
#include <cstdint>
#include <vector>

#include <memory>

#include "kernels/cpu/dyt.h"
#include "parallel/comm.h"
#include "trainer/config/config.h"
#include "trainer/model/layout.h"

namespace dytrain {

class LlamaModel {
 public:
  // tp: the tensor-parallel group (outlives the model), or nullptr for a single rank.
  explicit LlamaModel(const ModelConfig& cfg, Communicator* tp = nullptr);

  // Matrices and the embedding ~ N(0, init_std), DyT gamma 1, beta 0, alpha its alpha0, embed_scale sqrt(dim).
  void init(uint64_t seed);

  // tokens (B, T+1): inputs [0, T), targets [1, T+1). Returns the mean next-token loss and keeps the activations
  // for backward(). moments: nullptr, or n_norm_sites() entries accumulated (+=) with each site's input statistics.
  float forward(const int32_t* tokens, int B, int T, cpu::SiteMoments* moments);

  // Calibrated init (beyond the paper): sets each DyT site's alpha to c / std(its input) on tokens (B, T+1), site by
  // site in forward order, so each site is measured on what its already calibrated predecessors produce.
  // No effect on an RMSNorm model.
  void calibrate_alphas(const int32_t* tokens, int B, int T, double c);

  // Gradients of loss_weight * (the mean loss of the last forward), accumulated (+=) into grads().
  void backward(float loss_weight);

  void zero_grad();

  // Called by backward() with each layer's gradient range as soon as that layer is done; nullptr: none.
  void set_grads_ready(GradsReady hook) { grads_ready_ = std::move(hook); }
  const LlamaLayout& layout() const { return layout_; }

  // Per-token losses (B, T) of the last forward pass.
  const std::vector<float>& token_losses() const { return losses_; }

  const ModelConfig& config() const { return cfg_; }
  const ParamTable& table() const { return layout_.table; }
  std::vector<float>& params() { return params_; }
  const std::vector<float>& params() const { return params_; }
  std::vector<float>& grads() { return grads_; }
  const std::vector<float>& grads() const { return grads_; }

  // The current alpha of norm site s (metrics order); 0 for RMSNorm sites.
  float site_alpha(int site) const;

 private:
  // Activations of one layer kept for backward.
  struct LayerActs {
    std::vector<float> x_in;    // (BT, C) residual entering the layer
    std::vector<float> n_attn;  // (BT, C) DyT_attn(x_in)
    std::vector<float> rstd_attn, rstd_ffn;  // (BT) RMSNorm only
    std::vector<float> q, k, v; // (BT, Hq*D), (BT, Hkv*D) x2; q and k after RoPE
    std::vector<float> probs;   // (B, Hq, T, T)
    std::vector<float> att;     // (BT, Hq*D) attention output, input of o_proj
    std::vector<float> x_mid;   // (BT, C) residual after attention
    std::vector<float> n_ffn;   // (BT, C) DyT_ffn(x_mid)
    std::vector<float> gate, up, h;  // (BT, F)
  };

  void norm_forward(float* y, float* rstd, const float* x, const NormSiteOffsets& s, int64_t N, cpu::SiteMoments* m);
  void norm_backward(float* dx, const float* dy, const float* x, const float* rstd, const NormSiteOffsets& s,
                     int64_t N);
  void ensure_activations(int B, int T);

  ModelConfig cfg_;
  std::unique_ptr<Communicator> own_tp_;  // the self communicator when none was given
  Communicator* tp_;
  int tp_rank_ = 0, tp_size_ = 1;
  LlamaLayout layout_;
  std::vector<float> params_, grads_;
  GradsReady grads_ready_;
  double calibrate_c_ = 0.0;  // > 0 only inside calibrate_alphas()

  // Activations of the last forward pass, sized for (B_, T_).
  int B_ = 0, T_ = 0;
  std::vector<int32_t> inputs_, targets_;   // (BT)
  std::vector<float> rope_cos_, rope_sin_;  // (T, D/2)
  std::vector<LayerActs> acts_;
  std::vector<float> x_final_, n_final_, rstd_final_;  // (BT, C), (BT, C), (BT)
  std::vector<float> logits_;                         // (BT, V / tp); holds dlogits after backward starts
  std::vector<float> losses_;                         // (BT)
  std::vector<float> row_max_, row_sum_;              // (BT) vocabulary-parallel cross-entropy, tp > 1
  // Gradient scratch, reused by every layer.
  std::vector<float> d_res_, d_n_, d_att_, d_q_, d_k_, d_v_, d_q_rot_, d_k_rot_, d_h_, d_gate_, d_up_;
};

}  // namespace dytrain
