#include "trainer/train/distributed_checkpoint.h"

#include <vector>

#include "trainer/checkpoint/checkpoint.h"
#include "trainer/train/grad_sync.h"

namespace dytrain {
namespace {

// whole (whole.total()) from every tp rank's blocks (local.total() each). Collective over tp.
void gather_tp(float* whole, const float* local_buf, const ParamTable& local, const ParamTable& whole_tab,
               Communicator& tp) {
  std::vector<float> blocks;
  for (size_t i = 0; i < local.specs().size(); ++i) {
    const ParamSpec& s = local.specs()[i];
    float* dst = whole + whole_tab.specs()[i].offset;
    if (tp.size() == 1 || s.split == TpSplit::replicated) {
      std::copy_n(local_buf + s.offset, s.numel, dst);
      continue;
    }
    blocks.resize(s.numel * tp.size());
    tp.all_gather(blocks.data(), local_buf + s.offset, s.numel);
    for (int r = 0; r < tp.size(); ++r) put_tp_block(dst, blocks.data() + r * s.numel, s, r);
  }
}

// local_buf (local.total()) = this tp rank's blocks of whole.
void take_tp(float* local_buf, const float* whole, const ParamTable& local, const ParamTable& whole_tab, int tp_rank) {
  for (size_t i = 0; i < local.specs().size(); ++i)
    take_tp_block(local_buf + local.specs()[i].offset, whole + whole_tab.specs()[i].offset, local.specs()[i], tp_rank);
}

// The optimizer's moments over the whole local buffer: its own range, or every dp rank's range gathered (ZeRO-1).
std::vector<float> gather_moment(const std::vector<float>& range, const AdamW& optim, int64_t n, Communicator& dp) {
  if (optim.begin() == 0 && optim.end() == n) return range;
  std::vector<float> out(n), padded;
  std::copy(range.begin(), range.end(), out.begin() + optim.begin());
  all_gather_parameters(dp, out.data(), padded, n, shard_range(n, dp.size(), dp.rank()));
  return out;
}

}  // namespace

ParamTable whole_table(const ParamTable& local) {
  ParamTable whole;
  for (const ParamSpec& s : local.specs()) whole.add(s.name, s.full_shape, s.group);
  return whole;
}

std::string save_checkpoint_distributed(Mesh& mesh, const std::string& run_dir, int64_t step, const Config& cfg,
                                        const ParamTable& local, const float* params, AdamW& optim,
                                        const YAML::Node& trainer_state) {
  const ParamTable whole = whole_table(local);
  const int64_t n = local.total();
  std::vector<float> p(whole.total()), m(whole.total()), v(whole.total());
  gather_tp(p.data(), params, local, whole, *mesh.tp_group);
  gather_tp(m.data(), gather_moment(optim.exp_avg(), optim, n, *mesh.dp_group).data(), local, whole, *mesh.tp_group);
  gather_tp(v.data(), gather_moment(optim.exp_avg_sq(), optim, n, *mesh.dp_group).data(), local, whole,
            *mesh.tp_group);
  // Every rank holds the same gathered tensors and checks them, and the verdict is agreed on, so a state with NaN or
  // inf makes every rank throw NonFiniteError together (exit 3 everywhere, no rank left waiting) and nothing is
  // written. The all-reduce is also the barrier: nobody reads or rotates checkpoints before rank 0 has renamed this
  // one into place.
  const CheckpointData data{&cfg, &whole, p.data(), m.data(), v.data(), trainer_state};
  std::string path, non_finite;
  try {
    if (mesh.world_rank == 0)
      path = save_checkpoint(run_dir, step, data, cfg.train.keep_checkpoints);
    else
      require_finite(data);
  } catch (const NonFiniteError& e) {
    non_finite = e.what();
  }
  double refused = non_finite.empty() ? 0.0 : 1.0;
  mesh.world->all_reduce(&refused, 1, ReduceOp::max);
  if (refused > 0)
    throw NonFiniteError(non_finite.empty() ? "another rank found a non-finite value in the state to checkpoint"
                                            : non_finite);
  return path.empty() ? run_dir + "/checkpoints/" + checkpoint_dir_name(step) : path;
}

YAML::Node load_checkpoint_distributed(float* params, AdamW& optim, Mesh& mesh, const std::string& dir,
                                       const ParamTable& local) {
  const ParamTable whole = whole_table(local);
  std::vector<float> p(whole.total()), m(whole.total()), v(whole.total());
  YAML::Node state = load_checkpoint(p.data(), m.data(), v.data(), dir, whole);
  take_tp(params, p.data(), local, whole, mesh.tp_rank);
  std::vector<float> local_m(local.total()), local_v(local.total());
  take_tp(local_m.data(), m.data(), local, whole, mesh.tp_rank);
  take_tp(local_v.data(), v.data(), local, whole, mesh.tp_rank);
  std::copy(local_m.begin() + optim.begin(), local_m.begin() + optim.end(), optim.exp_avg().begin());
  std::copy(local_v.begin() + optim.begin(), local_v.begin() + optim.end(), optim.exp_avg_sq().begin());
  return state;
}

}  // namespace dytrain
