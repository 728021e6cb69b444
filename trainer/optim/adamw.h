// AdamW over the parameter table, with per-group settings (OptimConfig: matrices, embeddings, dyt_alpha,
// dyt_gamma_beta, embed_scale each switch weight decay and may override the peak lr and beta2 — beta2 is a control
// this project studies). Moments are fp32 buffers laid out like the parameters, so checkpoints store them by name.
#pragma once
#include <cstdint>
#include <vector>

#include "trainer/config/config.h"
#include "trainer/model/params.h"

namespace dytrain {

struct GroupHyper {
  double lr;           // peak lr of the group
  double beta2;
  double weight_decay;
};

// The resolved settings of a group: its overrides, else the optimizer's defaults.
GroupHyper group_hyper(const OptimConfig& opt, ParamGroup g);

class AdamW {
 public:
  // Updates the flat range [begin, end) of the parameters (end -1: to the end); with ZeRO-1 each data-parallel rank
  // owns one range and the moments are sized to it.
  AdamW(const OptimConfig& opt, const ParamTable& table, int64_t begin = 0, int64_t end = -1);

  // One update of the range: lr = group peak lr * lr_factor; grads are multiplied by grad_scale (clipping).
  // params: the whole flat buffer; grads: the range only (grads[0] is element begin).
  void step(float* params, const float* grads, double lr_factor, float grad_scale);

  int64_t t() const { return t_; }  // updates done so far
  void set_t(int64_t t) { t_ = t; }
  std::vector<float>& exp_avg() { return m_; }      // (end - begin)
  std::vector<float>& exp_avg_sq() { return v_; }   // (end - begin)
  int64_t begin() const { return begin_; }
  int64_t end() const { return end_; }

 private:
  OptimConfig opt_;
  const ParamTable& table_;
  int64_t begin_, end_;
  std::vector<float> m_, v_;
  int64_t t_ = 0;
};

// The factor that brings the global gradient norm down to max_norm (1 when it is below, or max_norm is 0).
float clip_scale(double grad_norm, double max_norm);

}  // namespace dytrain
