// Cross-entropy forward and backward kernels (cross_entropy.cuh): kernel -> launcher -> entry point.
//
// Layout. One block of 512 threads per row (blocks stride over rows when N exceeds the grid). With V up to ~256K a row
// is up to 512 KB of bf16, so a whole block per row keeps the row's reduction inside one block and needs no
// workspace. Rows of a ragged V (50257: GPT-2) start off a 16-byte boundary, so each row is split into a scalar head
// up to the first boundary, 16-byte vectors of 8 logits, and a scalar tail: at most 7 + 7 elements, one per thread.
//
// Forward. Each thread keeps a running (max, sum of exp(x - max)) over its elements; a vector first takes its own max
// and the sum of its 8 exponentials, then merges into the running pair, rescaling the smaller side by exp(difference):
// 9 exponentials per 8 logits, and no exponent ever sees a positive argument, so logits of any size are safe. Pairs
// are merged across the warp by xor shuffles, then across the 16 warps by warp 0, in a fixed order. The loss is
// (max - logit[target]) + log(sum) rather than lse - logit[target]: the first term is exact (bf16 logits within 2^15 of
// each other; 0 when the target is the max), so when the target holds almost all the mass (a loss near 0) the error
// is that of log(sum), a few fp32 ulps of 1, instead of the ulp of lse (1e-6 at lse ~ 10) that subtracting two nearly
// equal lse-sized numbers would leave.
//
// Backward. Elementwise given the lse: p = exp(x - lse), d = dloss * p, except at the target, where dloss * (p - 1)
// would cancel (cross_entropy_math.h): with whole rows the block sums the other columns' probabilities (1 - p_target)
// and one thread writes the target's gradient from that sum after a barrier; a vocabulary-parallel part, which does
// not see the other columns, uses dloss * expm1(x - lse). Each element is read before it is written, by the same
// thread (the target's final value needs no read), which is what makes dlogits == logits safe.
//
// Masked logits. A vector of eight -inf logits (a vocabulary padded with masked columns) is an empty pair in the
// forward, not exp(-inf - -inf) = NaN; its probabilities and gradients are 0. A row with no finite logit at all has no
// distribution: its loss is NaN, as the CPU op's.
//
// Vocabulary parallelism. A rank's logits are the columns [vocab_begin, vocab_begin + V) of the full rows; the forward
// kernel then also reports the target's logit (0 where another rank holds the target), the ranks' lse parts are
// gathered, and a combine kernel takes the log-sum-exp of the parts in rank order, one thread per row, so the result
// is the same bits on every rank. The backward takes the combined lse and the same offset. The combined loss is
// lse - logit[target]: the subtraction the single-rank path avoids, an ulp of lse (1e-6 at lse ~ 10) of error.
//
// expf (2 ulp), not __expf: the fast one's error grows with |argument|, and the arguments here reach -160 for +-80
// logits; the difference in cost is a few FMAs per element of a memory-bound kernel.
#include "kernels/cuda/cross_entropy.cuh"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/cross_entropy_math.h"
#include "kernels/cuda/norm_rows.cuh"

namespace dytrain::cuda {
namespace {

using detail::bf16;
using detail::Bf16Vec;
using detail::load_bf16;
using detail::store_bf16;

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
using ce_math::kVec;
using ce_math::MaxSum;
using ce_math::merge;
constexpr int64_t kMaxGrid = 1 << 16;  // rows beyond this are strided over by the blocks

__device__ __forceinline__ MaxSum warp_merge(MaxSum v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const MaxSum other{__shfl_xor_sync(0xffffffffu, v.max, offset), __shfl_xor_sync(0xffffffffu, v.sum, offset)};
    v = merge(v, other);
  }
  return v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// A row as [0, head) scalar, [head, tail) in 16-byte vectors, [tail, V) scalar; head, V - tail <= 7.
struct RowSplit {
  int head;
  int vectors;
  int tail;
};

__device__ __forceinline__ RowSplit split_row(const bf16* row, int V) {
  const int past_boundary = static_cast<int>(reinterpret_cast<uintptr_t>(row) % 16 / sizeof(bf16));
  const int head = min(V, (kVec - past_boundary) % kVec);
  const int vectors = (V - head) / kVec;
  return {head, vectors, head + vectors * kVec};
}

// losses (N) or nullptr, lse (N), target_logit (N) or nullptr; logits (N, V), the columns from vocab_begin; targets (N).
// A target outside these columns counts as a logit of 0 (only a vocabulary-parallel rank sees one).
__global__ void __launch_bounds__(kThreads)
    cross_entropy_forward_kernel(float* __restrict__ losses, float* __restrict__ lse,
                                 float* __restrict__ target_logit, const bf16* __restrict__ logits,
                                 const int32_t* __restrict__ targets, int64_t vocab_begin, int64_t N, int V) {
  __shared__ MaxSum warp_pairs[kWarps];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const bf16* x = logits + n * V;
    const RowSplit s = split_row(x, V);
    MaxSum acc{-INFINITY, 0.0f};
    const int t = threadIdx.x;
    if (t < s.head) acc = merge(acc, {__bfloat162float(x[t]), 1.0f});
    if (t < V - s.tail) acc = merge(acc, {__bfloat162float(x[s.tail + t]), 1.0f});
    for (int v = t; v < s.vectors; v += kThreads) {
      const Bf16Vec<kVec> xv = load_bf16<kVec>(x + s.head + v * kVec);
      float xf[kVec];
#pragma unroll
      for (int e = 0; e < kVec; ++e) xf[e] = __bfloat162float(xv.e[e]);
      acc = merge(acc, ce_math::vector_max_sum(xf));
    }
    acc = warp_merge(acc);
    if (lane == 0) warp_pairs[warp] = acc;
    __syncthreads();
    if (warp == 0) {
      acc = warp_merge(lane < kWarps ? warp_pairs[lane] : MaxSum{-INFINITY, 0.0f});
      if (lane == 0) {
        const float log_sum = logf(acc.sum);
        const int64_t target = targets[n] - vocab_begin;
        const float x_target = target >= 0 && target < V ? __bfloat162float(x[target]) : 0.0f;
        lse[n] = acc.max + log_sum;
        if (losses) losses[n] = (acc.max - x_target) + log_sum;
        if (target_logit) target_logit[n] = x_target;
      }
    }
    __syncthreads();  // warp_pairs is written again for the next row
  }
}

// The gradient of one logit i of a row; p = its probability, added to `rest` unless i is the target. The target's
// value here is the expm1 form (cross_entropy_math.h); with whole rows the kernel overwrites it from the rest.
__device__ __forceinline__ bf16 logit_grad(float x, int i, int target, float row_lse, float dloss, float& rest) {
  if (i == target) return __float2bfloat16_rn(ce_math::target_grad_expm1(x, row_lse, dloss));
  const float p = ce_math::probability(x, row_lse);
  rest += p;
  return __float2bfloat16_rn(dloss * p);
}

// dlogits, logits (N, V), possibly the same buffer (no __restrict__), the columns from vocab_begin; lse, targets (N).
// whole_rows: the columns are the whole rows, so the target's gradient comes from the block's sum of the other
// columns' probabilities (a fixed-order reduction: bit-identical reruns).
__global__ void __launch_bounds__(kThreads)
    cross_entropy_backward_kernel(bf16* dlogits, const bf16* logits, const float* __restrict__ lse,
                                  const int32_t* __restrict__ targets, int64_t vocab_begin, bool whole_rows,
                                  float dloss, int64_t N, int V) {
  __shared__ float warp_rest[kWarps];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const bf16* x = logits + n * V;
    bf16* dx = dlogits + n * V;
    const float row_lse = lse[n];
    const int64_t local_target = targets[n] - vocab_begin;
    const int target = local_target >= 0 && local_target < V ? static_cast<int>(local_target) : -1;  // -1: no column
    const RowSplit s = split_row(x, V);  // dlogits has the same offset from a 16-byte boundary (entry point)
    const int t = threadIdx.x;
    float rest = 0.0f;  // this thread's share of the probabilities of the columns other than the target
    if (t < s.head) dx[t] = logit_grad(__bfloat162float(x[t]), t, target, row_lse, dloss, rest);
    if (t < V - s.tail) {
      const int i = s.tail + t;
      dx[i] = logit_grad(__bfloat162float(x[i]), i, target, row_lse, dloss, rest);
    }
    for (int v = t; v < s.vectors; v += kThreads) {
      const int first = s.head + v * kVec;
      Bf16Vec<kVec> xv = load_bf16<kVec>(x + first);
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        xv.e[e] = logit_grad(__bfloat162float(xv.e[e]), first + e, target, row_lse, dloss, rest);
      }
      store_bf16(dx + first, xv);
    }
    if (whole_rows && target >= 0) {  // the same for the whole block: the barriers below are reached by all
      rest = warp_sum(rest);
      if (lane == 0) warp_rest[warp] = rest;
      __syncthreads();  // also orders every thread's writes above before thread 0's write of the target below
      if (warp == 0) {
        rest = warp_sum(lane < kWarps ? warp_rest[lane] : 0.0f);
        if (lane == 0) dx[target] = __float2bfloat16_rn(ce_math::target_grad_from_rest(rest, dloss));
      }
      __syncthreads();  // warp_rest is written again for the next row
    }
  }
}

// losses, lse, target_logit (N); lse_parts (P, N): rank p's lse of row n at p * N + n.
__global__ void cross_entropy_combine_kernel(float* __restrict__ losses, float* __restrict__ lse,
                                             const float* __restrict__ lse_parts,
                                             const float* __restrict__ target_logit, int64_t N, int P) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; n < N; n += stride) {
    float m = -INFINITY;
    for (int p = 0; p < P; ++p) m = fmaxf(m, lse_parts[p * N + n]);
    float sum = 0.0f;
    for (int p = 0; p < P; ++p) sum += expf(lse_parts[p * N + n] - m);
    const float row_lse = m + logf(sum);
    lse[n] = row_lse;
    losses[n] = row_lse - target_logit[n];
  }
}

int row_grid(int64_t N) { return static_cast<int>(std::min(N, kMaxGrid)); }

void launch_cross_entropy_forward(float* losses, float* lse, float* target_logit, const bf16* logits,
                                  const int32_t* targets, int64_t vocab_begin, int64_t N, int V, cudaStream_t stream) {
  cross_entropy_forward_kernel<<<row_grid(N), kThreads, 0, stream>>>(losses, lse, target_logit, logits, targets,
                                                                     vocab_begin, N, V);
  DYTRAIN_CUDA_CHECK(cudaGetLastError());
}

void launch_cross_entropy_backward(bf16* dlogits, const bf16* logits, const float* lse, const int32_t* targets,
                                   int64_t vocab_begin, bool whole_rows, float dloss, int64_t N, int V,
                                   cudaStream_t stream) {
  cross_entropy_backward_kernel<<<row_grid(N), kThreads, 0, stream>>>(dlogits, logits, lse, targets, vocab_begin,
                                                                      whole_rows, dloss, N, V);
  DYTRAIN_CUDA_CHECK(cudaGetLastError());
}

void check_rows(const char* op, int64_t N, int V) {
  if (N < 0 || V < 1) {
    throw std::invalid_argument(detail::op_name(op) + ": shape (N=" + std::to_string(N) + ", V=" + std::to_string(V) +
                                ") is not supported: need N >= 0 rows and a vocabulary of V >= 1 logits");
  }
}

void check_bf16(const char* op, const char* name, const void* p) {
  detail::check_not_null(op, name, p);
  if (reinterpret_cast<uintptr_t>(p) % sizeof(bf16) != 0) {
    throw std::invalid_argument(detail::op_name(op) + ": " + name + " is not 2-byte aligned, so it holds no bf16");
  }
}

}  // namespace

void cross_entropy_forward(float* losses, float* lse, const bf16* logits, const int32_t* targets, int64_t N, int V,
                           cudaStream_t stream) {
  const char* op = "cross_entropy_forward";
  check_rows(op, N, V);
  detail::check_not_null(op, "losses", losses);
  detail::check_not_null(op, "lse", lse);
  check_bf16(op, "logits", logits);
  detail::check_not_null(op, "targets", targets);
  if (N == 0) return;
  launch_cross_entropy_forward(losses, lse, nullptr, logits, targets, 0, N, V, stream);
}

void cross_entropy_partial_forward(float* lse_part, float* target_logit, const bf16* logits, const int32_t* targets,
                                   int64_t vocab_begin, int64_t N, int V, cudaStream_t stream) {
  const char* op = "cross_entropy_partial_forward";
  check_rows(op, N, V);
  detail::check_not_null(op, "lse_part", lse_part);
  detail::check_not_null(op, "target_logit", target_logit);
  check_bf16(op, "logits", logits);
  detail::check_not_null(op, "targets", targets);
  if (vocab_begin < 0) {
    throw std::invalid_argument(detail::op_name(op) + ": vocab_begin " + std::to_string(vocab_begin) +
                                " is negative; pass the first vocabulary id of these columns");
  }
  if (N == 0) return;
  launch_cross_entropy_forward(nullptr, lse_part, target_logit, logits, targets, vocab_begin, N, V, stream);
}

void cross_entropy_combine(float* losses, float* lse, const float* lse_parts, const float* target_logit, int64_t N,
                           int P, cudaStream_t stream) {
  const char* op = "cross_entropy_combine";
  if (N < 0 || P < 1) {
    throw std::invalid_argument(detail::op_name(op) + ": " + std::to_string(N) + " rows of " + std::to_string(P) +
                                " parts: need N >= 0 and at least one part");
  }
  detail::check_not_null(op, "losses", losses);
  detail::check_not_null(op, "lse", lse);
  detail::check_not_null(op, "lse_parts", lse_parts);
  detail::check_not_null(op, "target_logit", target_logit);
  if (N == 0) return;
  constexpr int kCombineThreads = 256;
  const int grid = static_cast<int>(std::min(detail::ceil_div(N, kCombineThreads), kMaxGrid));
  cross_entropy_combine_kernel<<<grid, kCombineThreads, 0, stream>>>(losses, lse, lse_parts, target_logit, N, P);
  DYTRAIN_CUDA_CHECK(cudaGetLastError());
}

void cross_entropy_backward(bf16* dlogits, const bf16* logits, const float* lse, const int32_t* targets, float dloss,
                            int64_t N, int V, cudaStream_t stream, int64_t vocab_begin, int64_t vocab_size) {
  const char* op = "cross_entropy_backward";
  check_rows(op, N, V);
  check_bf16(op, "dlogits", dlogits);
  check_bf16(op, "logits", logits);
  detail::check_not_null(op, "lse", lse);
  detail::check_not_null(op, "targets", targets);
  if (reinterpret_cast<uintptr_t>(dlogits) % 16 != reinterpret_cast<uintptr_t>(logits) % 16) {
    throw std::invalid_argument(detail::op_name(op) +
                                ": dlogits and logits sit at different offsets from a 16-byte boundary, but rows are "
                                "accessed 16 bytes at a time in both: pass logits itself (in place) or buffers that "
                                "start at the same offset, such as two cudaMalloc'd ones");
  }
  if (vocab_begin < 0 || vocab_size < 0 || (vocab_size > 0 && vocab_begin + V > vocab_size)) {
    throw std::invalid_argument(detail::op_name(op) + ": columns [" + std::to_string(vocab_begin) + ", " +
                                std::to_string(vocab_begin + V) + ") do not fit a vocabulary of " +
                                std::to_string(vocab_size) + " (0: unknown); pass the rows' first column and length");
  }
  if (N == 0) return;
  const bool whole_rows = vocab_begin == 0 && vocab_size == V;
  launch_cross_entropy_backward(dlogits, logits, lse, targets, vocab_begin, whole_rows, dloss, N, V, stream);
}

}  // namespace dytrain::cuda
