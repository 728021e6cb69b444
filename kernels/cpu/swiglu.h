// The SwiGLU gate of LLaMA's FFN: h = silu(gate) * up, silu(g) = g * sigmoid(g). The projections around it are
// ordinary linears (kernels/cpu/matmul.h).
#pragma once
#include <cstdint>

namespace dytrain::cpu {

// h (n) = silu(gate) * up, elementwise over n elements.
void swiglu_forward(float* h, const float* gate, const float* up, int64_t n);

// dgate (n) and dup (n) accumulate (+=).
void swiglu_backward(float* dgate, float* dup, const float* dh, const float* gate, const float* up, int64_t n);

}  // namespace dytrain::cpu
