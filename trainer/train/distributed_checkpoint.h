// Checkpoints under any dp x tp layout. On disk a checkpoint always holds whole tensors (trainer/checkpoint): so it
// loads into PyTorch as one safetensors file, and a run saved under dp2 x tp2 resumes under tp1 and the reverse.
// Saving gathers the tensor-parallel blocks and the ZeRO-1 moment shards (collectives over tp and dp), then world
// rank 0 writes; loading reads the whole tensors on every rank and keeps this rank's blocks and range.
#pragma once
#include <cstdint>
#include <string>

#include <yaml-cpp/yaml.h>

#include "parallel/mesh.h"
#include "trainer/config/config.h"
#include "trainer/model/params.h"
#include "trainer/optim/adamw.h"

namespace dytrain {

// The table of whole tensors (full shapes, no split) with the names and order of `local`.
ParamTable whole_table(const ParamTable& local);

// Collective over the mesh. Returns the checkpoint directory (on every rank). Throws NonFiniteError on every rank,
// writing nothing, when the parameters or moments hold NaN or inf.
std::string save_checkpoint_distributed(Mesh& mesh, const std::string& run_dir, int64_t step, const Config& cfg,
                                        const ParamTable& local, const float* params, AdamW& optim,
                                        const YAML::Node& trainer_state);

// Fills this rank's params (local.total()) and the optimizer's moments of its range; returns trainer_state.
YAML::Node load_checkpoint_distributed(float* params, AdamW& optim, Mesh& mesh, const std::string& dir,
                                       const ParamTable& local);

}  // namespace dytrain
