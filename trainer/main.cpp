// The dytrain command line. Small on purpose: everything a run does is in its config file; flags only pick the
// file, override keys and place the run.
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "parallel/runtime.h"
#include "trainer/cli_args.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/corpus/prepare.h"
#include "trainer/sweep/cli.h"
#include "trainer/train/check.h"
#include "trainer/train/trainer.h"

namespace {

const char* kUsage = R"(usage:
  dytrain train CONFIG.yaml [--set key.path=value ...] [--run-dir DIR] [--resume | --resume-from CKPT_DIR]
      Train from CONFIG (see configs/train/). --set overrides any config key, e.g. --set optim.lr=1e-3
      --set model.alpha_attn=0.5. The run directory (default runs/<config name>) receives config.yaml,
      metrics.jsonl, train.log and checkpoints/. --resume continues from its newest checkpoint that loads (a
      damaged one is skipped with a warning); --resume-from continues from CKPT_DIR, a checkpoint of any run.
  dytrain data prepare RECIPE.yaml [--force]
      Build a corpus from installed packages, train or load its tokenizer and write token shards and a manifest
      (configs/data/: austen is the quick-start default). Up-to-date outputs are kept unless --force.
  dytrain check CKPT_DIR SHARD [--batch 4] [--seq 64]
      Loss, grad norm and every alpha with its gradient on the shard's first batch x (seq + 1) tokens, as JSON:
      the same figures as ../shared/bench/torch_llama_dyt.py check, for a side-by-side comparison.
  dytrain sweep run SPEC.yaml [--dir DIR] [--mode local|mpirun|slurm] [--point I] [--set key=value ...] [--dry-run]
      Every point of an alpha-init sweep (configs/sweeps/) as a run in DIR/<point>/ (default runs/<sweep name>);
      finished points are skipped, diverging ones stopped and marked. slurm mode writes an sbatch array script.
  dytrain sweep report SWEEP_DIR [--smooth K] [--no-plots]
      Loss tables per width, best alphas, the power-law fit alpha0(width), alpha vs inv_std: SWEEP_DIR/report/.
  dytrain sweep recommend ALPHA_FIT.yaml --width W
      The --set flags that give a run of width W the alpha0 of a report's fit.
  dytrain monitor RUN_OR_SWEEP_DIR [--interval 2] [--once]
      Live view of a run (step, loss, lr, tok/s, ETA, alpha and inv_std per layer) or of a sweep's points.
  dytrain plot RUN_DIR
      loss, lr, grad-norm, alpha and alpha-vs-inv_std PNGs in RUN_DIR/plots/ (needs python3-matplotlib).
)";

int usage_error(const std::string& what) {
  std::fprintf(stderr, "dytrain: %s\n%s", what.c_str(), kUsage);
  return dytrain::kExitBadInput;
}

int cmd_train(const std::vector<std::string>& args) {
  dytrain::TrainOptions opt;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> const std::string* { return i + 1 < args.size() ? &args[++i] : nullptr; };
    if (a == "--set") {
      const std::string* v = value();
      if (!v) return usage_error("--set needs key.path=value");
      opt.overrides.push_back(*v);
    } else if (a.rfind("--set=", 0) == 0) {
      opt.overrides.push_back(a.substr(6));
    } else if (a == "--run-dir") {
      const std::string* v = value();
      if (!v) return usage_error("--run-dir needs a directory");
      opt.run_dir = *v;
    } else if (a == "--resume") {
      opt.resume = true;
    } else if (a == "--resume-from") {
      const std::string* v = value();
      if (!v) return usage_error("--resume-from needs a checkpoint directory (RUN_DIR/checkpoints/step_N)");
      opt.resume_from = *v;
    } else if (a.rfind("--", 0) == 0) {
      return usage_error("unknown option " + a);
    } else if (opt.config_path.empty()) {
      opt.config_path = a;
    } else {
      return usage_error("one config file only, got " + opt.config_path + " and " + a);
    }
  }
  if (opt.config_path.empty()) return usage_error("train needs a config file");
  return dytrain::train(opt);
}

int cmd_data(const std::vector<std::string>& args) {
  if (args.empty() || args[0] != "prepare") return usage_error("data needs a subcommand: prepare");
  std::string recipe;
  bool force = false;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--force")
      force = true;
    else if (args[i].rfind("--", 0) == 0)
      return usage_error("unknown option " + args[i]);
    else if (recipe.empty())
      recipe = args[i];
    else
      return usage_error("one recipe only, got " + recipe + " and " + args[i]);
  }
  if (recipe.empty()) return usage_error("data prepare needs a recipe file (configs/data/*.yaml)");
  try {
    dytrain::prepare_data(recipe, force);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dytrain data prepare: %s\n", e.what());
    return dytrain::kExitBadInput;
  }
  return dytrain::kExitOk;
}

int cmd_check(const std::vector<std::string>& args) {
  dytrain::CheckOptions opt;
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--batch" || a == "--seq") {
      if (i + 1 == args.size()) return usage_error(a + " needs a value");
      int v = 0;
      const std::string e = dytrain::parse_int_flag(a, args[++i], 1, INT_MAX, &v);
      if (!e.empty()) return usage_error(e);
      (a == "--batch" ? opt.batch : opt.seq) = v;
    } else if (a.rfind("--", 0) == 0) {
      return usage_error("unknown option " + a);
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 2) return usage_error("check needs CKPT_DIR and SHARD");
  opt.checkpoint_dir = positional[0];
  opt.shard = positional[1];
  try {
    std::printf("%s\n", dytrain::check_checkpoint(opt).c_str());
  } catch (const dytrain::NonFiniteError& e) {
    std::fprintf(stderr, "dytrain check: %s\n", e.what());
    return dytrain::kExitDiverged;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dytrain check: %s\n", e.what());
    return dytrain::kExitBadInput;
  }
  return dytrain::kExitOk;
}

int dispatch(std::vector<std::string> args) {
  if (args.empty() || args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? dytrain::kExitBadInput : dytrain::kExitOk;
  }
  const std::string cmd = args[0];
  args.erase(args.begin());
  if (cmd == "train") return cmd_train(args);
  if (cmd == "check") return cmd_check(args);
  if (cmd == "data") return cmd_data(args);
  if (cmd == "sweep") return dytrain::sweep_main(args);
  if (cmd == "monitor") return dytrain::monitor_main(args);
  if (cmd == "plot") return dytrain::plot_main(args);
  return usage_error("unknown command " + cmd);
}

}  // namespace

int main(int argc, char** argv) {
  // MPI starts here when mpirun or srun launched the process; a plain run needs no MPI at all.
  dytrain::ProcessRuntime runtime(argc, argv);
  try {
    return dispatch(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::exception& e) {
    dytrain::abort_job(dytrain::kExitError, e.what());  // takes every rank down: no rank is left waiting
  }
}
