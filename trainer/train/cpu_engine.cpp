// The CPU engine: the fp32 reference model (trainer/model/llama.h) in host memory, gradients reduced over the mesh's
// MPI communicators, AdamW on the host (optionally ZeRO-1 sharded over dp, see grad_sync.h).
#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "trainer/model/llama.h"
#include "trainer/optim/adamw.h"
#include "trainer/train/distributed_checkpoint.h"
#include "trainer/train/engine.h"
#include "trainer/train/fault_injection.h"
#include "trainer/train/grad_sync.h"

namespace dytrain {
namespace {

class CpuEngine final : public Engine {
 public:
  CpuEngine(const Config& cfg, Mesh& mesh)
      : cfg_(cfg),
        mesh_(mesh),
        model_(cfg.model, mesh.tp_group.get()),
        zero_range_(shard_range(model_.table().total(), cfg.parallel.zero1 ? mesh.dp : 1,
                                cfg.parallel.zero1 ? mesh.dp_rank : 0)),
        optim_(cfg.optim, model_.table(), zero_range_.begin, zero_range_.end),
        fault_(mesh.world_rank, mesh.world_size) {}

  const char* device_name() const override { return "cpu"; }
  const ParamTable& table() const override { return model_.table(); }
  void init(uint64_t seed) override { model_.init(seed); }

  void calibrate_alphas(const int32_t* tokens, int B, int T, double c) override {
    model_.calibrate_alphas(tokens, B, T, c);
    broadcast_alphas_from_rank0(*mesh_.world, model_.table(), model_.params().data());
  }

  void zero_grad() override {
    model_.zero_grad();
    micro_ = 0;
  }
  float forward(const int32_t* tokens, int B, int T, cpu::SiteMoments* moments) override {
    return model_.forward(tokens, B, T, moments);
  }
  // The last micro-batch's backward starts each layer's dp average as soon as the layer is done (grad_sync.h).
  void backward(float loss_weight) override {
    const bool last = ++micro_ == cfg_.train.grad_accum;
    if (last && mesh_.dp > 1 && !cfg_.parallel.zero1) {
      average_.emplace(*mesh_.dp_group, model_.grads().data(), model_.table().total(), cfg_.parallel.bucket_mb);
      model_.set_grads_ready([this](int64_t begin, int64_t end) {
        average_->start(begin, end);
        fault_.at("backward", optim_.t() + 1);
      });
    }
    model_.backward(loss_weight);
    model_.set_grads_ready(nullptr);
  }

  // Gradients -> dp average (or ZeRO-1 reduce-scatter) -> global norm -> clip -> AdamW.
  double update(double lr_factor) override {
    const ParamTable& table = model_.table();
    const int64_t n = table.total();
    std::vector<float>& grads = model_.grads();
    const float* range_grads = grads.data();
    if (cfg_.parallel.zero1 && mesh_.dp > 1) {
      grad_shard_.resize(zero_range_.end - zero_range_.begin);
      reduce_scatter_gradients(*mesh_.dp_group, grad_shard_.data(), padded_, grads.data(), n, zero_range_);
      range_grads = grad_shard_.data();
    } else if (mesh_.dp > 1) {
      if (!average_)  // backward() ran fewer times than grad_accum: nothing started yet
        average_.emplace(*mesh_.dp_group, grads.data(), n, cfg_.parallel.bucket_mb);
      average_->finish();
      average_.reset();
    }
    // Squares of this rank's range, each element of the whole model counted once over the tp group (and, with
    // ZeRO-1, over the dp group whose ranges partition the buffer).
    double sq = grad_square_sum(table, range_grads, optim_.begin(), optim_.end(), mesh_.tp_rank);
    mesh_.tp_group->all_reduce(&sq, 1, ReduceOp::sum);
    if (cfg_.parallel.zero1) mesh_.dp_group->all_reduce(&sq, 1, ReduceOp::sum);
    const double grad_norm = std::sqrt(sq);
    if (!std::isfinite(grad_norm)) return grad_norm;  // the same on every rank: the norm is all-reduced
    optim_.step(model_.params().data(), range_grads, lr_factor, clip_scale(grad_norm, cfg_.optim.grad_clip));
    if (cfg_.parallel.zero1 && mesh_.dp > 1)
      all_gather_parameters(*mesh_.dp_group, model_.params().data(), padded_, n, zero_range_);
    return grad_norm;
  }

  // The whole local buffer (every tp block; with ZeRO-1 the all-gathered copy): one read of the parameters, cheap
  // next to a step's 6 FLOPs per parameter per token.
  bool params_finite() override {
    const std::vector<float>& p = model_.params();
    double bad = std::all_of(p.begin(), p.end(), [](float x) { return std::isfinite(x); }) ? 0.0 : 1.0;
    mesh_.world->all_reduce(&bad, 1, ReduceOp::max);
    return bad == 0.0;
  }

  std::vector<float> site_alphas() override {
    std::vector<float> alphas(n_norm_sites(cfg_.model));
    for (size_t s = 0; s < alphas.size(); ++s) alphas[s] = model_.site_alpha(int(s));
    return alphas;
  }

  float embed_scale() override {
    const ParamSpec* s = model_.table().find("model.embed_scale");
    return s ? model_.params()[s->offset] : 0.0f;
  }

  std::string save_checkpoint(const std::string& run_dir, int64_t step, const YAML::Node& trainer_state) override {
    YAML::Node state = YAML::Clone(trainer_state);
    state["adam_t"] = optim_.t();
    return save_checkpoint_distributed(mesh_, run_dir, step, cfg_, model_.table(), model_.params().data(), optim_,
                                       state);
  }

  YAML::Node load_checkpoint(const std::string& dir) override {
    YAML::Node state = load_checkpoint_distributed(model_.params().data(), optim_, mesh_, dir, model_.table());
    optim_.set_t(state["adam_t"].as<int64_t>());
    return state;
  }

 private:
  Config cfg_;
  Mesh& mesh_;
  LlamaModel model_;
  ShardRange zero_range_;  // this rank's optimizer range (the whole buffer without ZeRO-1)
  AdamW optim_;
  std::vector<float> grad_shard_, padded_;  // ZeRO-1 scratch
  int micro_ = 0;                           // backward passes since zero_grad()
  std::optional<OverlappedGradAverage> average_;  // this step's dp average, started by the last backward
  InjectedFault fault_;                           // tests only (fault_injection.h)
};

}  // namespace

std::unique_ptr<Engine> make_cpu_engine(const Config& cfg, Mesh& mesh) {
  return std::make_unique<CpuEngine>(cfg, mesh);
}

}  // namespace dytrain
