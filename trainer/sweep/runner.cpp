#include "trainer/sweep/runner.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "trainer/checkpoint/checkpoint.h"
#include "trainer/config/config.h"
#include "trainer/sweep/divergence.h"
#include "trainer/sweep/status.h"
#include "trainer/sweep/text.h"
#include "trainer/train/trainer.h"

extern char** environ;

namespace dytrain {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// A signal handler can reach nothing else; the supervision loop polls it.
volatile std::sig_atomic_t g_sweep_signal = 0;
extern "C" void on_sweep_signal(int sig) { g_sweep_signal = sig; }

// Installs the handlers for the duration of a sweep and restores the previous ones.
class SignalScope {
 public:
  SignalScope() {
    g_sweep_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = on_sweep_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalScope() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// posix_spawnp with stdout and stderr appended to log_path.
pid_t spawn(const std::vector<std::string>& argv, const std::string& log_path) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0)
    throw std::runtime_error(fmt::format("cannot start {}: {} (is it installed and on PATH?)", argv[0],
                                         std::strerror(rc)));
  return pid;
}

struct ChildResult {
  int exit_code = 0;                     // -N: ended by signal N
  std::optional<std::string> diverged;   // stopped by the watch
  bool interrupted = false;              // the sweep itself got SIGINT / SIGTERM
};

ChildResult supervise(pid_t pid, const std::string& metrics_path, DivergenceWatch watch, const RunnerOptions& opt) {
  ChildResult r;
  MetricsTail tail(metrics_path);
  auto judge_new_lines = [&] {
    try {
      for (const StepMetrics& m : tail.read_new())
        if ((r.diverged = watch.feed(m))) return;
    } catch (const std::runtime_error&) {
      // A line that does not parse is not a divergence; the report will name it.
    }
  };
  std::optional<Clock::time_point> term_sent;
  for (;;) {
    int st = 0;
    const pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == pid) {
      r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
      // A short run can explode and finish between two polls: its last lines are judged too.
      if (!term_sent) judge_new_lines();
      return r;
    }
    if (w < 0 && errno != EINTR) throw std::runtime_error(fmt::format("waitpid: {}", std::strerror(errno)));
    if (!term_sent) {
      judge_new_lines();
      if (g_sweep_signal) r.interrupted = true;
      if (r.diverged || r.interrupted) {
        ::kill(pid, SIGTERM);
        term_sent = Clock::now();
      }
    } else if (seconds_since(*term_sent) > opt.kill_grace_s) {
      ::kill(pid, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(opt.poll_s));
  }
}

PointStatus status_of(const ChildResult& r, double elapsed_s) {
  PointStatus s;
  s.exit_code = r.exit_code;
  s.elapsed_s = elapsed_s;
  if (r.diverged) {
    s.status = "diverged";
    s.reason = *r.diverged;
  } else if (r.exit_code == kExitDiverged) {
    s.status = "diverged";
    s.reason = "the trainer stopped on a NaN / inf loss (exit 3)";
  } else if (r.interrupted) {
    s.status = "interrupted";
    s.reason = "the sweep was stopped by a signal; run it again to continue";
  } else if (r.exit_code == kExitOk) {
    s.status = "done";
  } else {
    s.status = "failed";
    s.reason = r.exit_code < 0 ? fmt::format("killed by signal {}", -r.exit_code)
                               : fmt::format("exit code {}; see console.log", r.exit_code);
  }
  return s;
}

}  // namespace

std::string sweep_dir_of(const SweepSpec& spec, const RunnerOptions& opt) {
  if (opt.sweep_dir.empty()) check_sweep_names(spec);  // runs/<name> must stay inside runs/
  return fs::absolute(opt.sweep_dir.empty() ? fs::path("runs") / spec.name : fs::path(opt.sweep_dir))
      .lexically_normal()
      .string();
}

std::string exe_of(const RunnerOptions& opt) {
  return opt.exe.empty() ? fs::read_symlink("/proc/self/exe").string() : fs::absolute(opt.exe).string();
}

std::vector<std::string> point_command(const SweepSpec& spec, const SweepPoint& point, const RunnerOptions& opt,
                                       const std::string& mode, bool resume) {
  std::vector<std::string> argv;
  if (mode == "mpirun") {
    argv = {spec.launch.mpirun, "-np", std::to_string(spec.launch.np)};
    argv.insert(argv.end(), spec.launch.mpirun_args.begin(), spec.launch.mpirun_args.end());
  }
  argv.insert(argv.end(), {exe_of(opt), "train", fs::absolute(spec.base).string()});
  for (const auto& o : point.overrides) argv.insert(argv.end(), {"--set", o});
  for (const auto& o : opt.extra_overrides) argv.insert(argv.end(), {"--set", o});
  argv.insert(argv.end(), {"--run-dir", (fs::path(sweep_dir_of(spec, opt)) / point.name).string()});
  if (resume) argv.push_back("--resume");
  return argv;
}

int run_sweep(const SweepSpec& spec, const RunnerOptions& opt) {
  check_sweep_names(spec);  // before anything is written: every point directory lies directly in the sweep folder
  const std::string mode = opt.mode.empty() ? spec.launch.mode : opt.mode;
  if (mode != "local" && mode != "mpirun") {
    std::fprintf(stderr, "dytrain sweep run: mode '%s' runs nothing here; use local or mpirun (slurm: dytrain sweep "
                         "slurm SPEC writes the array script)\n", mode.c_str());
    return kExitBadInput;
  }
  if (opt.only_point && (*opt.only_point < 0 || *opt.only_point >= int(spec.points.size()))) {
    std::fprintf(stderr, "dytrain sweep run: --point %d is out of range; %s has points 0..%zu\n", *opt.only_point,
                 spec.path.c_str(), spec.points.size() - 1);
    return kExitBadInput;
  }
  const fs::path sweep_dir = sweep_dir_of(spec, opt);

  // The resolved config of each point: its max_steps for the index, its warmup for the divergence watch.
  std::vector<Config> configs;
  SweepIndex index{spec.name, fs::absolute(spec.path).string(), {}};
  for (const auto& p : spec.points) {
    std::vector<std::string> o = p.overrides;
    o.insert(o.end(), opt.extra_overrides.begin(), opt.extra_overrides.end());
    configs.push_back(load_config(spec.base, o));
    index.points.push_back({p.name, configs.back().train.max_steps});
  }
  // Array tasks (--point) run side by side and must not race on the index: the Slurm script writer made it.
  if (!opt.dry_run && !opt.only_point) write_sweep_index(sweep_dir.string(), index);

  SignalScope signals;
  const auto sweep_start = Clock::now();
  int n_done = 0, n_diverged = 0, n_failed = 0, n_ran = 0, n_finished = 0;
  double ran_s = 0.0;
  const int total = opt.only_point ? 1 : int(spec.points.size());
  for (const SweepPoint& p : spec.points) {
    if (opt.only_point && p.index != *opt.only_point) continue;
    const fs::path dir = sweep_dir / p.name;
    const Config& cfg = configs[size_t(p.index)];
    std::optional<PointStatus> prev = read_point_status(dir.string());
    const auto ckpt = latest_checkpoint_step(dir.string());
    if (!prev || !is_final(*prev)) {
      if (ckpt && *ckpt >= cfg.train.max_steps) {
        prev = PointStatus{"done", 0, 0.0, "final checkpoint found"};
        if (!opt.dry_run) write_point_status(dir.string(), *prev);
      }
    }
    if (prev && is_final(*prev)) {
      ++n_finished;
      (prev->status == "done" ? n_done : n_diverged) += 1;
      std::fprintf(opt.out, "[%d/%d] %s: %s earlier, skipped\n", n_finished, total, p.name.c_str(),
                   prev->status.c_str());
      continue;
    }
    // Any complete checkpoint means --resume, as the trainer judges it (which falls back past damaged ones, or says
    // why none loads); only the "done" test above needs a sound one.
    const bool resume = latest_checkpoint(dir.string()).has_value();
    const auto argv = point_command(spec, p, opt, mode, resume);
    if (opt.dry_run) {
      std::string line;
      for (const auto& a : argv) line += (line.empty() ? "" : " ") + shell_quote(a);
      std::fprintf(opt.out, "%s\n", line.c_str());
      continue;
    }

    fs::create_directories(dir);
    // A run restarted from scratch rewrites metrics.jsonl; remove the old one first so the watch cannot read it.
    if (!resume) fs::remove(dir / "metrics.jsonl");
    write_point_status(dir.string(), PointStatus{"running", 0, 0.0, resume ? "resumed" : ""});
    const auto t0 = Clock::now();
    const pid_t pid = spawn(argv, (dir / "console.log").string());
    const int64_t after_step = spec.divergence.after_step.value_or(cfg.optim.warmup_steps);
    const ChildResult r =
        supervise(pid, (dir / "metrics.jsonl").string(), DivergenceWatch(spec.divergence.margin_nats, after_step), opt);
    const PointStatus s = status_of(r, seconds_since(t0));
    write_point_status(dir.string(), s);

    ++n_ran;
    ran_s += s.elapsed_s;
    if (s.status == "interrupted") {
      std::fprintf(opt.out, "%s: interrupted after %s; run the sweep again to continue\n", p.name.c_str(),
                   human_duration(s.elapsed_s).c_str());
      return kExitInterrupted;
    }
    ++n_finished;
    if (s.status == "done") ++n_done;
    if (s.status == "diverged") ++n_diverged;
    if (s.status == "failed") ++n_failed;
    const int left = total - n_finished;
    std::fprintf(opt.out, "[%d/%d] %s: %s in %.1f s%s%s | ETA %s\n", n_finished, total, p.name.c_str(),
                 s.status.c_str(), s.elapsed_s, s.reason.empty() ? "" : " — ", s.reason.c_str(),
                 human_duration(ran_s / n_ran * left).c_str());
    std::fflush(opt.out);
  }
  if (opt.dry_run) return kExitOk;
  std::fprintf(opt.out, "sweep %s: %d done, %d diverged, %d failed of %d in %s; report: dytrain sweep report %s\n",
               spec.name.c_str(), n_done, n_diverged, n_failed, total,
               human_duration(seconds_since(sweep_start)).c_str(), shell_quote(sweep_dir.string()).c_str());
  return n_failed ? kExitError : kExitOk;
}

}  // namespace dytrain
