// The training and validation token loader over llm.c shards (trainer/data/shard.h).
// A batch is B windows of T+1 consecutive tokens (inputs are [0, T), targets [1, T+1)).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "trainer/data/shard.h"

namespace dytrain {

struct LoaderOptions {
  std::string shards;      // file, directory or glob (expand_shards)
  int batch = 1;           // B windows per call to next()
  int seq_len = 1;         // T
  int vocab_size = 0;      // every id must be < vocab_size: checked over all shards at open (ShardError)
  uint64_t seed = 0;       // window order; the same seed gives the same batches
  bool shuffle = true;     // training: seeded shuffle of windows each epoch; validation: false, fixed order
  int dp_rank = 0;         // this rank reads a disjoint part of every epoch
  int dp_size = 1;
};

class TokenLoader {
 public:
  // Opens every shard and scans all their ids: ShardError names the file, token index and byte offset of the first
  // id >= vocab_size.
  explicit TokenLoader(const LoaderOptions& opt);

  // tokens (B, T+1) int32. Wraps to a new epoch (a new seeded order) when the data is used up. Throws ShardError
  // when a shard changed since the loader opened it.
  void next(int32_t* tokens);

  // Back to the first batch of epoch 0 (validation passes start here each time).
  void reset();

  // The position, saved in checkpoints: restoring it makes next() continue exactly where it was.
  YAML::Node state() const;
  void restore(const YAML::Node& state);  // throws naming the key when the state does not fit these shards

  int64_t total_tokens() const;
  int64_t epoch() const;
  int64_t batches_per_epoch() const;  // per rank

 private:
  void check_ids() const;              // scans every shard; throws ShardError at the first id >= vocab_size
  void build_order();                  // order_ for epoch_ (identity, or a permutation seeded by seed_ and epoch_)
  void window_at(int* shard, int64_t* start, int64_t w) const;  // global window index -> (shard, first token)

  LoaderOptions opt_;
  std::vector<Shard> shards_;
  std::vector<int64_t> first_window_;  // (shards + 1) prefix sums: shard s holds windows [first_window_[s], ..[s+1])
  int64_t per_rank_ = 0;               // windows dealt to each rank per epoch
  uint64_t seed_ = 0;
  int64_t epoch_ = 0;
  int64_t cursor_ = 0;                 // windows of this rank's share already taken in epoch_
  std::vector<int64_t> order_;         // (windows) global window index at each position of epoch_
};

}  // namespace dytrain
