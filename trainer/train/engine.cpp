// Which engine a run gets. The CUDA engine exists only in builds with CUDA (DYTRAIN_HAVE_CUDA); this file is the one
// place that asks.
#include "trainer/train/engine.h"

#include <stdexcept>

#include <fmt/format.h>


namespace dytrain {

std::unique_ptr<Engine> make_cpu_engine(const Config& cfg, Mesh& mesh);
#if DYTRAIN_HAVE_CUDA
int cuda_device_count();
std::unique_ptr<Engine> make_cuda_engine(const Config& cfg, Mesh& mesh);
#else
static int cuda_device_count() { return 0; }
#endif

std::string resolve_device(const Config& cfg, const Mesh& mesh) {
  const std::string& want = cfg.train.device;
  const int gpus = cuda_device_count();
  // Ranks of one host may share a GPU only over the staged backend: NCCL refuses two ranks on one device.
  const bool gpu_per_rank = gpus > 0 && (gpus >= mesh.local_size || cfg.parallel.gpu_comm == "mpi");
  std::string device = "cpu";
  if (want == "cuda") {
#if !DYTRAIN_HAVE_CUDA
    throw std::invalid_argument("train.device is cuda, but this build of dytrain has no CUDA backend (no nvcc was found "
                                "at configure time); rebuild on a host with the CUDA toolkit, or set train.device: cpu");
#endif
    if (!gpu_per_rank)
      throw std::invalid_argument(fmt::format(
          "train.device is cuda, but {} sees {} GPU(s) for its {} rank(s): run one rank per GPU, let ranks share "
          "a GPU with parallel.gpu_comm: mpi, or set train.device: cpu",
          mesh.host, gpus, mesh.local_size));
    device = "cuda";
  } else if (want == "auto" && gpu_per_rank) {
    device = "cuda";
  }
  return device;
}

std::unique_ptr<Engine> make_engine(const std::string& device, const Config& cfg, Mesh& mesh) {
#if DYTRAIN_HAVE_CUDA
  if (device == "cuda") return make_cuda_engine(cfg, mesh);
#endif
  if (device != "cpu") throw std::invalid_argument("unknown device '" + device + "'");
  return make_cpu_engine(cfg, mesh);
}

}  // namespace dytrain
