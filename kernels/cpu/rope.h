// Rotary position embedding, rotate_half convention: within a head of size D, dimension i pairs with i + D/2,
//   out[i]       = x[i] * cos(t * f_i) - x[i + D/2] * sin(t * f_i)
//   out[i + D/2] = x[i + D/2] * cos(t * f_i) + x[i] * sin(t * f_i),      f_i = theta^(-2i / D), i < D/2.
#pragma once
#include <cstdint>

namespace dytrain::cpu {

// cos, sin (T, D/2): the angle tables for positions 0..T-1, computed in double then rounded.
void rope_tables(float* cos, float* sin, int T, int D, double theta);

// out (B, T, H, D) = rope(inp); in place (out == inp) is allowed.
void rope_forward(float* out, const float* inp, const float* cos, const float* sin, int B, int T, int H, int D);

// dinp (B, T, H, D) += rope^T(dout): the rotation by the negative angle.
void rope_backward(float* dinp, const float* dout, const float* cos, const float* sin, int B, int T, int H, int D);

}  // namespace dytrain::cpu
