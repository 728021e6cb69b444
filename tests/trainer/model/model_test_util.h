// The small models and token batches the CPU and GPU model tests share.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "trainer/config/config.h"

namespace dytrain::testing {

// 2 layers, 4 query heads, the paper's separate alpha0 per site (1.0 attn, 0.5 ffn, 0.7 final). A fixed init of std
// 0.2, larger than LLaMA's 0.02, so every branch contributes visibly to the loss and its gradient (the width-aware
// default would scale it by sqrt(4096 / fan_in), ~16x at width 16, and saturate everything).
inline ModelConfig tiny_model(NormKind norm, bool bias, bool tie, int kv_heads) {
  ModelConfig m;
  m.vocab_size = 37;
  m.dim = 16;
  m.n_layers = 2;
  m.n_heads = 4;
  m.n_kv_heads = kv_heads;
  m.ffn_dim = 24;
  m.max_seq_len = 16;
  m.norm = norm;
  m.dyt_bias = bias;
  m.tie_embeddings = tie;
  m.alpha_attn = 1.0;
  m.alpha_ffn = 0.5;
  m.alpha_final = 0.7;
  m.init = "fixed";
  m.init_std = 0.2;
  return m;
}

// tiny_model widened to sizes the GPU model's fused layout takes (q/k/v and gate/up blocks of 64-element multiples,
// also per rank for tp 2 and 4), for the GPU model's tests.
inline ModelConfig gpu_model(NormKind norm, bool bias, bool tie, int kv_heads, int64_t vocab_size) {
  ModelConfig m = tiny_model(norm, bias, tie, kv_heads);
  m.vocab_size = vocab_size;
  m.dim = 64;
  m.ffn_dim = 128;
  m.max_seq_len = 64;
  m.init_std = 0.1;
  return m;
}

// ||a - b|| / ||b|| over one tensor (a GPU tensor against its CPU reference).
inline double relative_l2(const float* a, const float* b, int64_t n) {
  double diff = 0.0, ref = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    ref += double(b[i]) * b[i];
  }
  return std::sqrt(diff / std::max(ref, 1e-30));
}

// tokens (B, T+1) uniform over [0, V).
inline std::vector<int32_t> random_tokens(int B, int T, int V, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(size_t(B) * (T + 1));
  for (auto& x : t) x = int32_t(rng() % V);
  return t;
}

}  // namespace dytrain::testing
