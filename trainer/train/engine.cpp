// Which engine a run gets. The CUDA engine exists only in builds with CUDA (DYTRAIN_HAVE_CUDA); this file is the one
// place that asks.
#include "trainer/train/engine.h"

#include <array>
#include <cstdlib>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "trainer/train/device_choice.h"

namespace dytrain {

std::unique_ptr<Engine> make_cpu_engine(const Config& cfg, Mesh& mesh);
#if DYTRAIN_HAVE_CUDA
constexpr bool kBuildHasCuda = true;
int cuda_device_count(std::string* error);
std::array<unsigned char, 16> cuda_device_uuid(int device);
std::unique_ptr<Engine> make_cuda_engine(const Config& cfg, Mesh& mesh);
#else
constexpr bool kBuildHasCuda = false;
static int cuda_device_count(std::string*) { return 0; }
static std::array<unsigned char, 16> cuda_device_uuid(int) { return {}; }
#endif

namespace {

// What this host's ranks see, gathered over mesh.node_group: per rank its count of visible GPUs and the 16 bytes of
// the UUID of the one it would take, each as an exact float (the communicator's all_gather moves floats). A rank whose
// query fails still takes part in the gather (count -1), so every rank of the host leaves with an error, none waits.
DeviceFacts gather_device_facts(const Config& cfg, const Mesh& mesh) {
  DeviceFacts f;
  f.want = cfg.train.device;
  f.build_has_cuda = kBuildHasCuda;
  f.gpu_comm = cfg.parallel.gpu_comm;
  f.host = mesh.host;
  const char* env = std::getenv("CUDA_VISIBLE_DEVICES");
  f.visible_devices_env = env ? env : "";
  int visible = 0;
  std::array<unsigned char, 16> uuid{};
  std::string failed;
  try {
    visible = f.build_has_cuda && f.want != "cpu" ? cuda_device_count(&f.cuda_error) : 0;
    if (visible > 0) uuid = cuda_device_uuid(gpu_for_local_rank(mesh.local_rank, visible));
  } catch (const std::exception& e) {
    failed = e.what();
    visible = -1;
  }

  constexpr int kPerRank = 17;
  std::vector<float> mine(kPerRank);
  mine[0] = float(visible);
  for (int i = 0; i < 16; ++i) mine[1 + i] = float(uuid[i]);
  const int ranks = mesh.node_group ? mesh.node_group->size() : 1;
  f.local_rank = mesh.node_group ? mesh.node_group->rank() : 0;
  std::vector<float> all(size_t(kPerRank) * ranks);
  if (mesh.node_group)
    mesh.node_group->all_gather(all.data(), mine.data(), kPerRank);
  else
    all = mine;
  if (!failed.empty()) throw std::runtime_error(failed);
  for (int r = 0; r < ranks; ++r) {
    const float* p = all.data() + size_t(kPerRank) * r;
    if (p[0] < 0)
      throw std::runtime_error(fmt::format("local rank {} of {} could not query its GPU (its error is above)", r,
                                           mesh.host));
    f.visible.push_back(int(p[0]));
    std::array<unsigned char, 16> bytes{};
    for (int i = 0; i < 16; ++i) bytes[i] = static_cast<unsigned char>(p[1 + i]);
    f.uuids.push_back(p[0] > 0 ? format_gpu_uuid(bytes.data()) : "");
  }
  return f;
}

}  // namespace

std::string resolve_device(const Config& cfg, const Mesh& mesh) {
  const DeviceChoice choice = choose_device(gather_device_facts(cfg, mesh));
  if (!choice.error.empty()) throw std::invalid_argument(choice.error);  // names the host where it matters
  // One line per host for a warning (its ranks decided alike), the whole job's device from rank 0 otherwise.
  if (choice.warn && mesh.local_rank == 0)
    spdlog::warn("{}", choice.reason);
  else if (!choice.warn && mesh.world_rank == 0)
    spdlog::info("rank 0 on {}: {}", mesh.host, choice.reason);
  return choice.device;
}

std::unique_ptr<Engine> make_engine(const std::string& device, const Config& cfg, Mesh& mesh) {
#if DYTRAIN_HAVE_CUDA
  if (device == "cuda") return make_cuda_engine(cfg, mesh);
#endif
  if (device != "cpu") throw std::invalid_argument("unknown device '" + device + "'");
  return make_cpu_engine(cfg, mesh);
}

}  // namespace dytrain
