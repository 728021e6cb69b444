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

// How the staged backend's all_reduce_sum_bf16 sums (parallel.staged_bf16_sum):
// - fp32: every rank's values summed in fp32 and rounded to bf16 once: the most accurate sum, and NCCL's own for two
//   ranks;
// - ring: NCCL's ring all-reduce emulated (parallel/bf16_ring_sum.h): every rank's values gathered, then every rank
//   sums them in ring order rounding to bf16 after each addition, as NCCL does between GPUs. Tests on one GPU run
//   with it to see the numerics of a multi-GPU NCCL run at tp > 2, where per-hop rounding loses more than fp32's.
enum class StagedBf16Sum { fp32, ring };

// The staged backend over `host_group` (an MPI communicator, or the self communicator), on `device`. Every call is
// complete when it returns (the copies and the host collective are waited for); synchronize() has nothing left.
std::unique_ptr<DeviceCommunicator> make_staged_communicator(Communicator& host_group, int device,
                                                             StagedBf16Sum bf16_sum = StagedBf16Sum::fp32);

// parallel.gpu_comm's backend: "nccl" (throws std::invalid_argument in a build without NCCL) or "mpi" (the staged
// backend, summing bf16 as bf16_sum says; NCCL ignores it). Collective over host_group.
std::unique_ptr<DeviceCommunicator> make_device_communicator(const std::string& kind, Communicator& host_group,
                                                             int device, StagedBf16Sum bf16_sum = StagedBf16Sum::fp32);

}  // namespace dytrain
