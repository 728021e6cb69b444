// The tiling of the flash-attention kernels (flash_attention.cu) as constants and __host__ __device__ functions on
// ints and fp32 values: which key tiles a query tile visits and which query tiles a key tile is visited by, which
// (query, key) pairs a tile keeps, and the per-element and per-row softmax steps. The kernels call these, and the host
// emulation of their block loops (tests/kernels/cuda/flash_emulation.h) calls the same ones, so a CPU build checks the
// tiling, the masking and the order of the online-softmax rescaling against the naive attention. No bf16 and no CUDA
// header here, so a plain host compiler takes this file.
//
// Causality at two granularities: a query tile [q0, q0 + kBlockQ) visits only the key tiles that start before its
// last row (and before T), so tiles wholly above the diagonal are never loaded; inside the visited tiles each element
// is kept by key_visible, which cuts the diagonal tile, the keys past T of the last tile and the query rows past T
// (they are computed on zero-filled inputs and never written).
#pragma once
#include <math.h>

#include "kernels/cuda/host_device.h"

namespace dytrain::cuda::flash {

constexpr int kBlockQ = 64;  // query rows of a tile
constexpr int kBlockK = 64;  // key rows of a tile
constexpr int kWarps = 4;    // warps of a CTA
constexpr int kThreads = 32 * kWarps;
constexpr int kWarpRows = 16;                        // tile rows a warp owns: one MMA fragment's height
constexpr int kLanesPerRow = 32 / kWarpRows;         // lanes sharing one score row in the softmax pass
constexpr int kRowSegment = kBlockK / kLanesPerRow;  // the score columns each of those lanes takes
static_assert(kBlockQ == kWarps * kWarpRows, "each warp owns kWarpRows query rows of a tile");
static_assert(kBlockK == kWarps * kWarpRows, "in the dK, dV kernel each warp owns kWarpRows key rows of a tile");
static_assert(kBlockK % 16 == 0 && kRowSegment * kLanesPerRow == kBlockK, "score columns split evenly");

DYTRAIN_HOST_DEVICE int block_count(int T, int block) { return (T + block - 1) / block; }

// Query tile qb visits key tiles [0, key_block_end(qb, T)): those holding a key <= its last row, and < T.
DYTRAIN_HOST_DEVICE int key_block_end(int qb, int T) {
  const int last_row_end = (qb + 1) * kBlockQ;
  return block_count(last_row_end < T ? last_row_end : T, kBlockK);
}

// Key tile kb is visited by query tiles [query_block_begin(kb), block_count(T, kBlockQ)): the same (query tile, key
// tile) pairs as key_block_end, seen from the key side (kb * kBlockK < (qb + 1) * kBlockQ <=> qb >= this).
DYTRAIN_HOST_DEVICE int query_block_begin(int kb) { return kb * kBlockK / kBlockQ; }

// Whether query row t attends to key j: causal, and only rows that exist (rows past T see nothing).
DYTRAIN_HOST_DEVICE bool key_visible(int t, int j, int T) { return j <= t && t < T; }

// A score as the softmax sees it: the scaled dot product, or -inf where the key is masked out.
DYTRAIN_HOST_DEVICE float masked_score(float dot, float scale, bool visible) {
  return visible ? dot * scale : -INFINITY;
}

// The online-softmax step of one row at a new key tile, once the tile's max is known: the new running max and the
// factor exp(old - new) that rescales the running sum and the output row. Before any visible key both maxima are
// -inf; the factor is then 0 (the sum and the row are still 0), never exp(-inf + inf) = NaN.
struct MaxStep {
  float max;
  float rescale;
};

DYTRAIN_HOST_DEVICE MaxStep next_max(float old_max, float tile_max) {
  const float m = fmaxf(old_max, tile_max);
  return {m, old_max == -INFINITY ? 0.0f : expf(old_max - m)};
}

// exp(s - max) of a masked score; 0 for a masked one, also while max is still -inf.
DYTRAIN_HOST_DEVICE float exp_score(float s, float max) { return s == -INFINITY ? 0.0f : expf(s - max); }

// A finished row: the log-sum-exp saved for the backward, and the factor 1 / sum the output row is multiplied by
// (0 for a row with no visible key, a row past T, which is never written).
DYTRAIN_HOST_DEVICE float row_lse(float max, float sum) { return max + logf(sum); }
DYTRAIN_HOST_DEVICE float output_scale(float sum) { return sum > 0.0f ? 1.0f / sum : 0.0f; }

// The backward recomputes each probability from the saved lse: p = exp(s - lse), 0 where masked.
DYTRAIN_HOST_DEVICE float probability(float s, float lse) { return s == -INFINITY ? 0.0f : expf(s - lse); }

// dL/d(q.k) of one element: p (dP - delta) scale, delta = rowsum(dout * out) = rowsum(P * dP).
DYTRAIN_HOST_DEVICE float score_grad(float p, float dp, float delta, float scale) { return p * (dp - delta) * scale; }

}  // namespace dytrain::cuda::flash
