// The device side of training: the model with its parameters, gradients and optimizer state on one device, and the
// update that ends a step (data-parallel gradient reduction, global norm, clipping, AdamW). The loop (trainer.cpp)
// drives an Engine and never touches device memory: the CPU engine keeps everything in host vectors and reduces over
// the mesh's communicators (MPI); the CUDA engine keeps everything on the GPU and reduces gradients over NCCL.
// Every call is collective over the mesh where its comment says so.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "kernels/cpu/dyt.h"
#include "parallel/mesh.h"
#include "trainer/config/config.h"
#include "trainer/model/params.h"

namespace dytrain {

class Engine {
 public:
  virtual ~Engine() = default;

  virtual const char* device_name() const = 0;  // "cpu" or "cuda"
  virtual const ParamTable& table() const = 0;  // this tp rank's tensors

  // The model's deterministic init (the same numbers on every device and layout).
  virtual void init(uint64_t seed) = 0;
  // alpha0 = c / std of each site's input on tokens (B, T+1); rank 0's values become every rank's. Collective.
  virtual void calibrate_alphas(const int32_t* tokens, int B, int T, double c) = 0;

  virtual void zero_grad() = 0;
  // tokens (B, T+1) on the host; moments: nullptr or one entry per norm site, accumulated. Returns the mean loss.
  virtual float forward(const int32_t* tokens, int B, int T, cpu::SiteMoments* moments) = 0;
  // Gradients of loss_weight * the last forward's mean loss, accumulated.
  virtual void backward(float loss_weight) = 0;
  // Gradient reduction over dp, global norm (returned), clipping, one AdamW update at peak lr * lr_factor. Collective.
  // A non-finite norm (some gradient is inf or NaN) is returned without touching the parameters or the optimizer
  // state: the caller stops the run as diverged, and the last checkpointable state stays clean.
  virtual double update(double lr_factor) = 0;
  // True when every parameter on every rank is finite. Collective. Called after each update: a finite gradient can
  // still step a weight to inf (an extreme lr), and such a state must stop the run before anything is written.
  virtual bool params_finite() = 0;

  virtual std::vector<float> site_alphas() = 0;  // metrics order
  virtual float embed_scale() = 0;               // 0 when the model has none

  // Collective over the mesh. trainer_state gets the optimizer's step count added. Returns the checkpoint directory.
  virtual std::string save_checkpoint(const std::string& run_dir, int64_t step, const YAML::Node& trainer_state) = 0;
  // Collective. Restores parameters, moments and the optimizer's step count; returns the trainer state.
  virtual YAML::Node load_checkpoint(const std::string& dir) = 0;

  // Bytes by category of what the engine holds (empty on the CPU); logged at start.
  virtual std::map<std::string, size_t> memory() const { return {}; }
};

// The device this rank would use (device_choice.h): train.device cpu or cuda as given (cuda throws
// std::invalid_argument with a clear message in a build without CUDA or when the host's ranks do not each have a GPU),
// auto = cuda when this build has CUDA and every rank of this host has a GPU of its own (distinct UUIDs: one GPU per
// rank under per-task binding counts), else cpu, with a warning that says why when the host has GPUs. With
// parallel.gpu_comm: mpi ranks may share GPUs (local rank r takes visible GPU r mod count). Logs the choice and its
// reason. Collective over mesh.node_group; the caller checks that every rank of the world agrees.
std::string resolve_device(const Config& cfg, const Mesh& mesh);

// Collective over the mesh (the CUDA engine builds its device communicators here).
std::unique_ptr<Engine> make_engine(const std::string& device, const Config& cfg, Mesh& mesh);

}  // namespace dytrain
