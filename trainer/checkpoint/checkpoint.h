// Training checkpoints: <run_dir>/checkpoints/step_00000100/ holds
//   model.safetensors    every ParamTable tensor under its HF name (loadable by PyTorch tools)
//   config.json          the HF-style model config (hf_config.h)
//   optimizer.st         AdamW moments "exp_avg.<name>", "exp_avg_sq.<name>", in safetensors format
//   trainer_state.yaml   what the training loop needs to resume (step, loader position, rng...), written as given
//   config.yaml          the resolved run config (to_yaml)
//
// Decisions:
// - The moments file is safetensors but not named *.safetensors: the PyTorch reference loads every *.safetensors in a
//   checkpoint directory as weights and would reject the exp_avg.* names as unexpected.
// - A checkpoint is built in step_XXXXXXXX.tmp/, every file fsynced, then the directory renamed: a crash leaves either
//   the old set of checkpoints or the new one, never a half-written step_ directory that looks complete.
// - Rotation only removes complete checkpoints of earlier steps, never the one just written, and never later steps
//   (those belong to a run this one did not resume from; deleting them silently is the caller's decision to make).
// - Loading checks every name and shape before reading a byte, and reads straight into the caller's flat buffers.
#pragma once
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "trainer/config/config.h"
#include "trainer/model/params.h"

namespace dytrain {

struct CheckpointError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline constexpr const char* kCheckpointFiles[] = {"model.safetensors", "config.json", "optimizer.st",
                                                   "trainer_state.yaml", "config.yaml"};

struct CheckpointData {
  const Config* cfg;
  const ParamTable* table;
  const float* params;      // (table->total())
  const float* exp_avg;     // (table->total()) AdamW first moment
  const float* exp_avg_sq;  // (table->total()) AdamW second moment
  YAML::Node trainer_state;
};

// "step_00000100": eight digits so that names sort by step up to 10^8 steps (more digits beyond; parsing is numeric).
std::string checkpoint_dir_name(int64_t step);

// Writes the checkpoint of `step` under run_dir/checkpoints/ (see above), then removes complete checkpoints of
// earlier steps beyond the newest keep_last (this one included); keep_last <= 0 keeps all. Returns its directory.
std::string save_checkpoint(const std::string& run_dir, int64_t step, const CheckpointData& data, int keep_last);

// The complete checkpoint with the highest step under run_dir/checkpoints/; *.tmp directories and directories
// missing any of kCheckpointFiles are ignored. nullopt when there is none.
std::optional<std::string> latest_checkpoint(const std::string& run_dir);

// Fills params (table.total()) from model.safetensors and, unless nullptr, exp_avg / exp_avg_sq from the moments
// file; returns trainer_state.yaml. Every tensor of the table must be present with its exact shape and nothing else;
// the buffers are left untouched when a name or shape does not match.
YAML::Node load_checkpoint(float* params, float* exp_avg, float* exp_avg_sq, const std::string& dir,
                           const ParamTable& table);

}  // namespace dytrain
