// The training loop. Order of one step (ARCHITECTURE.md): for each micro-batch, load -> forward (gathering the
// norm-site moments at log steps) -> backward (gradients accumulate); then the global grad norm, the clip factor
// and one AdamW update at the scheduled lr; then metrics, validation and checkpoints as configured.
#include "trainer/train/trainer.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <exception>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "parallel/mesh.h"
#include "parallel/runtime.h"
#include "parallel/watched_comm.h"
#include "trainer/checkpoint/atomic_file.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/trainer_state.h"
#include "trainer/config/config.h"
#include "trainer/data/loader.h"
#include "trainer/model/layout.h"
#include "trainer/optim/schedule.h"
#include "trainer/train/distributed_checkpoint.h"
#include "trainer/train/engine.h"
#include "trainer/train/flops.h"
#include "trainer/train/host_memory.h"
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

// Rank 0 logs everything to the console and train.log; the other ranks only warnings and errors, labelled.
std::shared_ptr<spdlog::logger> make_logger(const std::string& log_path, int rank) {
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("dytrain", spdlog::sinks_init_list{console});
  if (!log_path.empty())
    logger->sinks().push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(log_path, /*truncate=*/false));
  if (rank == 0) {
    logger->set_pattern("[%Y-%m-%d %H:%M:%S] [%^%l%$] %v");
  } else {
    logger->set_pattern(fmt::format("[%Y-%m-%d %H:%M:%S] [%^%l%$] [{}] %v", process_label()));
    logger->set_level(spdlog::level::warn);
  }
  logger->flush_on(spdlog::level::info);
  return logger;
}

LoaderOptions loader_options(const Config& cfg, const std::string& shards, bool shuffle, const Mesh& mesh) {
  LoaderOptions o;
  o.shards = shards;
  o.batch = cfg.train.micro_batch;
  o.seq_len = cfg.train.seq_len;
  o.vocab_size = cfg.model.vocab_size;
  o.seed = cfg.train.seed;
  o.shuffle = shuffle;
  o.dp_rank = mesh.dp_rank;  // the tp ranks of one replica read the same data
  o.dp_size = mesh.dp;
  return o;
}

// Collective: true when `ok` holds on every rank of the group. Lets all ranks leave together when one fails.
bool everyone_ok(Communicator& world, bool ok) {
  double failed = ok ? 0.0 : 1.0;
  world.all_reduce(&failed, 1, ReduceOp::max);
  return failed == 0.0;
}

// Runs `fn` on every rank; if it throws on any rank, the ranks that failed log their message and all ranks throw
// InputError together, so no rank is left waiting in a collective.
template <class Fn>
void on_all_ranks(Communicator& world, Fn&& fn) {
  std::string error;
  try {
    fn();
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (everyone_ok(world, error.empty())) return;
  if (!error.empty()) spdlog::error("{}: {}", process_label(), error);
  throw InputError("");  // already reported by the rank(s) it happened on
}

// Runs fn, a part of the run where the ranks call collectives together and the engine holds device state. An error
// that only this rank may have (anything but InputError and NonFiniteError, which every rank throws together) ends
// the job right here, through abort_job, while the engine and its communicators still exist: unwinding them first
// would tear down NCCL communicators with unmatched collectives (each one polls for its peers up to the NCCL timeout,
// 10 minutes) and free device memory a stuck NCCL kernel still uses, so a job that failed would take minutes to end,
// and its peers would wait the while. Without MPI (one process, no peer) the error goes on up to train()'s handlers.
// The exit codes are train()'s: 2 for a shard changed under the run, 1 for anything else.
template <class Fn>
decltype(auto) ending_job_on_error(Fn&& fn) {
  try {
    return fn();
  } catch (const InputError&) {
    throw;
  } catch (const NonFiniteError&) {
    throw;
  } catch (const ShardError& e) {
    if (mpi_active()) abort_job(kExitBadInput, e.what());
    throw;
  } catch (const std::exception& e) {
    if (mpi_active()) abort_job(kExitError, e.what());
    throw;
  }
}

class Trainer {
 public:
  Trainer(const Config& cfg, const TrainOptions& opt, Mesh& mesh, const std::string& device)
      : cfg_(cfg),
        run_dir_(opt.run_dir),
        mesh_(mesh),
        tokens_(int64_t(cfg.train.micro_batch) * (cfg.train.seq_len + 1)),
        moments_(n_norm_sites(cfg.model)) {
    // Data first: a bad shard must fail before the run directory is touched.
    on_all_ranks(*mesh.world, [&] {
      train_loader_ = std::make_unique<TokenLoader>(loader_options(cfg, cfg.data.train, true, mesh));
      if (!cfg.data.val.empty())
        val_loader_ = std::make_unique<TokenLoader>(loader_options(cfg, cfg.data.val, false, mesh));
    });
    // The engine next (device memory, NCCL): a model the device cannot run also fails before the run directory.
    on_all_ranks(*mesh.world, [&] { engine_ = make_engine(device, cfg, mesh); });
    // From here on the engine exists: an error of only this rank ends the job before the members unwind.
    ending_job_on_error([&] {
      on_all_ranks(*mesh.world, [&] {
        if (mesh.world_rank == 0) prepare_run_dir(opt);
      });
      log_ = make_logger(mesh.world_rank == 0 ? (fs::path(run_dir_) / "train.log").string() : "", mesh.world_rank);
      engine_->init(cfg.train.seed);
      std::optional<int64_t> resumed_at;
      if (opt.resume)
        resumed_at = restore(opt.resume_from);
      else if (cfg.model.alpha_init == "calibrated" && cfg.model.norm == NormKind::dyt)
        calibrate_alphas();
      // Only now that the checkpoint has loaded does the run directory change: a failed resume leaves the config and
      // the metrics of the run as they were (train.log gets the error).
      on_all_ranks(*mesh.world, [&] {
        if (mesh.world_rank == 0) write_file_atomic((fs::path(run_dir_) / "config.yaml").string(), to_yaml(cfg_));
      });
      if (mesh.world_rank == 0)
        metrics_ = std::make_unique<MetricsWriter>((fs::path(run_dir_) / "metrics.jsonl").string(), resumed_at);
    });
  }

  int run() {
    return ending_job_on_error([&] { return run_steps(); });
  }

 private:
  int run_steps();
  void prepare_run_dir(const TrainOptions& opt);
  int64_t restore(const std::string& resume_from);
  void restore_from(const std::string& dir);
  void calibrate_alphas();
  double validate();
  void save_checkpoint_now();
  void log_memory();
  void log_step(const StepMetrics& m);

  Config cfg_;
  std::string run_dir_;
  Mesh& mesh_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<TokenLoader> train_loader_, val_loader_;
  std::unique_ptr<MetricsWriter> metrics_;      // world rank 0 only
  std::shared_ptr<spdlog::logger> log_;
  std::vector<int32_t> tokens_;                 // (B, T+1)
  std::vector<cpu::SiteMoments> moments_;       // per norm site, at log steps
  int64_t step_ = 0;                            // optimizer steps done
  int64_t tokens_seen_ = 0;
};

// Checks that the run directory matches the request (a fresh run must not overwrite checkpoints, --resume needs one)
// and creates it; writes nothing in it.
void Trainer::prepare_run_dir(const TrainOptions& opt) {
  const fs::path dir(run_dir_);
  const bool has_checkpoint = latest_checkpoint(run_dir_).has_value();
  if (opt.resume && opt.resume_from.empty() && !has_checkpoint)
    throw InputError(fmt::format("--resume: {} holds no complete checkpoint; run without --resume to start afresh",
                                 (dir / "checkpoints").string()));
  if (!opt.resume && has_checkpoint)
    throw InputError(fmt::format("{} already holds checkpoints of a run: pass --resume to continue it, or choose "
                                 "another --run-dir",
                                 run_dir_));
  fs::create_directories(dir);
}

// The checkpoints tried, in order: --resume-from's directory alone, or every complete checkpoint of the run
// directory, newest first. A damaged checkpoint (CheckpointError: unreadable or inconsistent files, non-finite values,
// a bad trainer_state.yaml) is skipped with a warning, so a disk error or a stray copy in the newest one does not block
// the run. A sound checkpoint that does not fit this config or data (InputError) stops the resume instead: an older
// one would not fit either, or would quietly rewind the run and its metrics. Every rank tries the same checkpoints
// and all agree on each outcome before going on, so no rank resumes from another step than the others.
int64_t Trainer::restore(const std::string& resume_from) {
  const std::vector<std::string> candidates =
      resume_from.empty() ? complete_checkpoints_newest_first(run_dir_) : std::vector<std::string>{resume_from};
  try {
    check_same_on_all_ranks(*mesh_.world, candidates.size(),
                            fmt::format("the number of checkpoints in {}/checkpoints (every rank must see the same "
                                        "run directory)",
                                        run_dir_));
  } catch (const std::exception& e) {
    throw InputError(e.what());
  }
  for (const std::string& dir : candidates) {
    enum Outcome : int { kLoaded = 0, kDamaged = 1, kStop = 2 };
    double outcome = kLoaded;
    std::string error;
    std::exception_ptr stop;
    try {
      restore_from(dir);
    } catch (const CheckpointError& e) {
      outcome = kDamaged;
      error = e.what();
    } catch (const std::exception& e) {
      outcome = kStop;
      error = e.what();
      stop = std::current_exception();
    }
    mesh_.world->all_reduce(&outcome, 1, ReduceOp::max);
    if (outcome == kLoaded) {
      try {
        check_same_on_all_ranks(*mesh_.world, uint64_t(step_), "the step of the checkpoint each rank resumed from");
      } catch (const std::exception& e) {
        throw InputError(e.what());
      }
      log_->info("resumed from {} at step {}", dir, step_);
      const std::optional<std::string> newest = latest_checkpoint(run_dir_);
      if (mesh_.world_rank == 0 && newest && checkpoint_step(*newest).value_or(0) > step_)
        log_->warn("{} (a later step) is kept until this run writes that step, and a --resume before then tries it "
                   "first: remove it to abandon it",
                   *newest);
      return step_;
    }
    if (stop) std::rethrow_exception(stop);  // the error names the file and what to change
    if (!error.empty()) log_->warn("{} does not load: {}", dir, error);
    if (outcome == kStop) throw InputError("");  // another rank's error, reported there
  }
  if (mesh_.world_rank != 0) throw InputError("");
  if (!resume_from.empty())
    throw InputError(fmt::format("--resume-from {}: the checkpoint does not load (the error is above)",
                                 resume_from));
  throw InputError(fmt::format("--resume: none of the {} checkpoints in {}/checkpoints loads (each one's error is "
                               "above): repair or remove them, resume from a copy elsewhere with --resume-from "
                               "DIR, or start afresh with another --run-dir",
                               candidates.size(), run_dir_));
}

// Resumes from one checkpoint: the trainer state is checked before any tensor is read, then the engine loads
// parameters, both moments and the optimizer's step count, and the loader its position. A failed attempt may leave
// some of these set; the next successful attempt sets them all again.
void Trainer::restore_from(const std::string& dir) {
  const TrainerState state = read_trainer_state(dir);
  const std::string path = (fs::path(dir) / "trainer_state.yaml").string();
  if (state.step > cfg_.train.max_steps)
    throw InputError(fmt::format("{}: key 'step' is {}, beyond train.max_steps = {}: raise it (--set "
                                 "train.max_steps=N) to continue this run, or pick an earlier checkpoint with "
                                 "--resume-from DIR",
                                 path, state.step, cfg_.train.max_steps));
  // The loader position counts the windows each dp rank has used; rank r's k-th window is window k * dp + r of the
  // epoch, so the same global position under another dp is cursor * dp_saved / dp.
  YAML::Node loader = YAML::Clone(state.train_loader);
  if (state.dp != mesh_.dp) {
    int64_t windows = 0;
    if (__builtin_mul_overflow(loader["cursor"].as<int64_t>(), state.dp, &windows))
      throw CheckpointError(fmt::format("{}: train_loader.cursor x dp overflows; the checkpoint is damaged: resume "
                                        "from another one",
                                        path));
    if (windows % mesh_.dp != 0)
      throw InputError(fmt::format("{}: the checkpoint's data position ({} windows) cannot be split over dp = {}; "
                                   "resume with a dp that divides it",
                                   dir, windows, mesh_.dp));
    loader["cursor"] = windows / mesh_.dp;
  }
  try {
    train_loader_->restore(loader);  // checks the position against the shards before changing anything
  } catch (const std::runtime_error& e) {
    throw InputError(fmt::format("{}: train_loader: {}", path, e.what()));
  }
  // The tokens count goes on growing by tokens_per_step up to max_steps: a count that would overflow is not one a run
  // wrote.
  const int64_t tokens_per_step =
      int64_t(cfg_.train.micro_batch) * cfg_.train.seq_len * cfg_.train.grad_accum * mesh_.dp;
  int64_t tokens_at_end = 0;
  if (__builtin_mul_overflow(int64_t(cfg_.train.max_steps) - state.step, tokens_per_step, &tokens_at_end) ||
      __builtin_add_overflow(tokens_at_end, state.tokens, &tokens_at_end))
    throw CheckpointError(fmt::format("{}: key 'tokens' is {}, which would overflow by step {}; the checkpoint is "
                                      "damaged: resume from another one",
                                      path, state.tokens, cfg_.train.max_steps));
  try {
    engine_->load_checkpoint(dir);
  } catch (const CheckpointMismatchError& e) {
    throw InputError(fmt::format("{}: the checkpoint holds another model than the config describes; resume with the "
                                 "model config it was written with (its config.yaml)",
                                 e.what()));
  }
  step_ = state.step;
  tokens_seen_ = state.tokens;
  if (state.config_hash != config_hash(cfg_))
    log_->warn("the config differs from the one the checkpoint was written with; continuing with the new one");
}

// alpha0 = c / std of each site's input on the first training batch (the loader is rewound, so training still starts
// at that batch; a loader of its own would scan every shard a second time).
void Trainer::calibrate_alphas() {
  train_loader_->next(tokens_.data());
  train_loader_->reset();
  engine_->calibrate_alphas(tokens_.data(), cfg_.train.micro_batch, cfg_.train.seq_len, cfg_.model.alpha_calib_c);
  std::string alphas;
  for (float a : engine_->site_alphas()) alphas += fmt::format(" {:.4g}", a);
  log_->info("calibrated alpha0 = {} / act_std per site (layer 0 attn, ffn, ..., final):{}", cfg_.model.alpha_calib_c,
             alphas);
}

void Trainer::save_checkpoint_now() {
  // Rank 0 writes while the others wait in the save's collectives, for as long as the file system takes.
  const Watchdog::Relaxed io_time(mesh_.watchdog.get());
  YAML::Node state;
  state["step"] = step_;
  state["tokens"] = tokens_seen_;
  state["config_hash"] = config_hash(cfg_);
  state["dp"] = mesh_.dp;
  state["train_loader"] = train_loader_->state();
  const std::string path = engine_->save_checkpoint(run_dir_, step_, state);
  log_->info("checkpoint {}", path);
}

// val_batches micro-batches in all, shared by the dp ranks (whose loaders deal the windows round-robin), so every
// layout evaluates the same windows: the first val_batches * micro_batch of the val shards.
double Trainer::validate() {
  const Watchdog::Relaxed val_time(mesh_.watchdog.get());  // not part of the step time the watchdog's limit scales with
  val_loader_->reset();
  const int batches = (cfg_.train.val_batches + mesh_.dp - 1) / mesh_.dp;
  double sum = 0.0;
  for (int i = 0; i < batches; ++i) {
    val_loader_->next(tokens_.data());
    sum += engine_->forward(tokens_.data(), cfg_.train.micro_batch, cfg_.train.seq_len, nullptr);
  }
  double mean = sum / batches;
  mesh_.dp_group->all_reduce(&mean, 1, ReduceOp::avg);
  return mean;
}

void Trainer::log_memory() {
  const std::map<std::string, size_t> bytes = engine_->memory();
  if (bytes.empty()) return;
  size_t total = 0;
  std::string parts;
  for (const auto& [category, b] : bytes) {
    total += b;
    parts += fmt::format("{}{} {:.2f}", parts.empty() ? "" : ", ", category, double(b) / (1 << 30));
  }
  log_->info("{} memory, planned up front: {:.2f} GiB ({} GiB)", engine_->device_name(), double(total) / (1 << 30),
             parts);
}

void Trainer::log_step(const StepMetrics& m) {
  std::string line = fmt::format("step {:>6}/{} | loss {:.4f}", m.step, cfg_.train.max_steps, m.loss);
  if (m.val_loss) line += fmt::format(" | val {:.4f}", *m.val_loss);
  line += fmt::format(" | lr {:.3e} | grad {:.3f} | {:.0f} tok/s", m.lr, m.grad_norm, m.tok_s);
  if (m.mfu) line += fmt::format(" | mfu {:.1f}%", 100.0 * *m.mfu);
  line += fmt::format(" | eta {}", human_duration(m.eta_s));
  log_->info(line);
  if (metrics_) metrics_->write(m);
}

int Trainer::run_steps() {
  const TrainConfig& tc = cfg_.train;
  const int64_t tokens_per_step = int64_t(tc.micro_batch) * tc.seq_len * tc.grad_accum * mesh_.dp;
  log_->info("model: {} parameters, {} layers, dim {}, norm {}; {}, layout dp {} x tp {}{}; {} tokens per step, {} steps",
             whole_table(engine_->table()).parameters(), cfg_.model.n_layers, cfg_.model.dim,
             to_string(cfg_.model.norm), engine_->device_name(), mesh_.dp, mesh_.tp,
             cfg_.parallel.zero1 ? " (ZeRO-1)" : "", tokens_per_step, tc.max_steps);
  log_memory();
  // MFU of each device: the global batch's model FLOPs per second over world_size devices' peak.
  const double flops_per_token = training_flops_per_token(
      cfg_.model, whole_table(engine_->table()).parameters(), tc.seq_len);
  const std::optional<double> peak = device_peak_flops(tc, engine_->device_name());
  const auto run_start = Clock::now();
  const int64_t first_step = step_;
  std::vector<float> alphas;  // at log steps, the alphas the step's forward used

  while (step_ < tc.max_steps) {
    const auto t0 = Clock::now();
    const int64_t step = step_ + 1;
    const bool log_now = step == 1 || step % tc.log_every == 0 || step == tc.max_steps;
    const bool val_now = val_loader_ && tc.val_every > 0 && (step % tc.val_every == 0 || step == tc.max_steps);

    if (log_now) std::fill(moments_.begin(), moments_.end(), cpu::SiteMoments{});
    engine_->zero_grad();
    double loss = 0.0;
    for (int micro = 0; micro < tc.grad_accum; ++micro) {
      train_loader_->next(tokens_.data());
      loss += engine_->forward(tokens_.data(), tc.micro_batch, tc.seq_len, log_now ? moments_.data() : nullptr);
      engine_->backward(1.0f / float(tc.grad_accum));
    }
    loss /= tc.grad_accum;
    mesh_.dp_group->all_reduce(&loss, 1, ReduceOp::avg);
    if (!std::isfinite(loss)) {
      log_->error("the loss is {} at step {}: training diverged (try a lower optim.lr or smaller alpha inits)", loss,
                  step);
      return kExitDiverged;
    }
    // The site inputs are replicated over tp; the global batch is spread over dp. SiteMoments is four doubles.
    static_assert(sizeof(cpu::SiteMoments) == 4 * sizeof(double));
    if (log_now) mesh_.dp_group->all_reduce(&moments_[0].sum, 4 * int64_t(moments_.size()), ReduceOp::sum);

    if (log_now) alphas = engine_->site_alphas();
    const double factor = lr_factor(cfg_.optim, step - 1, tc.max_steps);
    const double grad_norm = engine_->update(factor);
    if (!std::isfinite(grad_norm)) {
      log_->error("the gradient norm is {} at step {} (loss {}): training diverged, the parameters were left as they "
                  "were (try a lower optim.lr or smaller alpha inits)",
                  grad_norm, step, loss);
      return kExitDiverged;
    }
    if (!engine_->params_finite()) {
      log_->error("a parameter became non-finite in the update of step {} (gradient norm {}, lr {:g}): training "
                  "diverged; nothing of this step was written, the last checkpoint is intact (try a lower optim.lr)",
                  step, grad_norm, cfg_.optim.lr * factor);
      return kExitDiverged;
    }
    step_ = step;
    tokens_seen_ += tokens_per_step;
    // The watchdog's limit scales with the training step alone: validation and checkpoints run under
    // Watchdog::Relaxed, and counting a slow save here would raise the limit for the rest of the run.
    const double train_s = std::chrono::duration<double>(Clock::now() - t0).count();

    if (log_now || val_now) {
      StepMetrics m;
      m.step = step;
      m.loss = loss;
      if (val_now) {
        m.val_loss = validate();
        if (!std::isfinite(*m.val_loss)) {
          log_->error("the validation loss is {} at step {} (train loss {}): training diverged; nothing of this step "
                      "was written, the last checkpoint is intact (try a lower optim.lr or smaller alpha inits)",
                      *m.val_loss, step, loss);
          return kExitDiverged;
        }
      }
      const double step_s = std::chrono::duration<double>(Clock::now() - t0).count();
      const double elapsed_s = std::chrono::duration<double>(Clock::now() - run_start).count();
      m.lr = cfg_.optim.lr * factor;
      m.grad_norm = grad_norm;
      m.tokens = tokens_seen_;
      m.step_ms = step_s * 1e3;
      m.tok_s = tokens_per_step / step_s;
      m.elapsed_s = elapsed_s;
      m.eta_s = elapsed_s / double(step - first_step) * double(tc.max_steps - step);
      m.embed_scale = engine_->embed_scale();
      if (peak) m.mfu = m.tok_s * flops_per_token / (*peak * mesh_.world_size);
      if (log_now) m.sites = site_metrics(moments_, alphas);
      log_step(m);
    }

    // Every rank must agree to stop at the same step: a signal may reach the ranks at different times.
    double stop = g_stop_signal ? 1.0 : 0.0;
    mesh_.world->all_reduce(&stop, 1, ReduceOp::max);
    const bool ckpt_now = step == tc.max_steps || (tc.ckpt_every > 0 && step % tc.ckpt_every == 0);
    if (ckpt_now || stop > 0) save_checkpoint_now();
    // The first step of a process (connections, allocations, cold caches) is not a measure of the run's steps.
    if (mesh_.watchdog && step > first_step + 1) mesh_.watchdog->step_done(train_s);
    if (stop > 0 && step < tc.max_steps) {
      log_->warn("stopped by a signal after step {}; continue with --resume", step);
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
    if (is_root()) spdlog::error("{}", e.what());  // every rank read the same files: one report is enough
    return kExitBadInput;
  }
  TrainOptions o = opt;
  if (o.run_dir.empty()) o.run_dir = (fs::path("runs") / fs::path(opt.config_path).stem()).string();
  if (!o.resume_from.empty()) o.resume = true;

  // SIGTERM and SIGINT for a single process and srun (which passes them to every task); SIGUSR1 for mpirun, which
  // forwards it to every rank (OpenMPI turns its own SIGTERM into killing the job).
  g_stop_signal = 0;  // a signal that stopped an earlier run in this process does not stop this one
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGUSR1, on_stop_signal);
  try {
    Mesh mesh;
    std::string device;
    try {
      mesh = make_mesh(cfg.parallel.tp);
      check_same_on_all_ranks(*mesh.world, config_hash(cfg), "the resolved config (config file and --set flags)");
    } catch (const std::exception& e) {
      throw InputError(e.what());
    }
    watch_collectives(mesh, cfg.parallel.timeout_s, kExitError);
    on_all_ranks(*mesh.world, [&] { device = resolve_device(cfg, mesh); });
    try {
      check_same_on_all_ranks(*mesh.world, device == "cuda",
                              "the device train.device resolves to (set train.device explicitly on mixed hosts)");
    } catch (const std::exception& e) {
      throw InputError(e.what());
    }
    // Host memory next: a config that cannot fit fails here, naming the key to change, before any allocation.
    on_all_ranks(*mesh.world, [&] {
      check_host_memory(plan_host_memory(cfg, device, mesh.dp, mesh.tp), mesh.local_size, available_host_bytes());
    });
    Trainer trainer(cfg, o, mesh, device);
    return trainer.run();
  } catch (const InputError& e) {
    if (*e.what()) spdlog::error("{}: {}", process_label(), e.what());
    return kExitBadInput;
  } catch (const ShardError& e) {
    // A shard changed under the run: bad input, found on one rank while the others may wait in a collective.
    if (mpi_active()) abort_job(kExitBadInput, e.what());
    spdlog::error("{}", e.what());
    return kExitBadInput;
  } catch (const NonFiniteError& e) {  // thrown on every rank together (save_checkpoint_distributed)
    if (is_root()) spdlog::error("{}", e.what());
    return kExitDiverged;
  } catch (const std::exception& e) {
    // Other ranks may be waiting in a collective for this one: take the whole job down rather than leave them hanging.
    if (mpi_active()) abort_job(kExitError, e.what());
    spdlog::error("{}", e.what());
    return kExitError;
  }
}

}  // namespace dytrain
