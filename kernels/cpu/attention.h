// Causal scaled dot-product attention with grouped-query heads: query head h reads key/value head
// h / (Hq / Hkv). The reference materializes the (T, T) probabilities per head and keeps them for backward.
#pragma once
#include <cstdint>

namespace dytrain::cpu {

// q (B, T, Hq, D), k and v (B, T, Hkv, D), Hkv divides Hq.
// out (B, T, Hq, D) = softmax(q k^T / sqrt(D) + causal mask) v; probs (B, Hq, T, T) saved (zeros above the diagonal).
void attention_forward(float* out, float* probs, const float* q, const float* k, const float* v, int B, int T, int Hq,
                       int Hkv, int D);

// Backward of attention_forward; dq, dk, dv (shapes of q, k, v) accumulate (+=).
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* probs, const float* q,
                        const float* k, const float* v, int B, int T, int Hq, int Hkv, int D);

}  // namespace dytrain::cpu
