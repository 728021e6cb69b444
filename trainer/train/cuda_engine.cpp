// The CUDA engine: the GPU model (trainer/model/cuda/llama_cuda.h) on the GPU its node-local rank picks, gradients
// averaged over the dp group on the device (parallel.gpu_comm: NCCL, or staged through host memory over MPI), the
// global norm and one fused AdamW over the flat buffer on the device (fp32 master weights and moments, the bf16 copy
// rewritten in the same pass).
//
// The step's only host round trips are the loss (per micro-batch) and the grad norm, which the clip factor and the
// metrics need. With dp > 1 the last micro-batch's backward starts each layer's average as soon as the layer is
// queued (an event orders the communicator's stream after it), so over NCCL the reductions run behind the rest of the
// backward pass; update() starts what no layer covered (embedding, final norm, LM head) and waits for all
// (grad_sync.h).
//
// ZeRO-1 (parallel.zero1, dp > 1): the model's flat buffers are padded to dp equal blocks, and dp rank r owns block r.
// After the backward pass the gradients are reduce-scattered in place (block r of rank r's buffer receives the dp
// average of block r), the norm is the dp sum of the blocks' squares, AdamW updates only block r with moments sized to
// it, the updated blocks are all-gathered in place into every rank's parameters, and the bf16 copy is refreshed. The
// moments, the largest optimizer state, shrink by dp; nothing else is copied.
//
// Checkpoints go through host copies of the parameters and moments, so the files and the cross-layout logic are those
// of the CPU engine (distributed_checkpoint.h).
//
// Tensor parallelism (tp > 1) lives in the model (llama_cuda.h), on a second device communicator over the tp group;
// the engine counts the replicated tensors' gradients once in the global norm.
#include <algorithm>
#include <array>
#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "kernels/cpu/grad_norm.h"
#include "kernels/cuda/adamw.cuh"
#include "kernels/cuda/check.h"
#include "kernels/cuda/device_arena.h"
#include "kernels/cuda/grad_norm.cuh"
#include "parallel/device_comm.h"
#include "parallel/runtime.h"
#include "trainer/model/cuda/llama_cuda.h"
#include "trainer/optim/adamw.h"
#include "trainer/train/adamw_segments.h"
#include "trainer/train/device_choice.h"
#include "trainer/train/distributed_checkpoint.h"
#include "trainer/train/engine.h"
#include "trainer/train/fault_injection.h"
#include "trainer/train/grad_sync.h"
#include "trainer/train/trainer.h"

namespace dytrain {
namespace {

// This dp rank's range of its tp rank's flat parameter buffer: the whole buffer, or with ZeRO-1 its block
// (grad_sync.h).
ShardRange optimizer_range(const Config& cfg, const Mesh& mesh) {
  const int64_t n = LlamaLayout(cfg.model, mesh.tp_rank, mesh.tp).table.total();
  if (cfg.parallel.zero1 && mesh.dp > 1) return shard_range(n, mesh.dp, mesh.dp_rank);
  return ShardRange{0, n, n};
}

// Rank r of a host takes visible GPU r mod count: one GPU per rank under NCCL (resolve_device checks the UUIDs),
// shared ones over the staged backend.
int gpu_for_rank(const Mesh& mesh) {
  int count = 0;
  DYTRAIN_CUDA_CHECK(cudaGetDeviceCount(&count));
  return gpu_for_local_rank(mesh.local_rank, count);
}

// This rank's GPU, made current, once every rank of the world has one: the vote (over MPI) comes before the first
// NCCL initialization, so a rank without a usable GPU makes every rank throw together here (train() reports it with
// exit code 2) instead of leaving its peers waiting in NCCL's initialization for the NCCL timeout.
int agreed_gpu_for_rank(const Mesh& mesh) {
  int device = 0;
  std::string error;
  try {
    device = gpu_for_rank(mesh);
    DYTRAIN_CUDA_CHECK(cudaSetDevice(device));
  } catch (const std::exception& e) {
    error = e.what();
  }
  double failed = error.empty() ? 0.0 : 1.0;
  mesh.world->all_reduce(&failed, 1, ReduceOp::max);
  if (!error.empty()) throw std::runtime_error(error);
  if (failed != 0.0) throw std::runtime_error("another rank could not select its GPU (its error is above)");
  return device;
}

// A device communicator over `group`. Its construction is collective (the unique id's broadcast, NCCL's
// initialization): a rank that fails inside it may leave its peers waiting there, so the failure ends the job at once
// (abort_job) rather than going back to the trainer's agreement over MPI, which the peers would reach only after the
// NCCL timeout. The exception: std::invalid_argument, which make_device_communicator throws for a parallel.gpu_comm
// this build cannot serve before any collective, the same on every rank, so the trainer's agreement reports it as
// bad input (exit code 2).
std::unique_ptr<DeviceCommunicator> device_communicator_or_end_job(const Config& cfg, Communicator& group,
                                                                   int device, const char* name) {
  try {
    const StagedBf16Sum bf16_sum = cfg.parallel.staged_bf16_sum == "ring" ? StagedBf16Sum::ring : StagedBf16Sum::fp32;
    return make_device_communicator(cfg.parallel.gpu_comm, group, device, bf16_sum);
  } catch (const std::invalid_argument&) {
    throw;
  } catch (const std::exception& e) {
    if (!mpi_active()) throw;
    abort_job(kExitError, fmt::format("building the {} group's device communicator ({}): {}", name,
                                      cfg.parallel.gpu_comm, e.what()));
  }
}

class CudaEvent {
 public:
  CudaEvent() { DYTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming)); }
  ~CudaEvent() { cudaEventDestroy(event_); }
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  // `waiter` waits (on the device) for the work queued on `source` so far.
  void order(cudaStream_t source, cudaStream_t waiter) {
    DYTRAIN_CUDA_CHECK(cudaEventRecord(event_, source));
    DYTRAIN_CUDA_CHECK(cudaStreamWaitEvent(waiter, event_, 0));
  }

 private:
  cudaEvent_t event_ = nullptr;
};

// The engine's compute stream on `device` (made current). A member declared before the model, so it outlives
// everything that queues on it.
class CudaStream {
 public:
  explicit CudaStream(int device) {
    DYTRAIN_CUDA_CHECK(cudaSetDevice(device));
    DYTRAIN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  ~CudaStream() {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  operator cudaStream_t() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

class CudaEngine final : public Engine {
 public:
  CudaEngine(const Config& cfg, Mesh& mesh)
      : cfg_(cfg),
        mesh_(mesh),
        device_(agreed_gpu_for_rank(mesh)),
        tp_(mesh.tp > 1 ? device_communicator_or_end_job(cfg, *mesh.tp_group, device_, "tp") : nullptr),
        dp_(mesh.dp > 1 ? device_communicator_or_end_job(cfg, *mesh.dp_group, device_, "dp") : nullptr),
        stream_(device_),
        range_(optimizer_range(cfg, mesh)),
        zero1_(cfg.parallel.zero1 && mesh.dp > 1),
        model_(cfg.model, stream_, zero1_ ? range_.block * mesh.dp : 0, tp_.get()),
        fault_(mesh.world_rank, mesh.world_size) {
    if (dp_) dp_stream_ = dp_->stream();
    const int64_t n = range_.end - range_.begin;
    norm_ws_bytes_ = cuda::sum_squares_workspace_bytes(n);
    adamw_ws_bytes_ = cuda::adamw_workspace_bytes(model_.table().specs().size());
    arena_ = cuda::allocate_planned(
        [&](cuda::ArenaPlanner& a) {
          a.take(&m_, n, "optimizer state (fp32)");
          a.take(&v_, n, "optimizer state (fp32)");
          a.take(&norm_sq_, 1, "kernel workspace");
          a.take(&norm_ws_, int64_t(norm_ws_bytes_), "kernel workspace");
          a.take(&adamw_ws_, int64_t(adamw_ws_bytes_), "kernel workspace");
        },
        &bytes_);
    DYTRAIN_CUDA_CHECK(cudaMemsetAsync(m_, 0, n * sizeof(float), stream_));
    DYTRAIN_CUDA_CHECK(cudaMemsetAsync(v_, 0, n * sizeof(float), stream_));
    model_.plan_activations(cfg.train.micro_batch, cfg.train.seq_len);  // the whole memory plan, before step 1
  }

  const char* device_name() const override { return "cuda"; }
  const ParamTable& table() const override { return model_.table(); }
  void init(uint64_t seed) override { model_.init(seed); }

  void calibrate_alphas(const int32_t* tokens, int B, int T, double c) override {
    model_.calibrate_alphas(tokens, B, T, c);
    // Rank 0's alphas become everyone's (each dp rank measured its own batch); broadcast through host copies.
    std::vector<float> host(model_.table().total());
    model_.download_params(host.data());
    broadcast_alphas_from_rank0(*mesh_.world, model_.table(), host.data());
    model_.upload_params(host.data());
  }

  void zero_grad() override {
    model_.zero_grad();
    micro_ = 0;
  }
  float forward(const int32_t* tokens, int B, int T, cpu::SiteMoments* moments) override {
    return model_.forward(tokens, B, T, moments);
  }
  // The last micro-batch's backward starts each layer's dp average as soon as the layer is queued (not with ZeRO-1,
  // whose reduce-scatter runs after the backward pass).
  void backward(float loss_weight) override {
    const bool last = ++micro_ == cfg_.train.grad_accum;
    if (last && dp_ && !zero1_) {
      average_.emplace(*dp_, model_.grads(), model_.table().total(), cfg_.parallel.bucket_mb);
      model_.set_grads_ready([this](int64_t begin, int64_t end) {
        grads_ready_.order(stream_, dp_stream_);
        average_->start(begin, end);
        fault_.at("backward", t_ + 1);
      });
    }
    model_.backward(loss_weight);
    model_.set_grads_ready(nullptr);
  }

  // Gradients -> dp average (or ZeRO-1 reduce-scatter) -> global norm -> clip -> AdamW (-> ZeRO-1 all-gather).
  double update(double lr_factor) override {
    const int64_t n = range_.end - range_.begin;  // this rank's range: everything, or its ZeRO-1 block
    const int64_t own_block = zero1_ ? range_.block * mesh_.dp_rank : 0;  // == range_.begin unless the range is empty
    float* grads = model_.grads() + range_.begin;
    if (zero1_) {
      grads_ready_.order(stream_, dp_stream_);
      dp_->reduce_scatter(model_.grads() + own_block, model_.grads(), range_.block, ReduceOp::avg);
      dp_->synchronize();
    } else if (dp_) {
      if (!average_) average_.emplace(*dp_, model_.grads(), model_.table().total(), cfg_.parallel.bucket_mb);
      grads_ready_.order(stream_, dp_stream_);
      average_->finish();  // host-blocking: NCCL's synchronize() also surfaces a remote rank's error here
      average_.reset();
    }
    const double grad_norm = std::sqrt(global_square_sum(grads, n));
    if (!std::isfinite(grad_norm)) return grad_norm;

    ++t_;
    cuda::adamw_update(model_.params() + range_.begin, zero1_ ? nullptr : model_.params_bf16(), m_, v_, grads, n,
                       adamw_segments(model_.table(), cfg_.optim, lr_factor, range_), float(cfg_.optim.beta1),
                       float(cfg_.optim.eps), clip_scale(grad_norm, cfg_.optim.grad_clip), t_, adamw_ws_,
                       adamw_ws_bytes_, stream_);
    if (zero1_) {
      grads_ready_.order(stream_, dp_stream_);
      dp_->all_gather(model_.params(), model_.params() + own_block, range_.block);
      dp_->synchronize();
      model_.refresh_bf16_params();
    }
    return grad_norm;
  }

  // The sum of squares of this rank's fp32 master weights is finite exactly when every weight is (fp32 squares and
  // their fp64 sum cannot overflow): the deterministic gradient-norm reduction reused, one extra read of 4 bytes per
  // parameter against AdamW's ~22. This rank's range suffices: ZeRO-1 all-gathers the ranges, tp ranks check their own.
  bool params_finite() override {
    cuda::sum_squares(norm_sq_, model_.params() + range_.begin, range_.end - range_.begin, norm_ws_, norm_ws_bytes_,
                      stream_);
    double sq = 0.0;
    DYTRAIN_CUDA_CHECK(cudaMemcpyAsync(&sq, norm_sq_, sizeof(double), cudaMemcpyDeviceToHost, stream_));
    DYTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));
    double bad = std::isfinite(sq) ? 0.0 : 1.0;
    mesh_.world->all_reduce(&bad, 1, ReduceOp::max);
    return bad == 0.0;
  }

  // The squared global gradient norm from this rank's range (grads, n elements): each element of the whole model
  // counted once over the mesh, as the CPU engine's grad_square_sum counts it. Replicated tensors (the same on every tp
  // rank) count on tp rank 0 only; the ZeRO-1 blocks partition the buffer, so their squares add up over dp. The sums
  // over the groups are one double each, over the mesh's host communicators.
  double global_square_sum(const float* grads, int64_t n) {
    cuda::sum_squares(norm_sq_, grads, n, norm_ws_, norm_ws_bytes_, stream_);
    double sq = 0.0;
    DYTRAIN_CUDA_CHECK(cudaMemcpyAsync(&sq, norm_sq_, sizeof(double), cudaMemcpyDeviceToHost, stream_));
    DYTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));
    if (mesh_.tp_rank != 0) {
      // Rounding can take the difference a hair below zero: clamp that, but let NaN and inf through (std::max would
      // swallow a NaN) so the engine's non-finite check still sees them.
      const double rest = sq - replicated_square_sum(grads);
      sq = rest < 0.0 ? 0.0 : rest;
    }
    if (mesh_.tp > 1) mesh_.tp_group->all_reduce(&sq, 1, ReduceOp::sum);
    if (zero1_) mesh_.dp_group->all_reduce(&sq, 1, ReduceOp::sum);
    return sq;
  }

  // Sum of squares of the replicated tensors' gradients inside this rank's range (grads holds the range): small
  // tensors (the norm sites, embed_scale), copied to the host.
  double replicated_square_sum(const float* grads) {
    std::vector<float> host;
    std::vector<std::pair<int64_t, int64_t>> pieces;  // (offset in host, length)
    for (const ParamSpec& spec : model_.table().specs()) {
      if (spec.split != TpSplit::replicated) continue;
      const int64_t lo = std::max(range_.begin, spec.offset), hi = std::min(range_.end, spec.offset + spec.numel);
      if (lo < hi) pieces.emplace_back(lo - range_.begin, hi - lo);
    }
    int64_t total = 0;
    for (const auto& piece : pieces) total += piece.second;
    host.resize(total);
    int64_t at = 0;
    for (const auto& [offset, length] : pieces) {
      DYTRAIN_CUDA_CHECK(cudaMemcpyAsync(host.data() + at, grads + offset, length * sizeof(float),
                                         cudaMemcpyDeviceToHost, stream_));
      at += length;
    }
    DYTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return cpu::sum_squares(host.data(), total);
  }

  std::vector<float> site_alphas() override { return model_.site_alphas(); }
  float embed_scale() override { return model_.embed_scale(); }

  std::string save_checkpoint(const std::string& run_dir, int64_t step, const YAML::Node& trainer_state) override {
    AdamW host_optim(cfg_.optim, model_.table(), range_.begin, range_.end);
    std::vector<float> params(model_.table().total());
    download_state(params.data(), host_optim);
    YAML::Node state = YAML::Clone(trainer_state);
    state["adam_t"] = t_;
    return save_checkpoint_distributed(mesh_, run_dir, step, cfg_, model_.table(), params.data(), host_optim, state);
  }

  YAML::Node load_checkpoint(const std::string& dir) override {
    AdamW host_optim(cfg_.optim, model_.table(), range_.begin, range_.end);
    std::vector<float> params(model_.table().total());
    YAML::Node state = load_checkpoint_distributed(params.data(), host_optim, mesh_, dir, model_.table());
    const size_t bytes = (range_.end - range_.begin) * sizeof(float);
    model_.upload_params(params.data());
    DYTRAIN_CUDA_CHECK(cudaMemcpyAsync(m_, host_optim.exp_avg().data(), bytes, cudaMemcpyHostToDevice, stream_));
    DYTRAIN_CUDA_CHECK(cudaMemcpyAsync(v_, host_optim.exp_avg_sq().data(), bytes, cudaMemcpyHostToDevice, stream_));
    DYTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));
    t_ = state["adam_t"].as<int64_t>();
    return state;
  }

  std::map<std::string, size_t> memory() const override {
    std::map<std::string, size_t> bytes = model_.memory();
    for (const auto& [category, b] : bytes_) bytes[category] += b;
    return bytes;
  }

 private:
  void download_state(float* params, AdamW& host_optim) {
    const size_t bytes = (range_.end - range_.begin) * sizeof(float);
    DYTRAIN_CUDA_CHECK(cudaMemcpyAsync(host_optim.exp_avg().data(), m_, bytes, cudaMemcpyDeviceToHost, stream_));
    DYTRAIN_CUDA_CHECK(cudaMemcpyAsync(host_optim.exp_avg_sq().data(), v_, bytes, cudaMemcpyDeviceToHost, stream_));
    model_.download_params(params);  // synchronizes the stream
  }

  Config cfg_;
  Mesh& mesh_;
  int device_;
  // Both device communicators first, before anything that can fail on one rank alone (the compute stream, the
  // allocations): from the GPU vote on, every rank gets through both NCCL initializations or the job ends.
  std::unique_ptr<DeviceCommunicator> tp_;  // the tp group on device buffers, when tp > 1 (the model's)
  std::unique_ptr<DeviceCommunicator> dp_;  // the dp group on device buffers, when dp > 1
  CudaStream stream_;
  ShardRange range_;  // the flat range this rank's optimizer updates: everything, or its ZeRO-1 block
  bool zero1_;        // ZeRO-1 with dp > 1
  LlamaModelCuda model_;
  cudaStream_t dp_stream_ = nullptr;  // dp_'s stream
  CudaEvent grads_ready_;  // orders the communicator's stream after the compute work queued so far
  int micro_ = 0;          // backward passes since zero_grad()
  std::optional<OverlappedGradAverage> average_;  // this step's dp average, started by the last backward
  cuda::DeviceArena arena_;
  std::map<std::string, size_t> bytes_;
  float* m_ = nullptr;  // (range_.end - range_.begin) AdamW moments, laid out like the parameters of the range
  float* v_ = nullptr;
  double* norm_sq_ = nullptr;
  char* norm_ws_ = nullptr;  // sum_squares' workspace
  size_t norm_ws_bytes_ = 0;
  char* adamw_ws_ = nullptr;  // the segment table adamw_update uploads
  size_t adamw_ws_bytes_ = 0;
  int64_t t_ = 0;  // AdamW updates done
  InjectedFault fault_;  // tests only (fault_injection.h)
};

}  // namespace

int cuda_device_count(std::string* error) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status == cudaSuccess) return count;
  *error = std::string("cudaGetDeviceCount: ") + cudaGetErrorName(status);
  return 0;
}

std::array<unsigned char, 16> cuda_device_uuid(int device) {
  cudaDeviceProp prop{};
  DYTRAIN_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  std::array<unsigned char, 16> bytes{};
  for (int i = 0; i < 16; ++i) bytes[i] = static_cast<unsigned char>(prop.uuid.bytes[i]);
  return bytes;
}

std::unique_ptr<Engine> make_cuda_engine(const Config& cfg, Mesh& mesh) {
  return std::make_unique<CudaEngine>(cfg, mesh);
}

}  // namespace dytrain
