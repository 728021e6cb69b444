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
// - Loading checks every name and shape before reading a byte, and reads straight into the caller's flat buffers:
//   only the slice the caller holds (a tensor-parallel rank's blocks, a ZeRO-1 rank's range of the moments), with
//   pread at its offsets, so no rank ever holds a whole-model copy. One process loads the slice that is everything.
// - Saving streams (CheckpointWriter): the tensor files' headers first, then the data piece by piece, so a writer
//   gathering a sharded model (trainer/train/distributed_checkpoint.h) holds one bounded piece at a time.
//   save_checkpoint is that writer fed whole buffers: one format, byte for byte, whichever way it was written.
// - Never a non-finite value on disk: saving refuses params or moments holding NaN or inf before the temp directory is
//   created (a checkpoint is what a run falls back to; a poisoned one would be resumed and fail again), and loading
//   rejects one written by anything else. A scan of the three buffers costs far less than writing them. Under a
//   dp x tp layout each rank scans what it holds and the ranks agree before anything is created.
#pragma once
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "trainer/config/config.h"
#include "trainer/checkpoint/safetensors.h"
#include "trainer/model/params.h"

namespace dytrain {

// A checkpoint that cannot be used: missing or unreadable files, wrong tensors, non-finite values, a bad
// trainer_state.yaml. The message names the file (and the tensor or key).
struct CheckpointError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A sound checkpoint of another model: a tensor of the model missing, one too many, or a shape that differs. Not
// damage: --resume stops (exit 2) instead of falling back to older checkpoints of the same model, which would not
// fit either, and the message says to compare the configs.
struct CheckpointMismatchError : CheckpointError {
  using CheckpointError::CheckpointError;
};

// What save_checkpoint throws when the state to save holds NaN or inf: the run has diverged (exit 3), not failed.
struct NonFiniteError : std::runtime_error {
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

// The step in the name of a directory step_<digits> (the last component of `dir`), nullopt for any other name and for
// a number beyond int64 (which no run reaches: it is not a checkpoint this code wrote).
std::optional<int64_t> checkpoint_step(const std::string& dir);

// The three buffers of a checkpoint, in file order: model.safetensors, then the moments of optimizer.st.
enum class StateBuffer { params, exp_avg, exp_avg_sq };

// Throws NonFiniteError naming the first tensor of `table` that holds NaN or inf: in params (table.total()), or in
// the flat range [moments_begin, moments_end) of the moments (exp_avg[0] is element moments_begin; ZeRO-1's range,
// or the whole table).
void require_finite(const ParamTable& table, const float* params, const float* exp_avg, const float* exp_avg_sq,
                    int64_t moments_begin, int64_t moments_end);

// The directory protocol of a save, for writers that stream the tensors: the constructor makes the temp directory
// (replacing one a crashed save of this step left) and writes the headers of both tensor files from `table` (whole
// tensors); write() puts elements of one tensor; commit() checks that every element was written, writes the small
// files, fsyncs, renames the directory into place, rotates (as save_checkpoint) and returns the directory. A writer
// destroyed before commit() removes its temp directory.
class CheckpointWriter {
 public:
  CheckpointWriter(const std::string& run_dir, int64_t step, const ParamTable& table);
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // data (count floats) as elements [first, first + count) of tensor `name` of `buffer`, in its whole row-major shape.
  void write(StateBuffer buffer, const std::string& name, int64_t first, const float* data, int64_t count);
  std::string commit(const Config& cfg, const YAML::Node& trainer_state, int keep_last);

 private:
  std::string root_, tmp_dir_, final_dir_;
  int64_t step_;
  std::unique_ptr<SafetensorsWriter> model_, moments_;
};

// Writes the checkpoint of `step` under run_dir/checkpoints/ (see above), then removes complete checkpoints of
// earlier steps beyond the newest keep_last (this one included); keep_last <= 0 keeps all. Returns its directory.
// Throws NonFiniteError (require_finite) before writing anything.
std::string save_checkpoint(const std::string& run_dir, int64_t step, const CheckpointData& data, int keep_last);

// The complete checkpoints under run_dir/checkpoints/, highest step first; *.tmp directories and directories
// missing any of kCheckpointFiles are ignored. Whether each one loads is for the caller to find out.
std::vector<std::string> complete_checkpoints_newest_first(const std::string& run_dir);

// The first of complete_checkpoints_newest_first, nullopt when there is none.
std::optional<std::string> latest_checkpoint(const std::string& run_dir);

// Fills params (table.total()) from model.safetensors and, unless nullptr, exp_avg / exp_avg_sq from the moments
// file; returns trainer_state.yaml (parsed, not checked: see trainer_state.h). Every tensor of the table must be
// present with its exact shape and nothing else, and every value finite; the buffers are left untouched when a name
// or shape does not match, and hold the file's values when one is not finite. Throws CheckpointError.
YAML::Node load_checkpoint(float* params, float* exp_avg, float* exp_avg_sq, const std::string& dir,
                           const ParamTable& table);

// What one rank of a dp x tp layout holds: tp rank tp_rank's blocks of every tensor (table: this rank's table, whose
// specs carry the whole shapes and the split) and the flat range [moments_begin, moments_end) of its moments.
struct CheckpointSlice {
  const ParamTable* table;
  int tp_rank;
  int64_t moments_begin, moments_end;
};

// load_checkpoint of a slice: params (table->total()) gets this rank's blocks, exp_avg / exp_avg_sq (moments_end -
// moments_begin each, unless nullptr) its range, alignment gaps zero. Only the slice's bytes are read (pread at
// their offsets); the checks are load_checkpoint's, the finiteness check on the values read. load_checkpoint is the
// slice that is the whole table.
YAML::Node load_checkpoint_slice(float* params, float* exp_avg, float* exp_avg_sq, const std::string& dir,
                                 const CheckpointSlice& slice);

}  // namespace dytrain
