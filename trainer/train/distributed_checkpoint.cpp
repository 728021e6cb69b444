#include "trainer/train/distributed_checkpoint.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "trainer/checkpoint/checkpoint.h"
#include "trainer/train/grad_sync.h"

namespace dytrain {
namespace {

// One rank's share of a buffer of the state: data holds the flat range [begin, end) of the local table's buffer.
struct Source {
  StateBuffer buffer;
  const float* data;
  int64_t begin, end;
  bool ranged;  // a ZeRO-1 range: the other dp ranks hold the rest
};

// Streams tensors to world rank 0's writer round by round (see the header). Every rank walks the same tensors and
// rounds, so the collectives match; the staging buffers keep their largest size (each within the bound).
class Streamer {
 public:
  Streamer(Mesh& mesh, CheckpointWriter* writer, int64_t n) : mesh_(mesh), writer_(writer), n_(n) {}

  void tensor(const Source& src, const ParamSpec& s) {
    const bool split = s.shape != s.full_shape;  // tp > 1 and a split tensor
    const int tp = mesh_.tp;
    // Whole local rows of a split tensor, so that a round's blocks fill whole rows of the file; any run otherwise.
    const int64_t row = split ? s.shape[1] : 1;
    const int64_t round =
        split ? std::max<int64_t>(1, kCheckpointRoundFloats / (tp * row)) * row : kCheckpointRoundFloats;
    for (int64_t a = 0; a < s.numel; a += round) {
      const int64_t c = std::min(round, s.numel - a);
      const float* chunk = local_chunk(src, s.offset + a, s.offset + a + c);
      if (!split) {
        if (writer_) writer_->write(src.buffer, s.name, a, chunk, c);
        continue;
      }
      if (mesh_.dp_rank != 0) continue;  // the tp group of world rank 0 gathers; the other groups hold copies
      gathered_.resize(static_cast<size_t>(tp * c));
      mesh_.tp_group->all_gather(gathered_.data(), chunk, c);
      if (!writer_) continue;
      if (s.split == TpSplit::rows) {  // rank r's block is rows [r * rows, (r + 1) * rows) of the whole tensor
        for (int r = 0; r < tp; ++r) writer_->write(src.buffer, s.name, r * s.numel + a, gathered_.data() + r * c, c);
        continue;
      }
      // A column split: rank r's rows are columns [r * row, (r + 1) * row) of the same whole rows.
      const int64_t rows = c / row, full = s.full_shape[1];
      assembled_.resize(static_cast<size_t>(tp * c));
      for (int64_t i = 0; i < rows; ++i)
        for (int r = 0; r < tp; ++r)
          std::copy_n(gathered_.data() + r * c + i * row, row, assembled_.data() + i * full + r * row);
      writer_->write(src.buffer, s.name, (a / row) * full, assembled_.data(), tp * c);
    }
  }

 private:
  // Elements [lo, hi) of this tp rank's local buffer: in place, or from the ZeRO-1 owners of its pieces.
  const float* local_chunk(const Source& src, int64_t lo, int64_t hi) {
    if (!src.ranged) return src.data + lo;
    Communicator& dp = *mesh_.dp_group;
    piece_.resize(static_cast<size_t>(hi - lo));
    for (int r = 0; r < dp.size(); ++r) {
      const ShardRange owner = shard_range(n_, dp.size(), r);
      const int64_t b = std::max(lo, owner.begin), e = std::min(hi, owner.end);
      if (b >= e) continue;
      if (r == dp.rank()) std::copy(src.data + (b - src.begin), src.data + (e - src.begin), piece_.data() + (b - lo));
      dp.broadcast(piece_.data() + (b - lo), (e - b) * int64_t(sizeof(float)), r);
    }
    return piece_.data();
  }

  Mesh& mesh_;
  CheckpointWriter* writer_;  // world rank 0 only
  int64_t n_;
  std::vector<float> piece_, gathered_, assembled_;
};

// Whether the moments are ZeRO-1 ranges, agreed over dp (every dp rank must take the same collective path), and
// checked against shard_range, which the streamer uses to find each piece's owner.
bool moments_ranged(Mesh& mesh, const AdamW& optim, int64_t n) {
  double ranged = (optim.begin() != 0 || optim.end() != n) ? 1.0 : 0.0;
  mesh.dp_group->all_reduce(&ranged, 1, ReduceOp::max);
  const ShardRange mine = shard_range(n, mesh.dp, mesh.dp_rank);
  if (ranged > 0 && (optim.begin() != mine.begin || optim.end() != mine.end))
    throw std::logic_error("save_checkpoint_distributed: the optimizer's range is not this dp rank's ZeRO-1 range");
  return ranged > 0;
}

// NonFiniteError on every rank when any rank holds NaN or inf, with the message of the lowest rank that found one
// (only rank 0 logs it), before anything is created.
void agree_finite(Mesh& mesh, const ParamTable& local, const float* params, AdamW& optim) {
  std::string found;
  try {
    require_finite(local, params, optim.exp_avg().data(), optim.exp_avg_sq().data(), optim.begin(), optim.end());
  } catch (const NonFiniteError& e) {
    found = e.what();
  }
  double finder = found.empty() ? 0.0 : double(mesh.world_size - mesh.world_rank);  // max: the lowest finder
  mesh.world->all_reduce(&finder, 1, ReduceOp::max);
  if (finder == 0) return;
  const int root = mesh.world_size - static_cast<int>(finder);
  int64_t bytes = static_cast<int64_t>(found.size());
  mesh.world->broadcast(&bytes, sizeof bytes, root);
  found.resize(static_cast<size_t>(bytes));
  mesh.world->broadcast(found.data(), bytes, root);
  throw NonFiniteError(root == 0 ? found : "rank " + std::to_string(root) + ": " + found);
}

// Replicated tensors (DyT alpha, gamma, beta; embed_scale) must hold the same bits on every tp rank: only tp rank 0's
// copy is written, so a divergence (a missed all-reduce, a nondeterministic kernel) would go into the checkpoint
// unnoticed. An FNV-1a hash of them is compared with tp rank 0's over each tp group, and the verdict is agreed on over
// the world, so every rank throws together (no rank is left in the save's collectives).
void agree_replicated(Mesh& mesh, const ParamTable& local, const float* params) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (const ParamSpec& s : local.specs()) {
    if (s.split != TpSplit::replicated) continue;
    const auto* bytes = reinterpret_cast<const unsigned char*>(params + s.offset);
    for (int64_t i = 0; i < s.numel * int64_t(sizeof(float)); ++i) hash = (hash ^ bytes[i]) * 0x100000001b3ull;
  }
  uint64_t tp_root = hash;
  mesh.tp_group->broadcast(&tp_root, sizeof tp_root, 0);
  double differing = tp_root == hash ? 0.0 : double(mesh.world_size - mesh.world_rank);  // max: the lowest rank
  mesh.world->all_reduce(&differing, 1, ReduceOp::max);
  if (differing == 0) return;
  throw std::runtime_error(fmt::format(
      "checkpoint: the replicated parameters (DyT alpha, gamma and beta; embed_scale) of world rank {} differ from its "
      "tensor-parallel rank 0's; they must be the same bits on every tp rank. This is a bug in the tp path: report it "
      "with the config; the last checkpoint on disk is intact",
      mesh.world_size - static_cast<int>(differing)));
}

}  // namespace

int64_t widest_checkpoint_row(const ParamTable& local, int tp) {
  int64_t widest = 0;
  for (const ParamSpec& s : local.specs())
    if (s.shape != s.full_shape) widest = std::max(widest, tp * s.shape[1]);
  return widest;
}

double checkpoint_staging_bytes(double widest_row) {
  return 3 * 4 * std::max(double(kCheckpointRoundFloats), widest_row);
}

ParamTable whole_table(const ParamTable& local) {
  ParamTable whole;
  for (const ParamSpec& s : local.specs()) whole.add(s.name, s.full_shape, s.group);
  return whole;
}

std::string save_checkpoint_distributed(Mesh& mesh, const std::string& run_dir, int64_t step, const Config& cfg,
                                        const ParamTable& local, const float* params, AdamW& optim,
                                        const YAML::Node& trainer_state) {
  agree_finite(mesh, local, params, optim);
  agree_replicated(mesh, local, params);
  const int64_t n = local.total();
  const bool ranged = moments_ranged(mesh, optim, n);
  std::optional<CheckpointWriter> writer;
  if (mesh.world_rank == 0) writer.emplace(run_dir, step, whole_table(local));
  Streamer streamer(mesh, writer ? &*writer : nullptr, n);
  const Source sources[] = {{StateBuffer::params, params, 0, n, false},
                            {StateBuffer::exp_avg, optim.exp_avg().data(), optim.begin(), optim.end(), ranged},
                            {StateBuffer::exp_avg_sq, optim.exp_avg_sq().data(), optim.begin(), optim.end(), ranged}};
  for (const Source& src : sources)
    for (const ParamSpec& s : local.specs()) streamer.tensor(src, s);
  const std::string path = writer ? writer->commit(cfg, trainer_state, cfg.train.keep_checkpoints)
                                  : run_dir + "/checkpoints/" + checkpoint_dir_name(step);
  // Nobody reads or rotates checkpoints before rank 0 has renamed this one into place.
  mesh.world->barrier();
  return path;
}

YAML::Node load_checkpoint_distributed(float* params, AdamW& optim, Mesh& mesh, const std::string& dir,
                                       const ParamTable& local) {
  return load_checkpoint_slice(params, optim.exp_avg().data(), optim.exp_avg_sq().data(), dir,
                               CheckpointSlice{&local, mesh.tp_rank, optim.begin(), optim.end()});
}

}  // namespace dytrain
