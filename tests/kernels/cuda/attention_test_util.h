// Shared by the CUDA attention tests (test_attention.cpp: the materialized path, test_flash_attention.cpp: the
// flash kernels): the cases, the fp32 CPU reference, a naive bf16 attention, the lse reference, and the comparison
// of a GPU result with them.
//
// Tolerances.
// - out, dq, dk, dv: flash-attention's rule. A straightforward bf16 implementation (naive_bf16_attention: every
//   materialized tensor S, P, O, dP, dS and every gradient rounded to bf16, sums in double) is run on the host, and
//   the kernel's largest error against the fp32 CPU op may be at most 3x that implementation's largest error, plus
//   1/16 bf16 ulp of the largest reference value (margin for a small tensor on which the naive error is small by
//   luck). 3x rather than flash-attention's 2x: the maxima over the small shapes here (a few hundred elements) vary
//   more than over theirs. The kernel keeps the scores in fp32, so it is usually more accurate than the naive one;
//   a wrong index or mask gives errors of the size of the values themselves.
// - dq and dk also get a floor for fp32 cancellation: where the exact dS is 0 (T = 1, every row's first key), the
//   kernel's dP - delta is the difference of two fp32 dot products over D terms of size at most |dout| |v|, which
//   differ by at most 2 D 2^-24 D max|dout| max|v|. The floor 2^-16 D max|dout| max|v| scale max|k| (x rep, max|q|
//   for dk) is 2^7 / D times that worst case (16x at the T = 1 shape's D = 8); in every other shape it is under a
//   tenth of the 3x naive term.
// - lse (fp32) against double: the scores' fp32 GEMM accumulation, D 2^-22 scale max_j sum_d |q_d k_jd| (D
//   roundings of the sum of |terms|, x4 for the tensor cores' accumulation order), + (T + 64) 2^-24 for the running
//   sum of up to T exponentials and expf / logf, + 2^-22 |lse| for the final add and the scale.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "kernels/cpu/attention.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace dytrain::test {

inline constexpr float kPad = 7.0f;  // value of the padding columns of the qkv buffers; must survive every call

struct AttnShape {
  int B, T, Hq, Hkv, D;
};

inline void PrintTo(const AttnShape& s, std::ostream* os) {
  *os << "B=" << s.B << " T=" << s.T << " Hq=" << s.Hq << " Hkv=" << s.Hkv << " D=" << s.D;
}

inline std::string attn_shape_name(const testing::TestParamInfo<AttnShape>& info) {
  const AttnShape& s = info.param;
  return "B" + std::to_string(s.B) + "_T" + std::to_string(s.T) + "_Hq" + std::to_string(s.Hq) + "_Hkv" +
         std::to_string(s.Hkv) + "_D" + std::to_string(s.D);
}

// Inputs of one case: dense q (B, T, Hq, D), k, v (B, T, Hkv, D), dout (B, T, Hq, D), all bf16 values, and the packed
// qkv (B*T, ld) buffer holding q, k, v side by side, ld 8 elements wider than they need (padding = kPad).
struct AttnCase {
  AttnShape s;
  int64_t ld;
  std::vector<float> q, k, v, dout, qkv;

  explicit AttnCase(const AttnShape& shape) : s(shape) {
    const size_t rows = static_cast<size_t>(s.B) * s.T;
    const int q_cols = s.Hq * s.D;
    const int kv_cols = s.Hkv * s.D;
    ld = q_cols + 2 * kv_cols + 8;
    // Scores q.k / sqrt(D) with a standard deviation of 4/3: peaked enough that the max subtraction matters.
    q = random_bf16_values(rows * q_cols, 11, -2.0f, 2.0f);
    k = random_bf16_values(rows * kv_cols, 12, -2.0f, 2.0f);
    v = random_bf16_values(rows * kv_cols, 13, -1.0f, 1.0f);
    dout = random_bf16_values(rows * q_cols, 14, -1.0f, 1.0f);
    qkv.assign(rows * ld, kPad);
    for (size_t r = 0; r < rows; ++r) {
      std::copy_n(&q[r * q_cols], q_cols, &qkv[r * ld]);
      std::copy_n(&k[r * kv_cols], kv_cols, &qkv[r * ld + q_cols]);
      std::copy_n(&v[r * kv_cols], kv_cols, &qkv[r * ld + q_cols + kv_cols]);
    }
  }
  float scale() const { return 1.0f / std::sqrt(static_cast<float>(s.D)); }
};

// Columns [col, col + width) of the (rows, ld) buffer, as a dense (rows, width) array.
inline std::vector<float> columns(const std::vector<float>& buffer, int64_t ld, int64_t col, int64_t width) {
  const size_t rows = buffer.size() / ld;
  std::vector<float> out(rows * width);
  for (size_t r = 0; r < rows; ++r) std::copy_n(&buffer[r * ld + col], width, &out[r * width]);
  return out;
}

struct Grads {
  std::vector<float> out, dq, dk, dv;
};

// The fp32 reference: the CPU op (its backward accumulates, so the gradients start at 0).
inline Grads cpu_reference(const AttnCase& c) {
  const AttnShape& s = c.s;
  Grads r;
  r.out.assign(c.q.size(), 0.0f);
  std::vector<float> probs(static_cast<size_t>(s.B) * s.Hq * s.T * s.T);
  cpu::attention_forward(r.out.data(), probs.data(), c.q.data(), c.k.data(), c.v.data(), s.B, s.T, s.Hq, s.Hkv, s.D);
  r.dq.assign(c.q.size(), 0.0f);
  r.dk.assign(c.k.size(), 0.0f);
  r.dv.assign(c.v.size(), 0.0f);
  cpu::attention_backward(r.dq.data(), r.dk.data(), r.dv.data(), c.dout.data(), probs.data(), c.q.data(), c.k.data(),
                          c.v.data(), s.B, s.T, s.Hq, s.Hkv, s.D);
  return r;
}

inline double dot(const float* a, const float* b, int n) {
  double s = 0.0;
  for (int i = 0; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// A straightforward bf16 attention, as a framework's eager math path computes it: S = bf16(scale q k^T),
// P = bf16(softmax(S)), out = bf16(P v); dP = bf16(dout v^T), dS = bf16(P (dP - rowsum(P dP)) scale),
// dq = bf16(dS k), dk = bf16(dS^T q), dv = bf16(P^T dout). Sums in double, so the bf16 roundings are its only errors.
inline Grads naive_bf16_attention(const AttnCase& c) {
  const AttnShape& s = c.s;
  const int rep = s.Hq / s.Hkv;
  const int64_t qs = static_cast<int64_t>(s.Hq) * s.D;   // token stride of q, dout, out
  const int64_t kvs = static_cast<int64_t>(s.Hkv) * s.D;  // token stride of k, v
  const double scale = c.scale();
  Grads r;
  r.out.assign(c.q.size(), 0.0f);
  r.dq.assign(c.q.size(), 0.0f);
  std::vector<double> dk(c.k.size(), 0.0), dv(c.v.size(), 0.0);
  std::vector<double> P(static_cast<size_t>(s.T) * s.T), dS(static_cast<size_t>(s.T) * s.T);
  for (int b = 0; b < s.B; ++b) {
    for (int h = 0; h < s.Hq; ++h) {
      const int hk = h / rep;
      auto qrow = [&](int t) { return &c.q[(static_cast<int64_t>(b) * s.T + t) * qs + h * s.D]; };
      auto dorow = [&](int t) { return &c.dout[(static_cast<int64_t>(b) * s.T + t) * qs + h * s.D]; };
      auto krow = [&](int j) { return &c.k[(static_cast<int64_t>(b) * s.T + j) * kvs + hk * s.D]; };
      auto vrow = [&](int j) { return &c.v[(static_cast<int64_t>(b) * s.T + j) * kvs + hk * s.D]; };
      const int64_t out_at = static_cast<int64_t>(b) * s.T * qs + h * s.D;
      const int64_t kv_at = static_cast<int64_t>(b) * s.T * kvs + hk * s.D;
      for (int t = 0; t < s.T; ++t) {
        double* p = &P[static_cast<size_t>(t) * s.T];
        double mx = -INFINITY;
        for (int j = 0; j <= t; ++j) {
          p[j] = round_bf16(static_cast<float>(scale * dot(qrow(t), krow(j), s.D)));
          mx = std::max(mx, p[j]);
        }
        double sum = 0.0;
        for (int j = 0; j <= t; ++j) sum += std::exp(p[j] - mx);
        for (int j = 0; j <= t; ++j) p[j] = round_bf16(static_cast<float>(std::exp(p[j] - mx) / sum));
        std::vector<double> o(s.D, 0.0);
        for (int j = 0; j <= t; ++j) {
          for (int d = 0; d < s.D; ++d) o[d] += p[j] * vrow(j)[d];
        }
        for (int d = 0; d < s.D; ++d) r.out[out_at + t * qs + d] = round_bf16(static_cast<float>(o[d]));

        double* ds = &dS[static_cast<size_t>(t) * s.T];
        double p_dp = 0.0;
        for (int j = 0; j <= t; ++j) {
          ds[j] = round_bf16(static_cast<float>(dot(dorow(t), vrow(j), s.D)));  // dP
          p_dp += p[j] * ds[j];
        }
        for (int j = 0; j <= t; ++j) ds[j] = round_bf16(static_cast<float>(p[j] * (ds[j] - p_dp) * scale));
        std::vector<double> g(s.D, 0.0);
        for (int j = 0; j <= t; ++j) {
          for (int d = 0; d < s.D; ++d) {
            g[d] += ds[j] * krow(j)[d];
            dk[kv_at + j * kvs + d] += ds[j] * qrow(t)[d];
            dv[kv_at + j * kvs + d] += p[j] * dorow(t)[d];
          }
        }
        for (int d = 0; d < s.D; ++d) r.dq[out_at + t * qs + d] = round_bf16(static_cast<float>(g[d]));
      }
    }
  }
  r.dk.resize(dk.size());
  r.dv.resize(dv.size());
  for (size_t i = 0; i < dk.size(); ++i) r.dk[i] = round_bf16(static_cast<float>(dk[i]));
  for (size_t i = 0; i < dv.size(); ++i) r.dv[i] = round_bf16(static_cast<float>(dv[i]));
  return r;
}

// lse (B, Hq, T) in double and, per row, the lse tolerance of the header comment.
struct LseReference {
  std::vector<double> lse, tol;
};

inline LseReference lse_reference(const AttnCase& c) {
  const AttnShape& s = c.s;
  const int rep = s.Hq / s.Hkv;
  const double scale = c.scale();
  LseReference r;
  r.lse.resize(static_cast<size_t>(s.B) * s.Hq * s.T);
  r.tol.resize(r.lse.size());
  for (int b = 0; b < s.B; ++b) {
    for (int h = 0; h < s.Hq; ++h) {
      for (int t = 0; t < s.T; ++t) {
        const float* qt = &c.q[((static_cast<int64_t>(b) * s.T + t) * s.Hq + h) * s.D];
        std::vector<double> sc(t + 1);
        double mx = -INFINITY, abs_terms = 0.0;
        for (int j = 0; j <= t; ++j) {
          const float* kj = &c.k[((static_cast<int64_t>(b) * s.T + j) * s.Hkv + h / rep) * s.D];
          double a = 0.0;
          for (int d = 0; d < s.D; ++d) a += std::fabs(static_cast<double>(qt[d]) * kj[d]);
          abs_terms = std::max(abs_terms, a);
          sc[j] = scale * dot(qt, kj, s.D);
          mx = std::max(mx, sc[j]);
        }
        double sum = 0.0;
        for (int j = 0; j <= t; ++j) sum += std::exp(sc[j] - mx);
        const size_t i = (static_cast<size_t>(b) * s.Hq + h) * s.T + t;
        r.lse[i] = mx + std::log(sum);
        r.tol[i] = s.D * 0x1p-22 * scale * abs_terms + (s.T + 64) * 0x1p-24 + 0x1p-22 * std::fabs(r.lse[i]);
      }
    }
  }
  return r;
}

// What the GPU returns: out (B, T, Hq, D), lse (B, Hq, T) and the (B*T, ld) d_qkv buffer holding dq, dk, dv.
struct GpuResult {
  std::vector<float> out, lse, dqkv;
  std::vector<uint16_t> out_bits, dqkv_bits;
};

inline double max_abs(const std::vector<float>& a) {
  double m = 0.0;
  for (float x : a) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}

// max |a - b|, infinite when any difference is NaN.
inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double e = std::fabs(static_cast<double>(a[i]) - b[i]);
    if (!(e <= m)) m = std::isnan(e) ? std::numeric_limits<double>::infinity() : e;
  }
  return m;
}

// The flash-attention rule of the header comment; floor: the fp32 cancellation term (0 where there is none).
inline void expect_within_naive_bound(const std::vector<float>& got, const std::vector<float>& ref,
                               const std::vector<float>& naive, double floor, const std::string& name) {
  ASSERT_EQ(got.size(), ref.size()) << name;
  const double err = max_abs_diff(got, ref);
  const double naive_err = max_abs_diff(naive, ref);
  const double tol = 3.0 * naive_err + bf16_ulp(max_abs(ref)) / 16.0 + floor;
  EXPECT_LE(err, tol) << name << ": max |error| " << err << " against the fp32 CPU op; the naive bf16 version's is "
                      << naive_err;
}

// The comparisons of the header comment: out, dq, dk, dv against the CPU op within the naive bf16 bound, the
// d_qkv padding untouched, lse against double precision.
inline void expect_matches_cpu(const AttnCase& c, const GpuResult& g) {
  const AttnShape& s = c.s;
  const int rep = s.Hq / s.Hkv;
  const int64_t q_cols = static_cast<int64_t>(s.Hq) * s.D;
  const int64_t kv_cols = static_cast<int64_t>(s.Hkv) * s.D;
  const Grads ref = cpu_reference(c);
  const Grads naive = naive_bf16_attention(c);

  const double dsd = 0x1p-16 * s.D * max_abs(c.dout) * max_abs(c.v) * c.scale();
  expect_within_naive_bound(g.out, ref.out, naive.out, 0.0, "out");
  expect_within_naive_bound(columns(g.dqkv, c.ld, 0, q_cols), ref.dq, naive.dq, dsd * max_abs(c.k), "dq");
  expect_within_naive_bound(columns(g.dqkv, c.ld, q_cols, kv_cols), ref.dk, naive.dk, dsd * max_abs(c.q) * rep, "dk");
  expect_within_naive_bound(columns(g.dqkv, c.ld, q_cols + kv_cols, kv_cols), ref.dv, naive.dv, 0.0, "dv");

  const int64_t used = q_cols + 2 * kv_cols;
  size_t pad_changed = 0;
  for (size_t i = 0; i < g.dqkv.size(); ++i) pad_changed += static_cast<int64_t>(i % c.ld) >= used && g.dqkv[i] != kPad;
  EXPECT_EQ(pad_changed, 0u) << "the d_qkv padding columns beyond (Hq + 2 Hkv) * D were written";

  const LseReference lse = lse_reference(c);
  std::vector<float> lse_want(lse.lse.begin(), lse.lse.end());
  expect_each_near(g.lse, lse_want, lse.tol, "lse");
}

}  // namespace dytrain::test
