// The staged device backend: copy the device buffer to pinned host memory, run the host group's collective, copy the
// result back. Copies run on the communicator's own stream, which the caller has ordered after the work that produced
// the buffer, and each call waits for its copies, so a call is complete when it returns. Pinned memory grows to the
// largest collective seen and is kept: gradient buckets repeat their sizes every step.
#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "parallel/bf16_ring_sum.h"
#include "parallel/device_comm.h"
#if DYTRAIN_HAVE_NCCL
#include "parallel/nccl_comm.h"
#endif

namespace dytrain {
namespace {

class StagedCommunicator final : public DeviceCommunicator {
 public:
  StagedCommunicator(Communicator& host, int device, StagedBf16Sum bf16_sum)
      : host_(host), device_(device), bf16_sum_(bf16_sum) {
    DYTRAIN_CUDA_CHECK(cudaSetDevice(device));
    DYTRAIN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  ~StagedCommunicator() override {
    if (stream_) {
      cudaStreamSynchronize(stream_);
      cudaStreamDestroy(stream_);
    }
    cudaFreeHost(pinned_);
  }
  StagedCommunicator(const StagedCommunicator&) = delete;
  StagedCommunicator& operator=(const StagedCommunicator&) = delete;

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  cudaStream_t stream() const override { return stream_; }
  int device() const override { return device_; }

  void all_reduce(float* buf, int64_t n, ReduceOp op) override { all_reduce_typed(buf, n, op); }
  void all_reduce(double* buf, int64_t n, ReduceOp op) override { all_reduce_typed(buf, n, op); }

  // MPI has no bf16. fp32: the sum runs in fp32 on the host and is rounded once (NCCL rounds after each addition,
  // which for two ranks is the same single rounding). ring: NCCL's per-hop rounding, emulated.
  void all_reduce_sum_bf16(__nv_bfloat16* buf, int64_t n) override {
    if (bf16_sum_ == StagedBf16Sum::ring) {
      ring_sum_bf16(buf, n);
      return;
    }
    float* h = staging<float>(n + (n + 1) / 2);  // n floats, then the n bf16 as they arrive
    auto* raw = reinterpret_cast<__nv_bfloat16*>(h + n);
    to_host(raw, buf, n);
    for (int64_t i = 0; i < n; ++i) h[i] = __bfloat162float(raw[i]);
    host_.all_reduce(h, n, ReduceOp::sum);
    for (int64_t i = 0; i < n; ++i) raw[i] = __float2bfloat16_rn(h[i]);
    to_device(buf, raw, n);
  }

  void reduce_scatter(float* out, const float* in, int64_t n_per_rank, ReduceOp op) override {
    const int64_t n_in = n_per_rank * size();
    float* h = staging<float>(n_in + n_per_rank);
    to_host(h, in, n_in);
    host_.reduce_scatter(h + n_in, h, n_per_rank, op);
    to_device(out, h + n_in, n_per_rank);  // out may be in's own block: in was read before this
  }

  void all_gather(float* out, const float* in, int64_t n_per_rank) override {
    const int64_t n_out = n_per_rank * size();
    float* h = staging<float>(n_out);
    to_host(h + n_per_rank * rank(), in, n_per_rank);
    host_.all_gather(h, h + n_per_rank * rank(), n_per_rank);
    to_device(out, h, n_out);
  }

  void broadcast(void* buf, int64_t bytes, int root) override {
    char* h = staging<char>(bytes);
    to_host(h, static_cast<const char*>(buf), bytes);
    host_.broadcast(h, bytes, root);
    to_device(static_cast<char*>(buf), h, bytes);
  }

  void barrier() override {
    DYTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));
    host_.barrier();
  }

 private:
  // Every rank's values gathered as floats (bf16 to fp32 is exact), then every rank runs the same ring sum on the
  // same inputs, so all receive the same bits. Costs size() times the buffer in host memory: a test path.
  void ring_sum_bf16(__nv_bfloat16* buf, int64_t n) {
    const int P = size();
    float* all = staging<float>(P * n + n + (n + 1) / 2);  // (P, n) gathered, n sums, then n bf16
    float* sum = all + P * n;
    auto* raw = reinterpret_cast<__nv_bfloat16*>(sum + n);
    float* mine = all + rank() * n;
    to_host(raw, buf, n);
    for (int64_t i = 0; i < n; ++i) mine[i] = __bfloat162float(raw[i]);
    host_.all_gather(all, mine, n);
    bf16_ring_sum(sum, all, P, n);
    for (int64_t i = 0; i < n; ++i) raw[i] = __float2bfloat16_rn(sum[i]);  // exact: each sum is a bf16 already
    to_device(buf, raw, n);
  }

  template <typename T>
  void all_reduce_typed(T* buf, int64_t n, ReduceOp op) {
    T* h = staging<T>(n);
    to_host(h, buf, n);
    host_.all_reduce(h, n, op);
    to_device(buf, h, n);
  }

  // Pinned scratch for n elements of T.
  template <typename T>
  T* staging(int64_t n) {
    const size_t bytes = size_t(n > 0 ? n : 0) * sizeof(T);
    if (bytes > pinned_bytes_) {
      DYTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));
      DYTRAIN_CUDA_CHECK(cudaFreeHost(pinned_));
      pinned_ = nullptr;
      pinned_bytes_ = 0;
      DYTRAIN_CUDA_CHECK(cudaMallocHost(&pinned_, bytes));
      pinned_bytes_ = bytes;
    }
    return static_cast<T*>(pinned_);
  }

  template <typename T>
  void to_host(T* host, const T* device, int64_t n) {
    if (n <= 0) return;
    DYTRAIN_CUDA_CHECK(cudaMemcpyAsync(host, device, size_t(n) * sizeof(T), cudaMemcpyDeviceToHost, stream_));
    DYTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  template <typename T>
  void to_device(T* device, const T* host, int64_t n) {
    if (n <= 0) return;
    DYTRAIN_CUDA_CHECK(cudaMemcpyAsync(device, host, size_t(n) * sizeof(T), cudaMemcpyHostToDevice, stream_));
    DYTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  Communicator& host_;
  int device_;
  StagedBf16Sum bf16_sum_;
  cudaStream_t stream_ = nullptr;
  void* pinned_ = nullptr;
  size_t pinned_bytes_ = 0;
};

}  // namespace

std::unique_ptr<DeviceCommunicator> make_staged_communicator(Communicator& host_group, int device,
                                                             StagedBf16Sum bf16_sum) {
  return std::make_unique<StagedCommunicator>(host_group, device, bf16_sum);
}

std::unique_ptr<DeviceCommunicator> make_device_communicator(const std::string& kind, Communicator& host_group,
                                                             int device, StagedBf16Sum bf16_sum) {
  if (kind == "mpi") return make_staged_communicator(host_group, device, bf16_sum);
  if (kind != "nccl")
    throw std::invalid_argument("parallel.gpu_comm '" + kind + "': use nccl or mpi");
#if DYTRAIN_HAVE_NCCL
  return make_nccl_communicator(host_group, device);
#else
  throw std::invalid_argument("parallel.gpu_comm is nccl, but this build found no NCCL: install NCCL and rebuild, or "
                              "set parallel.gpu_comm: mpi (device buffers staged through host memory over MPI)");
#endif
}

}  // namespace dytrain
