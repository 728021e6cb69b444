// The `dytrain sweep`, `dytrain monitor` and `dytrain plot` commands: argument parsing only, the work is in
// runner / slurm / report / fit / monitor / plots. Each returns the process exit code (trainer.h's ExitCode).
#pragma once
#include <string>
#include <vector>

namespace dytrain {

// sweep run SPEC [--dir DIR] [--mode local|mpirun|slurm] [--point I] [--set key=value ...] [--exe PATH] [--dry-run]
// sweep report DIR [--smooth K] [--no-plots]
// sweep recommend FIT.yaml --width W
int sweep_main(const std::vector<std::string>& args);

// monitor DIR [--interval SECONDS] [--once]
int monitor_main(const std::vector<std::string>& args);

// plot RUN_DIR
int plot_main(const std::vector<std::string>& args);

}  // namespace dytrain
