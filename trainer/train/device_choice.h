// Which device a rank trains on (train.device), decided from facts gathered over the ranks of its host, so that the
// decision is a pure function the tests drive with made-up hosts: 8 GPUs for 8 ranks, one GPU per rank under per-task
// binding (srun --gpus-per-task=1, --gpu-bind, CUDA_VISIBLE_DEVICES set to the local rank), ranks that would share a
// GPU, hosts without a GPU. A rank takes visible GPU local_rank mod (the number it sees); the GPUs the host's ranks
// take are compared by UUID, since under per-task binding every rank calls its GPU 0 and only the UUIDs tell whether
// they are distinct. The choice always comes with its reason, which the log prints: on a host with GPUs, the CPU is
// never taken silently.
#pragma once
#include <string>
#include <vector>

namespace dytrain {

struct DeviceFacts {
  std::string want = "auto";      // train.device: auto, cpu or cuda
  bool build_has_cuda = false;    // this build has the CUDA engine
  std::string gpu_comm = "nccl";  // parallel.gpu_comm: nccl (one GPU per rank) or mpi (ranks may share one)
  std::string host;
  int local_rank = 0;
  // Per local rank of this host, in local rank order: how many GPUs it sees, and the UUID of the one it would take
  // ("" when it sees none).
  std::vector<int> visible;
  std::vector<std::string> uuids;
  std::string visible_devices_env;  // this rank's CUDA_VISIBLE_DEVICES, or "" when unset (for the message)
  std::string cuda_error;           // why this rank's device count failed (no driver...), or ""
};

struct DeviceChoice {
  std::string device = "cpu";  // "cpu" or "cuda"
  int gpu = -1;                // with cuda: the index among this rank's visible GPUs
  std::string reason;          // which device and why, for the log
  bool warn = false;           // the CPU although the host has GPUs (auto): log the reason as a warning
  std::string error;           // train.device: cuda that cannot be honored; the message says what to change
};

// The visible GPU a rank takes: local_rank mod visible (visible > 0).
int gpu_for_local_rank(int local_rank, int visible);

DeviceChoice choose_device(const DeviceFacts& facts);

// "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (nvidia-smi's form) of a 16-byte CUDA UUID.
std::string format_gpu_uuid(const unsigned char* bytes);

}  // namespace dytrain
