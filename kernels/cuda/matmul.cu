// cuBLASLt GEMMs (matmul.cuh): argument checks, the row-major to column-major mapping, the plan cache, and the linear
// layers on top of gemm(). No kernel of our own: cuBLASLt launches the GEMMs, and its status is checked instead.
//
// Plans. A plan holds the operation and layout descriptors and the heuristic's first algorithm for one problem key.
// The descriptors are cuBLASLt's semi-opaque structs, initialised in place (cublasLt*Init) inside the std::map node
// that holds them; map nodes never move, so an initialised descriptor is never copied and needs no destroy call. The
// key holds everything the heuristic sees (shapes, transposes, D's type, leading dimensions, batch and strides, the
// four alignments) and whether C is read; alpha and beta are passed per call.
//
// Preference. Workspace up to the Blas's own; reduction schemes NONE and COMPUTE_TYPE only (the other two add split-K
// partial sums in D's type, bf16 for most GEMMs here, which would round the sum several times); and the alignments of
// the actual pointers (detail::alignment_bytes), so a view that starts off a 16-byte boundary gets an algorithm that
// can read it rather than the default assumption of 256-byte alignment.
//
// The linear layers, weight (N, K):
//   forward  out (M, N) = inp (M, K) weight^T (+ residual)  gemm m=M n=N k=K, B = weight transposed, C = residual;
//   dinp     dinp (M, K) (+)= dout (M, N) weight             gemm m=M n=K k=N, beta = 1 when accumulating;
//   dweight  dweight (N, K) += dout^T inp                    gemm m=N n=K k=M, A = dout transposed, fp32 D, beta 1.
// Every argument of both backward products is checked before the first is queued.
#include "kernels/cuda/matmul.cuh"

#include <cublasLt.h>

#include <array>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"

namespace dytrain::cuda {
namespace {

using bf16 = __nv_bfloat16;

constexpr int64_t kMaxDim = INT32_MAX;  // cuBLASLt supports rows and columns that fit int32

struct Plan {
  cublasLtMatmulDescOpaque_t op;
  cublasLtMatrixLayoutOpaque_t a, b, d;  // C has D's layout and shares its descriptor
  cublasLtMatmulAlgo_t algo;
};

using PlanKey = std::array<int64_t, 18>;

int64_t element_bytes(DType t) { return t == DType::f32 ? int64_t{sizeof(float)} : int64_t{sizeof(bf16)}; }

const char* type_name(DType t) { return t == DType::f32 ? "f32" : "bf16"; }

bool reads_c(const Gemm& g) { return g.beta != 0.0f; }

[[noreturn]] void bad_gemm(const std::string& what) { throw std::invalid_argument("dytrain::cuda::gemm: " + what); }

void check_dim(const char* field, int64_t v) {
  if (v < 1 || v > kMaxDim) {
    bad_gemm(std::string(field) + " = " + std::to_string(v) + " is out of range: it must be in [1, 2^31 - 1]");
  }
}

void check_pointer(const char* field, const void* p, int64_t bytes) {
  if (p == nullptr) bad_gemm(std::string(field) + " is null: pass a device pointer");
  if (reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) != 0) {
    bad_gemm(std::string(field) + " is not aligned to its element size (" + std::to_string(bytes) +
             " bytes): it must point at an element");
  }
}

// row: the stored matrix's row length, named by the dimension it is (e.g. "k").
void check_ld(const char* field, int64_t ld, int64_t row, const char* row_name) {
  if (ld < row) {
    bad_gemm(std::string(field) + " = " + std::to_string(ld) + " is less than the row length of the stored matrix (" +
             row_name + " = " + std::to_string(row) + "): pass " + field + " >= " + std::to_string(row));
  }
}

void check_stride(const char* field, int64_t stride) {
  if (stride < 0) bad_gemm(std::string(field) + " = " + std::to_string(stride) + " is negative: it must be >= 0");
}

PlanKey plan_key(const detail::LtProblem& p, const Gemm& g) {
  return {p.m,
          p.n,
          p.k,
          p.batch,
          p.a.ld,
          p.a.stride,
          p.a.transposed,
          p.a.alignment_bytes,
          p.b.ld,
          p.b.stride,
          p.b.transposed,
          p.b.alignment_bytes,
          p.d.ld,
          p.d.stride,
          p.d.alignment_bytes,
          p.c.alignment_bytes,
          static_cast<int64_t>(g.d_type),
          reads_c(g)};
}

// The problem in the caller's row-major terms, for error messages.
std::string describe(const detail::LtProblem& p, const Gemm& g) {
  return "(row-major m=" + std::to_string(g.m) + " n=" + std::to_string(g.n) + " k=" + std::to_string(g.k) +
         " trans_a=" + std::to_string(g.trans_a) + " trans_b=" + std::to_string(g.trans_b) +
         " lda=" + std::to_string(g.lda) + " ldb=" + std::to_string(g.ldb) + " ldd=" + std::to_string(g.ldd) +
         " batch=" + std::to_string(g.batch) + " D " + type_name(g.d_type) +
         ", alignment in bytes a=" + std::to_string(p.b.alignment_bytes) + " b=" + std::to_string(p.a.alignment_bytes) +
         " c=" + std::to_string(p.c.alignment_bytes) + " d=" + std::to_string(p.d.alignment_bytes) + ")";
}

void init_layout(cublasLtMatrixLayoutOpaque_t* layout, cudaDataType_t type, const detail::LtMatrix& m, int batch) {
  DYTRAIN_CUDA_CHECK(
      cublasLtMatrixLayoutInit(layout, type, static_cast<uint64_t>(m.rows), static_cast<uint64_t>(m.cols), m.ld));
  if (batch > 1) {
    const int32_t count = batch;
    const int64_t stride = m.stride;
    DYTRAIN_CUDA_CHECK(
        cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
    DYTRAIN_CUDA_CHECK(
        cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
  }
}

void set_preference(cublasLtMatmulPreferenceOpaque_t* pref, cublasLtMatmulPreferenceAttributes_t attribute,
                    uint32_t value) {
  DYTRAIN_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attribute, &value, sizeof(value)));
}

// Fills the plan in place (see the top of this file) and asks the heuristic for its best algorithm.
void init_plan(Plan& plan, cublasLtHandle_t handle, size_t workspace_bytes, const detail::LtProblem& p, const Gemm& g) {
  DYTRAIN_CUDA_CHECK(cublasLtMatmulDescInit(&plan.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const int32_t op_a = p.a.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int32_t op_b = p.b.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  DYTRAIN_CUDA_CHECK(cublasLtMatmulDescSetAttribute(&plan.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  DYTRAIN_CUDA_CHECK(cublasLtMatmulDescSetAttribute(&plan.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  init_layout(&plan.a, CUDA_R_16BF, p.a, p.batch);
  init_layout(&plan.b, CUDA_R_16BF, p.b, p.batch);
  init_layout(&plan.d, g.d_type == DType::f32 ? CUDA_R_32F : CUDA_R_16BF, p.d, p.batch);

  cublasLtMatmulPreferenceOpaque_t pref;
  DYTRAIN_CUDA_CHECK(cublasLtMatmulPreferenceInit(&pref));
  const uint64_t max_workspace = workspace_bytes;
  DYTRAIN_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(&pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                          &max_workspace, sizeof(max_workspace)));
  set_preference(&pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                 CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE);
  set_preference(&pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, p.a.alignment_bytes);
  set_preference(&pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, p.b.alignment_bytes);
  set_preference(&pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, p.c.alignment_bytes);
  set_preference(&pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, p.d.alignment_bytes);

  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  // No algorithm usually comes back as the call's own CUBLAS_STATUS_NOT_SUPPORTED, so every failure names the problem.
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(handle, &plan.op, &plan.a, &plan.b, &plan.d, &plan.d,
                                                               &pref, 1, &result, &returned);
  if (status != CUBLAS_STATUS_SUCCESS || returned == 0 || result.state != CUBLAS_STATUS_SUCCESS) {
    const std::string statement = "cublasLtMatmulAlgoGetHeuristic found no algorithm for " + describe(p, g);
    check_status(status != CUBLAS_STATUS_SUCCESS ? status
                 : returned == 0                 ? CUBLAS_STATUS_NOT_SUPPORTED
                                                 : result.state,
                 statement.c_str(), __FILE__, __LINE__);
  }
  plan.algo = result.algo;
}

// --- argument checks of the linear layers (std::invalid_argument naming the op) -----------------------------------

void check_linear_shape(const char* op, int64_t M, int64_t K, int64_t N) {
  const auto in_range = [](int64_t v) { return v >= 1 && v <= kMaxDim; };
  if (!in_range(M) || !in_range(K) || !in_range(N)) {
    throw std::invalid_argument(std::string("dytrain::cuda::") + op + ": shape (M=" + std::to_string(M) +
                                ", K=" + std::to_string(K) + ", N=" + std::to_string(N) +
                                ") is not supported: need 1 <= M, K, N <= 2^31 - 1");
  }
}

void check_tensor(const char* op, const char* name, const void* p, int64_t bytes) {
  const std::string where = std::string("dytrain::cuda::") + op + ": " + name;
  if (p == nullptr) throw std::invalid_argument(where + " is null");
  if (reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) != 0) {
    throw std::invalid_argument(where + " is not aligned to its element size (" + std::to_string(bytes) + " bytes)");
  }
}

}  // namespace

// --- Blas ---------------------------------------------------------------------------------------------------------

struct Blas::Impl {
  cudaStream_t stream = nullptr;
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  std::map<PlanKey, Plan> plans;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // GEMMs queued on the stream may still use the workspace, so the stream is drained before it is freed. A destructor
  // cannot throw, and a failing stream leaves nothing better to do than free anyway, so the statuses are dropped.
  ~Impl() {
    if (workspace != nullptr) {
      (void)cudaStreamSynchronize(stream);
      (void)cudaFree(workspace);
    }
    if (handle != nullptr) (void)cublasLtDestroy(handle);
  }

  // The cached plan of p, made (one heuristic call) on first use.
  Plan& plan(const detail::LtProblem& p, const Gemm& g) {
    const PlanKey key = plan_key(p, g);
    auto it = plans.find(key);
    if (it != plans.end()) return it->second;
    it = plans.try_emplace(key).first;
    try {
      init_plan(it->second, handle, workspace_bytes, p, g);
    } catch (...) {
      plans.erase(it);
      throw;
    }
    return it->second;
  }
};

Blas::Blas(cudaStream_t stream, size_t workspace_bytes) : impl_(std::make_unique<Impl>()) {
  impl_->stream = stream;
  DYTRAIN_CUDA_CHECK(cublasLtCreate(&impl_->handle));
  if (workspace_bytes > 0) DYTRAIN_CUDA_CHECK(cudaMalloc(&impl_->workspace, workspace_bytes));
  impl_->workspace_bytes = workspace_bytes;
}

Blas::~Blas() = default;

cudaStream_t Blas::stream() const { return impl_->stream; }

// --- gemm ---------------------------------------------------------------------------------------------------------

void check_gemm(const Gemm& g) {
  check_dim("m", g.m);
  check_dim("n", g.n);
  check_dim("k", g.k);
  if (g.batch < 1) bad_gemm("batch = " + std::to_string(g.batch) + " is out of range: it must be >= 1");
  const int64_t d_bytes = element_bytes(g.d_type);
  check_pointer("a", g.a, sizeof(bf16));
  check_pointer("b", g.b, sizeof(bf16));
  check_pointer("d", g.d, d_bytes);
  if (reads_c(g) && g.c != nullptr) check_pointer("c", g.c, d_bytes);
  check_ld("lda", g.lda, g.trans_a ? g.m : g.k, g.trans_a ? "m, A being (k, m) with trans_a" : "k");
  check_ld("ldb", g.ldb, g.trans_b ? g.k : g.n, g.trans_b ? "k, B being (n, k) with trans_b" : "n");
  check_ld("ldd", g.ldd, g.n, "n");
  check_stride("stride_a", g.stride_a);
  check_stride("stride_b", g.stride_b);
  check_stride("stride_d", g.stride_d);
  if (g.batch > 1 && g.stride_d == 0) {
    bad_gemm("stride_d = 0 with batch = " + std::to_string(g.batch) +
             ": every batch entry would write the same D; pass the distance between consecutive outputs");
  }
}

namespace detail {

uint32_t alignment_bytes(const void* p, int64_t stride_bytes, int batch) {
  uint64_t bits = reinterpret_cast<uintptr_t>(p) | 256u;  // 256 caps the result
  if (batch > 1) bits |= static_cast<uint64_t>(stride_bytes);
  return static_cast<uint32_t>(bits & (~bits + 1));  // the lowest set bit
}

LtProblem lt_problem(const Gemm& g) {
  const bool batched = g.batch > 1;
  const int64_t ab_bytes = sizeof(bf16);
  const int64_t d_bytes = element_bytes(g.d_type);
  LtProblem p;
  p.m = g.n;
  p.n = g.m;
  p.k = g.k;
  p.batch = g.batch;
  // cuBLASLt's A is our B, stored row-major (k, n), or (n, k) with trans_b. Read column-major it is (n, k) = op(B)^T,
  // taken as it is, or with trans_b (k, n), read transposed.
  p.a.ptr = g.b;
  p.a.rows = g.trans_b ? g.k : g.n;
  p.a.cols = g.trans_b ? g.n : g.k;
  p.a.ld = g.ldb;
  p.a.stride = batched ? g.stride_b : 0;
  p.a.transposed = g.trans_b;
  p.a.alignment_bytes = alignment_bytes(g.b, p.a.stride * ab_bytes, g.batch);
  // cuBLASLt's B is our A, stored (m, k), or (k, m) with trans_a: column-major (k, m) = op(A)^T, or (m, k) transposed.
  p.b.ptr = g.a;
  p.b.rows = g.trans_a ? g.m : g.k;
  p.b.cols = g.trans_a ? g.k : g.m;
  p.b.ld = g.lda;
  p.b.stride = batched ? g.stride_a : 0;
  p.b.transposed = g.trans_a;
  p.b.alignment_bytes = alignment_bytes(g.a, p.b.stride * ab_bytes, g.batch);
  // D (m, n) row-major is (n, m) column-major.
  p.d.ptr = g.d;
  p.d.rows = g.n;
  p.d.cols = g.m;
  p.d.ld = g.ldd;
  p.d.stride = batched ? g.stride_d : 0;
  p.d.alignment_bytes = alignment_bytes(g.d, p.d.stride * d_bytes, g.batch);
  p.c = p.d;
  if (reads_c(g) && g.c != nullptr) {
    p.c.ptr = g.c;
    p.c.alignment_bytes = alignment_bytes(g.c, p.c.stride * d_bytes, g.batch);
  }
  return p;
}

}  // namespace detail

void gemm(Blas& blas, const Gemm& g) {
  check_gemm(g);
  const detail::LtProblem p = detail::lt_problem(g);
  Blas::Impl& impl = blas.impl();
  Plan& plan = impl.plan(p, g);
  DYTRAIN_CUDA_CHECK(cublasLtMatmul(impl.handle, &plan.op, &g.alpha, p.a.ptr, &plan.a, p.b.ptr, &plan.b, &g.beta,
                                    p.c.ptr, &plan.d, g.d, &plan.d, &plan.algo, impl.workspace, impl.workspace_bytes,
                                    impl.stream));
}

// --- the linear layers --------------------------------------------------------------------------------------------

void matmul_forward(Blas& blas, bf16* out, const bf16* inp, const bf16* weight, const bf16* residual, int64_t M,
                    int64_t K, int64_t N) {
  const char* op = "matmul_forward";
  check_linear_shape(op, M, K, N);
  check_tensor(op, "out", out, sizeof(bf16));
  check_tensor(op, "inp", inp, sizeof(bf16));
  check_tensor(op, "weight", weight, sizeof(bf16));
  if (residual != nullptr) check_tensor(op, "residual", residual, sizeof(bf16));
  Gemm g;
  g.a = inp;
  g.lda = K;
  g.b = weight;
  g.ldb = K;
  g.trans_b = true;
  g.d = out;
  g.ldd = N;
  g.c = residual;
  g.m = M;
  g.n = N;
  g.k = K;
  g.beta = residual != nullptr ? 1.0f : 0.0f;
  gemm(blas, g);
}

void matmul_backward(Blas& blas, bf16* dinp, float* dweight, const bf16* dout, const bf16* inp, const bf16* weight,
                     int64_t M, int64_t K, int64_t N, bool accumulate_dinp) {
  const char* op = "matmul_backward";
  check_linear_shape(op, M, K, N);
  if (dinp != nullptr || dweight != nullptr) check_tensor(op, "dout", dout, sizeof(bf16));
  if (dinp != nullptr) {
    check_tensor(op, "dinp", dinp, sizeof(bf16));
    check_tensor(op, "weight", weight, sizeof(bf16));
  }
  if (dweight != nullptr) {
    check_tensor(op, "dweight", dweight, sizeof(float));
    check_tensor(op, "inp", inp, sizeof(bf16));
  }
  if (dinp != nullptr) {
    Gemm g;
    g.a = dout;
    g.lda = N;
    g.b = weight;
    g.ldb = K;
    g.d = dinp;
    g.ldd = K;
    g.m = M;
    g.n = K;
    g.k = N;
    g.beta = accumulate_dinp ? 1.0f : 0.0f;
    gemm(blas, g);
  }
  if (dweight != nullptr) {
    Gemm g;
    g.a = dout;
    g.lda = N;
    g.trans_a = true;
    g.b = inp;
    g.ldb = K;
    g.d = dweight;
    g.d_type = DType::f32;
    g.ldd = K;
    g.m = N;
    g.n = K;
    g.k = M;
    g.beta = 1.0f;
    gemm(blas, g);
  }
}

}  // namespace dytrain::cuda
