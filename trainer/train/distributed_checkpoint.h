// Checkpoints under any dp x tp layout. On disk a checkpoint always holds whole tensors (trainer/checkpoint): so it
// loads into PyTorch as one safetensors file, and a run saved under dp2 x tp2 resumes under tp1 and the reverse.
//
// No rank ever holds a whole-model copy (a 7B model at 8 ranks per node would need ~1.5 TB of host memory per node):
// - Saving streams. World rank 0 writes tensor by tensor, in rounds of whole rows of at most kCheckpointRoundFloats
//   elements of the whole tensor (one row when a row is wider). In each round the ranks of every dp group bring the
//   round's piece of their ZeRO-1 moment ranges together (a broadcast from each owner over dp), then the tp group of
//   world rank 0 gathers its blocks (an all-gather over tp), and rank 0 writes the round at its place in the file
//   (CheckpointWriter). Staging per rank is at most checkpoint_staging_bytes.
// - Loading reads, on each rank, its own tp blocks and moment range straight from the files with pread
//   (load_checkpoint_slice): no collective and no staging (a bf16 file is widened through a 2 MiB buffer).
#pragma once
#include <cstdint>
#include <string>

#include <yaml-cpp/yaml.h>

#include "parallel/mesh.h"
#include "trainer/config/config.h"
#include "trainer/model/params.h"
#include "trainer/optim/adamw.h"

namespace dytrain {

// Elements of a whole tensor per round of a save: 4 MiB of fp32, large enough that a round's collectives run at
// bandwidth and small against any host.
inline constexpr int64_t kCheckpointRoundFloats = int64_t(1) << 20;

// The widest round a layout forces, in whole-tensor elements: one row of every tp rank's block of a split tensor,
// tp x the block's row (a row split's row, or a column split's whole row). 0 at tp 1, where nothing is gathered.
int64_t widest_checkpoint_row(const ParamTable& local, int tp);

// The most host memory one rank allocates to save (bytes): the round's piece of its moments, the gathered round and
// the round reassembled into whole rows, each at most max(kCheckpointRoundFloats, widest_row) fp32 elements:
// 12 x max(2^20, widest_row) bytes, about 12 MiB for any model whose widest row is below 2^20 / tp.
double checkpoint_staging_bytes(double widest_row);

// The table of whole tensors (full shapes, no split) with the names and order of `local`.
ParamTable whole_table(const ParamTable& local);

// Collective over the mesh. Returns the checkpoint directory (on every rank). Throws NonFiniteError on every rank,
// creating nothing, when any rank's parameters or moments hold NaN or inf (each rank scans what it holds; they agree
// before anything is written). An I/O error on rank 0 throws there while the others wait in a collective: the
// trainer ends the job (abort_job), as for any failure of one rank.
std::string save_checkpoint_distributed(Mesh& mesh, const std::string& run_dir, int64_t step, const Config& cfg,
                                        const ParamTable& local, const float* params, AdamW& optim,
                                        const YAML::Node& trainer_state);

// Fills this rank's params (local.total()) and the optimizer's moments of its range, reading only those bytes;
// returns trainer_state. Not collective: a CheckpointError (a damaged file, NaN in this rank's slice) is thrown on the
// rank that finds it, and the caller agrees on the outcome across ranks (Trainer::restore).
YAML::Node load_checkpoint_distributed(float* params, AdamW& optim, Mesh& mesh, const std::string& dir,
                                       const ParamTable& local);

}  // namespace dytrain
