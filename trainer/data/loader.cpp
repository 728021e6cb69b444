// The token loader. Design decisions:
// - A window is T+1 consecutive tokens inside one shard; windows start every T tokens, so a window's last token
//   (the last target) is the next window's first input, as in llm.c. Windows never straddle shards, so a shard
//   boundary (usually a document boundary) never appears inside a sequence the model sees as contiguous.
// - Windows are numbered across the sorted shard list; the numbering is kept as per-shard prefix sums rather than a
//   list of (shard, start) pairs, and one (windows) index array holds the epoch's order.
// - Each epoch's order is a Fisher-Yates permutation driven by splitmix64 seeded from (seed, epoch). Both are
//   written out here because std::shuffle and std:: distributions differ between standard libraries, and a run
//   must see the same data on every host and after every resume.
// - Position i of the epoch's order goes to rank i % dp_size; the order is trimmed so each rank gets the same
//   number of windows, and each rank's share is trimmed to whole batches, so every rank takes the same number of
//   steps per epoch and a batch never mixes two epochs.
// - Every shard's ids are scanned once when the loader opens (Shard::scan_ids: tens of ms per 100M tokens from the
//   page cache), so an id >= vocab_size stops a run before it starts rather than in whichever window happens to
//   hold it, hours in or never; the message gives the largest id in the data, which is the vocab_size it needs.
//   The dp ranks share the scan (shard s on dp rank s % dp_size; the trainer agrees on the outcome over every rank),
//   so the data is read once per replica rather than once per rank, and a rank with a cold cache or a slow file
//   system does not make the others wait minutes. Each window is checked again as it is read (free next to a step):
//   after the scan, a bad id means the file changed under the run, whichever rank scanned it.
#include "trainer/data/loader.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

namespace dytrain {
namespace {

uint64_t splitmix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [0, n) by Lemire's multiply-shift; the bias is at most n / 2^64, far below anything measurable here.
uint64_t below(uint64_t* state, uint64_t n) {
  return uint64_t((static_cast<unsigned __int128>(splitmix64(state)) * n) >> 64);
}

void check_options(const LoaderOptions& o) {
  auto bad = [&](const char* key, long long value, const char* want) {
    return std::invalid_argument(
        fmt::format("token loader for '{}': {} = {} is invalid, it must be {}", o.shards, key, value, want));
  };
  if (o.batch < 1) throw bad("batch", o.batch, ">= 1");
  if (o.seq_len < 1) throw bad("seq_len", o.seq_len, ">= 1");
  if (o.vocab_size < 1) throw bad("vocab_size", o.vocab_size, ">= 1 (set model.vocab_size)");
  if (o.dp_size < 1) throw bad("dp_size", o.dp_size, ">= 1");
  if (o.dp_rank < 0 || o.dp_rank >= o.dp_size) throw bad("dp_rank", o.dp_rank, "in [0, dp_size)");
}

}  // namespace

TokenLoader::TokenLoader(const LoaderOptions& opt) : opt_(opt), seed_(opt.seed) {
  check_options(opt_);
  const std::vector<std::string> paths = expand_shards(opt_.shards);
  allow_many_open_shards();
  for (const std::string& path : paths) shards_.emplace_back(path);
  check_ids();

  const int64_t T = opt_.seq_len;
  first_window_.assign(shards_.size() + 1, 0);
  for (size_t s = 0; s < shards_.size(); ++s) {
    const int64_t n = shards_[s].size();
    first_window_[s + 1] = first_window_[s] + (n > T ? (n - 1) / T : 0);
  }
  const int64_t windows = first_window_.back();
  per_rank_ = windows / opt_.dp_size;
  if (batches_per_epoch() == 0) {
    throw std::runtime_error(fmt::format(
        "token loader for '{}': too little data: {} shard(s) with {} tokens hold {} windows of seq_len+1 = {} tokens "
        "(windows stay inside one shard), but one batch on each of {} data-parallel rank(s) needs {} windows; "
        "use more data or lower batch / seq_len",
        opt_.shards, shards_.size(), total_tokens(), windows, T + 1, opt_.dp_size,
        int64_t(opt_.batch) * opt_.dp_size));
  }
  build_order();
}

void TokenLoader::check_ids() const {
  const uint32_t vocab = uint32_t(opt_.vocab_size);
  uint32_t max_id = 0;
  const Shard* bad_shard = nullptr;
  IdScan bad;
  for (size_t s = size_t(opt_.dp_rank); s < shards_.size(); s += size_t(opt_.dp_size)) {
    const Shard& shard = shards_[s];
    const IdScan scan = shard.scan_ids(vocab);
    max_id = std::max(max_id, scan.max_id);
    if (scan.first_bad >= 0 && !bad_shard) bad_shard = &shard, bad = scan;
  }
  if (!bad_shard) return;
  throw ShardError(fmt::format(
      "token shard '{}': token index {} (byte offset {}) holds id {}, but vocab_size is {}; the largest id in {} is "
      "{}: set model.vocab_size to at least {}, or re-prepare the data with the model's tokenizer",
      bad_shard->path(), bad.first_bad, bad_shard->byte_offset(bad.first_bad), bad.first_bad_id, opt_.vocab_size,
      opt_.dp_size == 1 ? fmt::format("'{}'", opt_.shards)
                        : fmt::format("the shards of '{}' this rank scanned (every {}th from {})", opt_.shards,
                                      opt_.dp_size, opt_.dp_rank),
      max_id, uint64_t(max_id) + 1));
}

void TokenLoader::build_order() {
  order_.resize(size_t(first_window_.back()));
  std::iota(order_.begin(), order_.end(), int64_t(0));
  if (!opt_.shuffle) return;
  // Seed and epoch are hashed separately before mixing so neighbouring seeds or epochs give unrelated orders.
  uint64_t a = seed_, b = uint64_t(epoch_) ^ 0xD1B54A32D192ED03ull;
  uint64_t state = splitmix64(&a) ^ splitmix64(&b);
  for (size_t i = order_.size() - 1; i > 0; --i) std::swap(order_[i], order_[below(&state, i + 1)]);
}

void TokenLoader::window_at(int* shard, int64_t* start, int64_t w) const {
  const auto it = std::upper_bound(first_window_.begin(), first_window_.end(), w);
  *shard = int(it - first_window_.begin()) - 1;
  *start = (w - first_window_[size_t(*shard)]) * opt_.seq_len;
}

void TokenLoader::next(int32_t* tokens) {
  const int64_t T = opt_.seq_len;
  for (int b = 0; b < opt_.batch; ++b) {
    const int64_t pos = (cursor_ + b) * opt_.dp_size + opt_.dp_rank;
    int s = 0;
    int64_t start = 0;
    window_at(&s, &start, order_[size_t(pos)]);
    const Shard& shard = shards_[size_t(s)];
    int32_t* row = tokens + b * (T + 1);  // (T+1)
    shard.read(start, T + 1, reinterpret_cast<uint32_t*>(row));  // int32 storage read as uint32: allowed aliasing
    for (int64_t j = 0; j <= T; ++j) {
      const uint32_t id = uint32_t(row[j]);
      if (id >= uint32_t(opt_.vocab_size)) {
        throw ShardError(fmt::format(
            "token shard '{}' changed while the run was reading it: token index {} (byte offset {}) now holds id {} "
            ">= vocab_size {}, but every id was below it when the run started; restore the file and --resume from "
            "the last checkpoint",
            shard.path(), start + j, shard.byte_offset(start + j), id, opt_.vocab_size));
      }
    }
  }
  cursor_ += opt_.batch;
  if (cursor_ + opt_.batch > per_rank_) {
    ++epoch_;
    cursor_ = 0;
    build_order();
  }
}

void TokenLoader::reset() {
  const bool rebuild = epoch_ != 0;
  epoch_ = 0;
  cursor_ = 0;
  if (rebuild) build_order();
}

YAML::Node TokenLoader::state() const {
  YAML::Node n;
  n["epoch"] = epoch_;
  n["cursor"] = cursor_;
  n["seed"] = seed_;
  n["shards"] = int64_t(shards_.size());
  n["tokens"] = total_tokens();
  return n;
}

// The saved seed wins over opt.seed: it produced the saved epoch's order, so only it continues the same sequence.
void TokenLoader::restore(const YAML::Node& state) {
  auto get = [&](const char* key, auto type_tag) {
    using V = decltype(type_tag);
    if (!state[key]) {
      throw std::runtime_error(fmt::format("loader state for '{}': missing key '{}'; the checkpoint is incomplete",
                                           opt_.shards, key));
    }
    try {
      return state[key].template as<V>();
    } catch (const YAML::Exception&) {
      throw std::runtime_error(fmt::format("loader state for '{}': key '{}' is not a number", opt_.shards, key));
    }
  };
  const int64_t shards = get("shards", int64_t{}), tokens = get("tokens", int64_t{});
  const int64_t epoch = get("epoch", int64_t{}), cursor = get("cursor", int64_t{});
  const uint64_t seed = get("seed", uint64_t{});
  if (shards != int64_t(shards_.size())) {
    throw std::runtime_error(fmt::format("loader state key 'shards': the checkpoint was taken over {} shard(s) but "
                                         "'{}' now has {}; resume with the same data",
                                         shards, opt_.shards, shards_.size()));
  }
  if (tokens != total_tokens()) {
    throw std::runtime_error(fmt::format("loader state key 'tokens': the checkpoint was taken over {} tokens but "
                                         "'{}' now holds {}; resume with the same data",
                                         tokens, opt_.shards, total_tokens()));
  }
  // The largest int64 is refused too: next() could not move past that epoch without overflowing.
  if (epoch < 0 || epoch == std::numeric_limits<int64_t>::max()) {
    throw std::runtime_error(fmt::format("loader state key 'epoch': {} is out of range (0 <= epoch < 2^63 - 1); the "
                                         "checkpoint's trainer_state.yaml is damaged",
                                         epoch));
  }
  // per_rank_ >= batch (the constructor checks it), so the bound cannot overflow as cursor + batch could.
  if (cursor < 0 || cursor % opt_.batch != 0 || cursor > per_rank_ - opt_.batch) {
    throw std::runtime_error(fmt::format("loader state key 'cursor': {} does not fit {} windows per rank in batches "
                                         "of {}; resume with the same batch size and data-parallel size",
                                         cursor, per_rank_, opt_.batch));
  }
  seed_ = seed;
  epoch_ = epoch;
  cursor_ = cursor;
  build_order();
}

int64_t TokenLoader::total_tokens() const {
  int64_t n = 0;
  for (const Shard& s : shards_) n += s.size();
  return n;
}

int64_t TokenLoader::epoch() const { return epoch_; }

int64_t TokenLoader::batches_per_epoch() const { return per_rank_ / opt_.batch; }

}  // namespace dytrain
