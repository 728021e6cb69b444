// Construction, parameter transfer, the memory plan and the norm site dispatch of the GPU model
// (forward and backward: llama_cuda_step.cpp).
#include "trainer/model/cuda/llama_cuda.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cpu/rope.h"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/cast.cuh"
#include "kernels/cuda/check.h"
#include "kernels/cuda/dyt.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/flash_attention.cuh"
#include "kernels/cuda/rmsnorm.cuh"

namespace dytrain {

LlamaModelCuda::LlamaModelCuda(const ModelConfig& cfg, cudaStream_t stream, int64_t flat_elems,
                               DeviceCommunicator* tp)
    : layout_(cfg, tp ? tp->rank() : 0, tp ? tp->size() : 1),
      tp_(tp),
      stream_(stream),
      blas_(std::make_unique<cuda::Blas>(stream)),
      flat_elems_(std::max(layout_.table.total(), flat_elems)) {
  if (!layout_.fused_qkv() || !layout_.fused_gate_up())
    throw std::invalid_argument(
        "the CUDA model multiplies q, k, v (and gate, up) in one GEMM, which needs each of those weight matrices to "
        "hold a multiple of " + std::to_string(kParamAlignElems) + " elements: choose model.dim and the head "
        "sizes as multiples of 8 (dim " + std::to_string(cfg.dim) + ", head_dim " + std::to_string(cfg.head_dim()) +
        ", ffn " + std::to_string(cfg.hidden_dim()) + ")");
  const int64_t n = flat_elems_;
  param_arena_ = cuda::allocate_planned(
      [&](cuda::ArenaPlanner& a) {
        a.take(&params_, n, "parameters (fp32)");
        a.take(&params_bf16_, n, "parameters (bf16 copy)");
        a.take(&grads_, n, "gradients (fp32)");
        a.take(&one_, 1, "parameters (fp32)");
        a.take(&embed_scale_partial_, tp_ ? 1 : 0, "gradients (fp32)");
        a.take(&embed_scale_sum_, tp_ ? 1 : 0, "gradients (fp32)");
      },
      &param_bytes_);
  if (tp_) {
    DYTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&tp_after_compute_, cudaEventDisableTiming));
    DYTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&compute_after_tp_, cudaEventDisableTiming));
  }
  const float one = 1.0f;
  DYTRAIN_CUDA_CHECK(cudaMemcpyAsync(one_, &one, sizeof(float), cudaMemcpyHostToDevice, stream_));
  DYTRAIN_CUDA_CHECK(cudaMemsetAsync(params_, 0, n * sizeof(float), stream_));
  DYTRAIN_CUDA_CHECK(cudaMemsetAsync(params_bf16_, 0, n * sizeof(bf16), stream_));
  zero_grad();
}

LlamaModelCuda::~LlamaModelCuda() {
  if (tp_after_compute_) cudaEventDestroy(tp_after_compute_);
  if (compute_after_tp_) cudaEventDestroy(compute_after_tp_);
}

void LlamaModelCuda::init(uint64_t seed) {
  std::vector<float> host(layout_.table.total());
  layout_.init(host.data(), seed);
  upload_params(host.data());
  zero_grad();
}

void LlamaModelCuda::upload_params(const float* host) {
  const int64_t n = layout_.table.total();
  DYTRAIN_CUDA_CHECK(cudaMemcpyAsync(params_, host, n * sizeof(float), cudaMemcpyHostToDevice, stream_));
  refresh_bf16_params();
  DYTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));  // host may be pageable and reused by the caller
}

void LlamaModelCuda::download_params(float* host) {
  DYTRAIN_CUDA_CHECK(
      cudaMemcpyAsync(host, params_, layout_.table.total() * sizeof(float), cudaMemcpyDeviceToHost, stream_));
  DYTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void LlamaModelCuda::zero_grad() {
  DYTRAIN_CUDA_CHECK(cudaMemsetAsync(grads_, 0, flat_elems_ * sizeof(float), stream_));
  if (tp_) DYTRAIN_CUDA_CHECK(cudaMemsetAsync(embed_scale_partial_, 0, sizeof(float), stream_));
}

void LlamaModelCuda::refresh_bf16_params() {
  cuda::f32_to_bf16(params_bf16_, params_, layout_.table.total(), stream_);
}

std::vector<float> LlamaModelCuda::site_alphas() {
  std::vector<float> alphas(n_norm_sites(layout_.cfg), 0.0f);
  for (size_t s = 0; s < alphas.size(); ++s) {
    const int64_t a = layout_.site(int(s)).alpha;
    if (a >= 0)
      DYTRAIN_CUDA_CHECK(cudaMemcpyAsync(&alphas[s], params_ + a, sizeof(float), cudaMemcpyDeviceToHost, stream_));
  }
  DYTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return alphas;
}

float LlamaModelCuda::embed_scale() {
  float scale = 0.0f;
  if (layout_.embed_scale < 0) return scale;
  DYTRAIN_CUDA_CHECK(
      cudaMemcpyAsync(&scale, params_ + layout_.embed_scale, sizeof(float), cudaMemcpyDeviceToHost, stream_));
  DYTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return scale;
}

std::vector<float> LlamaModelCuda::residual_stream(int i) {
  if (B_ == 0 || i < 0 || i > layout_.cfg.n_layers)
    throw std::out_of_range("LlamaModelCuda::residual_stream(" + std::to_string(i) + "): needs a forward first and " +
                            "0 <= i <= n_layers (" + std::to_string(layout_.cfg.n_layers) + ")");
  std::vector<bf16> raw(int64_t(B_) * T_ * layout_.cfg.dim);
  DYTRAIN_CUDA_CHECK(cudaMemcpyAsync(raw.data(), x_[i], raw.size() * sizeof(bf16), cudaMemcpyDeviceToHost, stream_));
  DYTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));
  std::vector<float> x(raw.size());
  for (size_t j = 0; j < raw.size(); ++j) x[j] = __bfloat162float(raw[j]);
  return x;
}

std::map<std::string, size_t> LlamaModelCuda::memory() const {
  std::map<std::string, size_t> bytes = param_bytes_;
  for (const auto& [category, b] : act_bytes_) bytes[category] += b;
  bytes["cuBLASLt workspace"] += cuda::Blas::kDefaultWorkspaceBytes;
  return bytes;
}

// Every buffer that depends on (B, T), listed once (device_arena.h runs this twice: sizes, then pointers).
void LlamaModelCuda::plan_activation_buffers(cuda::ArenaPlanner& a, int B, int T) {
  const ModelConfig& cfg = layout_.cfg;
  const int64_t BT = int64_t(B) * T, C = cfg.dim, F = layout_.hidden, D = cfg.head_dim(), V = layout_.vocab_rows;
  const int64_t Q = int64_t(layout_.heads) * D, KV = int64_t(layout_.kv_heads) * D, L = cfg.n_layers;
  const bool rms = cfg.norm == NormKind::rmsnorm;
  const std::string act = "activations (bf16)", stats = "activations (fp32 statistics)", grad = "gradient scratch",
                    io = "batch and tables", ws = "kernel workspace";
  a.take(&inputs_, BT, io);
  a.take(&targets_, BT, io);
  a.take(&bucket_positions_, BT, io);
  a.take(&bucket_rows_, BT, io);
  a.take(&bucket_begins_, BT + 1, io);
  a.take(&rope_cos_, int64_t(T) * D / 2, io);
  a.take(&rope_sin_, int64_t(T) * D / 2, io);
  x_.assign(L + 1, nullptr);
  for (bf16*& x : x_) a.take(&x, BT * C, act);
  acts_.assign(L, LayerActs{});
  for (LayerActs& l : acts_) {
    a.take(&l.x_mid, BT * C, act);
    a.take(&l.n_attn, BT * C, act);
    a.take(&l.qkv, BT * (Q + 2 * KV), act);
    a.take(&l.lse_attn, int64_t(B) * layout_.heads * T, stats);
    a.take(&l.att, BT * Q, act);
    a.take(&l.n_ffn, BT * C, act);
    a.take(&l.gate_up, BT * 2 * F, act);
    a.take(&l.h, BT * F, act);
    a.take(&l.rstd_attn, rms ? BT : 0, stats);
    a.take(&l.rstd_ffn, rms ? BT : 0, stats);
  }
  a.take(&n_final_, BT * C, act);
  a.take(&rstd_final_, rms ? BT : 0, stats);
  a.take(&logits_, BT * V, act);
  a.take(&losses_, BT, stats);
  a.take(&lse_ce_, BT, stats);
  a.take(&lse_parts_, tp_ ? BT * tp_->size() : 0, stats);
  a.take(&target_logit_, tp_ ? BT : 0, stats);
  a.take(&moments_, n_norm_sites(cfg), stats);
  a.take(&d_res_, BT * C, grad);
  a.take(&d_n_, BT * C, grad);
  a.take(&d_att_, BT * Q, grad);
  a.take(&d_qkv_, BT * (Q + 2 * KV), grad);
  a.take(&d_h_, BT * F, grad);
  a.take(&d_gate_up_, BT * 2 * F, grad);
  // One workspace for every kernel: they run one after another on one stream.
  const int Ci = int(C);
  workspace_bytes_ = std::max({cuda::dyt_forward_workspace_bytes(BT, Ci), cuda::dyt_backward_workspace_bytes(BT, Ci),
                               cuda::rmsnorm_forward_workspace_bytes(BT, Ci),
                               cuda::rmsnorm_backward_workspace_bytes(BT, Ci),
                               cuda::embedding_backward_workspace_bytes(BT, Ci),
                               cfg.attention == "flash"
                                   ? cuda::flash_attention_workspace_bytes(B, T, layout_.heads)
                                   : cuda::attention_workspace_bytes(B, T, layout_.heads, layout_.kv_heads, int(D))});
  char* w = nullptr;
  a.take(&w, int64_t(workspace_bytes_), ws);
  workspace_ = w;
}

void LlamaModelCuda::plan_activations(int B, int T) {
  if (B == B_ && T == T_) return;
  const ModelConfig& cfg = layout_.cfg;
  if (T > cfg.max_seq_len)
    throw std::invalid_argument("sequence length " + std::to_string(T) + " exceeds model.max_seq_len " +
                                std::to_string(cfg.max_seq_len));
  DYTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the old buffers may still be in use
  act_arena_ = cuda::DeviceArena();
  B_ = T_ = 0;  // until the new arena exists: a failed allocation must not leave the old shape pointing at freed memory
  act_arena_ = cuda::allocate_planned([&](cuda::ArenaPlanner& a) { plan_activation_buffers(a, B, T); }, &act_bytes_);
  B_ = B;
  T_ = T;
  const int D = cfg.head_dim();
  std::vector<float> cos(int64_t(T) * D / 2), sin(cos.size());
  cpu::rope_tables(cos.data(), sin.data(), T, D, cfg.rope_theta);
  DYTRAIN_CUDA_CHECK(cudaMemcpyAsync(rope_cos_, cos.data(), cos.size() * sizeof(float), cudaMemcpyHostToDevice, stream_));
  DYTRAIN_CUDA_CHECK(cudaMemcpyAsync(rope_sin_, sin.data(), sin.size() * sizeof(float), cudaMemcpyHostToDevice, stream_));
  DYTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));
  losses_host_.assign(int64_t(B) * T, 0.0f);
}

void LlamaModelCuda::calibrate_alphas(const int32_t* tokens, int B, int T, double c) {
  if (layout_.cfg.norm != NormKind::dyt) return;
  calibrate_c_ = c;
  forward(tokens, B, T, nullptr);
  calibrate_c_ = 0.0;
}

void LlamaModelCuda::norm_forward(bf16* y, float* rstd, bf16* x, const bf16* residual, const NormSiteOffsets& s,
                                  int site, bool moments) {
  const ModelConfig& cfg = layout_.cfg;
  const int64_t N = int64_t(B_) * T_;
  const int C = cfg.dim;
  float* P = params_;
  cpu::SiteMoments* m = moments ? moments_ + site : nullptr;
  // The *_residual_forward kernels take (in-place residual, branch); here x, the summed branch, is the in-place
  // operand and the old residual the other, on purpose: the sum is the same (one fp32 add, one rounding) and the
  // completed stream must land in x, which the backward pass reads, while the old residual stays intact.
  if (cfg.norm == NormKind::rmsnorm) {
    if (residual)
      cuda::rmsnorm_residual_forward(y, rstd, x, residual, P + s.weight, float(cfg.rms_eps), N, C, m, workspace_,
                                     workspace_bytes_, stream_);
    else
      cuda::rmsnorm_forward(y, rstd, x, P + s.weight, float(cfg.rms_eps), N, C, m, workspace_, workspace_bytes_,
                            stream_);
    return;
  }
  const float* beta = s.bias >= 0 ? P + s.bias : nullptr;
  if (calibrate_c_ > 0) {
    // alpha = c / std(x), measured by a forward pass into this site's (otherwise unused) moments slot; that pass
    // adds the residual, so x is complete for the one below.
    DYTRAIN_CUDA_CHECK(cudaMemsetAsync(moments_ + site, 0, sizeof(cpu::SiteMoments), stream_));
    if (residual)
      cuda::dyt_residual_forward(y, x, residual, P + s.alpha, P + s.weight, beta, N, C, moments_ + site, workspace_,
                                 workspace_bytes_, stream_);
    else
      cuda::dyt_forward(y, x, P + s.alpha, P + s.weight, beta, N, C, moments_ + site, workspace_, workspace_bytes_,
                        stream_);
    residual = nullptr;
    cpu::SiteMoments in;
    DYTRAIN_CUDA_CHECK(
        cudaMemcpyAsync(&in, moments_ + site, sizeof(in), cudaMemcpyDeviceToHost, stream_));
    DYTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));
    const double mean = in.sum / in.count, std = std::sqrt(std::max(0.0, in.sum_sq / in.count - mean * mean));
    if (std > 0) {
      const float alpha = float(calibrate_c_ / std);
      DYTRAIN_CUDA_CHECK(cudaMemcpyAsync(P + s.alpha, &alpha, sizeof(float), cudaMemcpyHostToDevice, stream_));
      DYTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
  }
  if (residual)
    cuda::dyt_residual_forward(y, x, residual, P + s.alpha, P + s.weight, beta, N, C, m, workspace_, workspace_bytes_,
                               stream_);
  else
    cuda::dyt_forward(y, x, P + s.alpha, P + s.weight, beta, N, C, m, workspace_, workspace_bytes_, stream_);
}

void LlamaModelCuda::norm_backward(bf16* dx, const bf16* dy, const bf16* x, const float* rstd,
                                   const NormSiteOffsets& s, bool accumulate) {
  const ModelConfig& cfg = layout_.cfg;
  const int64_t N = int64_t(B_) * T_;
  const int C = cfg.dim;
  const float* P = params_;
  float* G = grads_;
  if (cfg.norm == NormKind::rmsnorm) {
    auto fn = accumulate ? cuda::rmsnorm_residual_backward : cuda::rmsnorm_backward;
    fn(dx, G + s.weight, dy, x, P + s.weight, rstd, N, C, workspace_, workspace_bytes_, stream_);
    return;
  }
  float* dbeta = s.bias >= 0 ? G + s.bias : nullptr;
  auto fn = accumulate ? cuda::dyt_residual_backward : cuda::dyt_backward;
  fn(dx, G + s.alpha, G + s.weight, dbeta, dy, x, P + s.alpha, P + s.weight, N, C, workspace_, workspace_bytes_,
     stream_);
}

void LlamaModelCuda::on_tp_stream(const std::function<void(DeviceCommunicator&)>& collective) {
  DYTRAIN_CUDA_CHECK(cudaEventRecord(tp_after_compute_, stream_));
  DYTRAIN_CUDA_CHECK(cudaStreamWaitEvent(tp_->stream(), tp_after_compute_, 0));
  collective(*tp_);
  DYTRAIN_CUDA_CHECK(cudaEventRecord(compute_after_tp_, tp_->stream()));
  DYTRAIN_CUDA_CHECK(cudaStreamWaitEvent(stream_, compute_after_tp_, 0));
}

void LlamaModelCuda::tp_sum(bf16* buf, int64_t n) {
  if (tp_) on_tp_stream([&](DeviceCommunicator& tp) { tp.all_reduce_sum_bf16(buf, n); });
}

}  // namespace dytrain
