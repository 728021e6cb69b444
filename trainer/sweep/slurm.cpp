#include "trainer/sweep/slurm.h"

#include <filesystem>
#include <sstream>

#include <fmt/format.h>

#include "trainer/checkpoint/atomic_file.h"
#include "trainer/config/config.h"
#include "trainer/sweep/status.h"
#include "trainer/sweep/text.h"

namespace dytrain {
namespace {

namespace fs = std::filesystem;

// Weights that take part in the matmuls of one token (attention, FFN, LM head); 6 N FLOPs per trained token.
double matmul_params(const ModelConfig& m) {
  const double d = m.dim, kv = double(m.kv_heads()) * m.head_dim(), f = m.hidden_dim();
  return m.n_layers * (2 * d * d + 2 * d * kv + 3 * d * f) + d * m.vocab_size;
}

}  // namespace

std::string slurm_script_text(const SweepSpec& spec, const RunnerOptions& opt, const std::string& cwd) {
  const LaunchSpec& l = spec.launch;
  const int n = int(spec.points.size());
  double tokens = 0, flops = 0;
  for (const auto& p : spec.points) {
    std::vector<std::string> o = p.overrides;
    o.insert(o.end(), opt.extra_overrides.begin(), opt.extra_overrides.end());
    const Config c = load_config(spec.base, o);
    const double t = double(c.train.max_steps) * c.train.micro_batch * c.train.seq_len * c.train.grad_accum * l.np;
    tokens += t;
    flops += 6 * matmul_params(c.model) * t;
  }
  std::ostringstream s;
  s << "#!/bin/bash\n"
    << fmt::format("# dytrain sweep {}: {} points, one array task each, {} rank(s) per task.\n", spec.name, n, l.np)
    << fmt::format("# Napkin math: {:.3g} tokens in all ({:.3g} per point), 6 N T = {:.3g} FLOPs in all; at 40% MFU\n"
                   "# of an H100 (989 TFLOP/s bf16 dense) that is {:.3g} GPU-hours.\n",
                   tokens, tokens / n, flops, flops / (0.4 * 989e12) / 3600)
    << "# Resubmitting this script is safe: finished points are skipped, interrupted ones resume.\n"
    << fmt::format("#SBATCH --job-name=dytrain-{}\n", spec.name)
    << fmt::format("#SBATCH --array=0-{}{}\n", n - 1, l.max_parallel > 0 ? fmt::format("%{}", l.max_parallel) : "")
    << fmt::format("#SBATCH --ntasks={}\n", l.np)
    << fmt::format("#SBATCH --output={}/slurm/%A_%a.out\n", sweep_dir_of(spec, opt));
  if (!l.partition.empty()) s << "#SBATCH --partition=" << l.partition << "\n";
  if (!l.time.empty()) s << "#SBATCH --time=" << l.time << "\n";
  if (l.gpus_per_task > 0) s << "#SBATCH --gpus-per-task=" << l.gpus_per_task << "\n";
  if (l.cpus_per_task > 0) s << "#SBATCH --cpus-per-task=" << l.cpus_per_task << "\n";
  for (const auto& x : l.sbatch) s << "#SBATCH " << x << "\n";
  // Paths and overrides are quoted for the shell: a quote or a space in one of them stays part of it.
  s << "set -euo pipefail\n"
    << "cd " << shell_quote(cwd) << "\n"
    << "exec " << shell_quote(exe_of(opt)) << " sweep run " << shell_quote(fs::absolute(spec.path).string())
    << " --dir " << shell_quote(sweep_dir_of(spec, opt)) << " --point \"$SLURM_ARRAY_TASK_ID\" --mode "
    << (l.np > 1 ? "mpirun" : "local");
  for (const auto& o : opt.extra_overrides) s << " --set " << shell_quote(o);
  s << "\n";
  return s.str();
}

std::string write_slurm_script(const SweepSpec& spec, const RunnerOptions& opt) {
  check_sweep_names(spec);
  const fs::path dir = fs::path(sweep_dir_of(spec, opt)) / "slurm";
  fs::create_directories(dir);
  std::ostringstream list;
  for (const auto& p : spec.points) list << p.index << " " << p.name << "\n";
  write_file_atomic((dir / "points.txt").string(), list.str());
  SweepIndex index{spec.name, fs::absolute(spec.path).string(), {}};
  for (const auto& p : spec.points) {
    std::vector<std::string> o = p.overrides;
    o.insert(o.end(), opt.extra_overrides.begin(), opt.extra_overrides.end());
    index.points.push_back({p.name, load_config(spec.base, o).train.max_steps});
  }
  write_sweep_index(sweep_dir_of(spec, opt), index);  // the array tasks leave it alone (runner.cpp)
  const std::string script = (dir / "sweep.sbatch").string();
  write_file_atomic(script, slurm_script_text(spec, opt, fs::current_path().string()));
  fs::permissions(script, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add);
  return script;
}

}  // namespace dytrain
