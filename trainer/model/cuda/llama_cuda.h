// LLaMA-DyT on the GPU: the same model as llama.h, step for step, in the numerics of ARCHITECTURE.md: bf16
// activations and bf16 weight copies into cuBLASLt GEMMs with fp32 accumulation, fp32 master weights, fp32 parameter
// gradients, DyT parameters and their gradients in fp32, deterministic kernels throughout (kernels/cuda).
//
// What differs from the CPU model, by design:
// - q, k, v come out of one GEMM against the adjacent wq, wk, wv blocks of the flat buffer, gate and up out of one
//   against w_gate, w_up (layout.h); RoPE and attention read q, k and v as column slices of those rows.
// - The residual adds are fused into the epilogues of the o and down GEMMs (out = residual + h W^T), or under tensor
//   parallelism into the norm that follows (see below); every layer keeps its own bf16 residual buffers for the
//   backward pass.
// - Attention keeps only each row's log-sum-exp; its backward recomputes the probabilities. model.attention picks
//   the kernels: materialized (attention.cuh, the reference) or flash (flash_attention.cuh); both read and write the
//   same buffers.
// - The cross-entropy keeps each row's log-sum-exp; its backward overwrites the logits with their gradient.
//
// Tensor parallelism (given a tp communicator) as in the CPU model and Megatron-LM: this rank holds its heads, its
// share of the SwiGLU hidden size and its vocabulary rows (layout.h). Each communication step sits where the CPU
// model's tp_mappings.h calls sit, as bf16 sums on the tp communicator's stream, ordered against stream() by events:
// - reduce_from_tp_region forward (its backward is the identity): the vocabulary-parallel embedding, and the o and
//   down GEMMs, whose partial outputs are summed without the residual; every rank then adds the residual to the
//   sum once, in the next norm's fused residual kernel (dyt.cuh, rmsnorm.cuh), rounding it once at its own scale as
//   one rank's GEMM epilogue does. NCCL rounds after every hop of its ring: a residual added to one rank's partial
//   before the sum would take up to tp - 1 more roundings at its scale (~0.5 at 100) and lose small branch updates;
// - copy_to_tp_region backward (its forward is the identity): the input gradients of the column-parallel q/k/v,
//   gate/up and LM head GEMMs;
// - the vocabulary-parallel cross-entropy: lse parts gathered, target logits summed (cross_entropy.cuh);
// - the replicated embed_scale's gradient, which each rank sees only for its own tokens, summed over the group.
// DyT sites are replicated: they read the summed activations and gradients, so their parameter gradients come out
// the same bits on every tp rank.
//
// Memory is planned up front (kernels/cuda/device_arena.h): parameters, their bf16 copy and gradients at
// construction; activations, gradient scratch and one shared kernel workspace once per (B, T). memory() reports the
// bytes by category.
//
// All work is queued on stream(); forward() returns after synchronizing once (it reads the per-token losses back).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/dyt.h"
#include "kernels/cuda/device_arena.h"
#include "kernels/cuda/matmul.cuh"
#include "parallel/device_comm.h"
#include "trainer/config/config.h"
#include "trainer/model/layout.h"

namespace dytrain {

class LlamaModelCuda {
 public:
  // On the current device, queueing on `stream`. Throws std::invalid_argument when the layout cannot run fused
  // (sizes that break the adjacency of q/k/v or gate/up, see layout.h). The flat buffers (parameters, their bf16
  // copy, gradients) hold max(table().total(), flat_elems) elements, the tail past the table zero: ZeRO-1 pads them
  // to equal blocks per dp rank, so it reduce-scatters the gradients and all-gathers the parameters in place.
  // tp: the tensor-parallel group on device buffers (its rank and size pick this rank's layout), or nullptr for one
  // rank; it must outlive the model.
  LlamaModelCuda(const ModelConfig& cfg, cudaStream_t stream, int64_t flat_elems = 0,
                 DeviceCommunicator* tp = nullptr);
  ~LlamaModelCuda();

  // As LlamaModel::init: the same numbers (drawn on the host), uploaded; the bf16 copy follows.
  void init(uint64_t seed);
  void upload_params(const float* host);  // (table().total()) fp32; the bf16 copy follows
  void download_params(float* host);      // (table().total())

  // Allocates the activations for micro-batches of (B, T) (done by forward() on a new shape; call it up front so the
  // peak memory is known before the first step).
  void plan_activations(int B, int T);

  // tokens (B, T+1) on the host. Same contract as LlamaModel::forward.
  float forward(const int32_t* tokens, int B, int T, cpu::SiteMoments* moments);
  void calibrate_alphas(const int32_t* tokens, int B, int T, double c);
  void backward(float loss_weight);
  void zero_grad();  // the whole flat buffer, padding included
  // The bf16 copy of every parameter from the fp32 master weights (after something other than the fused AdamW,
  // e.g. a ZeRO-1 all-gather, changed them).
  void refresh_bf16_params();

  // Called by backward() with each layer's gradient range once that layer's backward work is queued on stream();
  // nullptr: none. The callee orders its own work after it (an event on stream()).
  void set_grads_ready(GradsReady hook) { grads_ready_ = std::move(hook); }
  const LlamaLayout& layout() const { return layout_; }

  const std::vector<float>& token_losses() const { return losses_host_; }
  // The residual stream of the last forward as floats: x_i (B*T, dim) entering layer i, i = n_layers the final norm's
  // input; the same on every tp rank. For tests of its numerics.
  std::vector<float> residual_stream(int i);
  const ModelConfig& config() const { return layout_.cfg; }
  const ParamTable& table() const { return layout_.table; }
  std::vector<float> site_alphas();  // metrics order; 0 for RMSNorm sites
  float embed_scale();               // 0 when the model has none

  int64_t flat_elems() const { return flat_elems_; }  // the flat buffers' length, >= table().total()
  float* params() { return params_; }             // (flat_elems()) fp32 master weights, device
  float* grads() { return grads_; }               // (flat_elems()) fp32, device
  __nv_bfloat16* params_bf16() { return params_bf16_; }  // (flat_elems()) the copy the GEMMs read
  cudaStream_t stream() const { return stream_; }
  std::map<std::string, size_t> memory() const;  // bytes by category, the arenas and the cuBLASLt workspace

 private:
  using bf16 = __nv_bfloat16;
  struct LayerActs {
    bf16* x_mid;             // (BT, C) residual after attention (x_in is the previous layer's x_out)
    bf16* n_attn;            // (BT, C) DyT_attn(x_in)
    bf16* qkv;               // (BT, Q + 2 KV) q and k after RoPE
    float* lse_attn;         // (B, Hq, T)
    bf16* att;               // (BT, Q) attention output, input of o_proj
    bf16* n_ffn;             // (BT, C) DyT_ffn(x_mid)
    bf16* gate_up;           // (BT, 2F)
    bf16* h;                 // (BT, F)
    float* rstd_attn;        // (BT) RMSNorm only
    float* rstd_ffn;
  };

  void plan_activation_buffers(cuda::ArenaPlanner& a, int B, int T);
  // y = norm(x). With residual not null, x (N, C) first becomes bf16(x + residual) in place, in the same kernel (the
  // residual add that tensor parallelism moves after the tp sum; llama_cuda_step.cpp).
  void norm_forward(bf16* y, float* rstd, bf16* x, const bf16* residual, const NormSiteOffsets& s, int site,
                    bool moments);
  // dresidual += dL/dx (accumulate) or dx = dL/dx (when accumulate is false).
  void norm_backward(bf16* dx, const bf16* dy, const bf16* x, const float* rstd, const NormSiteOffsets& s,
                     bool accumulate);
  // buf (n) summed over the tp group in place, in stream order (no-op without tensor parallelism).
  void tp_sum(bf16* buf, int64_t n);
  // Runs collective(tp) on the tp communicator's stream after the work queued on stream_, and orders stream_ after it.
  void on_tp_stream(const std::function<void(DeviceCommunicator&)>& collective);

  LlamaLayout layout_;
  DeviceCommunicator* tp_;  // nullptr without tensor parallelism
  cudaEvent_t tp_after_compute_ = nullptr, compute_after_tp_ = nullptr;
  GradsReady grads_ready_;
  cudaStream_t stream_;
  std::unique_ptr<cuda::Blas> blas_;

  int64_t flat_elems_;
  cuda::DeviceArena param_arena_;
  std::map<std::string, size_t> param_bytes_;
  float* params_ = nullptr;
  float* grads_ = nullptr;
  bf16* params_bf16_ = nullptr;
  float* one_ = nullptr;  // (1) the embedding scale of a model without model.embed_scale
  // Tensor parallelism: this rank's share of embed_scale's gradient, accumulated over micro-batches, and its tp sum.
  float* embed_scale_partial_ = nullptr, *embed_scale_sum_ = nullptr;

  // Per (B, T): activations, gradient scratch, the shared kernel workspace.
  int B_ = 0, T_ = 0;
  double calibrate_c_ = 0.0;  // > 0 only inside calibrate_alphas()
  cuda::DeviceArena act_arena_;
  std::map<std::string, size_t> act_bytes_;
  int32_t* inputs_ = nullptr;    // (BT)
  int32_t* targets_ = nullptr;   // (BT)
  int32_t* bucket_positions_ = nullptr, *bucket_rows_ = nullptr, *bucket_begins_ = nullptr;  // (BT), (BT), (BT + 1)
  int n_buckets_ = 0;
  float* rope_cos_ = nullptr, *rope_sin_ = nullptr;  // (T, D/2)
  std::vector<bf16*> x_;         // L + 1 residual buffers (BT, C): x_[i] enters layer i, x_[L] the final norm
  std::vector<LayerActs> acts_;
  bf16* n_final_ = nullptr;      // (BT, C)
  float* rstd_final_ = nullptr;  // (BT) RMSNorm only
  bf16* logits_ = nullptr;       // (BT, V); holds dlogits after backward starts
  float* losses_ = nullptr;      // (BT)
  float* lse_ce_ = nullptr;      // (BT)
  float* lse_parts_ = nullptr;   // (tp, BT) tensor parallelism: every rank's lse over its vocabulary rows
  float* target_logit_ = nullptr;  // (BT) tensor parallelism: the target's logit, summed over the tp group
  cpu::SiteMoments* moments_ = nullptr;  // (n sites)
  bf16* d_res_ = nullptr, *d_n_ = nullptr;  // (BT, C)
  bf16* d_att_ = nullptr;        // (BT, Q)
  bf16* d_qkv_ = nullptr;        // (BT, Q + 2 KV)
  bf16* d_h_ = nullptr;          // (BT, F)
  bf16* d_gate_up_ = nullptr;    // (BT, 2F)
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::vector<float> losses_host_;
  std::vector<int32_t> inputs_host_, targets_host_;
};

}  // namespace dytrain
