// Construction, initialisation (layout.h) and the norm site dispatch shared by forward and backward (llama_step.cpp).
#include "trainer/model/llama.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cpu/rmsnorm.h"

namespace dytrain {

LlamaModel::LlamaModel(const ModelConfig& cfg, Communicator* tp)
    : cfg_(cfg),
      own_tp_(tp ? nullptr : make_self_communicator()),
      tp_(tp ? tp : own_tp_.get()),
      tp_rank_(tp_->rank()),
      tp_size_(tp_->size()),
      layout_(cfg, tp_rank_, tp_size_) {
  params_.assign(layout_.table.total(), 0.0f);
  grads_.assign(layout_.table.total(), 0.0f);
}

void LlamaModel::init(uint64_t seed) {
  layout_.init(params_.data(), seed);
  zero_grad();
}

void LlamaModel::zero_grad() { std::fill(grads_.begin(), grads_.end(), 0.0f); }

float LlamaModel::site_alpha(int site) const {
  const int64_t alpha = layout_.site(site).alpha;
  return alpha >= 0 ? params_[alpha] : 0.0f;
}

void LlamaModel::calibrate_alphas(const int32_t* tokens, int B, int T, double c) {
  if (cfg_.norm != NormKind::dyt) return;
  calibrate_c_ = c;
  forward(tokens, B, T, nullptr);
  calibrate_c_ = 0.0;
}

void LlamaModel::norm_forward(float* y, float* rstd, const float* x, const NormSiteOffsets& s, int64_t N,
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

void LlamaModel::norm_backward(float* dx, const float* dy, const float* x, const float* rstd, const NormSiteOffsets& s,
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
