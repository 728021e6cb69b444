#include "trainer/train/grad_sync.h"

#include <algorithm>

#include "kernels/cpu/grad_norm.h"

namespace dytrain {

void broadcast_alphas_from_rank0(Communicator& world, const ParamTable& table, float* params) {
  for (const ParamSpec& s : table.specs())
    if (s.group == ParamGroup::dyt_alpha) world.broadcast(params + s.offset, sizeof(float), 0);
}

void OverlappedGradAverage::start(int64_t begin, int64_t end) {
  started_.emplace_back(begin, end);
  for (int64_t b = begin; b < end; b += bucket_elems_)
    dp_.all_reduce_start(grads_ + b, std::min(bucket_elems_, end - b), ReduceOp::avg);
}

void OverlappedGradAverage::finish() {
  std::vector<std::pair<int64_t, int64_t>> done = started_;
  std::sort(done.begin(), done.end());
  int64_t cursor = 0;
  for (const auto& [begin, end] : done) {
    if (cursor < begin) start(cursor, begin);
    cursor = std::max(cursor, end);
  }
  if (cursor < n_) start(cursor, n_);
  dp_.synchronize();
  started_.clear();
}

ShardRange shard_range(int64_t n, int parts, int rank) {
  ShardRange r;
  r.block = (n + parts - 1) / parts;
  r.begin = std::min(n, r.block * rank);
  r.end = std::min(n, r.begin + r.block);
  return r;
}

void reduce_scatter_gradients(Communicator& dp, float* shard, std::vector<float>& padded, const float* grads,
                              int64_t n, const ShardRange& range) {
  padded.assign(range.block * dp.size(), 0.0f);
  std::copy_n(grads, n, padded.begin());
  std::vector<float> block(range.block);
  dp.reduce_scatter(block.data(), padded.data(), range.block, ReduceOp::avg);
  std::copy_n(block.begin(), range.end - range.begin, shard);
}

void all_gather_parameters(Communicator& dp, float* params, std::vector<float>& padded, int64_t n,
                           const ShardRange& range) {
  std::vector<float> block(range.block, 0.0f);
  std::copy(params + range.begin, params + range.end, block.begin());
  padded.assign(range.block * dp.size(), 0.0f);
  dp.all_gather(padded.data(), block.data(), range.block);
  std::copy_n(padded.begin(), n, params);
}

double grad_square_sum(const ParamTable& table, const float* grads, int64_t begin, int64_t end, int tp_rank) {
  double sum = 0.0;
  for (const ParamSpec& s : table.specs()) {
    if (s.split == TpSplit::replicated && tp_rank != 0) continue;
    const int64_t lo = std::max(begin, s.offset), hi = std::min(end, s.offset + s.numel);
    if (lo < hi) sum += cpu::sum_squares(grads + (lo - begin), hi - lo);
  }
  return sum;
}

}  // namespace dytrain
