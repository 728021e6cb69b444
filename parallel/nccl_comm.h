// The NCCL backend: collectives on device buffers, enqueued on the communicator's own stream and asynchronous: a call
// returns once the work is queued, synchronize() waits for it. The communicator is non-blocking (NCCL's config
// blocking = 0), so no NCCL call can wedge the host thread: every wait is a poll of the stream and of
// ncclCommGetAsyncError with a deadline, and an error on any rank (or the deadline) aborts the communicator and
// throws, instead of hanging the job. One process per GPU: the device is fixed at construction.
#pragma once
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <cstdint>
#include <memory>

#include "parallel/device_comm.h"

namespace dytrain {

class NcclCommunicator final : public DeviceCommunicator {
 public:
  // Collective over `bootstrap` (an MPI group, or the self communicator for one rank): rank 0 creates the NCCL unique
  // id and broadcasts it, every rank joins with bootstrap's rank and size on `device`, which becomes the current
  // device. `timeout` bounds every wait (initialization, enqueue, synchronize); the first step of a run includes
  // NCCL's lazy connection setup, so keep it in minutes.
  NcclCommunicator(Communicator& bootstrap, int device, std::chrono::milliseconds timeout);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  // All buffers are device pointers on device(). Asynchronous on stream(); avg is NCCL's ncclAvg.
  void all_reduce(float* buf, int64_t n, ReduceOp op) override;
  void all_reduce(double* buf, int64_t n, ReduceOp op) override;
  void all_reduce_sum_bf16(__nv_bfloat16* buf, int64_t n) override;
  void reduce_scatter(float* out, const float* in, int64_t n_per_rank, ReduceOp op) override;
  void all_gather(float* out, const float* in, int64_t n_per_rank) override;
  void broadcast(void* buf, int64_t bytes, int root) override;
  // Host-blocking: a one-element all-reduce, then synchronize().
  void barrier() override;
  // Waits for the stream while polling NCCL's async error; throws (after ncclCommAbort) on an error or the timeout.
  void synchronize() override;

  // Work that feeds or consumes the collectives orders itself against this stream (events or stream waits).
  cudaStream_t stream() const override { return stream_; }
  int device() const override { return device_; }

 private:
  // Called with each NCCL call's status: waits out ncclInProgress, aborts and throws on an error.
  void finish_call(ncclResult_t status, const char* statement, const char* file, int line);
  // The communicator's state (ncclSuccess, ncclInProgress or an error); aborts and throws if the query itself fails.
  ncclResult_t async_state();
  // Polls ncclCommGetAsyncError until the communicator is no longer in progress.
  void wait_ready(const char* what);
  [[noreturn]] void abort_and_throw(const std::string& what);

  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  float* barrier_scratch_ = nullptr;  // (1,) device
  int rank_ = 0, size_ = 1, device_ = 0;
  std::chrono::milliseconds timeout_;
  bool aborted_ = false;
};

// Ten minutes: far longer than any healthy collective (first-step connection setup on 16 GPUs included), far shorter
// than a Slurm allocation; PyTorch's NCCL watchdog uses the same default.
constexpr std::chrono::milliseconds kDefaultNcclTimeout{10 * 60 * 1000};

std::unique_ptr<NcclCommunicator> make_nccl_communicator(Communicator& bootstrap, int device,
                                                          std::chrono::milliseconds timeout = kDefaultNcclTimeout);

}  // namespace dytrain
