#include "parallel/tp_mappings.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace dytrain {
namespace {

bool owns(int32_t token, int64_t begin, int64_t rows) { return token >= begin && token < begin + rows; }

}  // namespace

void vocab_parallel_embedding_forward(Communicator& tp, float* out, const int32_t* tokens, const float* table,
                                      float scale, int64_t vocab_begin, int64_t rows, int64_t N, int C) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    float* o = out + n * C;
    if (owns(tokens[n], vocab_begin, rows)) {
      const float* e = table + (tokens[n] - vocab_begin) * C;
      for (int c = 0; c < C; ++c) o[c] = scale * e[c];
    } else {
      std::fill(o, o + C, 0.0f);
    }
  }
  reduce_from_tp_region_forward(tp, out, N * C);
}

void vocab_parallel_embedding_backward(Communicator& tp, float* dtable, float* dscale,
                                       const float* dout, const int32_t* tokens, const float* table, float scale,
                                       int64_t vocab_begin, int64_t rows, int64_t N, int C) {
  reduce_from_tp_region_backward(tp, nullptr, 0);
  // Token order within each row of the table is kept (tokens in sequence), as in the single-rank op.
  for (int64_t n = 0; n < N; ++n) {
    if (!owns(tokens[n], vocab_begin, rows)) continue;
    float* d = dtable + (tokens[n] - vocab_begin) * C;
    const float* g = dout + n * C;
    for (int c = 0; c < C; ++c) d[c] += scale * g[c];
  }
  if (!dscale) return;
  // Per-row partial sums in double, in row order: deterministic, then one all-reduce of the scalar.
  double partial = 0.0;
  for (int64_t n = 0; n < N; ++n) {
    if (!owns(tokens[n], vocab_begin, rows)) continue;
    const float* e = table + (tokens[n] - vocab_begin) * C;
    const float* g = dout + n * C;
    double row = 0.0;
    for (int c = 0; c < C; ++c) row += double(g[c]) * e[c];
    partial += row;
  }
  tp.all_reduce(&partial, 1, ReduceOp::sum);
  *dscale += float(partial);
}

void vocab_parallel_cross_entropy_forward(Communicator& tp, float* losses, float* row_max, float* row_sum,
                                          const float* logits, const int32_t* targets, int64_t vocab_begin,
                                          int64_t cols, int64_t N) {
  std::vector<float> target_logit(N, 0.0f);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* l = logits + n * cols;
    row_max[n] = *std::max_element(l, l + cols);
    if (owns(targets[n], vocab_begin, cols)) target_logit[n] = l[targets[n] - vocab_begin];
  }
  tp.all_reduce(row_max, N, ReduceOp::max);
  std::vector<double> sum(N);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* l = logits + n * cols;
    double s = 0.0;
    for (int64_t v = 0; v < cols; ++v) s += std::exp(double(l[v]) - row_max[n]);
    sum[n] = s;
  }
  tp.all_reduce(sum.data(), N, ReduceOp::sum);
  tp.all_reduce(target_logit.data(), N, ReduceOp::sum);  // exactly one rank holds each target: the sum is a copy
  for (int64_t n = 0; n < N; ++n) {
    row_sum[n] = float(sum[n]);
    losses[n] = float(std::log(sum[n]) + row_max[n] - target_logit[n]);
  }
}

void vocab_parallel_cross_entropy_backward(float* dlogits, const float* logits, const float* row_max,
                                           const float* row_sum, const int32_t* targets, float dloss,
                                           int64_t vocab_begin, int64_t cols, int64_t N) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* l = logits + n * cols;
    float* d = dlogits + n * cols;
    const double inv_sum = 1.0 / row_sum[n];
    for (int64_t v = 0; v < cols; ++v) d[v] = float(dloss * (std::exp(double(l[v]) - row_max[n]) * inv_sum));
    if (owns(targets[n], vocab_begin, cols)) d[targets[n] - vocab_begin] -= dloss;
  }
}

}  // namespace dytrain
