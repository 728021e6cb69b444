// trainer_state.yaml, the part of a checkpoint the training loop resumes from besides the tensors:
//   step: 100            optimizer steps done; equals N in the directory name step_N
//   tokens: 409600       training tokens seen
//   adam_t: 100          AdamW updates done (the bias correction's t); one update per step, so it equals step
//   dp: 2                the data-parallel size it was written under (absent in checkpoints older than dp: 1)
//   config_hash: 123...  config_hash() of the run's config (a different one is allowed, with a warning)
//   train_loader: {epoch, cursor, seed, shards, tokens}   TokenLoader::state()
//
// The file is input like any other: a copied, edited or damaged one must fail with a message naming the file and key,
// not resume at a negative step, truncate metrics.jsonl or put NaN into AdamW. read_trainer_state checks what the file
// can be checked against by itself (presence, types, ranges, the directory name); what depends on the run's config
// and data (step <= train.max_steps, the loader position against the shards) is the trainer's and the loader's check.
#pragma once
#include <cstdint>
#include <string>

#include <yaml-cpp/yaml.h>

namespace dytrain {

struct TrainerState {
  int64_t step = 0;
  int64_t tokens = 0;
  int64_t adam_t = 0;
  int64_t dp = 1;
  uint64_t config_hash = 0;
  YAML::Node train_loader;  // a map; epoch, cursor >= 0 and seed, shards, tokens of the right types
};

// Checks `node`, read from `path` in checkpoint directory `dir` (whose name, when it is step_N, must match step).
// Throws CheckpointError naming the file and the key.
TrainerState parse_trainer_state(const YAML::Node& node, const std::string& path, const std::string& dir);

// dir/trainer_state.yaml read and checked by parse_trainer_state. Throws CheckpointError.
TrainerState read_trainer_state(const std::string& dir);

}  // namespace dytrain
