// Causal grouped-query attention, the fp32 reference. Forward is parallel over (b, query head): each query row
// scores only keys 0..t (the masked part is never computed), takes a max-subtracted softmax with the sum in double,
// stores the row of probs (zeros above the diagonal) and mixes the values. Backward is parallel over
// (b, kv head) and walks the query heads of that group in order, because those heads all add into the same dk and
// dv rows; giving one thread the whole group avoids atomics and keeps every sum in a fixed order. All inner loops
// run over D, contiguous in the (B, T, H, D) layout; the dot products use `omp simd` reductions, whose lane order is
// fixed at compile time, so they vectorize without making results depend on the thread count.
#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace dytrain::cpu {

namespace {

void check_heads(int Hq, int Hkv, const char* fn) {
  if (Hq <= 0 || Hkv <= 0 || Hq % Hkv != 0) {
    throw std::invalid_argument(std::string("kernels/cpu/attention.cpp ") + fn + ": Hq = " + std::to_string(Hq) +
                                " must be a positive multiple of Hkv = " + std::to_string(Hkv) +
                                "; set num_key_value_heads to a divisor of num_attention_heads");
  }
}

}  // namespace

void attention_forward(float* out, float* probs, const float* q, const float* k, const float* v, int B, int T, int Hq,
                       int Hkv, int D) {
  check_heads(Hq, Hkv, "attention_forward");
  const int group = Hq / Hkv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int64_t q_stride = static_cast<int64_t>(Hq) * D;   // between consecutive t in q / out
  const int64_t kv_stride = static_cast<int64_t>(Hkv) * D;  // between consecutive t in k / v

#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < Hq; ++h) {
      const int hk = h / group;
      const float* qb = q + static_cast<int64_t>(b) * T * q_stride + static_cast<int64_t>(h) * D;
      const float* kb = k + static_cast<int64_t>(b) * T * kv_stride + static_cast<int64_t>(hk) * D;
      const float* vb = v + static_cast<int64_t>(b) * T * kv_stride + static_cast<int64_t>(hk) * D;
      float* ob = out + static_cast<int64_t>(b) * T * q_stride + static_cast<int64_t>(h) * D;
      float* pb = probs + (static_cast<int64_t>(b) * Hq + h) * T * T;  // (T, T)
      for (int t = 0; t < T; ++t) {
        const float* qt = qb + t * q_stride;
        float* p = pb + static_cast<int64_t>(t) * T;
        float mx = -INFINITY;
        for (int j = 0; j <= t; ++j) {
          const float* kj = kb + j * kv_stride;
          float s = 0.0f;
#pragma omp simd reduction(+ : s)
          for (int d = 0; d < D; ++d) s += qt[d] * kj[d];
          p[j] = s * scale;
          mx = std::max(mx, p[j]);
        }
        double sum = 0.0;
        for (int j = 0; j <= t; ++j) {
          p[j] = std::exp(p[j] - mx);
          sum += p[j];
        }
        const float inv = static_cast<float>(1.0 / sum);
        for (int j = 0; j <= t; ++j) p[j] *= inv;
        for (int j = t + 1; j < T; ++j) p[j] = 0.0f;

        float* ot = ob + t * q_stride;
        for (int d = 0; d < D; ++d) ot[d] = 0.0f;
        for (int j = 0; j <= t; ++j) {
          const float* vj = vb + j * kv_stride;
          const float pj = p[j];
          for (int d = 0; d < D; ++d) ot[d] += pj * vj[d];
        }
      }
    }
  }
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* probs, const float* q,
                        const float* k, const float* v, int B, int T, int Hq, int Hkv, int D) {
  check_heads(Hq, Hkv, "attention_backward");
  const int group = Hq / Hkv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int64_t q_stride = static_cast<int64_t>(Hq) * D;
  const int64_t kv_stride = static_cast<int64_t>(Hkv) * D;

#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; ++b) {
    for (int hk = 0; hk < Hkv; ++hk) {
      std::vector<float> ds(T);  // dL/dscore of one query row
      const int64_t kv_off = static_cast<int64_t>(b) * T * kv_stride + static_cast<int64_t>(hk) * D;
      const float* kb = k + kv_off;
      const float* vb = v + kv_off;
      float* dkb = dk + kv_off;
      float* dvb = dv + kv_off;
      for (int h = hk * group; h < (hk + 1) * group; ++h) {
        const int64_t q_off = static_cast<int64_t>(b) * T * q_stride + static_cast<int64_t>(h) * D;
        const float* pb = probs + (static_cast<int64_t>(b) * Hq + h) * T * T;
        for (int t = 0; t < T; ++t) {
          const float* qt = q + q_off + t * q_stride;
          const float* dot = dout + q_off + t * q_stride;
          float* dqt = dq + q_off + t * q_stride;
          const float* p = pb + static_cast<int64_t>(t) * T;
          // dp_j = dout_t . v_j;  ds_j = p_j (dp_j - sum_i p_i dp_i)
          double pdp = 0.0;
          for (int j = 0; j <= t; ++j) {
            const float* vj = vb + j * kv_stride;
            float dp = 0.0f;
#pragma omp simd reduction(+ : dp)
            for (int d = 0; d < D; ++d) dp += dot[d] * vj[d];
            ds[j] = dp;
            pdp += static_cast<double>(p[j]) * dp;
          }
          const float pdp_f = static_cast<float>(pdp);
          for (int j = 0; j <= t; ++j) {
            const float pj = p[j];
            const float dsj = pj * (ds[j] - pdp_f) * scale;
            const float* kj = kb + j * kv_stride;
            float* dkj = dkb + j * kv_stride;
            float* dvj = dvb + j * kv_stride;
            for (int d = 0; d < D; ++d) {
              dqt[d] += dsj * kj[d];
              dkj[d] += dsj * qt[d];
              dvj[d] += pj * dot[d];
            }
          }
        }
      }
    }
  }
}

}  // namespace dytrain::cpu
