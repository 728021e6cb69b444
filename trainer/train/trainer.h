// `dytrain train`: one training run from a config, in a run directory that holds everything the run writes
// (config.yaml, metrics.jsonl, train.log, checkpoints/). A run stopped and resumed with --resume continues the exact
// trajectory of the uninterrupted run.
#pragma once
#include <string>
#include <vector>

namespace dytrain {

struct TrainOptions {
  std::string config_path;
  std::vector<std::string> overrides;  // "key.path=value", applied in order
  std::string run_dir;                 // default runs/<config file stem>
  bool resume = false;                 // continue from the run dir's newest checkpoint that loads
  std::string resume_from;             // or from this checkpoint directory (any run's; implies resume)
};

// Exit codes of the CLI.
enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,       // an unexpected failure; the message says what
  kExitBadInput = 2,    // bad config, data or command line; the message names the file or key
  kExitDiverged = 3,    // the loss became NaN or infinite
  kExitInterrupted = 4, // SIGTERM / SIGINT: a checkpoint was written, --resume continues
};

// Runs the whole training; returns the exit code. Errors are logged before returning.
int train(const TrainOptions& opt);

}  // namespace dytrain
