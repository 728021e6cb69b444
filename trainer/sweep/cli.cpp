#include "trainer/sweep/cli.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <filesystem>

#include "trainer/cli_args.h"
#include "trainer/config/config.h"
#include "trainer/sweep/fit.h"
#include "trainer/sweep/monitor.h"
#include "trainer/sweep/plots.h"
#include "trainer/sweep/report.h"
#include "trainer/sweep/runner.h"
#include "trainer/sweep/slurm.h"
#include "trainer/sweep/spec.h"
#include "trainer/sweep/text.h"
#include "trainer/train/trainer.h"

namespace dytrain {
namespace {

const char* const kUsage = R"(usage:
  dytrain sweep run SPEC.yaml [--dir DIR] [--mode local|mpirun|slurm] [--point I] [--set key=value ...] [--dry-run]
  dytrain sweep report SWEEP_DIR [--smooth K] [--no-plots]
  dytrain sweep recommend ALPHA_FIT.yaml --width W
  dytrain monitor RUN_OR_SWEEP_DIR [--interval SECONDS] [--once]
  dytrain plot RUN_DIR
)";

int usage_error(const std::string& what) {
  std::fprintf(stderr, "dytrain: %s\n%s", what.c_str(), kUsage);
  return kExitBadInput;
}

// The longest --interval: a day. Longer ones would overflow the sleep's nanoseconds and show nothing anyway.
constexpr double kMaxIntervalS = 86400;

// --dir: a folder to create or reuse. Empty would silently mean the default; an existing file cannot hold points.
std::string check_dir_flag(const std::string& dir) {
  if (dir.empty()) return "--dir needs a directory";
  std::error_code ec;
  if (std::filesystem::exists(dir, ec) && !std::filesystem::is_directory(dir, ec))
    return "--dir " + dir + " exists and is not a directory";
  return "";
}

// Walks args: flags with a value call on_value(flag, value), bare flags on_flag(flag), others go to positional.
// Returns an error message, empty when fine.
template <typename OnValue, typename OnFlag>
std::string parse(const std::vector<std::string>& args, const std::vector<std::string>& value_flags,
                  std::vector<std::string>* positional, OnValue on_value, OnFlag on_flag) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0) {
      positional->push_back(a);
      continue;
    }
    const auto eq = a.find('=');
    const std::string flag = a.substr(0, eq);
    if (std::find(value_flags.begin(), value_flags.end(), flag) != value_flags.end()) {
      std::string value;
      if (eq != std::string::npos) value = a.substr(eq + 1);
      else if (i + 1 < args.size()) value = args[++i];
      else return flag + " needs a value";
      const std::string err = on_value(flag, value);
      if (!err.empty()) return err;
    } else if (!on_flag(a)) {
      return "unknown option " + a;
    }
  }
  return "";
}

int cmd_run(const std::vector<std::string>& args) {
  RunnerOptions opt;
  std::vector<std::string> pos;
  const std::string err = parse(
      args, {"--dir", "--mode", "--point", "--set", "--exe"}, &pos,
      [&](const std::string& f, const std::string& v) -> std::string {
        if (f == "--dir") {
          opt.sweep_dir = v;
          return check_dir_flag(v);
        }
        if (f == "--mode") opt.mode = v;
        if (f == "--set") opt.extra_overrides.push_back(v);
        if (f == "--exe") opt.exe = v;
        if (f == "--point") {
          int i = 0;  // its upper bound, the spec's point count, is checked by run_sweep
          if (std::string e = parse_int_flag(f, v, 0, INT_MAX, &i); !e.empty()) return e;
          opt.only_point = i;
        }
        return "";
      },
      [&](const std::string& f) {
        if (f != "--dry-run") return false;
        opt.dry_run = true;
        return true;
      });
  if (!err.empty()) return usage_error(err);
  if (pos.size() != 1) return usage_error("sweep run needs one spec file");
  if (!opt.mode.empty() && opt.mode != "local" && opt.mode != "mpirun" && opt.mode != "slurm")
    return usage_error("--mode must be local, mpirun or slurm");
  try {
    const SweepSpec spec = load_sweep_spec(pos[0]);
    if ((opt.mode.empty() ? spec.launch.mode : opt.mode) == "slurm") {
      const std::string script = write_slurm_script(spec, opt);
      std::printf("wrote %s (%zu array tasks) and the point list beside it; submit with:\n  sbatch %s\nthen watch "
                  "with: dytrain monitor %s\n",
                  script.c_str(), spec.points.size(), shell_quote(script).c_str(),
                  shell_quote(sweep_dir_of(spec, opt)).c_str());
      return kExitOk;
    }
    return run_sweep(spec, opt);
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "dytrain sweep: %s\n", e.what());
    return kExitBadInput;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dytrain sweep: %s\n", e.what());
    return kExitError;
  }
}

int cmd_report(const std::vector<std::string>& args) {
  ReportOptions opt;
  std::vector<std::string> pos;
  const std::string err = parse(
      args, {"--smooth"}, &pos,
      [&](const std::string& f, const std::string& v) { return parse_int_flag(f, v, 1, INT_MAX, &opt.smooth_k); },
      [&](const std::string& f) {
        if (f != "--no-plots") return false;
        opt.plots = false;
        return true;
      });
  if (!err.empty()) return usage_error(err);
  if (pos.size() != 1) return usage_error("sweep report needs one sweep directory");
  opt.sweep_dir = pos[0];
  try {
    return sweep_report(opt);
  } catch (const ConfigError& e) {  // a point's config.yaml that does not load (edited by hand)
    std::fprintf(stderr, "dytrain sweep report: %s\n", e.what());
    return kExitBadInput;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dytrain sweep report: %s\n", e.what());
    return kExitError;
  }
}

int cmd_recommend(const std::vector<std::string>& args) {
  int width = 0;
  std::vector<std::string> pos;
  const std::string err = parse(
      args, {"--width"}, &pos,
      [&](const std::string& f, const std::string& v) { return parse_int_flag(f, v, 1, INT_MAX, &width); },
      [](const std::string&) { return false; });
  if (!err.empty()) return usage_error(err);
  if (pos.size() != 1 || width == 0) return usage_error("sweep recommend needs ALPHA_FIT.yaml and --width W");
  try {
    const AlphaFit fit = read_alpha_fit(pos[0]);
    std::printf("%s\n", recommend_flags(recommend_alpha(fit, width)).c_str());
    if (!fit.note.empty()) std::fprintf(stderr, "note from the fit: %s\n", fit.note.c_str());
    return kExitOk;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dytrain sweep recommend: %s\n", e.what());
    return kExitBadInput;
  }
}

}  // namespace

int sweep_main(const std::vector<std::string>& args) {
  if (args.empty()) return usage_error("sweep needs a subcommand: run, report or recommend");
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "run") return cmd_run(rest);
  if (args[0] == "report") return cmd_report(rest);
  if (args[0] == "recommend") return cmd_recommend(rest);
  return usage_error("unknown sweep subcommand " + args[0]);
}

int monitor_main(const std::vector<std::string>& args) {
  MonitorOptions opt;
  std::vector<std::string> pos;
  const std::string err = parse(
      args, {"--interval"}, &pos,
      [&](const std::string& f, const std::string& v) {
        return parse_positive_flag(f, v, kMaxIntervalS, &opt.interval_s);
      },
      [&](const std::string& f) {
        if (f != "--once") return false;
        opt.once = true;
        return true;
      });
  if (!err.empty()) return usage_error(err);
  if (pos.size() != 1) return usage_error("monitor needs one run or sweep directory");
  opt.dir = pos[0];
  return run_monitor(opt);
}

int plot_main(const std::vector<std::string>& args) {
  if (args.size() != 1 || args[0].rfind("--", 0) == 0) return usage_error("plot needs one run directory");
  if (!std::filesystem::is_regular_file(std::filesystem::path(args[0]) / "metrics.jsonl")) {
    std::fprintf(stderr, "dytrain plot: %s has no metrics.jsonl; give a run directory\n", args[0].c_str());
    return kExitBadInput;
  }
  std::string why;
  const int rc = run_plot_script({"run", args[0]}, &why);
  if (rc < 0) {
    std::fprintf(stderr, "dytrain plot: %s\n", why.c_str());
    return kExitError;
  }
  return rc == 0 ? kExitOk : kExitError;
}

}  // namespace dytrain
