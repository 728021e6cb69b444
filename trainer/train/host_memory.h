// Host memory planned before anything is allocated or written: a config whose tensors cannot fit this host fails
// at start with exit 2, the estimate by category and the key to change, instead of std::bad_alloc minutes in (or the
// kernel's OOM killer taking the node down). The CUDA engine plans its device memory the same way (device_arena.h);
// this is the host side of both engines.
//
// The estimate is computed in double from the config alone (no table is built, nothing is allocated), so absurd
// sizes (vocab_size 2e9, micro_batch 1e9) cannot overflow on the way to the error message. It is an upper bound
// within a few percent of what the CPU model holds at its peak: parameters, gradients, AdamW moments, the
// activations kept for the backward pass (attention probabilities included), the logits, the backward scratch and
// the bounded rounds a checkpoint save stages (about 12 MiB: trainer/train/distributed_checkpoint.h).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "trainer/config/config.h"

namespace dytrain {

struct HostMemoryPart {
  std::string what;  // "parameters", "activations", ...
  double bytes;
  std::string key;   // the config key that scales this part, for the error message
};

// One rank's host memory at its peak, by part. device: "cpu" or "cuda" (on the GPU only the token batch and the
// checkpoint staging live on the host). dp and tp: the layout (ZeRO-1 divides the moments by dp).
std::vector<HostMemoryPart> plan_host_memory(const Config& cfg, const std::string& device, int dp, int tp);

// Bytes this process may still allocate: MemAvailable of /proc/meminfo, lowered to the limit minus the usage of the
// tightest memory cgroup (v2 or v1) from this process's own up to its hierarchy's root. 0 when nothing can be read
// (the check is then skipped).
double available_host_bytes();
// The same with every /proc and /sys path under `root` (tests build a fake tree there).
double available_host_bytes_under(const std::string& root);

// Throws std::runtime_error when ranks_on_host x the plan exceeds available_bytes: the message gives the estimate
// by part, the available memory and the key of the largest part. available_bytes <= 0 skips the check.
void check_host_memory(const std::vector<HostMemoryPart>& plan, int ranks_on_host, double available_bytes);

}  // namespace dytrain
