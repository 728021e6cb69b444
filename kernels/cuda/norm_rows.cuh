// Row layout and device helpers shared by the norm kernels (dyt.cu, rmsnorm.cu) on (N, C) bf16 activations.
//
// Layout. A row of C channels is covered by threads_per_row threads (whole warps). Thread j of a row owns the
// accesses v = j, j + threads_per_row, ... (kSlots of them, a compile-time count so that per-thread arrays stay in
// registers), each access kVec consecutive channels. A block holds rows_per_block such row groups (512 threads at
// most), and a persistent grid (as many blocks as are resident on the GPU at once) strides over the rows. A thread owns
// the same channels in every row it visits, so per-channel parameter gradients accumulate in its registers with no
// shared memory or atomics until the block ends. The layout depends on C alone (not on pointers or the GPU), so a
// workspace bound computed before the launch always fits it:
//   C % 8 == 0: 16-byte accesses (8 bf16), kSlots = 1 for C <= 4096, 2 for C <= 8192 (the 70B width);
//   other C:    one bf16 per access, kSlots = 8, C <= 4096. A vectorized body with a per-row scalar tail would not do:
//               with C % 8 != 0 every other row starts off a 16-byte boundary, so its vector loads would be
//               misaligned. Model widths are multiples of 8; this path is there so any C is correct.
// With 512 threads at most per block (__launch_bounds__), each thread may use 128 registers. Wider rows would need
// kSlots = 4, whose register arrays (the backward's per-channel sums, the loaded vectors) spill at 128 registers:
// ptxas reports it (-warn-spills), so such a variant must split its loads into groups.
//
// Determinism. Every reduction has a fixed shape: xor-butterfly warp sums (every lane ends with the same bits), warps
// combined in index order, row groups in index order, one partial per block written to a workspace and summed by a
// second kernel in block order (norm_reduce.cuh). No float atomics. The grid is the kernel's occupancy times the SM
// count, so results are bit-identical from run to run on one GPU model with one build.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cuda/check.h"

namespace dytrain::cuda::detail {

using bf16 = __nv_bfloat16;

constexpr int kMaxBlockThreads = 512;
constexpr int kMaxWarps = kMaxBlockThreads / 32;
constexpr int kMaxVectorC = 2 * 8 * kMaxBlockThreads;  // 8192: 2 slots of 8 channels per thread, one row per block
constexpr int kMaxScalarC = 8 * kMaxBlockThreads;      // 4096: 8 slots of 1 channel

__host__ __device__ inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The second __launch_bounds__ argument of the row kernels. Two resident blocks of 512 threads (64 registers each)
// keep twice the loads in flight; the one-slot 16-byte kernels fit in 64 registers (ptxas -warn-spills says so at
// every build) except DyT's backward (dyt.cu); wider per-thread arrays or the scalar path's per-element addresses
// would spill, so they get one.
constexpr int min_blocks_per_sm(int vec, int slots) { return vec == 8 && slots == 1 ? 2 : 1; }

struct RowLayout {
  int vec = 8;               // channels per access: 8 (16 bytes of bf16) when C % 8 == 0, else 1
  int slots = 1;             // accesses per thread per row: the kernels' kSlots
  int threads_per_row = 32;  // a multiple of 32
  int rows_per_block = 1;
  int threads() const { return threads_per_row * rows_per_block; }
};

inline RowLayout row_layout(int C) {
  RowLayout l;
  l.vec = C % 8 == 0 ? 8 : 1;
  const int accesses = C / l.vec;  // per row
  if (l.vec == 8) {
    l.slots = accesses <= kMaxBlockThreads ? 1 : 2;
  } else {
    l.slots = 8;
  }
  l.threads_per_row = static_cast<int>(ceil_div(ceil_div(accesses, l.slots), 32) * 32);
  l.rows_per_block = kMaxBlockThreads / l.threads_per_row;
  return l;
}

// Returns f(integral_constant kVec, integral_constant kSlots) for the layout, so launchers name each kernel once.
template <class F>
auto dispatch_layout(const RowLayout& l, F&& f) {
  using std::integral_constant;
  if (l.vec == 1) return f(integral_constant<int, 1>{}, integral_constant<int, 8>{});
  if (l.slots == 1) return f(integral_constant<int, 8>{}, integral_constant<int, 1>{});
  return f(integral_constant<int, 8>{}, integral_constant<int, 2>{});
}

// --- argument checks of the entry points (std::invalid_argument naming the op) --------------------------------------

inline std::string op_name(const char* op) { return std::string("dytrain::cuda::") + op; }

inline void check_shape(const char* op, int64_t N, int C) {
  const bool ok = N >= 0 && C >= 1 && C <= (C % 8 == 0 ? kMaxVectorC : kMaxScalarC);
  if (!ok) {
    throw std::invalid_argument(op_name(op) + ": shape (N=" + std::to_string(N) + ", C=" + std::to_string(C) +
                                ") is not supported: need N >= 0 and 1 <= C <= " + std::to_string(kMaxVectorC) +
                                " when C % 8 == 0, C <= " + std::to_string(kMaxScalarC) + " otherwise");
  }
}

inline void check_not_null(const char* op, const char* name, const void* p) {
  if (p == nullptr) throw std::invalid_argument(op_name(op) + ": " + name + " is null");
}

// A tensor with C channels per row; with C % 8 == 0 the kernels access it 16 bytes at a time.
inline void check_tensor(const char* op, const char* name, const void* p, int C) {
  check_not_null(op, name, p);
  if (C % 8 == 0 && reinterpret_cast<uintptr_t>(p) % 16 != 0) {
    throw std::invalid_argument(op_name(op) + ": " + name +
                                " is not 16-byte aligned; with C % 8 == 0 the kernels access 16 bytes at a time: pass "
                                "cudaMalloc'd buffers or views that start on a row");
  }
}

// size_fn: the *_workspace_bytes function that sizes it, named in the message.
inline void check_workspace(const char* op, const void* workspace, size_t workspace_bytes, size_t needed_bytes,
                            const char* size_fn) {
  if (needed_bytes == 0) return;
  if (workspace == nullptr || workspace_bytes < needed_bytes || reinterpret_cast<uintptr_t>(workspace) % 16 != 0) {
    throw std::invalid_argument(op_name(op) + ": the workspace must be 16-byte aligned and hold " +
                                std::to_string(needed_bytes) + " bytes (got " + std::to_string(workspace_bytes) +
                                "); size it with dytrain::cuda::" + size_fn + "(N, C)");
  }
}

// --- grid ---------------------------------------------------------------------------------------------------------

struct DeviceShape {
  int sms = 0;
  int max_threads_per_sm = 0;
};

inline DeviceShape current_device_shape() {
  int device = 0;
  DeviceShape d;
  DYTRAIN_CUDA_CHECK(cudaGetDevice(&device));
  DYTRAIN_CUDA_CHECK(cudaDeviceGetAttribute(&d.sms, cudaDevAttrMultiProcessorCount, device));
  DYTRAIN_CUDA_CHECK(cudaDeviceGetAttribute(&d.max_threads_per_sm, cudaDevAttrMaxThreadsPerMultiProcessor, device));
  return d;
}

// The most blocks of this layout that can be resident at once, counting threads only: an upper bound of
// persistent_grid for every kernel, used to size workspaces before knowing which kernel runs.
inline int max_grid(int64_t N, const RowLayout& l) {
  const DeviceShape d = current_device_shape();
  const int64_t resident = static_cast<int64_t>(d.sms) * std::max(1, d.max_threads_per_sm / l.threads());
  return static_cast<int>(std::min(ceil_div(N, l.rows_per_block), resident));
}

// Blocks of `kernel` resident per SM, cached per (device, kernel, block size, shared memory): the occupancy query costs
// about as much host time as launching a small norm.
template <class Kernel>
int resident_blocks_per_sm(Kernel kernel, int device, int threads, size_t dynamic_smem_bytes) {
  struct Entry {
    int device;
    const void* kernel;
    int threads;
    size_t smem;
    int blocks;
  };
  static std::mutex mutex;
  static std::vector<Entry> cache;
  const void* key = reinterpret_cast<const void*>(kernel);
  std::lock_guard<std::mutex> lock(mutex);
  for (const Entry& e : cache) {
    if (e.device == device && e.kernel == key && e.threads == threads && e.smem == dynamic_smem_bytes) return e.blocks;
  }
  int blocks = 0;
  DYTRAIN_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, threads, dynamic_smem_bytes));
  cache.push_back({device, key, threads, dynamic_smem_bytes, blocks});
  return blocks;
}

// As many blocks as the kernel's occupancy keeps resident (each then strides over rows), fewer for small N.
template <class Kernel>
int persistent_grid(Kernel kernel, int64_t N, const RowLayout& l, size_t dynamic_smem_bytes) {
  int device = 0;
  DYTRAIN_CUDA_CHECK(cudaGetDevice(&device));
  int sms = 0;
  DYTRAIN_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int per_sm = resident_blocks_per_sm(kernel, device, l.threads(), dynamic_smem_bytes);
  const int64_t resident = static_cast<int64_t>(sms) * std::max(1, per_sm);
  return static_cast<int>(std::min(ceil_div(N, l.rows_per_block), resident));
}

// Launches kernel(args...) over N rows of layout l with its persistent grid and returns the grid, the number of
// per-block partials it writes.
template <class Kernel, class... Args>
int launch_rows(Kernel kernel, int64_t N, const RowLayout& l, size_t dynamic_smem_bytes, cudaStream_t stream,
                Args... args) {
  const int grid = persistent_grid(kernel, N, l, dynamic_smem_bytes);
  kernel<<<grid, l.threads(), dynamic_smem_bytes, stream>>>(args...);
  DYTRAIN_CUDA_CHECK(cudaGetLastError());
  return grid;
}

// The workspace of a row kernel writing per_block_bytes of partials per block, sized for max_grid before the launch;
// op: the *_workspace_bytes function, named if the shape is rejected.
inline size_t partials_workspace_bytes(const char* op, int64_t N, int C, size_t per_block_bytes) {
  check_shape(op, N, C);
  return N == 0 ? 0 : static_cast<size_t>(max_grid(N, row_layout(C))) * per_block_bytes;
}

// Dynamic shared memory of the kernels that reduce columns across row groups (store_column_partials): C floats when a
// block holds several row groups (then threads_per_row <= 256, so C <= 2048 and this is <= 8 KB), else none.
inline size_t column_smem_bytes(const RowLayout& l, int C) {
  return l.rows_per_block > 1 ? static_cast<size_t>(C) * sizeof(float) : 0;
}

// --- device helpers -----------------------------------------------------------------------------------------------

template <int kVec>
struct alignas(2 * kVec) Bf16Vec {
  bf16 e[kVec];
};

template <int kVec>
__device__ __forceinline__ Bf16Vec<kVec> load_bf16(const bf16* p) {
  return *reinterpret_cast<const Bf16Vec<kVec>*>(p);
}

template <int kVec>
__device__ __forceinline__ void store_bf16(bf16* p, const Bf16Vec<kVec>& v) {
  *reinterpret_cast<Bf16Vec<kVec>*>(p) = v;
}

// kVec fp32 parameters (16-byte loads when kVec == 8; the entry points check the alignment).
template <int kVec>
__device__ __forceinline__ void load_f32(float (&out)[kVec], const float* p) {
  if constexpr (kVec % 4 == 0) {
#pragma unroll
    for (int i = 0; i < kVec / 4; ++i) {
      const float4 q = reinterpret_cast<const float4*>(p)[i];
      out[4 * i + 0] = q.x;
      out[4 * i + 1] = q.y;
      out[4 * i + 2] = q.z;
      out[4 * i + 3] = q.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < kVec; ++i) out[i] = p[i];
  }
}

template <int kVec>
__device__ __forceinline__ void store_f32(float* p, const float (&in)[kVec]) {
  if constexpr (kVec % 4 == 0) {
#pragma unroll
    for (int i = 0; i < kVec / 4; ++i) {
      reinterpret_cast<float4*>(p)[i] = make_float4(in[4 * i], in[4 * i + 1], in[4 * i + 2], in[4 * i + 3]);
    }
  } else {
#pragma unroll
    for (int i = 0; i < kVec; ++i) p[i] = in[i];
  }
}

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Sum of v over the threads of one row group, returned to each of them. Every thread of the block must call it: it
// synchronizes the block when a row spans several warps. red: shared (kMaxWarps).
__device__ __forceinline__ float row_sum(float v, float* red, int threads_per_row) {
  v = warp_sum(v);
  if (threads_per_row == 32) return v;
  const int warp = threadIdx.x / 32;
  const int warps_per_row = threads_per_row / 32;
  const int first_warp = warp / warps_per_row * warps_per_row;
  if (threadIdx.x % 32 == 0) red[warp] = v;
  __syncthreads();
  float s = 0.0f;
  for (int w = 0; w < warps_per_row; ++w) s += red[first_warp + w];
  __syncthreads();  // red is written again by the next call
  return s;
}

// Sums each of a[0..K) over the block (1-D or 2-D); the result is valid in thread (0, 0). Every thread must call it,
// once per kernel.
template <int K>
__device__ __forceinline__ void block_sum(double (&a)[K]) {
  __shared__ double red[K][32];
  const int tid = threadIdx.x + threadIdx.y * blockDim.x;
  const int warps = blockDim.x * blockDim.y / 32;
#pragma unroll
  for (int k = 0; k < K; ++k) a[k] = warp_sum(a[k]);
  if (tid % 32 == 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) red[k][tid / 32] = a[k];
  }
  __syncthreads();
  if (tid < 32) {
#pragma unroll
    for (int k = 0; k < K; ++k) a[k] = warp_sum(tid < warps ? red[k][tid] : 0.0);
  }
}

// Writes the block's sums of moments (sum, sum_sq, saturated) to row blockIdx.x of moment_partials (gridDim.x, 3),
// when that is not null. Every thread of the block must call it, once per kernel (block_sum).
__device__ __forceinline__ void store_moment_partial(double* moment_partials, double (&moments)[3]) {
  if (moment_partials == nullptr) return;
  block_sum(moments);
  if (threadIdx.x == 0) {
    for (int k = 0; k < 3; ++k) moment_partials[3 * static_cast<int64_t>(blockIdx.x) + k] = moments[k];
  }
}

// Writes this block's per-channel sums to out (C): the row groups' register accumulators acc are added in row-group
// order through smem (C floats, see column_smem_bytes). Every thread of the block must call it.
template <int kVec, int kSlots>
__device__ __forceinline__ void store_column_partials(float* out, const float (&acc)[kSlots][kVec], float* smem, int C,
                                                      int threads_per_row) {
  const int rows_per_block = blockDim.x / threads_per_row;
  const int r = threadIdx.x / threads_per_row;
  const int j = threadIdx.x % threads_per_row;
  const int accesses = C / kVec;
  if (rows_per_block == 1) {
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int v = j + s * threads_per_row;
      if (v < accesses) store_f32(out + v * kVec, acc[s]);
    }
    return;
  }
  for (int group = 0; group < rows_per_block; ++group) {
    if (r == group) {
#pragma unroll
      for (int s = 0; s < kSlots; ++s) {
        const int v = j + s * threads_per_row;
        if (v >= accesses) continue;
#pragma unroll
        for (int e = 0; e < kVec; ++e) {
          float* cell = smem + v * kVec + e;
          *cell = group == 0 ? acc[s][e] : *cell + acc[s][e];
        }
      }
    }
    __syncthreads();
  }
  for (int c = threadIdx.x; c < C; c += blockDim.x) out[c] = smem[c];
  __syncthreads();  // smem is written again by the next call
}

}  // namespace dytrain::cuda::detail
