// Causal grouped-query attention (attention.cuh) with materialized scores: permute kernels, batched cuBLASLt GEMMs
// (matmul.cuh) and fused softmax row kernels. Kernels -> launchers -> GEMM helpers -> entry points.
//
// Layout. With rep = Hq / Hkv, the rep query heads that share kv head hk are stacked into one matrix per group
// g = (b, hk): Qs (G = B*Hkv, M = T*rep, D), row m = t*rep + r holding q[b, t, hk*rep + r]. Token-major first: the
// rep heads of a group sit side by side in a token row of q, so the permute to this head-major layout is a transpose
// (B, T, Hkv, rep*D) -> (B, Hkv, T, rep*D) of contiguous rep*D runs, and a chunk of query tokens is a contiguous block
// of rows. K and V become (G, T, D). Then every product is one strided-batched GEMM over the G groups: S = Qs K^T,
// O = P V, and in the backward dK = dS^T Qs and dV = P^T dOs sum over the rep heads by themselves (they are the rows
// of the contraction), so no kernel reduces over heads. The causal mask of row m is key j <= m / rep.
//
// Chunks. Scores live for kChunkTokens query tokens at a time: chunk [t0, t1) needs keys [0, t1) only, so its GEMMs
// run on (rows = (t1-t0)*rep, t1) blocks. Skipping the blocks right of each chunk leaves (n + 1) / (2n) of the full
// T x T work for n chunks (53% at T = 2048), and the score memory is B*Hq*128*T, not B*Hq*T^2. Scores are fp32 (a
// bf16 score would carry an absolute error of |s| 2^-9 into the exponent); P and dS are bf16 because they feed GEMMs.
// Score rows are ld_s = round_up(T, 8) apart so that bf16 rows stay 16-byte aligned.
//
// Forward, per chunk: S = scale Qs K^T (fp32); a warp per row takes the online max and sum over keys j <= t, writes
// lse = max + log(sum) and P = exp(S - lse) in bf16 (zeros for t < j < t1, which the next GEMM reads); O = P V.
// Backward: D_i = rowsum(dO * O) in fp32 from the forward's bf16 out (as flash-attention does), then per chunk, last
// chunk first: S and dP = dOs V^T (fp32), a warp per row recomputes P = exp(S - lse) and writes P and
// dS = P (dP - D_i) scale in bf16; dQs = dS K for the chunk's rows; dK, dV (fp32 accumulators) += dS^T Qs, P^T dOs
// over keys [0, t1). The last chunk covers all keys, so it writes the accumulators (beta = 0) and the others add to
// rows it wrote: no memset. dK and dV are rounded to bf16 once, when permuted back.
//
// Determinism: no atomics; each row's softmax is one warp with a fixed xor butterfly whose combine is symmetric in
// its two operands (products rounded with __fmul_rn so no FMA contraction breaks the symmetry), so every lane holds
// the same bits; the GEMMs' algorithms are fixed per problem by the Blas cache; the chunk order is fixed.
#include "kernels/cuda/attention.cuh"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/matmul.cuh"

namespace dytrain::cuda {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kChunkTokens = 128;  // query tokens whose scores are materialized at once
constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;
constexpr int kMaxGridY = 65535;
constexpr size_t kBufferAlignBytes = 256;  // every workspace buffer starts on cudaMalloc's alignment

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

// --- kernels ------------------------------------------------------------------------------------------------------

struct alignas(16) Bf16x8 {
  bf16 e[8];
};

__device__ __forceinline__ Bf16x8 load8(const bf16* p) { return *reinterpret_cast<const Bf16x8*>(p); }

// Eight fp32 accumulators rounded to bf16 (dK, dV on their way out).
__device__ __forceinline__ Bf16x8 load8(const float* p) {
  const float4 lo = reinterpret_cast<const float4*>(p)[0];
  const float4 hi = reinterpret_cast<const float4*>(p)[1];
  const float f[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
  Bf16x8 r;
#pragma unroll
  for (int i = 0; i < 8; ++i) r.e[i] = __float2bfloat16_rn(f[i]);
  return r;
}

__device__ __forceinline__ void store8(bf16* p, const Bf16x8& v) { *reinterpret_cast<Bf16x8*>(p) = v; }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Moves a (B, T, H, W) tensor between the token-major layout (token row b*T + t holds H*W elements, ld_tok apart) and
// the dense head-major layout (B, H, T, W), 8 elements per thread and step; W % 8 == 0. Thread x owns one 8-element
// piece of a token row (vecs = H*W/8 of them), thread y strides over token rows.
template <class Src>
__global__ void __launch_bounds__(kThreads)
    permute_kernel(bf16* __restrict__ dst, const Src* __restrict__ src, int B, int T, int H, int W, int64_t ld_tok,
                   bool to_head_major) {
  const int vecs = H * (W / 8);
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= vecs) return;
  const int h = j / (W / 8);
  const int w = j % (W / 8) * 8;
  const int token_rows = B * T;
  for (int row = blockIdx.y * blockDim.y + threadIdx.y; row < token_rows; row += gridDim.y * blockDim.y) {
    const int b = row / T;
    const int t = row % T;
    const int64_t token_major = row * ld_tok + static_cast<int64_t>(h) * W + w;
    const int64_t head_major = ((static_cast<int64_t>(b) * H + h) * T + t) * W + w;
    if (to_head_major) {
      store8(dst + head_major, load8(src + token_major));
    } else {
      store8(dst + token_major, load8(src + head_major));
    }
  }
}

// One warp per (b, t, h) query row of D elements: delta (B, Hq, T) = rowsum(dout * out) in fp32, and dout copied to
// its stacked head-major place dout_s (B, Hkv, T, rep*D). dout and out (B, T, Hq, D) dense.
__global__ void __launch_bounds__(kThreads)
    delta_kernel(bf16* __restrict__ dout_s, float* __restrict__ delta, const bf16* __restrict__ dout,
                 const bf16* __restrict__ out, int B, int T, int Hq, int Hkv, int D) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;  // (b*T + t)*Hq + h
  const int lane = threadIdx.x % 32;
  if (row >= static_cast<int64_t>(B) * T * Hq) return;  // the whole warp leaves together
  const int h = static_cast<int>(row % Hq);
  const int token_row = static_cast<int>(row / Hq);
  const int b = token_row / T;
  const int t = token_row % T;
  const int rep = Hq / Hkv;
  const bf16* dout_row = dout + row * D;
  const bf16* out_row = out + row * D;
  const int64_t group_row = (static_cast<int64_t>(b) * Hkv + h / rep) * T + t;  // (B, Hkv, T) of the stacked rows
  bf16* dst = dout_s + (group_row * rep + h % rep) * D;
  float acc = 0.0f;
  for (int w = lane * 8; w < D; w += 32 * 8) {
    const Bf16x8 g = load8(dout_row + w);
    const Bf16x8 o = load8(out_row + w);
#pragma unroll
    for (int e = 0; e < 8; ++e) acc += __bfloat162float(g.e[e]) * __bfloat162float(o.e[e]);
    store8(dst + w, g);
  }
  acc = warp_sum(acc);
  if (lane == 0) delta[(static_cast<int64_t>(b) * Hq + h) * T + t] = acc;
}

// Row `row` of a chunk's score block (G, rows, ld_s), rows = (t_end - t_begin) * rep: its query token t and the
// index of its (b, h, t) in the (B, Hq, T) layout of lse and delta.
struct ChunkRow {
  int t;
  int64_t bht;
};

__device__ __forceinline__ ChunkRow chunk_row(int64_t row, int rows, int rep, int T, int t_begin) {
  const int64_t g = row / rows;  // b * Hkv + hk
  const int i = static_cast<int>(row % rows);
  const int t = t_begin + i / rep;
  return {t, (g * rep + i % rep) * T + t};  // (g*rep + r) = b*Hq + hk*rep + r = b*Hq + h
}

// One warp per score row of a chunk: lse = max + log(sum exp(s - max)) over keys j <= t, then P = exp(s - lse) for
// j <= t and 0 for t < j < t_end. Each lane keeps an online (max, sum) over its keys; the butterfly combines pairs.
__global__ void __launch_bounds__(kThreads)
    softmax_forward_kernel(bf16* __restrict__ P, float* __restrict__ lse, const float* __restrict__ S, int64_t n_rows,
                           int rows, int rep, int T, int t_begin, int t_end, int64_t ld_s) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= n_rows) return;  // the whole warp leaves together
  const ChunkRow cr = chunk_row(row, rows, rep, T, t_begin);
  const float* s = S + row * ld_s;

  float mx = -INFINITY;
  float sum = 0.0f;  // of exp(s_j - mx) over this lane's keys; 0 while it has none
  for (int j = lane; j <= cr.t; j += 32) {
    const float x = s[j];
    if (x > mx) {
      sum = sum * expf(mx - x) + 1.0f;  // expf(-inf) = 0 on the first key
      mx = x;
    } else {
      sum += expf(x - mx);
    }
  }
  // Lane 0 always has key 0; lanes without keys contribute 0 (their mx of -inf must not meet exp(-inf + inf)).
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float other_mx = __shfl_xor_sync(0xffffffffu, mx, offset);
    const float other_sum = __shfl_xor_sync(0xffffffffu, sum, offset);
    const float m = fmaxf(mx, other_mx);
    const float mine = sum > 0.0f ? __fmul_rn(sum, expf(mx - m)) : 0.0f;
    const float theirs = other_sum > 0.0f ? __fmul_rn(other_sum, expf(other_mx - m)) : 0.0f;
    sum = mine + theirs;
    mx = m;
  }
  const float row_lse = mx + logf(sum);
  if (lane == 0) lse[cr.bht] = row_lse;
  bf16* p = P + row * ld_s;
  for (int j = lane; j < t_end; j += 32) p[j] = __float2bfloat16_rn(j <= cr.t ? expf(s[j] - row_lse) : 0.0f);
}

// One warp per score row of a chunk: P = exp(S - lse) and dS = P (dP - delta) scale for keys j <= t, zeros for
// t < j < t_end, both in bf16.
__global__ void __launch_bounds__(kThreads)
    softmax_backward_kernel(bf16* __restrict__ P, bf16* __restrict__ dS, const float* __restrict__ S,
                            const float* __restrict__ dP, const float* __restrict__ lse,
                            const float* __restrict__ delta, float scale, int64_t n_rows, int rows, int rep, int T,
                            int t_begin, int t_end, int64_t ld_s) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= n_rows) return;
  const ChunkRow cr = chunk_row(row, rows, rep, T, t_begin);
  const float row_lse = lse[cr.bht];
  const float row_delta = delta[cr.bht];
  const int64_t at = row * ld_s;
  for (int j = lane; j < t_end; j += 32) {
    float p = 0.0f;
    float ds = 0.0f;
    if (j <= cr.t) {
      p = expf(S[at + j] - row_lse);
      ds = p * (dP[at + j] - row_delta) * scale;
    }
    P[at + j] = __float2bfloat16_rn(p);
    dS[at + j] = __float2bfloat16_rn(ds);
  }
}

// --- launchers ----------------------------------------------------------------------------------------------------

template <class Src>
void launch_permute(bf16* dst, const Src* src, int B, int T, int H, int W, int64_t ld_tok, bool to_head_major,
                    cudaStream_t stream) {
  const int vecs = H * (W / 8);
  const int threads_x = static_cast<int>(std::min<int64_t>(kThreads, ceil_div(vecs, 32) * 32));
  const dim3 block(threads_x, kThreads / threads_x);
  const dim3 grid(static_cast<unsigned>(ceil_div(vecs, threads_x)),
                  static_cast<unsigned>(std::min<int64_t>(ceil_div(static_cast<int64_t>(B) * T, block.y), kMaxGridY)));
  permute_kernel<Src><<<grid, block, 0, stream>>>(dst, src, B, T, H, W, ld_tok, to_head_major);
  DYTRAIN_CUDA_CHECK(cudaGetLastError());
}

void launch_delta(bf16* dout_s, float* delta, const bf16* dout, const bf16* out, int B, int T, int Hq, int Hkv, int D,
                  cudaStream_t stream) {
  const int64_t rows = static_cast<int64_t>(B) * T * Hq;
  delta_kernel<<<static_cast<unsigned>(ceil_div(rows, kWarpsPerBlock)), kThreads, 0, stream>>>(dout_s, delta, dout,
                                                                                               out, B, T, Hq, Hkv, D);
  DYTRAIN_CUDA_CHECK(cudaGetLastError());
}

// --- plan: workspace layout and chunks ----------------------------------------------------------------------------

struct Plan {
  int T, D;
  int rep;         // query heads per kv head
  int G;           // groups, B * Hkv: the GEMMs' batch
  int64_t M;       // rows of a group's stacked queries, T * rep
  int chunk;       // query tokens per chunk, min(T, kChunkTokens)
  int64_t ld_s;    // row stride of the score buffers, T rounded up to 8
  // Byte offsets into the workspace. Forward: q, k, v, o, s, p. Backward: all, o holding the stacked dout.
  size_t q, k, v, o, s, p, dq, dk, dv, delta, dp, ds, total;
};

Plan make_plan(int B, int T, int Hq, int Hkv, int D) {
  Plan p{};
  p.T = T;
  p.D = D;
  p.rep = Hq / Hkv;
  p.G = B * Hkv;
  p.M = static_cast<int64_t>(T) * p.rep;
  p.chunk = std::min(T, kChunkTokens);
  p.ld_s = static_cast<int64_t>(round_up(static_cast<size_t>(T), 8));
  const size_t q_elems = static_cast<size_t>(B) * Hq * T * D;     // (G, M, D)
  const size_t kv_elems = static_cast<size_t>(B) * Hkv * T * D;   // (G, T, D)
  const size_t row_elems = static_cast<size_t>(B) * Hq * T;       // (B, Hq, T)
  const size_t score_elems = static_cast<size_t>(p.G) * p.chunk * p.rep * p.ld_s;  // (G, chunk*rep, ld_s)
  size_t offset = 0;
  auto take = [&offset](size_t bytes) {
    const size_t at = offset;
    offset += round_up(bytes, kBufferAlignBytes);
    return at;
  };
  p.q = take(q_elems * sizeof(bf16));
  p.k = take(kv_elems * sizeof(bf16));
  p.v = take(kv_elems * sizeof(bf16));
  p.o = take(q_elems * sizeof(bf16));
  p.s = take(score_elems * sizeof(float));
  p.p = take(score_elems * sizeof(bf16));
  p.dq = take(q_elems * sizeof(bf16));
  p.dk = take(kv_elems * sizeof(float));
  p.dv = take(kv_elems * sizeof(float));
  p.delta = take(row_elems * sizeof(float));
  p.dp = take(score_elems * sizeof(float));
  p.ds = take(score_elems * sizeof(bf16));
  p.total = offset;
  return p;
}

template <class Elem>
Elem* at(void* workspace, size_t offset) {
  return reinterpret_cast<Elem*>(static_cast<char*>(workspace) + offset);
}

// Query tokens [t_begin, t_end) of one chunk; rows = (t_end - t_begin) * rep score rows per group.
struct Chunk {
  int t_begin, t_end;
  int64_t rows;
};

int chunk_count(const Plan& p) { return static_cast<int>(ceil_div(p.T, p.chunk)); }

Chunk chunk_at(const Plan& p, int c) {
  const int t_begin = c * p.chunk;
  const int t_end = std::min(p.T, t_begin + p.chunk);
  return {t_begin, t_end, static_cast<int64_t>(t_end - t_begin) * p.rep};
}

// --- GEMMs on a chunk (row-major, batched over the G groups) ------------------------------------------------------

// scores (G, rows, ld_s) fp32 = alpha * x[chunk rows] y[0:t_end]^T; x (G, M, D) stacked queries or dout, y (G, T, D).
void scores_gemm(Blas& blas, float* scores, const bf16* x, const bf16* y, const Plan& p, const Chunk& c, float alpha) {
  Gemm g;
  g.a = x + static_cast<int64_t>(c.t_begin) * p.rep * p.D;
  g.lda = p.D;
  g.stride_a = p.M * p.D;
  g.b = y;  // (t_end, D) read transposed
  g.ldb = p.D;
  g.stride_b = static_cast<int64_t>(p.T) * p.D;
  g.trans_b = true;
  g.d = scores;
  g.d_type = DType::f32;
  g.ldd = p.ld_s;
  g.stride_d = c.rows * p.ld_s;
  g.m = c.rows;
  g.n = c.t_end;
  g.k = p.D;
  g.batch = p.G;
  g.alpha = alpha;
  gemm(blas, g);
}

// out[chunk rows] (G, rows, D) bf16 = w (G, rows, t_end) y[0:t_end] (G, t_end, D): O = P V and dQs = dS K.
void rows_gemm(Blas& blas, bf16* out, const bf16* w, const bf16* y, const Plan& p, const Chunk& c) {
  Gemm g;
  g.a = w;
  g.lda = p.ld_s;
  g.stride_a = c.rows * p.ld_s;
  g.b = y;
  g.ldb = p.D;
  g.stride_b = static_cast<int64_t>(p.T) * p.D;
  g.d = out + static_cast<int64_t>(c.t_begin) * p.rep * p.D;
  g.d_type = DType::bf16;
  g.ldd = p.D;
  g.stride_d = p.M * p.D;
  g.m = c.rows;
  g.n = p.D;
  g.k = c.t_end;
  g.batch = p.G;
  gemm(blas, g);
}

// acc[0:t_end] (G, t_end, D) fp32 = (accumulate ? acc : 0) + w^T x[chunk rows], w (G, rows, t_end), x (G, M, D):
// dK += dS^T Qs and dV += P^T dOs, the sum over the chunk's rows covering its rep heads.
void keys_gemm(Blas& blas, float* acc, const bf16* w, const bf16* x, const Plan& p, const Chunk& c, bool accumulate) {
  Gemm g;
  g.a = w;  // (rows, t_end) read transposed
  g.lda = p.ld_s;
  g.stride_a = c.rows * p.ld_s;
  g.trans_a = true;
  g.b = x + static_cast<int64_t>(c.t_begin) * p.rep * p.D;
  g.ldb = p.D;
  g.stride_b = p.M * p.D;
  g.d = acc;
  g.d_type = DType::f32;
  g.ldd = p.D;
  g.stride_d = static_cast<int64_t>(p.T) * p.D;
  g.m = c.t_end;
  g.n = p.D;
  g.k = c.rows;
  g.batch = p.G;
  g.beta = accumulate ? 1.0f : 0.0f;
  gemm(blas, g);
}

// --- argument checks ----------------------------------------------------------------------------------------------

std::string op_name(const char* op) { return std::string("dytrain::cuda::") + op; }

void check_shape(const char* op, int B, int T, int Hq, int Hkv, int D) {
  const std::string shape = "(B=" + std::to_string(B) + ", T=" + std::to_string(T) + ", Hq=" + std::to_string(Hq) +
                            ", Hkv=" + std::to_string(Hkv) + ", D=" + std::to_string(D) + ")";
  if (B < 1 || T < 1 || Hq < 1 || Hkv < 1) {
    throw std::invalid_argument(op_name(op) + ": shape " + shape + " needs B, T, Hq, Hkv >= 1");
  }
  if (Hq % Hkv != 0) {
    throw std::invalid_argument(op_name(op) + ": Hkv = " + std::to_string(Hkv) + " does not divide Hq = " +
                                std::to_string(Hq) + "; set num_key_value_heads to a divisor of num_attention_heads");
  }
  if (D < 8 || D % 8 != 0) {
    throw std::invalid_argument(op_name(op) + ": head dim D = " + std::to_string(D) +
                                " must be a positive multiple of 8 (the kernels move 16 bytes of bf16 at a time)");
  }
  if (static_cast<int64_t>(B) * Hq * T > std::numeric_limits<int32_t>::max()) {
    throw std::invalid_argument(op_name(op) + ": shape " + shape +
                                " has B * Hq * T >= 2^31 query rows; split the batch into micro-batches");
  }
}

}  // namespace

size_t attention_workspace_bytes(int B, int T, int Hq, int Hkv, int D) {
  check_shape("attention_workspace_bytes", B, T, Hq, Hkv, D);
  return make_plan(B, T, Hq, Hkv, D).total;
}

void check_attention_tensors(const char* op, int B, int T, int Hq, int Hkv, int D, int64_t ld_qkv,
                             std::initializer_list<NamedPointer> tensors) {
  check_shape(op, B, T, Hq, Hkv, D);
  const int64_t q_row = static_cast<int64_t>(Hq) * D;
  if (ld_qkv < q_row || ld_qkv % 8 != 0) {
    throw std::invalid_argument(op_name(op) + ": ld_qkv = " + std::to_string(ld_qkv) +
                                " must be a multiple of 8 and at least Hq * D = " + std::to_string(q_row) +
                                " (a token row of q); pass the row stride of the fused qkv buffer");
  }
  for (const NamedPointer& t : tensors) {
    if (t.ptr == nullptr) throw std::invalid_argument(op_name(op) + ": " + t.name + " is null");
    if (reinterpret_cast<uintptr_t>(t.ptr) % t.alignment_bytes != 0) {
      throw std::invalid_argument(op_name(op) + ": " + t.name + " is not " + std::to_string(t.alignment_bytes) +
                                  "-byte aligned; pass cudaMalloc'd buffers or views that start on a row");
    }
  }
}

void check_attention_args(const char* op, int B, int T, int Hq, int Hkv, int D, int64_t ld_qkv,
                          std::initializer_list<NamedPointer> tensors, const void* workspace, size_t workspace_bytes) {
  check_attention_tensors(op, B, T, Hq, Hkv, D, ld_qkv, tensors);
  const size_t needed = attention_workspace_bytes(B, T, Hq, Hkv, D);
  if (workspace == nullptr || workspace_bytes < needed || reinterpret_cast<uintptr_t>(workspace) % 16 != 0) {
    throw std::invalid_argument(op_name(op) + ": the workspace must be 16-byte aligned and hold " +
                                std::to_string(needed) + " bytes (got " + std::to_string(workspace_bytes) +
                                "); size it with dytrain::cuda::attention_workspace_bytes(B, T, Hq, Hkv, D)");
  }
}

void attention_forward(Blas& blas, bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, int64_t ld_qkv,
                       int B, int T, int Hq, int Hkv, int D, void* workspace, size_t workspace_bytes) {
  check_attention_args("attention_forward", B, T, Hq, Hkv, D, ld_qkv,
                       {{"out", out, 16}, {"lse", lse, 4}, {"q", q, 16}, {"k", k, 16}, {"v", v, 16}}, workspace,
                       workspace_bytes);
  const Plan p = make_plan(B, T, Hq, Hkv, D);
  bf16* qs = at<bf16>(workspace, p.q);  // (G, M, D)
  bf16* ks = at<bf16>(workspace, p.k);  // (G, T, D)
  bf16* vs = at<bf16>(workspace, p.v);  // (G, T, D)
  bf16* os = at<bf16>(workspace, p.o);  // (G, M, D)
  float* s = at<float>(workspace, p.s);  // (G, chunk rows, ld_s)
  bf16* pr = at<bf16>(workspace, p.p);   // (G, chunk rows, ld_s)
  const cudaStream_t stream = blas.stream();
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));

  launch_permute(qs, q, B, T, Hkv, p.rep * D, ld_qkv, true, stream);
  launch_permute(ks, k, B, T, Hkv, D, ld_qkv, true, stream);
  launch_permute(vs, v, B, T, Hkv, D, ld_qkv, true, stream);
  for (int ci = 0; ci < chunk_count(p); ++ci) {
    const Chunk c = chunk_at(p, ci);
    scores_gemm(blas, s, qs, ks, p, c, scale);
    const int64_t n_rows = static_cast<int64_t>(p.G) * c.rows;
    softmax_forward_kernel<<<static_cast<unsigned>(ceil_div(n_rows, kWarpsPerBlock)), kThreads, 0, stream>>>(
        pr, lse, s, n_rows, static_cast<int>(c.rows), p.rep, T, c.t_begin, c.t_end, p.ld_s);
    DYTRAIN_CUDA_CHECK(cudaGetLastError());
    rows_gemm(blas, os, pr, vs, p, c);
  }
  launch_permute(out, os, B, T, Hkv, p.rep * D, static_cast<int64_t>(Hq) * D, false,
                 stream);
}

void attention_backward(Blas& blas, bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* out, const float* lse,
                        const bf16* q, const bf16* k, const bf16* v, int64_t ld_qkv, int B, int T, int Hq, int Hkv,
                        int D, void* workspace, size_t workspace_bytes) {
  check_attention_args("attention_backward", B, T, Hq, Hkv, D, ld_qkv,
                       {{"dq", dq, 16},
                        {"dk", dk, 16},
                        {"dv", dv, 16},
                        {"dout", dout, 16},
                        {"out", out, 16},
                        {"lse", lse, 4},
                        {"q", q, 16},
                        {"k", k, 16},
                        {"v", v, 16}},
                       workspace, workspace_bytes);
  const Plan p = make_plan(B, T, Hq, Hkv, D);
  bf16* qs = at<bf16>(workspace, p.q);         // (G, M, D)
  bf16* ks = at<bf16>(workspace, p.k);         // (G, T, D)
  bf16* vs = at<bf16>(workspace, p.v);         // (G, T, D)
  bf16* dos = at<bf16>(workspace, p.o);        // (G, M, D) stacked dout
  float* s = at<float>(workspace, p.s);        // (G, chunk rows, ld_s)
  bf16* pr = at<bf16>(workspace, p.p);         // (G, chunk rows, ld_s)
  bf16* dqs = at<bf16>(workspace, p.dq);       // (G, M, D)
  float* dks = at<float>(workspace, p.dk);     // (G, T, D)
  float* dvs = at<float>(workspace, p.dv);     // (G, T, D)
  float* delta = at<float>(workspace, p.delta);  // (B, Hq, T)
  float* dp = at<float>(workspace, p.dp);      // (G, chunk rows, ld_s)
  bf16* ds = at<bf16>(workspace, p.ds);        // (G, chunk rows, ld_s)
  const cudaStream_t stream = blas.stream();
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));

  launch_permute(qs, q, B, T, Hkv, p.rep * D, ld_qkv, true, stream);
  launch_permute(ks, k, B, T, Hkv, D, ld_qkv, true, stream);
  launch_permute(vs, v, B, T, Hkv, D, ld_qkv, true, stream);
  launch_delta(dos, delta, dout, out, B, T, Hq, Hkv, D, stream);
  const int chunks = chunk_count(p);
  for (int ci = chunks - 1; ci >= 0; --ci) {
    const Chunk c = chunk_at(p, ci);
    const bool accumulate = ci != chunks - 1;  // the last chunk wrote all T key rows of dks, dvs
    scores_gemm(blas, s, qs, ks, p, c, scale);
    scores_gemm(blas, dp, dos, vs, p, c, 1.0f);
    const int64_t n_rows = static_cast<int64_t>(p.G) * c.rows;
    softmax_backward_kernel<<<static_cast<unsigned>(ceil_div(n_rows, kWarpsPerBlock)), kThreads, 0, stream>>>(
        pr, ds, s, dp, lse, delta, scale, n_rows, static_cast<int>(c.rows), p.rep, T, c.t_begin, c.t_end, p.ld_s);
    DYTRAIN_CUDA_CHECK(cudaGetLastError());
    rows_gemm(blas, dqs, ds, ks, p, c);
    keys_gemm(blas, dks, ds, qs, p, c, accumulate);
    keys_gemm(blas, dvs, pr, dos, p, c, accumulate);
  }
  launch_permute(dq, dqs, B, T, Hkv, p.rep * D, ld_qkv, false, stream);
  launch_permute(dk, dks, B, T, Hkv, D, ld_qkv, false, stream);
  launch_permute(dv, dvs, B, T, Hkv, D, ld_qkv, false, stream);
}

}  // namespace dytrain::cuda
