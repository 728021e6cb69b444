// The data-parallel half of a step and the global gradient norm, for any dp x tp layout.
//
// Plain data parallelism averages the whole gradient over the dp group with bucketed all-reduces. With ZeRO-1 each
// dp rank owns a contiguous range of the flat parameter buffer (params.h): the gradient is reduce-scattered (each
// rank receives the average of its range only), AdamW updates only that range from moments sized to it, and the
// updated ranges are all-gathered back into every rank's parameters.
//
// Without ZeRO-1 the average overlaps the backward pass where the backend allows (OverlappedGradAverage): the model
// reports each layer's range as soon as the last micro-batch's backward has finished it, and its all-reduce starts
// then, in buckets that bound the size of a single collective. NCCL runs them behind the backward pass on its own
// stream; MPI's non-blocking collectives progress mostly when they are waited for.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "parallel/comm.h"
#include "trainer/model/params.h"

namespace dytrain {

// grads (n) averaged over the dp group range by range: start() for ranges whose gradients are final, finish() for
// everything not started yet, then waits until every range holds its average. One instance per step.
class OverlappedGradAverage {
 public:
  // bucket_mb: parallel.bucket_mb, the largest single all-reduce in MiB of fp32.
  OverlappedGradAverage(Communicator& dp, float* grads, int64_t n, int bucket_mb)
      : dp_(dp), grads_(grads), n_(n), bucket_elems_(int64_t(bucket_mb) << 18) {}
  void start(int64_t begin, int64_t end);  // [begin, end) of grads; ranges must not overlap
  void finish();

 private:
  Communicator& dp_;
  float* grads_;
  int64_t n_, bucket_elems_;
  std::vector<std::pair<int64_t, int64_t>> started_;
};

// Calibrated alpha0 from rank 0 to every rank of `world` (each rank measured its own batch; the replicas must stay
// identical). params: this rank's flat parameters (table), on the host.
void broadcast_alphas_from_rank0(Communicator& world, const ParamTable& table, float* params);

// This rank's range [begin, end) of a flat buffer of n elements split over `parts` ranks in equal, padded blocks.
struct ShardRange {
  int64_t begin = 0, end = 0;  // end is clamped to n: the last ranks' ranges may be short or empty
  int64_t block = 0;           // padded block size, ceil(n / parts)
};
ShardRange shard_range(int64_t n, int parts, int rank);

// ZeRO-1 gradient step: shard (range.end - range.begin) = this rank's range of the dp-averaged grads (n).
// padded: scratch of parts * block floats.
void reduce_scatter_gradients(Communicator& dp, float* shard, std::vector<float>& padded, const float* grads,
                              int64_t n, const ShardRange& range);

// ZeRO-1 parameter step: every rank's range of params (n) gathered into every rank's params. padded: scratch.
void all_gather_parameters(Communicator& dp, float* params, std::vector<float>& padded, int64_t n,
                           const ShardRange& range);

// Sum of squares of grads over the flat range [begin, end) (grads holds that range, grads[0] is element begin),
// counting replicated tensors only on tp rank 0 so that a sum over the tp group counts every element of the whole
// model once. Deterministic: tensor by tensor in table order.
double grad_square_sum(const ParamTable& table, const float* grads, int64_t begin, int64_t end, int tp_rank);

}  // namespace dytrain
