// Causal grouped-query flash attention (flash_attention.cuh): three kernels and a row-sum kernel, written for being
// right before being fast. Kernels -> launchers -> entry points.
//
// MMA. nvcuda::wmma bf16 16x16x16 fragments with fp32 accumulators. The fragments' register layouts are opaque, so
// every element-wise step (masking, the softmax, the rescaling of an output row) runs on tiles staged in shared
// memory: a warp stores its score fragments as an fp32 (16, 64) block, works on it row by row, and writes P or dS back
// as bf16 for the next MMA. A warp owns 16 rows of each tile it works on (flash_attention_tiles.h), so between its
// own MMAs and row passes a __syncwarp is enough; __syncthreads guards the tiles all four warps read (K, V in the
// forward and in the dQ kernel; Q, dO rows, P and dS in the dK, dV kernel). Tiles are 64 x 64 (query x key) with
// D = 64 or 128 columns; shared rows are padded (8 bf16, 4 fp32) so that every fragment pointer stays 32-byte aligned.
//
// Forward, a CTA per (b, h, query tile), the last query tiles (the longest, causal) launched first: Q stays in
// shared memory; for each visited key tile (flash::key_block_end): S = Q K^T (fp32), then per row, two lanes per row
// taking 32 columns each: mask and scale, the tile max (lane pair combined by one shuffle), the new running max and the
// factor exp(old - new) (flash::next_max), P = exp(s - max) in bf16, the running sum rescaled and added to, the fp32
// output row rescaled; then O += P V. At the end out = O / sum in bf16 and lse = max + log(sum). The output
// accumulator lives in shared memory (64 x D fp32), loaded into fragments for each P V and stored back.
//
// Backward without atomics, in the usual split: delta = rowsum(dout * out) first (fp32, a warp per row), then
// - dK, dV: a CTA per (b, kv head, key tile) holds K, V and fp32 accumulators for its 64 keys, and loops over the rep
//   query heads of its group and, for each, over the query tiles that see its keys (flash::query_block_begin ..
//   last): S = Q K^T, dP = dO V^T, P = exp(s - lse) and dS = P (dP - delta) scale per element, dV += P^T dO,
//   dK += dS^T Q. The sum over query heads and tokens is in this fixed order, in registers of one CTA.
// - dQ: a CTA per (b, h, query tile) holds Q, dO and an fp32 accumulator, loops over the visited key tiles, recomputes
//   S, dP and dS and adds dQ += dS K.
// So S and dP are computed twice (7 tile MMAs per tile pair instead of 5 with atomic dQ), the price of a backward
// whose bits do not depend on scheduling. The same loops, on the host, are tests/kernels/cuda/flash_emulation.cpp.
#include "kernels/cuda/flash_attention.cuh"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/attention.cuh"  // check_attention_tensors
#include "kernels/cuda/check.h"
#include "kernels/cuda/flash_attention_tiles.h"

namespace dytrain::cuda {
namespace {

using bf16 = __nv_bfloat16;
namespace wmma = nvcuda::wmma;
using flash::kBlockK;
using flash::kBlockQ;
using flash::kLanesPerRow;
using flash::kRowSegment;
using flash::kThreads;
using flash::kWarpRows;

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
using FragAT = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::col_major>;  // A read from rows of A^T
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;
using FragBT = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;  // B read from rows of B^T
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

constexpr int kMaxGridY = 65535;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Shared-memory pitches in elements and region sizes in bytes for head dim D.
template <int D>
struct Layout {
  static constexpr int kPitchX = D + 8;         // bf16 (rows, D) tiles: Q, K, V, dO
  static constexpr int kPitchS = kBlockK + 4;   // fp32 (kBlockQ, kBlockK) tiles: S, dP
  static constexpr int kPitchP = kBlockK + 8;   // bf16 (kBlockQ, kBlockK) tiles: P, dS
  static constexpr int kPitchO = D + 4;         // fp32 (64, D) tiles: the forward's output, staged gradients
  static constexpr size_t kTileX = size_t{kBlockQ} * kPitchX * sizeof(bf16);
  static constexpr size_t kTileS = size_t{kBlockQ} * kPitchS * sizeof(float);
  static constexpr size_t kTileP = size_t{kBlockQ} * kPitchP * sizeof(bf16);
  static constexpr size_t kTileO = size_t{kBlockQ} * kPitchO * sizeof(float);
  static constexpr size_t kRowStats = size_t{kBlockQ} * sizeof(float);
  static_assert(kBlockQ == kBlockK, "the (64, D) tile sizes serve query and key tiles alike");
  static_assert(kTileX % 128 == 0 && kTileS % 128 == 0 && kTileP % 128 == 0 && kTileO % 128 == 0,
                "regions stay 128-byte aligned");
  static_assert(2 * kTileS >= kTileO, "the backward stages a (64, D) fp32 gradient tile in the S and dP tiles");
  // forward: Q, K, V, S, P, O; dK dV and dQ kernels: K, V, Q, dO, S, dP, P, dS, lse, delta
  static constexpr size_t kForwardBytes = 3 * kTileX + kTileS + kTileP + kTileO;
  static constexpr size_t kBackwardBytes = 4 * kTileX + 2 * kTileS + 2 * kTileP + 2 * kRowStats;
  // sm_90 gives a CTA at most 227 KiB of shared memory (opted in per kernel by allow_shared_bytes).
  static_assert(kForwardBytes <= 227 * 1024 && kBackwardBytes <= 227 * 1024, "tiles exceed sm_90 shared memory");
};

// --- device helpers -----------------------------------------------------------------------------------------------

// Rows [0, kBlockQ) of a token-major tensor (row r at src + r * ld, D elements) into a shared tile of pitch `pitch`;
// rows at or past rows_valid are zeros (a zero key row scores 0 and is masked; a zero value row keeps 0 * garbage
// out of P V). 16 bytes per thread and step, all kThreads threads.
template <int D>
__device__ __forceinline__ void load_tile(bf16* tile, int pitch, const bf16* src, int64_t ld, int rows_valid) {
  constexpr int kVecs = D / 8;
  for (int i = threadIdx.x; i < kBlockQ * kVecs; i += kThreads) {
    const int r = i / kVecs;
    const int c = i % kVecs * 8;
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (r < rows_valid) v = *reinterpret_cast<const uint4*>(src + r * ld + c);
    *reinterpret_cast<uint4*>(tile + r * pitch + c) = v;
  }
}

// The warp's 16 rows of X Y^T as an fp32 (16, kBlockK) block of s (pitch kPitchS): x points at the warp's first row
// of a (., D) tile, y at a (kBlockK, D) tile, both of pitch kPitchX.
template <int D>
__device__ __forceinline__ void warp_scores(float* s, const bf16* x, const bf16* y) {
  using L = Layout<D>;
  FragC acc[kBlockK / 16];
#pragma unroll
  for (int n = 0; n < kBlockK / 16; ++n) wmma::fill_fragment(acc[n], 0.0f);
#pragma unroll
  for (int kk = 0; kk < D; kk += 16) {
    FragA a;
    wmma::load_matrix_sync(a, x + kk, L::kPitchX);
#pragma unroll
    for (int n = 0; n < kBlockK / 16; ++n) {
      FragBT b;
      wmma::load_matrix_sync(b, y + n * 16 * L::kPitchX + kk, L::kPitchX);
      wmma::mma_sync(acc[n], a, b, acc[n]);
    }
  }
#pragma unroll
  for (int n = 0; n < kBlockK / 16; ++n) wmma::store_matrix_sync(s + n * 16, acc[n], L::kPitchS, wmma::mem_row_major);
}

// Two fp32 values rounded to bf16 and packed into 32 bits, the first in the low half (the lower address).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&pair);
}

// The lane's half of a staged fp32 row times `mul`, as bf16 to dst_row (16-byte stores); seg picks the half.
template <int D>
__device__ __forceinline__ void store_row_half(bf16* dst_row, const float* src_row, int seg, float mul) {
  constexpr int kHalf = D / kLanesPerRow;
  for (int c = seg * kHalf; c < (seg + 1) * kHalf; c += 8) {
    const float* x = src_row + c;
    const uint4 packed = make_uint4(pack_bf16x2(x[0] * mul, x[1] * mul), pack_bf16x2(x[2] * mul, x[3] * mul),
                                    pack_bf16x2(x[4] * mul, x[5] * mul), pack_bf16x2(x[6] * mul, x[7] * mul));
    *reinterpret_cast<uint4*>(dst_row + c) = packed;
  }
}

// The warp's 16 rows of D accumulator columns, staged through `stage` (fp32, pitch kPitchO, the warp's rows) and
// written as bf16 rows ld apart from dst (the tile's row 0) where row < rows_valid.
template <int D>
__device__ __forceinline__ void store_warp_rows(bf16* dst, int64_t ld, int rows_valid, const FragC* acc, float* stage,
                                                int warp_row0, int lane) {
  using L = Layout<D>;
  float* my_stage = stage + warp_row0 * L::kPitchO;
#pragma unroll
  for (int n = 0; n < D / 16; ++n) wmma::store_matrix_sync(my_stage + n * 16, acc[n], L::kPitchO, wmma::mem_row_major);
  __syncwarp();
  const int row = warp_row0 + lane / kLanesPerRow;
  if (row < rows_valid) store_row_half<D>(dst + row * ld, stage + row * L::kPitchO, lane % kLanesPerRow, 1.0f);
}

// --- kernels ------------------------------------------------------------------------------------------------------

// Where a CTA of the query-tile kernels (forward, dQ) works. Their grid is (B * Hq, query tiles): blockIdx.x =
// b * Hq + h, query tile = last - blockIdx.y (the longest tiles, causal, first).
struct QueryTileCta {
  int b, h, hk;         // batch row, query head, its kv head
  int qb, q0;           // query tile and its first token
  int warp, lane, warp_row0;
  int64_t token0;       // token row of (b, 0)

  __device__ QueryTileCta(int T, int Hq, int Hkv)
      : b(blockIdx.x / Hq),
        h(blockIdx.x % Hq),
        hk(h / (Hq / Hkv)),
        qb(gridDim.y - 1 - blockIdx.y),
        q0(qb * kBlockQ),
        warp(threadIdx.x / 32),
        lane(threadIdx.x % 32),
        warp_row0(warp * kWarpRows),
        token0(static_cast<int64_t>(b) * T) {}
};

template <int D>
__global__ void __launch_bounds__(kThreads)
    flash_forward_kernel(bf16* __restrict__ out, float* __restrict__ lse, const bf16* __restrict__ q,
                         const bf16* __restrict__ k, const bf16* __restrict__ v, int64_t ld, int T, int Hq, int Hkv,
                         float scale) {
  using L = Layout<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* qs = reinterpret_cast<bf16*>(smem);
  bf16* ks = reinterpret_cast<bf16*>(smem + L::kTileX);
  bf16* vs = reinterpret_cast<bf16*>(smem + 2 * L::kTileX);
  float* ss = reinterpret_cast<float*>(smem + 3 * L::kTileX);
  bf16* ps = reinterpret_cast<bf16*>(smem + 3 * L::kTileX + L::kTileS);
  float* os = reinterpret_cast<float*>(smem + 3 * L::kTileX + L::kTileS + L::kTileP);

  const QueryTileCta cta(T, Hq, Hkv);
  const auto [b, h, hk, qb, q0, warp, lane, warp_row0, token0] = cta;
  const int row = warp_row0 + lane / kLanesPerRow;  // this lane's tile row in the row passes
  const int seg = lane % kLanesPerRow;               // and its half of the columns
  const int t = q0 + row;

  load_tile<D>(qs, L::kPitchX, q + (token0 + q0) * ld + h * D, ld, T - q0);
  for (int i = threadIdx.x; i < kBlockQ * L::kPitchO; i += kThreads) os[i] = 0.0f;
  float run_max = -INFINITY;
  float run_sum = 0.0f;

  const int kb_end = flash::key_block_end(qb, T);
  for (int kb = 0; kb < kb_end; ++kb) {
    const int k0 = kb * kBlockK;
    __syncthreads();  // every warp is done with the previous K and V tiles
    load_tile<D>(ks, L::kPitchX, k + (token0 + k0) * ld + hk * D, ld, T - k0);
    load_tile<D>(vs, L::kPitchX, v + (token0 + k0) * ld + hk * D, ld, T - k0);
    __syncthreads();

    warp_scores<D>(ss + warp_row0 * L::kPitchS, qs + warp_row0 * L::kPitchX, ks);
    __syncwarp();
    float* srow = ss + row * L::kPitchS + seg * kRowSegment;
    float tile_max = -INFINITY;
    for (int c = 0; c < kRowSegment; ++c) {
      const float s = flash::masked_score(srow[c], scale, flash::key_visible(t, k0 + seg * kRowSegment + c, T));
      srow[c] = s;
      tile_max = fmaxf(tile_max, s);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    const flash::MaxStep step = flash::next_max(run_max, tile_max);
    bf16* prow = ps + row * L::kPitchP + seg * kRowSegment;
    float tile_sum = 0.0f;
    for (int c = 0; c < kRowSegment; ++c) {
      const float p = flash::exp_score(srow[c], step.max);
      prow[c] = __float2bfloat16_rn(p);
      tile_sum += p;
    }
    tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, 1);
    run_sum = run_sum * step.rescale + tile_sum;
    run_max = step.max;
    float* orow = os + row * L::kPitchO + seg * (D / kLanesPerRow);
    for (int c = 0; c < D / kLanesPerRow; ++c) orow[c] *= step.rescale;
    __syncwarp();

    // O[warp rows] += P[warp rows] V
#pragma unroll
    for (int n = 0; n < D / 16; ++n) {
      FragC acc;
      float* o_block = os + warp_row0 * L::kPitchO + n * 16;
      wmma::load_matrix_sync(acc, o_block, L::kPitchO, wmma::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < kBlockK; kk += 16) {
        FragA a;
        FragB bv;
        wmma::load_matrix_sync(a, ps + warp_row0 * L::kPitchP + kk, L::kPitchP);
        wmma::load_matrix_sync(bv, vs + kk * L::kPitchX + n * 16, L::kPitchX);
        wmma::mma_sync(acc, a, bv, acc);
      }
      wmma::store_matrix_sync(o_block, acc, L::kPitchO, wmma::mem_row_major);
    }
    __syncwarp();
  }

  if (t < T) {
    store_row_half<D>(out + ((token0 + t) * Hq + h) * D, os + row * L::kPitchO, seg, flash::output_scale(run_sum));
    if (seg == 0) lse[(static_cast<int64_t>(b) * Hq + h) * T + t] = flash::row_lse(run_max, run_sum);
  }
}

// One warp per query row (b, t, h): delta (B, Hq, T) = rowsum(dout * out) in fp32; dout, out (B, T, Hq, D) dense.
__global__ void __launch_bounds__(kThreads)
    flash_delta_kernel(float* __restrict__ delta, const bf16* __restrict__ dout, const bf16* __restrict__ out, int B,
                       int T, int Hq, int D) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32;  // (b*T + t)*Hq + h
  const int lane = threadIdx.x % 32;
  if (row >= static_cast<int64_t>(B) * T * Hq) return;  // the whole warp leaves together
  float acc = 0.0f;
  for (int c = lane; c < D; c += 32) {
    acc += __bfloat162float(dout[row * D + c]) * __bfloat162float(out[row * D + c]);
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, offset);
  const int h = static_cast<int>(row % Hq);
  const int64_t token = row / Hq;
  const int64_t b = token / T;
  if (lane == 0) delta[(b * Hq + h) * T + token % T] = acc;
}

// The shared state of the two backward kernels: tile pointers into shared memory and the row pass that turns S and
// dP of the warp's rows into P and dS (bf16).
template <int D>
struct BackwardTiles {
  using L = Layout<D>;
  bf16 *ks, *vs, *qs, *dos, *ps, *dss;
  float *ss, *dps, *lse_s, *delta_s;

  __device__ explicit BackwardTiles(unsigned char* smem) {
    ks = reinterpret_cast<bf16*>(smem);
    vs = reinterpret_cast<bf16*>(smem + L::kTileX);
    qs = reinterpret_cast<bf16*>(smem + 2 * L::kTileX);
    dos = reinterpret_cast<bf16*>(smem + 3 * L::kTileX);
    ss = reinterpret_cast<float*>(smem + 4 * L::kTileX);
    dps = reinterpret_cast<float*>(smem + 4 * L::kTileX + L::kTileS);
    ps = reinterpret_cast<bf16*>(smem + 4 * L::kTileX + 2 * L::kTileS);
    dss = reinterpret_cast<bf16*>(smem + 4 * L::kTileX + 2 * L::kTileS + L::kTileP);
    lse_s = reinterpret_cast<float*>(smem + 4 * L::kTileX + 2 * L::kTileS + 2 * L::kTileP);
    delta_s = lse_s + kBlockQ;
  }

  // Q and dO of query tile q0 of head h, and its rows' lse and delta (0 past T, where every element is masked).
  __device__ void load_queries(const bf16* q, const bf16* dout, const float* lse, const float* delta, int64_t ld,
                               int64_t token0, int b, int h, int Hq, int T, int q0) {
    load_tile<D>(qs, L::kPitchX, q + (token0 + q0) * ld + h * D, ld, T - q0);
    load_tile<D>(dos, L::kPitchX, dout + ((token0 + q0) * Hq + h) * D, static_cast<int64_t>(Hq) * D, T - q0);
    if (threadIdx.x < kBlockQ) {
      const int t = q0 + threadIdx.x;
      const int64_t at = (static_cast<int64_t>(b) * Hq + h) * T + t;
      lse_s[threadIdx.x] = t < T ? lse[at] : 0.0f;
      delta_s[threadIdx.x] = t < T ? delta[at] : 0.0f;
    }
  }

  // S = Q K^T and dP = dO V^T for the warp's query rows, then per row P and dS (the lane pair's columns).
  __device__ void scores_and_grads(int warp_row0, int lane, int q0, int k0, int T, float scale) {
    warp_scores<D>(ss + warp_row0 * L::kPitchS, qs + warp_row0 * L::kPitchX, ks);
    warp_scores<D>(dps + warp_row0 * L::kPitchS, dos + warp_row0 * L::kPitchX, vs);
    __syncwarp();
    const int row = warp_row0 + lane / kLanesPerRow;
    const int seg = lane % kLanesPerRow;
    const int t = q0 + row;
    const float row_lse = lse_s[row];
    const float row_delta = delta_s[row];
    const float* srow = ss + row * L::kPitchS + seg * kRowSegment;
    const float* dprow = dps + row * L::kPitchS + seg * kRowSegment;
    bf16* prow = ps + row * L::kPitchP + seg * kRowSegment;
    bf16* dsrow = dss + row * L::kPitchP + seg * kRowSegment;
    for (int c = 0; c < kRowSegment; ++c) {
      const float s = flash::masked_score(srow[c], scale, flash::key_visible(t, k0 + seg * kRowSegment + c, T));
      const float p = flash::probability(s, row_lse);
      prow[c] = __float2bfloat16_rn(p);
      dsrow[c] = __float2bfloat16_rn(flash::score_grad(p, dprow[c], row_delta, scale));
    }
  }
};

// grid (B * Hkv, key tiles): blockIdx.x = b * Hkv + hk, key tile = blockIdx.y (the first ones, seen by the most
// query tiles, launched first).
template <int D>
__global__ void __launch_bounds__(kThreads)
    flash_backward_kv_kernel(bf16* __restrict__ dk, bf16* __restrict__ dv, const bf16* __restrict__ q,
                             const bf16* __restrict__ k, const bf16* __restrict__ v, const bf16* __restrict__ dout,
                             const float* __restrict__ lse, const float* __restrict__ delta, int64_t ld, int T, int Hq,
                             int Hkv, float scale) {
  using L = Layout<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  BackwardTiles<D> tiles(smem);
  const int b = blockIdx.x / Hkv;
  const int hk = blockIdx.x % Hkv;
  const int rep = Hq / Hkv;
  const int kb = blockIdx.y;
  const int k0 = kb * kBlockK;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int warp_row0 = warp * kWarpRows;  // key rows of this warp's dK, dV; query rows of its S, dP
  const int64_t token0 = static_cast<int64_t>(b) * T;

  load_tile<D>(tiles.ks, L::kPitchX, k + (token0 + k0) * ld + hk * D, ld, T - k0);
  load_tile<D>(tiles.vs, L::kPitchX, v + (token0 + k0) * ld + hk * D, ld, T - k0);
  FragC dk_acc[D / 16];
  FragC dv_acc[D / 16];
#pragma unroll
  for (int n = 0; n < D / 16; ++n) {
    wmma::fill_fragment(dk_acc[n], 0.0f);
    wmma::fill_fragment(dv_acc[n], 0.0f);
  }

  const int q_blocks = flash::block_count(T, kBlockQ);
  for (int r = 0; r < rep; ++r) {
    const int h = hk * rep + r;
    for (int qb = flash::query_block_begin(kb); qb < q_blocks; ++qb) {
      const int q0 = qb * kBlockQ;
      __syncthreads();  // every warp is done with the previous Q, dO, P and dS tiles
      tiles.load_queries(q, dout, lse, delta, ld, token0, b, h, Hq, T, q0);
      __syncthreads();
      tiles.scores_and_grads(warp_row0, lane, q0, k0, T, scale);
      __syncthreads();  // dK and dV of the warp's keys need P and dS of every query row
      // dV[warp keys] += P^T dO, dK[warp keys] += dS^T Q; P^T and dS^T are read from P and dS as column-major A.
      // Not unrolled: the 2 D / 16 accumulators take 128 registers at D = 128, and unrolled loads spill.
#pragma unroll 1
      for (int kk = 0; kk < kBlockQ; kk += 16) {
        FragAT pa;
        FragAT dsa;
        wmma::load_matrix_sync(pa, tiles.ps + kk * L::kPitchP + warp_row0, L::kPitchP);
        wmma::load_matrix_sync(dsa, tiles.dss + kk * L::kPitchP + warp_row0, L::kPitchP);
#pragma unroll
        for (int n = 0; n < D / 16; ++n) {
          FragB dob;
          FragB qb_frag;
          wmma::load_matrix_sync(dob, tiles.dos + kk * L::kPitchX + n * 16, L::kPitchX);
          wmma::load_matrix_sync(qb_frag, tiles.qs + kk * L::kPitchX + n * 16, L::kPitchX);
          wmma::mma_sync(dv_acc[n], pa, dob, dv_acc[n]);
          wmma::mma_sync(dk_acc[n], dsa, qb_frag, dk_acc[n]);
        }
      }
    }
  }

  __syncthreads();  // the S and dP tiles become the staging area
  float* stage = tiles.ss;
  store_warp_rows<D>(dv + (token0 + k0) * ld + hk * D, ld, T - k0, dv_acc, stage, warp_row0, lane);
  __syncwarp();
  store_warp_rows<D>(dk + (token0 + k0) * ld + hk * D, ld, T - k0, dk_acc, stage, warp_row0, lane);
}

// grid: QueryTileCta's.
template <int D>
__global__ void __launch_bounds__(kThreads)
    flash_backward_q_kernel(bf16* __restrict__ dq, const bf16* __restrict__ q, const bf16* __restrict__ k,
                            const bf16* __restrict__ v, const bf16* __restrict__ dout, const float* __restrict__ lse,
                            const float* __restrict__ delta, int64_t ld, int T, int Hq, int Hkv, float scale) {
  using L = Layout<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  BackwardTiles<D> tiles(smem);
  const QueryTileCta cta(T, Hq, Hkv);
  const auto [b, h, hk, qb, q0, warp, lane, warp_row0, token0] = cta;

  tiles.load_queries(q, dout, lse, delta, ld, token0, b, h, Hq, T, q0);
  FragC dq_acc[D / 16];
#pragma unroll
  for (int n = 0; n < D / 16; ++n) wmma::fill_fragment(dq_acc[n], 0.0f);

  const int kb_end = flash::key_block_end(qb, T);
  for (int kb = 0; kb < kb_end; ++kb) {
    const int k0 = kb * kBlockK;
    __syncthreads();  // every warp is done with the previous K and V tiles
    load_tile<D>(tiles.ks, L::kPitchX, k + (token0 + k0) * ld + hk * D, ld, T - k0);
    load_tile<D>(tiles.vs, L::kPitchX, v + (token0 + k0) * ld + hk * D, ld, T - k0);
    __syncthreads();
    tiles.scores_and_grads(warp_row0, lane, q0, k0, T, scale);
    __syncwarp();
    // dQ[warp rows] += dS[warp rows] K
#pragma unroll
    for (int kk = 0; kk < kBlockK; kk += 16) {
      FragA dsa;
      wmma::load_matrix_sync(dsa, tiles.dss + warp_row0 * L::kPitchP + kk, L::kPitchP);
#pragma unroll
      for (int n = 0; n < D / 16; ++n) {
        FragB kbf;
        wmma::load_matrix_sync(kbf, tiles.ks + kk * L::kPitchX + n * 16, L::kPitchX);
        wmma::mma_sync(dq_acc[n], dsa, kbf, dq_acc[n]);
      }
    }
  }

  __syncthreads();  // the S and dP tiles become the staging area
  store_warp_rows<D>(dq + (token0 + q0) * ld + h * D, ld, T - q0, dq_acc, tiles.ss, warp_row0, lane);
}

// --- launchers ----------------------------------------------------------------------------------------------------

// The attribute is set once per kernel instantiation (a process drives one device): a host call per launch, three
// per layer and step, would only add overhead. The function-local static's initialization is thread-safe.
template <class Kernel>
void allow_shared_bytes(Kernel kernel, size_t bytes) {
  DYTRAIN_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

template <int D>
void allow_shared_bytes_once() {
  static const bool done = [] {
    allow_shared_bytes(flash_forward_kernel<D>, Layout<D>::kForwardBytes);
    allow_shared_bytes(flash_backward_kv_kernel<D>, Layout<D>::kBackwardBytes);
    allow_shared_bytes(flash_backward_q_kernel<D>, Layout<D>::kBackwardBytes);
    return true;
  }();
  (void)done;
}

template <int D>
void launch_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, int64_t ld, int B, int T,
                    int Hq, int Hkv, float scale, cudaStream_t stream) {
  constexpr size_t bytes = Layout<D>::kForwardBytes;
  allow_shared_bytes_once<D>();
  const dim3 grid(static_cast<unsigned>(B * Hq), static_cast<unsigned>(flash::block_count(T, kBlockQ)));
  flash_forward_kernel<D><<<grid, kThreads, bytes, stream>>>(out, lse, q, k, v, ld, T, Hq, Hkv, scale);
  DYTRAIN_CUDA_CHECK(cudaGetLastError());
}

template <int D>
void launch_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* out, const float* lse, const bf16* q,
                     const bf16* k, const bf16* v, int64_t ld, int B, int T, int Hq, int Hkv, float scale,
                     float* delta, cudaStream_t stream) {
  const int64_t rows = static_cast<int64_t>(B) * T * Hq;
  flash_delta_kernel<<<static_cast<unsigned>(ceil_div(rows, kThreads / 32)), kThreads, 0, stream>>>(delta, dout, out,
                                                                                                    B, T, Hq, D);
  DYTRAIN_CUDA_CHECK(cudaGetLastError());
  constexpr size_t bytes = Layout<D>::kBackwardBytes;
  allow_shared_bytes_once<D>();
  const dim3 kv_grid(static_cast<unsigned>(B * Hkv), static_cast<unsigned>(flash::block_count(T, kBlockK)));
  flash_backward_kv_kernel<D><<<kv_grid, kThreads, bytes, stream>>>(dk, dv, q, k, v, dout, lse, delta, ld, T, Hq, Hkv,
                                                                     scale);
  DYTRAIN_CUDA_CHECK(cudaGetLastError());
  const dim3 q_grid(static_cast<unsigned>(B * Hq), static_cast<unsigned>(flash::block_count(T, kBlockQ)));
  flash_backward_q_kernel<D><<<q_grid, kThreads, bytes, stream>>>(dq, q, k, v, dout, lse, delta, ld, T, Hq, Hkv, scale);
  DYTRAIN_CUDA_CHECK(cudaGetLastError());
}

// --- argument checks ----------------------------------------------------------------------------------------------

std::string op_name(const char* op) { return std::string("dytrain::cuda::") + op; }

// What check_attention_tensors leaves to the flash kernels: the instantiated head dims and the grid's y limit.
void check_flash_shape(const char* op, int T, int D) {
  if (!flash_attention_supports(D)) {
    throw std::invalid_argument(op_name(op) + ": head dim D = " + std::to_string(D) +
                                " has no flash kernel (built for 64 and 128); set model.attention: materialized");
  }
  if (flash::block_count(T, kBlockQ) > kMaxGridY) {
    throw std::invalid_argument(op_name(op) + ": T = " + std::to_string(T) + " needs more than " +
                                std::to_string(kMaxGridY) + " query tiles of " + std::to_string(kBlockQ));
  }
}

}  // namespace

bool flash_attention_supports(int D) { return D == 64 || D == 128; }

size_t flash_attention_workspace_bytes(int B, int T, int Hq) {
  return static_cast<size_t>(B) * static_cast<size_t>(Hq) * static_cast<size_t>(T) * sizeof(float);
}

void flash_attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, int64_t ld_qkv,
                             int B, int T, int Hq, int Hkv, int D, cudaStream_t stream) {
  const char* op = "flash_attention_forward";
  check_attention_tensors(op, B, T, Hq, Hkv, D, ld_qkv,
                          {{"out", out, 16}, {"lse", lse, 4}, {"q", q, 16}, {"k", k, 16}, {"v", v, 16}});
  check_flash_shape(op, T, D);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  if (D == 64) {
    launch_forward<64>(out, lse, q, k, v, ld_qkv, B, T, Hq, Hkv, scale, stream);
  } else {
    launch_forward<128>(out, lse, q, k, v, ld_qkv, B, T, Hq, Hkv, scale, stream);
  }
}

void flash_attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* out, const float* lse,
                              const bf16* q, const bf16* k, const bf16* v, int64_t ld_qkv, int B, int T, int Hq,
                              int Hkv, int D, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  const char* op = "flash_attention_backward";
  check_attention_tensors(op, B, T, Hq, Hkv, D, ld_qkv,
                          {{"dq", dq, 16},
                           {"dk", dk, 16},
                           {"dv", dv, 16},
                           {"dout", dout, 16},
                           {"out", out, 16},
                           {"lse", lse, 4},
                           {"q", q, 16},
                           {"k", k, 16},
                           {"v", v, 16}});
  check_flash_shape(op, T, D);
  const size_t needed = flash_attention_workspace_bytes(B, T, Hq);
  if (workspace == nullptr || workspace_bytes < needed || reinterpret_cast<uintptr_t>(workspace) % 16 != 0) {
    throw std::invalid_argument(op_name(op) + ": the workspace must be 16-byte aligned and hold " +
                                std::to_string(needed) + " bytes (got " + std::to_string(workspace_bytes) +
                                "); size it with dytrain::cuda::flash_attention_workspace_bytes(B, T, Hq)");
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  float* delta = static_cast<float*>(workspace);  // (B, Hq, T)
  if (D == 64) {
    launch_backward<64>(dq, dk, dv, dout, out, lse, q, k, v, ld_qkv, B, T, Hq, Hkv, scale, delta, stream);
  } else {
    launch_backward<128>(dq, dk, dv, dout, out, lse, q, k, v, ld_qkv, B, T, Hq, Hkv, scale, delta, stream);
  }
}

}  // namespace dytrain::cuda
