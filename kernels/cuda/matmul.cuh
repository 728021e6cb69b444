// Matrix products on the GPU through cuBLASLt: bf16 operands, fp32 accumulation, bf16 or fp32 results.
//
// Everything here is row-major, the layout of the activations (N, C) and of nn.Linear weights (out, in). cuBLASLt
// is column-major: a row-major D = A B is the column-major D^T = B^T A^T, so gemm() swaps the operands and never
// copies anything. In detail (detail::lt_problem): a row-major (r, c) matrix with row stride ld is, read column-major,
// its transpose, (c, r) with leading dimension ld. cuBLASLt therefore computes D^T (n, m) = op(B)^T op(A)^T with our B
// as its A and our A as its B, each with our own transpose flag (the stored matrix read column-major is already
// op(B)^T when B is not transposed, and needs CUBLAS_OP_T when it is), and D read column-major as (n, m) with ldd.
//
// A Blas owns one cuBLASLt handle, one workspace (reused by every call) and a cache of the heuristic's algorithm
// per problem (shapes, transposes, types, leading dimensions, batch and strides, whether C is read, the pointers'
// alignment), with its descriptors, so each distinct GEMM of a training step asks the heuristic once and every
// later call is one cublasLtMatmul. It is bound to one stream on the device current at construction; every call is
// queued there and nothing synchronizes the host (the destructor waits for the stream before freeing the workspace).
// Not thread-safe: one Blas per stream.
//
// Numerics. bf16 operands, fp32 products and sums (CUBLAS_COMPUTE_32F), fp32 alpha and beta, D = alpha * acc +
// beta * C rounded once to D's type. Split-K algorithms are limited to those that add their partial sums in fp32
// (reduction schemes NONE and COMPUTE_TYPE), so a bf16 D is never summed in bf16. Determinism: cuBLAS gives bit-wise
// identical results run to run for the same algorithm on one GPU model and toolkit with one stream, and the cache
// keeps one algorithm per problem for the life of the Blas; the pointers' alignment is part of the problem, so
// buffers that keep their alignment (cudaMalloc'd, 256 bytes) keep their algorithm.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace dytrain::cuda {

enum class DType { bf16, f32 };

class Blas {
 public:
  // 32 MiB: what NVIDIA recommends for cuBLASLt on Hopper, where the largest split-K kernels want it.
  static constexpr size_t kDefaultWorkspaceBytes = size_t(32) << 20;

  explicit Blas(cudaStream_t stream, size_t workspace_bytes = kDefaultWorkspaceBytes);
  ~Blas();
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;

  cudaStream_t stream() const;
  struct Impl;  // defined in matmul.cu
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// D[b] = alpha * op(A[b]) op(B[b]) + beta * C[b] for b < batch, all row-major.
// op(A) is (m, k): A itself is (m, k) with row stride lda, or with trans_a the (k, m) matrix A is read transposed.
// op(B) is (k, n) likewise. D and C are (m, n) with row stride ldd and D's type; C may equal D (in place) and is read
// only when beta != 0 (nullptr then means D). stride_*: elements between consecutive batch entries.
struct Gemm {
  const __nv_bfloat16* a = nullptr;
  int64_t lda = 0, stride_a = 0;
  bool trans_a = false;
  const __nv_bfloat16* b = nullptr;
  int64_t ldb = 0, stride_b = 0;
  bool trans_b = false;
  void* d = nullptr;
  DType d_type = DType::bf16;
  int64_t ldd = 0, stride_d = 0;
  const void* c = nullptr;
  int64_t m = 0, n = 0, k = 0;
  int batch = 1;
  float alpha = 1.0f, beta = 0.0f;
};

// Checks the shapes and strides (check_gemm) and queues the product.
void gemm(Blas& blas, const Gemm& g);

// Throws std::invalid_argument naming the first bad field of g: m, n, k >= 1 and within int32 (cuBLASLt's limit);
// a, b, d (and c when it is read) non-null and aligned to their element size; lda >= k (m with trans_a), ldb >= n (k
// with trans_b), ldd >= n; batch >= 1; strides >= 0, and stride_d > 0 when batch > 1 (entries must not overwrite each
// other). Makes no CUDA call and reads no pointer, so it runs on a machine without a GPU.
void check_gemm(const Gemm& g);

// The linear layers (no bias), weight (out, in) as in nn.Linear:
// out (M, N) = inp (M, K) @ weight^T, weight (N, K); with residual (M, N) not null, out = residual + inp @ weight^T
// (the residual add fused into the GEMM's epilogue; residual may equal out).
void matmul_forward(Blas& blas, __nv_bfloat16* out, const __nv_bfloat16* inp, const __nv_bfloat16* weight,
                    const __nv_bfloat16* residual, int64_t M, int64_t K, int64_t N);

// dinp (M, K) = dout (M, N) @ weight (written, or added to when accumulate_dinp); dweight (N, K) fp32 += dout^T @ inp
// (parameter gradients accumulate across micro-batches in fp32). Either output may be nullptr (skipped).
void matmul_backward(Blas& blas, __nv_bfloat16* dinp, float* dweight, const __nv_bfloat16* dout,
                     const __nv_bfloat16* inp, const __nv_bfloat16* weight, int64_t M, int64_t K, int64_t N,
                     bool accumulate_dinp = false);

namespace detail {

// The column-major problem gemm() gives cuBLASLt for a row-major Gemm, apart from the cuBLASLt calls so that the
// mapping is tested on the CPU.

// One matrix as cuBLASLt reads it: stored column-major as (rows, cols) with leading dimension ld, batch entries stride
// elements apart (0 when batch == 1); transposed: the product reads it transposed (CUBLAS_OP_T).
struct LtMatrix {
  const void* ptr = nullptr;
  int64_t rows = 0, cols = 0, ld = 0, stride = 0;
  bool transposed = false;
  uint32_t alignment_bytes = 256;  // of every batch entry's first element (alignment_bytes below)
};

// D (m, n) = alpha * op(A) (m, k) op(B) (k, n) + beta * C for b < batch, column-major. c has d's layout; its ptr is the
// Gemm's C when C is read (beta != 0 and c not null), else D's.
struct LtProblem {
  LtMatrix a, b, c, d;
  int64_t m = 0, n = 0, k = 0;
  int batch = 1;
};

// g must have passed check_gemm.
LtProblem lt_problem(const Gemm& g);

// The largest power of two, at most 256 (cuBLASLt's default requirement), dividing the address of every batch entry
// p + i * stride_bytes, i < batch.
uint32_t alignment_bytes(const void* p, int64_t stride_bytes, int batch);

}  // namespace detail

}  // namespace dytrain::cuda
