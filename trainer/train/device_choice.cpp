#include "trainer/train/device_choice.h"

#include <map>

#include <fmt/format.h>

namespace dytrain {
namespace {

// "local ranks 0, 3" of a list.
std::string ranks_text(const std::vector<int>& ranks) {
  std::string text = ranks.size() == 1 ? "local rank " : "local ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) text += fmt::format("{}{}", i ? ", " : "", ranks[i]);
  return text;
}

std::string binding(const DeviceFacts& f) {
  const std::string env = f.visible_devices_env.empty() ? "CUDA_VISIBLE_DEVICES unset"
                                                        : "CUDA_VISIBLE_DEVICES=" + f.visible_devices_env;
  return f.cuda_error.empty() ? env : f.cuda_error + ", " + env;
}

// auto: the CPU, with the reason as a warning (the host has GPUs); cuda: the error.
DeviceChoice refuse(const DeviceFacts& f, const std::string& why, const std::string& remedy) {
  DeviceChoice c;
  if (f.want == "cuda") {
    c.error = fmt::format("train.device is cuda, but {}: {}, or set train.device: cpu", why, remedy);
  } else {
    c.reason = fmt::format("training on the CPU although {} has GPUs (train.device: auto): {}; {}, or set "
                           "train.device: cpu to silence this",
                           f.host, why, remedy);
    c.warn = true;
  }
  return c;
}

}  // namespace

int gpu_for_local_rank(int local_rank, int visible) { return local_rank % visible; }

DeviceChoice choose_device(const DeviceFacts& f) {
  DeviceChoice c;
  if (f.want == "cpu") {
    c.reason = "training on the CPU (train.device: cpu)";
    return c;
  }
  if (!f.build_has_cuda) {
    if (f.want == "cuda")
      c.error = "train.device is cuda, but this build of dytrain has no CUDA backend (no nvcc was found at configure "
                "time); rebuild on a host with the CUDA toolkit, or set train.device: cpu";
    c.reason = "training on the CPU: this build of dytrain has no CUDA backend (train.device: auto)";
    return c;
  }
  std::vector<int> without;
  for (size_t r = 0; r < f.visible.size(); ++r)
    if (f.visible[r] <= 0) without.push_back(int(r));
  if (without.size() == f.visible.size()) {
    if (f.want == "cuda")
      c.error = fmt::format("train.device is cuda, but no rank on {} sees a GPU ({}): check the job's GPU "
                            "allocation, or set train.device: cpu",
                            f.host, binding(f));
    c.reason = fmt::format("training on the CPU: no GPU is visible on {} ({}; train.device: auto)", f.host,
                           binding(f));
    return c;
  }
  if (!without.empty())
    return refuse(f, fmt::format("{} of {} see no GPU while the others do", ranks_text(without), f.host),
                  "give every rank a GPU (srun --gpus-per-task=1, or one rank per GPU)");

  // Every rank has a GPU: are the ones they take distinct?
  std::map<std::string, std::vector<int>> takers;
  for (size_t r = 0; r < f.uuids.size(); ++r) takers[f.uuids[r]].push_back(int(r));
  std::string shared;
  for (const auto& [uuid, ranks] : takers)
    if (ranks.size() > 1) shared += fmt::format("{}{} would share {}", shared.empty() ? "" : "; ", ranks_text(ranks),
                                                uuid);
  const int me = f.local_rank;
  const int gpu = gpu_for_local_rank(me, f.visible[me]);
  if (!shared.empty() && f.gpu_comm != "mpi")
    return refuse(f, fmt::format("on {}, {} (NCCL, parallel.gpu_comm: nccl, needs a GPU per rank)", f.host, shared),
                  "run one rank per GPU, or let ranks share GPUs over the staged backend (parallel.gpu_comm: mpi)");
  c.device = "cuda";
  c.gpu = gpu;
  c.reason = fmt::format("training on GPU {} of the {} local rank {} sees ({}; {}): {}", gpu, f.visible[me], me,
                         f.uuids[me], binding(f),
                         shared.empty() ? fmt::format("each of the {} ranks on {} has a GPU of its own",
                                                      f.visible.size(), f.host)
                                        : fmt::format("{} (parallel.gpu_comm: mpi)", shared));
  return c;
}

std::string format_gpu_uuid(const unsigned char* b) {
  std::string hex;
  for (int i = 0; i < 16; ++i) hex += fmt::format("{:02x}", b[i]);
  return fmt::format("GPU-{}-{}-{}-{}-{}", hex.substr(0, 8), hex.substr(8, 4), hex.substr(12, 4), hex.substr(16, 4),
                     hex.substr(20));
}

}  // namespace dytrain
