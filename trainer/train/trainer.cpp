// The training loop. Order of one step (ARCHITECTURE.md): for each micro-batch, load -> forward (gathering the
// norm-site moments at log steps) -> backward (gradients accumulate); then the global grad norm, the clip factor
// and one AdamW update at the scheduled lr; then metrics, validation and checkpoints as configured.
#include "trainer/train/trainer.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "kernels/cpu/grad_norm.h"
#include "trainer/checkpoint/atomic_file.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/config/config.h"
#include "trainer/data/loader.h"
#include "trainer/model/llama.h"
#include "trainer/optim/adamw.h"
#include "trainer/optim/schedule.h"
#include "trainer/train/metrics.h"

namespace dytrain {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The one piece of global state: a signal handler can reach nothing else. The loop polls it between steps.
volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

// An error in what the user gave us (config, data, run directory), as opposed to a failure of the program.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string human_duration(double s) {
  if (!(s >= 0) || s > 1e8) return "?";
  const int64_t t = int64_t(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, t / 60 % 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

std::shared_ptr<spdlog::logger> make_logger(const std::string& log_path) {
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("dytrain", spdlog::sinks_init_list{console});
  if (!log_path.empty())
    logger->sinks().push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(log_path, /*truncate=*/false));
  logger->set_pattern("[%Y-%m-%d %H:%M:%S] [%^%l%$] %v");
  logger->flush_on(spdlog::level::info);
  return logger;
}

LoaderOptions loader_options(const Config& cfg, const std::string& shards, bool shuffle) {
  LoaderOptions o;
  o.shards = shards;
  o.batch = cfg.train.micro_batch;
  o.seq_len = cfg.train.seq_len;
  o.vocab_size = cfg.model.vocab_size;
  o.seed = cfg.train.seed;
  o.shuffle = shuffle;
  return o;
}

class Trainer {
 public:
  Trainer(const Config& cfg, const TrainOptions& opt)
      : cfg_(cfg),
        run_dir_(opt.run_dir),
        model_(cfg.model),
        optim_(cfg.optim, model_.table()),
        tokens_(int64_t(cfg.train.micro_batch) * (cfg.train.seq_len + 1)),
        moments_(n_norm_sites(cfg.model)) {
    // Data first: a bad shard must fail before the run directory is touched.
    try {
      train_loader_ = std::make_unique<TokenLoader>(loader_options(cfg, cfg.data.train, true));
      if (!cfg.data.val.empty())
        val_loader_ = std::make_unique<TokenLoader>(loader_options(cfg, cfg.data.val, false));
    } catch (const std::exception& e) {
      throw InputError(e.what());
    }
    prepare_run_dir(opt.resume);
    log_ = make_logger((fs::path(run_dir_) / "train.log").string());
    model_.init(cfg.train.seed);
    std::optional<int64_t> resumed_at;
    if (opt.resume)
      resumed_at = restore();
    else if (cfg.model.alpha_init == "calibrated" && cfg.model.norm == NormKind::dyt)
      calibrate_alphas();
    metrics_ = std::make_unique<MetricsWriter>((fs::path(run_dir_) / "metrics.jsonl").string(), resumed_at);
  }

  int run();

 private:
  void prepare_run_dir(bool resume);
  int64_t restore();
  void calibrate_alphas();
  double validate();
  void save_checkpoint_now();
  void log_step(const StepMetrics& m);

  Config cfg_;
  std::string run_dir_;
  LlamaModel model_;
  AdamW optim_;
  std::unique_ptr<TokenLoader> train_loader_, val_loader_;
  std::unique_ptr<MetricsWriter> metrics_;
  std::shared_ptr<spdlog::logger> log_;
  std::vector<int32_t> tokens_;                 // (B, T+1)
  std::vector<cpu::SiteMoments> moments_;       // per norm site, at log steps
  int64_t step_ = 0;                            // optimizer steps done
  int64_t tokens_seen_ = 0;
};

void Trainer::prepare_run_dir(bool resume) {
  const fs::path dir(run_dir_);
  const bool has_checkpoint = latest_checkpoint(run_dir_).has_value();
  if (resume && !has_checkpoint)
    throw InputError(fmt::format("--resume: {} holds no complete checkpoint; run without --resume to start afresh",
                                 (dir / "checkpoints").string()));
  if (!resume && has_checkpoint)
    throw InputError(fmt::format("{} already holds checkpoints of a run: pass --resume to continue it, or choose "
                                 "another --run-dir",
                                 run_dir_));
  fs::create_directories(dir);
  write_file_atomic((dir / "config.yaml").string(), to_yaml(cfg_));
}

int64_t Trainer::restore() {
  const std::string dir = *latest_checkpoint(run_dir_);
  YAML::Node state = load_checkpoint(model_.params().data(), optim_.exp_avg().data(), optim_.exp_avg_sq().data(),
                                     dir, model_.table());
  step_ = state["step"].as<int64_t>();
  tokens_seen_ = state["tokens"].as<int64_t>();
  optim_.set_t(state["adam_t"].as<int64_t>());
  train_loader_->restore(state["train_loader"]);
  if (state["config_hash"].as<uint64_t>() != config_hash(cfg_))
    log_->warn("the config differs from the one the checkpoint was written with; continuing with the new one");
  log_->info("resumed from {} at step {}", dir, step_);
  return step_;
}

// alpha0 = c / std of each site's input on the first training batch (read by a loader of its own, so training
// still starts at that batch).
void Trainer::calibrate_alphas() {
  TokenLoader probe(loader_options(cfg_, cfg_.data.train, true));
  probe.next(tokens_.data());
  model_.calibrate_alphas(tokens_.data(), cfg_.train.micro_batch, cfg_.train.seq_len, cfg_.model.alpha_calib_c);
  std::string alphas;
  for (int s = 0; s < n_norm_sites(cfg_.model); ++s) alphas += fmt::format(" {:.4g}", model_.site_alpha(s));
  log_->info("calibrated alpha0 = {} / act_std per site (layer 0 attn, ffn, ..., final):{}", cfg_.model.alpha_calib_c,
             alphas);
}

void Trainer::save_checkpoint_now() {
  YAML::Node state;
  state["step"] = step_;
  state["tokens"] = tokens_seen_;
  state["adam_t"] = optim_.t();
  state["config_hash"] = config_hash(cfg_);
  state["train_loader"] = train_loader_->state();
  CheckpointData data{&cfg_, &model_.table(), model_.params().data(), optim_.exp_avg().data(),
                      optim_.exp_avg_sq().data(), state};
  const std::string path = save_checkpoint(run_dir_, step_, data, cfg_.train.keep_checkpoints);
  log_->info("checkpoint {}", path);
}

double Trainer::validate() {
  val_loader_->reset();
  double sum = 0.0;
  for (int i = 0; i < cfg_.train.val_batches; ++i) {
    val_loader_->next(tokens_.data());
    sum += model_.forward(tokens_.data(), cfg_.train.micro_batch, cfg_.train.seq_len, nullptr);
  }
  return sum / cfg_.train.val_batches;
}

void Trainer::log_step(const StepMetrics& m) {
  std::string line = fmt::format("step {:>6}/{} | loss {:.4f}", m.step, cfg_.train.max_steps, m.loss);
  if (m.val_loss) line += fmt::format(" | val {:.4f}", *m.val_loss);
  line += fmt::format(" | lr {:.3e} | grad {:.3f} | {:.0f} tok/s | eta {}", m.lr, m.grad_norm, m.tok_s,
                      human_duration(m.eta_s));
  log_->info(line);
  metrics_->write(m);
}

int Trainer::run() {
  const TrainConfig& tc = cfg_.train;
  const int64_t tokens_per_step = int64_t(tc.micro_batch) * tc.seq_len * tc.grad_accum;
  log_->info("model: {} parameters, {} layers, dim {}, norm {}; {} tokens per step, {} steps", model_.table().total(),
             cfg_.model.n_layers, cfg_.model.dim, cfg_.model.norm == NormKind::dyt ? "dyt" : "rmsnorm",
             tokens_per_step, tc.max_steps);
  const auto run_start = Clock::now();
  const int64_t first_step = step_;
  std::vector<float> alphas(moments_.size());

  while (step_ < tc.max_steps) {
    const auto t0 = Clock::now();
    const int64_t step = step_ + 1;
    const bool log_now = step == 1 || step % tc.log_every == 0 || step == tc.max_steps;
    const bool val_now = val_loader_ && tc.val_every > 0 && (step % tc.val_every == 0 || step == tc.max_steps);

    if (log_now) std::fill(moments_.begin(), moments_.end(), cpu::SiteMoments{});
    model_.zero_grad();
    double loss = 0.0;
    for (int micro = 0; micro < tc.grad_accum; ++micro) {
      train_loader_->next(tokens_.data());
      loss += model_.forward(tokens_.data(), tc.micro_batch, tc.seq_len, log_now ? moments_.data() : nullptr);
      model_.backward(1.0f / float(tc.grad_accum));
    }
    loss /= tc.grad_accum;
    if (!std::isfinite(loss)) {
      log_->error("the loss is {} at step {}: training diverged (try a lower optim.lr or smaller alpha inits)", loss,
                  step);
      return kExitDiverged;
    }

    const std::vector<float>& grads = model_.grads();
    const double grad_norm = std::sqrt(cpu::sum_squares(grads.data(), int64_t(grads.size())));
    for (size_t s = 0; s < alphas.size(); ++s) alphas[s] = model_.site_alpha(int(s));
    const double factor = lr_factor(cfg_.optim, step - 1, tc.max_steps);
    optim_.step(model_.params().data(), grads.data(), factor, clip_scale(grad_norm, cfg_.optim.grad_clip));
    step_ = step;
    tokens_seen_ += tokens_per_step;

    if (log_now || val_now) {
      const double step_s = std::chrono::duration<double>(Clock::now() - t0).count();
      const double elapsed_s = std::chrono::duration<double>(Clock::now() - run_start).count();
      StepMetrics m;
      m.step = step;
      m.loss = loss;
      if (val_now) m.val_loss = validate();
      m.lr = cfg_.optim.lr * factor;
      m.grad_norm = grad_norm;
      m.tokens = tokens_seen_;
      m.step_ms = step_s * 1e3;
      m.tok_s = tokens_per_step / step_s;
      m.elapsed_s = elapsed_s;
      m.eta_s = elapsed_s / double(step - first_step) * double(tc.max_steps - step);
      m.embed_scale = cfg_.model.embed_scale ? model_.params()[model_.table().at("model.embed_scale").offset] : 0.0;
      if (log_now) m.sites = site_metrics(moments_, alphas);
      log_step(m);
    }

    const bool ckpt_now = step == tc.max_steps || (tc.ckpt_every > 0 && step % tc.ckpt_every == 0);
    if (ckpt_now || g_stop_signal) save_checkpoint_now();
    if (g_stop_signal && step < tc.max_steps) {
      log_->warn("stopped by signal {} after step {}; continue with --resume", int(g_stop_signal), step);
      return kExitInterrupted;
    }
  }
  log_->info("done: {} steps, {} tokens, {}", step_, tokens_seen_,
             human_duration(std::chrono::duration<double>(Clock::now() - run_start).count()));
  return kExitOk;
}

}  // namespace

int train(const TrainOptions& opt) {
  Config cfg;
  try {
    cfg = load_config(opt.config_path, opt.overrides);
  } catch (const ConfigError& e) {
    spdlog::error("{}", e.what());
    return kExitBadInput;
  }
  if (cfg.train.device == "cuda") {
    spdlog::error("{}: train.device is cuda, but this build of dytrain has no CUDA backend; use cpu or auto",
                  opt.config_path);
    return kExitBadInput;
  }
  TrainOptions o = opt;
  if (o.run_dir.empty()) o.run_dir = (fs::path("runs") / fs::path(opt.config_path).stem()).string();

  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
  try {
    Trainer trainer(cfg, o);
    return trainer.run();
  } catch (const InputError& e) {
    spdlog::error("{}", e.what());
    return kExitBadInput;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return kExitError;
  }
}

}  // namespace dytrain
