// Communicators on device buffers, for the CUDA engine. Two backends behind one interface:
// - nccl: NCCL on its own stream, the fast path (one rank per GPU; NVLink / InfiniBand).
// - mpi:  device buffers staged through pinned host memory and reduced over an MPI group. Slower (two PCIe copies
//   per collective, no overlap), but it needs no NCCL and lets several ranks share one GPU, which NCCL refuses: a
//   dp2 x tp2 layout can be tested on a one-GPU machine, and a build without NCCL can still train data-parallel.
// Both order their work on stream(): the caller makes stream() wait for the compute work that produced a buffer
// (an event), and synchronize() before the compute stream reads a result.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <memory>
#include <string>

#include "parallel/comm.h"

namespace dytrain {

class DeviceCommunicator : public Communicator {
 public:
  // Every buffer passed in is a device pointer on device().
  virtual cudaStream_t stream() const = 0;
  virtual int device() const = 0;
  // In place over n bf16 elements: the sum over the group, rounded to bf16 (the tensor-parallel activations and
  // their gradients). Every rank receives the same bits.
  virtual void all_reduce_sum_bf16(__nv_bfloat16* buf, int64_t n) = 0;
};

// The staged backend over `host_group` (an MPI communicator, or the self communicator), on `device`. Every call is
// complete when it returns (the copies and the host collective are waited for); synchronize() has nothing left.
std::unique_ptr<DeviceCommunicator> make_staged_communicator(Communicator& host_group, int device);

// parallel.gpu_comm's backend: "nccl" (throws std::invalid_argument in a build without NCCL) or "mpi". Collective
// over host_group.
std::unique_ptr<DeviceCommunicator> make_device_communicator(const std::string& kind, Communicator& host_group,
                                                             int device);

}  // namespace dytrain
