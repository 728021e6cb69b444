// Token embedding forward and backward (embedding.cuh): host bucketing, then kernel -> launcher -> entry point.
//
// Work split. A block of 128 threads owns a chunk of 1024 channels of one row (forward: an output row; backward: a
// token group): 16-byte accesses of 8 channels per thread when C % 8 == 0 and the tensors are 16-byte aligned, else
// 8 single channels per thread, 128 apart, so a warp's accesses stay contiguous. Both paths cover a chunk with the same
// channels, so the work items (row, chunk) do not depend on the path. The forward gives each item its own block. The
// backward runs a persistent grid, as many blocks as are resident at once, each striding over items: one dscale
// partial per block, so the workspace is bounded by the GPU's resident blocks whatever the batch.
//
// Backward. Item (group u, chunk): each thread sums the dout rows of the group's positions for its channels in fp32,
// in the order bucket_tokens left them (ascending n), loading 4 rows before adding them so that a frequent token's
// long group keeps several loads in flight; then dtable[row] += scale * sum. No other item touches that row and
// chunk, so no atomics are needed and the result does not depend on scheduling. A group's chunk is one block's
// sequential work: a token at k positions of the batch costs that block about k / 4 memory latencies (the price of
// summing in a fixed order without a second pass; in natural text the most frequent token holds a few percent of a
// batch). dscale needs no second pass over dout: sum_n dot(dout[n], table[row]) = sum_u dot(sum of the group's dout
// rows, table[row_u]), so each item adds the dot of its fp32 sums with the table row to a per-thread fp64 accumulator;
// blocks reduce those in a fixed tree (block_sum) and write one partial each to the workspace, and a one-block kernel
// adds the partials in block order. Fixed shapes throughout: two runs on one GPU model with one build give the same
// bits.
#include "kernels/cuda/embedding.cuh"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/check.h"
#include "kernels/cuda/norm_rows.cuh"
#include "kernels/cuda/pointer_checks.h"

namespace dytrain::cuda {
namespace {

using namespace detail;

constexpr int kThreads = 128;
constexpr int kChannelsPerThread = 8;
constexpr int kBlockChannels = kThreads * kChannelsPerThread;  // 1024 channels per work item
constexpr int64_t kMaxGrid = 0x7fffffff;                       // gridDim.x limit; past it the forward's blocks loop
constexpr int kBatch = 4;                                      // dout rows loaded before they are added

__host__ __device__ inline int64_t chunks_of(int C) { return ceil_div(C, kBlockChannels); }

// Channel of this thread's access s (of kChannelsPerThread / kVec) in chunk `chunk`.
template <int kVec>
__device__ __forceinline__ int64_t slot_channel(int chunk, int s) {
  return static_cast<int64_t>(chunk) * kBlockChannels + (s * kThreads + static_cast<int>(threadIdx.x)) * kVec;
}

template <int kVec>
__device__ __forceinline__ Bf16Vec<kVec> zero_bf16() {
  Bf16Vec<kVec> v;
#pragma unroll
  for (int e = 0; e < kVec; ++e) v.e[e] = __ushort_as_bfloat16(0);
  return v;
}

// out (N, C); tokens (N); table (vocab_rows, C).
template <int kVec>
__global__ void __launch_bounds__(kThreads)
    embedding_forward_kernel(bf16* __restrict__ out, const int32_t* __restrict__ tokens, const bf16* __restrict__ table,
                             const float* __restrict__ scale_p, int64_t N, int C, int64_t vocab_begin,
                             int64_t vocab_rows) {
  constexpr int kSlots = kChannelsPerThread / kVec;
  const int64_t chunks = chunks_of(C);
  const float scale = *scale_p;
  for (int64_t w = blockIdx.x; w < N * chunks; w += gridDim.x) {
    const int64_t n = w / chunks;
    const int chunk = static_cast<int>(w - n * chunks);
    const int64_t row = static_cast<int64_t>(tokens[n]) - vocab_begin;
    const bool kept = row >= 0 && row < vocab_rows;
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int64_t c = slot_channel<kVec>(chunk, s);
      if (c >= C) continue;
      Bf16Vec<kVec> o = zero_bf16<kVec>();
      if (kept) {
        const Bf16Vec<kVec> t = load_bf16<kVec>(table + row * C + c);
#pragma unroll
        for (int e = 0; e < kVec; ++e) o.e[e] = __float2bfloat16_rn(scale * __bfloat162float(t.e[e]));
      }
      store_bf16(out + n * C + c, o);
    }
  }
}

// acc[s] += the kRows dout rows at positions pos[0 .. kRows) for this thread's channels, in row order; all loads are
// issued before the first add.
template <int kVec, int kRows>
__device__ __forceinline__ void add_rows(float (&acc)[kChannelsPerThread / kVec][kVec], const bf16* __restrict__ dout,
                                         const int32_t* __restrict__ pos, int chunk, int C) {
  constexpr int kSlots = kChannelsPerThread / kVec;
  Bf16Vec<kVec> g[kRows][kSlots];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const bf16* src = dout + static_cast<int64_t>(pos[r]) * C;
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int64_t c = slot_channel<kVec>(chunk, s);
      g[r][s] = c < C ? load_bf16<kVec>(src + c) : zero_bf16<kVec>();
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
#pragma unroll
      for (int e = 0; e < kVec; ++e) acc[s][e] += __bfloat162float(g[r][s].e[e]);
    }
  }
}

// dtable (vocab_rows, C) += scale * group sums; dscale_part (gridDim.x) or null; dout (N, C); table (vocab_rows, C);
// positions (P), rows (n_groups), begins (n_groups + 1).
template <int kVec>
__global__ void __launch_bounds__(kThreads)
    embedding_backward_kernel(float* __restrict__ dtable, double* __restrict__ dscale_part,
                              const bf16* __restrict__ dout, const bf16* __restrict__ table,
                              const float* __restrict__ scale_p, const int32_t* __restrict__ positions,
                              const int32_t* __restrict__ rows, const int32_t* __restrict__ begins, int n_groups,
                              int C) {
  constexpr int kSlots = kChannelsPerThread / kVec;
  const int64_t chunks = chunks_of(C);
  const float scale = *scale_p;
  double dot[1] = {0.0};
  for (int64_t w = blockIdx.x; w < n_groups * chunks; w += gridDim.x) {
    const int u = static_cast<int>(w / chunks);
    const int chunk = static_cast<int>(w - u * chunks);
    const int begin = begins[u];
    const int end = begins[u + 1];
    const int64_t row = rows[u];

    float acc[kSlots][kVec];
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
#pragma unroll
      for (int e = 0; e < kVec; ++e) acc[s][e] = 0.0f;
    }
    int p = begin;
    for (; p + kBatch <= end; p += kBatch) add_rows<kVec, kBatch>(acc, dout, positions + p, chunk, C);
    for (; p < end; ++p) add_rows<kVec, 1>(acc, dout, positions + p, chunk, C);

    float dot_item = 0.0f;  // at most 8 products
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int64_t c = slot_channel<kVec>(chunk, s);
      if (c >= C) continue;
      float* d = dtable + row * C + c;
      float dv[kVec];
      load_f32(dv, d);
#pragma unroll
      for (int e = 0; e < kVec; ++e) dv[e] += scale * acc[s][e];
      store_f32(d, dv);
      if (dscale_part != nullptr) {
        const Bf16Vec<kVec> t = load_bf16<kVec>(table + row * C + c);
#pragma unroll
        for (int e = 0; e < kVec; ++e) dot_item += __bfloat162float(t.e[e]) * acc[s][e];
      }
    }
    dot[0] += dot_item;
  }
  if (dscale_part != nullptr) {  // the same for every thread of the block, as block_sum needs
    block_sum(dot);
    if (threadIdx.x == 0) dscale_part[blockIdx.x] = dot[0];
  }
}

// *dscale += the sum of part (G), added in a fixed order.
__global__ void __launch_bounds__(kThreads) add_partials_kernel(float* dscale, const double* __restrict__ part, int G) {
  double a[1] = {0.0};
  for (int b = threadIdx.x; b < G; b += blockDim.x) a[0] += part[b];
  block_sum(a);
  if (threadIdx.x == 0) *dscale += static_cast<float>(a[0]);
}

void launch_embedding_forward(bf16* out, const int32_t* tokens, const bf16* table, const float* scale, int64_t N, int C,
                              int64_t vocab_begin, int64_t vocab_rows, cudaStream_t stream) {
  const int grid = static_cast<int>(std::min(N * chunks_of(C), kMaxGrid));
  if (C % 8 == 0 && aligned16(out) && aligned16(table)) {
    embedding_forward_kernel<8>
        <<<grid, kThreads, 0, stream>>>(out, tokens, table, scale, N, C, vocab_begin, vocab_rows);
  } else {
    embedding_forward_kernel<1>
        <<<grid, kThreads, 0, stream>>>(out, tokens, table, scale, N, C, vocab_begin, vocab_rows);
  }
  DYTRAIN_CUDA_CHECK(cudaGetLastError());
}

// Blocks of the backward kernel resident at once on the current GPU, or fewer when there are fewer work items; at most
// the bound of embedding_backward_workspace_bytes, as occupancy never exceeds the thread limit.
template <class Kernel>
int persistent_backward_grid(Kernel kernel, int64_t items) {
  int device = 0;
  DYTRAIN_CUDA_CHECK(cudaGetDevice(&device));
  const int per_sm = resident_blocks_per_sm(kernel, device, kThreads, 0);
  return static_cast<int>(std::min(items, static_cast<int64_t>(current_device_shape().sms) * std::max(1, per_sm)));
}

// dscale_part: (grid) or null. Returns the grid.
int launch_embedding_backward(float* dtable, double* dscale_part, const bf16* dout, const bf16* table,
                              const float* scale, const int32_t* positions, const int32_t* rows, const int32_t* begins,
                              int n_groups, int C, cudaStream_t stream) {
  const int64_t items = n_groups * chunks_of(C);
  const bool vec = C % 8 == 0 && aligned16(dtable) && aligned16(dout) && (dscale_part == nullptr || aligned16(table));
  auto* kernel = vec ? embedding_backward_kernel<8> : embedding_backward_kernel<1>;
  const int grid = persistent_backward_grid(kernel, items);
  kernel<<<grid, kThreads, 0, stream>>>(dtable, dscale_part, dout, table, scale, positions, rows, begins, n_groups, C);
  DYTRAIN_CUDA_CHECK(cudaGetLastError());
  return grid;
}

void check_rows(const char* op, int64_t N, int C) {
  if (N < 0 || C < 1) {
    throw std::invalid_argument(op_name(op) + ": shape (N=" + std::to_string(N) + ", C=" + std::to_string(C) +
                                ") is not supported: need N >= 0 and C >= 1");
  }
}

}  // namespace

void bucket_tokens(TokenBuckets* out, const int32_t* tokens, int64_t N, int64_t vocab_begin, int64_t vocab_rows,
                   int64_t vocab_total) {
  const char* op = "bucket_tokens";
  check_not_null(op, "out", out);
  constexpr int64_t kMaxIndex = std::numeric_limits<int32_t>::max();
  if (N < 0 || N > kMaxIndex) {
    throw std::invalid_argument(op_name(op) + ": N = " + std::to_string(N) +
                                " is outside [0, 2^31 - 1]: positions are int32; split the batch");
  }
  if (vocab_begin < 0 || vocab_rows < 0 || vocab_begin + vocab_rows > vocab_total || vocab_rows > kMaxIndex) {
    throw std::invalid_argument(op_name(op) + ": this rank's rows [" + std::to_string(vocab_begin) + ", " +
                                std::to_string(vocab_begin + vocab_rows) + ") do not lie in the vocabulary [0, " +
                                std::to_string(vocab_total) +
                                "): pass the layout's vocab_begin, vocab_rows and the model's vocab_size");
  }
  if (N > 0) check_not_null(op, "tokens", tokens);

  // Pass 1: validate, and count the kept tokens of row r in slot[r + 1].
  std::vector<int32_t> slot(vocab_rows + 1, 0);
  for (int64_t n = 0; n < N; ++n) {
    const int64_t token = tokens[n];
    if (token < 0 || token >= vocab_total) {
      throw std::invalid_argument(op_name(op) + ": tokens[" + std::to_string(n) + "] = " + std::to_string(token) +
                                  " is outside the vocabulary [0, " + std::to_string(vocab_total) +
                                  "): the data's token ids must be below the model's vocab_size (check the "
                                  "tokenizer the shards were made with)");
    }
    const int64_t r = token - vocab_begin;
    if (r >= 0 && r < vocab_rows) ++slot[r + 1];
  }

  // The groups, and the prefix sum that turns slot[r] into the first position slot of row r.
  TokenBuckets b;
  b.begins.push_back(0);
  for (int64_t r = 0; r < vocab_rows; ++r) {
    const int32_t count = slot[r + 1];
    if (count > 0) {
      b.rows.push_back(static_cast<int32_t>(r));
      b.begins.push_back(b.begins.back() + count);
    }
    slot[r + 1] = slot[r] + count;
  }

  // Pass 2: place the positions, ascending n within each row.
  b.positions.resize(b.begins.back());
  for (int64_t n = 0; n < N; ++n) {
    const int64_t r = static_cast<int64_t>(tokens[n]) - vocab_begin;
    if (r >= 0 && r < vocab_rows) b.positions[slot[r]++] = static_cast<int32_t>(n);
  }
  *out = std::move(b);
}

void embedding_forward(bf16* out, const int32_t* tokens, const bf16* table, const float* scale, int64_t N, int C,
                       int64_t vocab_begin, int64_t vocab_rows, cudaStream_t stream) {
  const char* op = "embedding_forward";
  check_rows(op, N, C);
  if (vocab_begin < 0 || vocab_rows < 0) {
    throw std::invalid_argument(op_name(op) + ": vocab_begin = " + std::to_string(vocab_begin) +
                                " and vocab_rows = " + std::to_string(vocab_rows) + " must not be negative");
  }
  check_not_null(op, "out", out);
  check_not_null(op, "tokens", tokens);
  check_not_null(op, "table", table);
  check_not_null(op, "scale", scale);
  if (N == 0) return;
  launch_embedding_forward(out, tokens, table, scale, N, C, vocab_begin, vocab_rows, stream);
}

size_t embedding_backward_workspace_bytes(int64_t N, int C) {
  check_rows("embedding_backward_workspace_bytes", N, C);
  if (N == 0) return 0;
  const DeviceShape d = current_device_shape();
  const int64_t resident = static_cast<int64_t>(d.sms) * std::max(1, d.max_threads_per_sm / kThreads);
  return static_cast<size_t>(std::min(N * chunks_of(C), resident)) * sizeof(double);
}

void embedding_backward(float* dtable, float* dscale, const bf16* dout, const bf16* table, const float* scale,
                        const int32_t* positions, const int32_t* rows, const int32_t* begins, int n_groups, int64_t N,
                        int C, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  const char* op = "embedding_backward";
  check_rows(op, N, C);
  if (n_groups < 0 || n_groups > N) {
    throw std::invalid_argument(op_name(op) + ": n_groups = " + std::to_string(n_groups) + " is outside [0, N = " +
                                std::to_string(N) + "]: pass rows.size() of the TokenBuckets made from these N tokens");
  }
  check_not_null(op, "dtable", dtable);
  check_not_null(op, "dout", dout);
  check_not_null(op, "scale", scale);
  if (n_groups > 0) {
    check_not_null(op, "positions", positions);
    check_not_null(op, "rows", rows);
    check_not_null(op, "begins", begins);
  }
  if (dscale != nullptr) check_not_null(op, "table", table);
  if (n_groups == 0) return;
  if (dscale != nullptr) {
    check_workspace(op, workspace, workspace_bytes, embedding_backward_workspace_bytes(N, C),
                    "embedding_backward_workspace_bytes");
  }
  double* part = dscale != nullptr ? static_cast<double*>(workspace) : nullptr;
  const int grid =
      launch_embedding_backward(dtable, part, dout, table, scale, positions, rows, begins, n_groups, C, stream);
  if (dscale != nullptr) {
    add_partials_kernel<<<1, kThreads, 0, stream>>>(dscale, part, grid);
    DYTRAIN_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace dytrain::cuda
