// Rotary position embedding, rotate_half convention (dimension i pairs with i + D/2, as in Hugging Face LLaMA).
// The angle tables are computed in double and rounded once, so every backend can share them bit for bit. The
// rotation of each pair reads both inputs before writing, which makes in-place use safe; backward rotates by the
// negative angle (the transpose of a rotation) and accumulates.
#include "kernels/cpu/rope.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace dytrain::cpu {

namespace {

void check_head_dim(int D, const char* fn) {
  if (D <= 0 || D % 2 != 0) {
    throw std::invalid_argument(std::string("kernels/cpu/rope.cpp ") + fn + ": head_dim = " + std::to_string(D) +
                                " must be positive and even; choose hidden_size / num_attention_heads even");
  }
}

}  // namespace

void rope_tables(float* cos, float* sin, int T, int D, double theta) {
  check_head_dim(D, "rope_tables");
  const int half = D / 2;
  for (int t = 0; t < T; ++t) {
    for (int i = 0; i < half; ++i) {
      const double freq = std::pow(theta, -2.0 * i / D);
      const double angle = static_cast<double>(t) * freq;
      cos[static_cast<int64_t>(t) * half + i] = static_cast<float>(std::cos(angle));
      sin[static_cast<int64_t>(t) * half + i] = static_cast<float>(std::sin(angle));
    }
  }
}

void rope_forward(float* out, const float* inp, const float* cos, const float* sin, int B, int T, int H, int D) {
  check_head_dim(D, "rope_forward");
  const int half = D / 2;
  const int64_t rows = static_cast<int64_t>(B) * T;
#pragma omp parallel for schedule(static)
  for (int64_t bt = 0; bt < rows; ++bt) {
    const int64_t t = bt % T;
    const float* c = cos + t * half;
    const float* s = sin + t * half;
    for (int h = 0; h < H; ++h) {
      const float* x = inp + (bt * H + h) * D;
      float* y = out + (bt * H + h) * D;
      for (int i = 0; i < half; ++i) {
        const float x1 = x[i], x2 = x[i + half];
        y[i] = x1 * c[i] - x2 * s[i];
        y[i + half] = x2 * c[i] + x1 * s[i];
      }
    }
  }
}

void rope_backward(float* dinp, const float* dout, const float* cos, const float* sin, int B, int T, int H, int D) {
  check_head_dim(D, "rope_backward");
  const int half = D / 2;
  const int64_t rows = static_cast<int64_t>(B) * T;
#pragma omp parallel for schedule(static)
  for (int64_t bt = 0; bt < rows; ++bt) {
    const int64_t t = bt % T;
    const float* c = cos + t * half;
    const float* s = sin + t * half;
    for (int h = 0; h < H; ++h) {
      const float* g = dout + (bt * H + h) * D;
      float* dx = dinp + (bt * H + h) * D;
      for (int i = 0; i < half; ++i) {
        const float g1 = g[i], g2 = g[i + half];
        dx[i] += g1 * c[i] + g2 * s[i];
        dx[i + half] += g2 * c[i] - g1 * s[i];
      }
    }
  }
}

}  // namespace dytrain::cpu
