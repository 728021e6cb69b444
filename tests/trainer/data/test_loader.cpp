// Loader tests. The synthetic shards hold token s*kShardStride + i at offset i of shard s, so every row of a batch
// tells which shard and offset it came from; each row is checked against the shard contents and the window rules
// (start a multiple of T, T+1 tokens, inside one shard). Orders are compared with a single-rank, batch-1 loader of
// the same seed, which reads out the epoch's permutation one window at a time.
#include <sys/resource.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/common/temp_dir.h"
#include "trainer/data/loader.h"

namespace dytrain {
namespace {

using testing::TempDir;
namespace fs = std::filesystem;
constexpr uint32_t kShardStride = 100000;

// Shards of the given sizes (uint32 tokens) named data_000000.bin, ... in dir.
void make_shards(const TempDir& dir, const std::vector<int64_t>& sizes) {
  for (size_t s = 0; s < sizes.size(); ++s) {
    std::vector<uint32_t> tokens(size_t(sizes[s]));
    std::iota(tokens.begin(), tokens.end(), uint32_t(s) * kShardStride);
    write_shard(dir.file("data_00000" + std::to_string(s) + ".bin"), tokens, 4);
  }
}

LoaderOptions options(const TempDir& dir, int batch, int seq_len, uint64_t seed, bool shuffle) {
  LoaderOptions o;
  o.shards = dir.path().string();
  o.batch = batch;
  o.seq_len = seq_len;
  o.vocab_size = 1000000;
  o.seed = seed;
  o.shuffle = shuffle;
  return o;
}

// One batch (B, T+1); each row is checked to be a valid window of the synthetic shards, and its first token (which
// names shard and start) is returned per row.
std::vector<int32_t> take(TokenLoader* loader, const LoaderOptions& o, const std::vector<int64_t>& sizes) {
  const int T = o.seq_len;
  std::vector<int32_t> batch(size_t(o.batch) * (T + 1));
  loader->next(batch.data());
  std::vector<int32_t> firsts;
  for (int b = 0; b < o.batch; ++b) {
    const int32_t* row = batch.data() + b * (T + 1);
    const int64_t shard = row[0] / kShardStride, start = row[0] % kShardStride;
    EXPECT_LT(shard, int64_t(sizes.size()));
    EXPECT_EQ(start % T, 0) << "windows start every T tokens";
    EXPECT_LE(start + T + 1, sizes[size_t(shard)]) << "a window stays inside its shard";
    for (int j = 0; j <= T; ++j) EXPECT_EQ(row[j], row[0] + j) << "row " << b << " token " << j;
    firsts.push_back(row[0]);
  }
  return firsts;
}

std::vector<int32_t> take_many(TokenLoader* loader, const LoaderOptions& o, const std::vector<int64_t>& sizes,
                               int batches) {
  std::vector<int32_t> all;
  for (int i = 0; i < batches; ++i) {
    const std::vector<int32_t> f = take(loader, o, sizes);
    all.insert(all.end(), f.begin(), f.end());
  }
  return all;
}

// Every window of the synthetic shards, as its first token, in shard order.
std::vector<int32_t> all_windows(const std::vector<int64_t>& sizes, int T) {
  std::vector<int32_t> w;
  for (size_t s = 0; s < sizes.size(); ++s) {
    for (int64_t start = 0; start + T + 1 <= sizes[s]; start += T) w.push_back(int32_t(s * kShardStride + start));
  }
  return w;
}

// At T=8: 33 tokens give 4 windows (the last one ends exactly at the shard's end), 48 give 5 (not 6: a window
// needs T+1 tokens), 25 give 3; 12 windows in all.
const std::vector<int64_t> kSizes = {33, 48, 25};

TEST(TokenLoader, FixedOrderReadsEveryWindowInShardOrder) {
  TempDir dir;
  make_shards(dir, kSizes);
  const LoaderOptions o = options(dir, 3, 8, 0, false);
  TokenLoader loader(o);
  EXPECT_EQ(loader.total_tokens(), 106);
  EXPECT_EQ(loader.batches_per_epoch(), 4);
  EXPECT_EQ(take_many(&loader, o, kSizes, 4), all_windows(kSizes, 8));
  EXPECT_EQ(loader.epoch(), 1);
  EXPECT_EQ(take_many(&loader, o, kSizes, 4), all_windows(kSizes, 8)) << "without shuffle every epoch is the same";
}

TEST(TokenLoader, ResetRestartsValidationOrder) {
  TempDir dir;
  make_shards(dir, kSizes);
  const LoaderOptions o = options(dir, 2, 8, 0, false);
  TokenLoader loader(o);
  const std::vector<int32_t> first = take_many(&loader, o, kSizes, 7);  // past the end of epoch 0 (6 batches)
  EXPECT_EQ(loader.epoch(), 1);
  loader.reset();
  EXPECT_EQ(loader.epoch(), 0);
  EXPECT_EQ(take_many(&loader, o, kSizes, 7), first);
}

TEST(TokenLoader, ShuffledEpochsArePermutationsThatDifferBetweenEpochs) {
  TempDir dir;
  make_shards(dir, kSizes);
  const LoaderOptions o = options(dir, 4, 8, 1234, true);
  TokenLoader loader(o);
  ASSERT_EQ(loader.batches_per_epoch(), 3);
  const std::vector<int32_t> e0 = take_many(&loader, o, kSizes, 3);
  EXPECT_EQ(loader.epoch(), 1);
  const std::vector<int32_t> e1 = take_many(&loader, o, kSizes, 3);
  EXPECT_EQ(loader.epoch(), 2);
  EXPECT_NE(e0, e1) << "each epoch draws a new order (equal orders have probability 1/12!)";
  for (std::vector<int32_t> e : {e0, e1}) {
    std::sort(e.begin(), e.end());
    EXPECT_EQ(e, all_windows(kSizes, 8));
  }
}

TEST(TokenLoader, SameSeedSameBatchesDifferentSeedDifferent) {
  TempDir dir;
  make_shards(dir, kSizes);
  const LoaderOptions a = options(dir, 2, 8, 7, true), b = options(dir, 2, 8, 8, true);
  TokenLoader l1(a), l2(a), l3(b);
  const std::vector<int32_t> s1 = take_many(&l1, a, kSizes, 12);  // two epochs
  EXPECT_EQ(s1, take_many(&l2, a, kSizes, 12));
  EXPECT_NE(s1, take_many(&l3, b, kSizes, 12));
}

TEST(TokenLoader, DataParallelRanksAreDisjointAndFollowTheEpochOrder) {
  TempDir dir;
  const std::vector<int64_t> sizes = {33, 50, 25};  // 4 + 6 + 3 = 13 windows: 3 ranks use 12, one is trimmed
  make_shards(dir, sizes);
  const int dp = 3;
  for (int epoch = 0; epoch < 2; ++epoch) {
    // The reference order: position i of this epoch's permutation, from a single-rank, batch-1 loader.
    const LoaderOptions ref_opt = options(dir, 1, 8, 99, true);
    TokenLoader ref(ref_opt);
    ASSERT_EQ(ref.batches_per_epoch(), 13);
    std::vector<int32_t> order = take_many(&ref, ref_opt, sizes, 13 * (epoch + 1));
    order.erase(order.begin(), order.begin() + 13 * epoch);

    std::set<int32_t> seen;
    for (int r = 0; r < dp; ++r) {
      LoaderOptions o = options(dir, 2, 8, 99, true);
      o.dp_rank = r;
      o.dp_size = dp;
      TokenLoader loader(o);
      ASSERT_EQ(loader.batches_per_epoch(), 2);
      std::vector<int32_t> mine = take_many(&loader, o, sizes, 2 * (epoch + 1));
      mine.erase(mine.begin(), mine.begin() + 4 * epoch);
      for (size_t k = 0; k < mine.size(); ++k) {
        EXPECT_EQ(mine[k], order[k * dp + size_t(r)]) << "rank " << r << " takes positions i % dp == rank";
        EXPECT_TRUE(seen.insert(mine[k]).second) << "window " << mine[k] << " given to two ranks";
      }
    }
    EXPECT_EQ(seen, std::set<int32_t>(order.begin(), order.begin() + 12)) << "together the ranks cover the epoch";
  }
}

TEST(TokenLoader, StateRestoreContinuesTheExactSequence) {
  TempDir dir;
  make_shards(dir, kSizes);
  const LoaderOptions o = options(dir, 2, 8, 4242, true);  // 6 batches per epoch: the 12 batches cross an epoch
  TokenLoader a(o);
  take_many(&a, o, kSizes, 7);
  const std::string saved = YAML::Dump(a.state());  // through text, as in a checkpoint
  const std::vector<int32_t> expected = take_many(&a, o, kSizes, 5);

  LoaderOptions other_seed = o;
  other_seed.seed = 1;  // the saved seed wins: it made the saved epoch's order
  TokenLoader b(other_seed);
  b.restore(YAML::Load(saved));
  EXPECT_EQ(b.epoch(), 1);
  EXPECT_EQ(take_many(&b, o, kSizes, 5), expected);

  const YAML::Node st = YAML::Load(saved);
  EXPECT_EQ(st["shards"].as<int>(), 3);
  EXPECT_EQ(st["tokens"].as<int64_t>(), 106);
  EXPECT_EQ(st["seed"].as<uint64_t>(), 4242u);
}

TEST(TokenLoader, RestoreRejectsStateOfOtherDataNamingTheKey) {
  TempDir dir;
  make_shards(dir, kSizes);
  const LoaderOptions o = options(dir, 2, 8, 1, true);
  TokenLoader loader(o);
  auto expect_key = [&](const char* key, const YAML::Node& st) {
    try {
      loader.restore(st);
      FAIL() << "no error for a bad '" << key << "'";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("'") + key + "'"), std::string::npos) << e.what();
    }
  };
  YAML::Node st = loader.state();
  st["shards"] = 4;
  expect_key("shards", st);
  st = loader.state();
  st["tokens"] = 101;
  expect_key("tokens", st);
  st = loader.state();
  st["cursor"] = 12;  // past the 12 windows of one rank
  expect_key("cursor", st);
  st["cursor"] = INT64_MAX - 1;  // even, so only the range check can catch it, and cursor + batch overflows
  expect_key("cursor", st);
  st = loader.state();
  st["epoch"] = INT64_MAX;  // the next epoch could not be counted
  expect_key("epoch", st);
  st = loader.state();
  st.remove("epoch");
  expect_key("epoch", st);
}

// Runs fn, expects a std::runtime_error whose message holds every one of `parts`.
template <class Fn>
void expect_error(Fn fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no exception; expected one mentioning " << parts.front();
  } catch (const std::runtime_error& e) {
    for (const std::string& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

// Bad ids far from the windows a first batch draws, one past the scan's first 1M-token chunk: the loader refuses to
// open, naming the first bad token (file, index, byte offset = 1024-byte header + index x token bytes) and the
// largest id of all shards, which is what vocab_size must exceed.
TEST(TokenLoader, IdAboveVocabAnywhereFailsAtOpenNamingFileIndexAndByteOffset) {
  TempDir dir;
  std::vector<uint32_t> narrow(1000, 65);
  write_shard(dir.file("a_000000.bin"), narrow, 2);  // clean
  std::vector<uint32_t> wide((1 << 20) + 5000, 66);
  wide[(1 << 20) + 1234] = 300;
  wide[(1 << 20) + 4000] = 700;
  write_shard(dir.file("a_000001.bin"), wide, 4);
  narrow[999] = 500;  // the last token: a uint16 shard after the bad one
  write_shard(dir.file("a_000002.bin"), narrow, 2);
  LoaderOptions o = options(dir, 1, 8, 0, false);
  o.vocab_size = 256;
  expect_error([&] { TokenLoader loader(o); },
               {dir.file("a_000001.bin"), "token index 1049810", "byte offset 4200264", "id 300", "vocab_size is 256",
                "largest id", "700", "at least 701", "tokenizer"});

  // The same check with uint16 tokens, on a validation loader (fixed order): the first bad token of the first file.
  TempDir val;
  std::vector<uint32_t> tokens(5000, 65);
  tokens[4321] = 256;
  write_shard(val.file("val.bin"), tokens, 2);
  LoaderOptions v = options(val, 2, 8, 0, false);
  v.vocab_size = 256;
  expect_error([&] { TokenLoader loader(v); },
               {val.file("val.bin"), "token index 4321", "byte offset 9666", "id 256", "at least 257"});
  v.vocab_size = 257;
  EXPECT_NO_THROW(TokenLoader loader(v)) << "ids up to vocab_size - 1 are fine";
}

// The dp ranks share the scan (shard s on dp rank s % dp): together they scan every shard, each rank names what it
// found, and a rank never waits on a scan of the whole data set. The trainer agrees on the outcome over all ranks.
TEST(TokenLoader, DataParallelRanksShareTheIdScan) {
  TempDir dir;
  std::vector<uint32_t> tokens(2000, 65);
  write_shard(dir.file("a_000000.bin"), tokens, 2);  // clean
  tokens[10] = 300;
  write_shard(dir.file("a_000001.bin"), tokens, 2);
  tokens[10] = 65;
  tokens[20] = 400;
  write_shard(dir.file("a_000002.bin"), tokens, 2);
  LoaderOptions o = options(dir, 1, 8, 0, false);
  o.vocab_size = 256;
  o.dp_size = 2;
  o.dp_rank = 1;
  expect_error([&] { TokenLoader loader(o); }, {dir.file("a_000001.bin"), "token index 10", "id 300"});
  o.dp_rank = 0;
  expect_error([&] { TokenLoader loader(o); }, {dir.file("a_000002.bin"), "token index 20", "id 400"});
  o.dp_size = 3;  // rank 0 of 3 scans a_000000 alone: its share is clean
  EXPECT_NO_THROW(TokenLoader loader(o));
}

// A shard cut short after the loader opened it: the next batch throws naming the file and both sizes, where a
// memory-mapped reader dies of SIGBUS.
TEST(TokenLoader, ShardTruncatedAfterOpenIsAClearError) {
  TempDir dir;
  const std::string path = dir.file("data.bin");
  write_shard(path, std::vector<uint32_t>(8192, 7), 2);
  TokenLoader loader(options(dir, 2, 1000, 0, false));
  std::vector<int32_t> batch(2 * 1001);
  loader.next(batch.data());
  fs::resize_file(path, 1024 + 4);  // the next windows, tokens [2000, 4001), lay in the file's second 4 KB page
  expect_error([&] { loader.next(batch.data()); },
               {path, "changed while the run was reading it", "17408 -> 1028 bytes", "--resume"});
}

// Rewritten in place with ids that are all valid: only the new modification time tells. Set explicitly, because a
// rewrite within one tick of the kernel's file clock may keep the old one.
TEST(TokenLoader, ShardRewrittenInPlaceIsAClearError) {
  TempDir dir;
  const std::string path = dir.file("data.bin");
  write_shard(path, std::vector<uint32_t>(4096, 7), 2);
  TokenLoader loader(options(dir, 1, 8, 0, false));
  std::vector<int32_t> batch(9);
  loader.next(batch.data());
  const auto opened = fs::last_write_time(path);
  {
    std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(1024 + 2 * 10);
    const uint16_t other = 8;
    f.write(reinterpret_cast<const char*>(&other), 2);
  }
  fs::last_write_time(path, opened + std::chrono::seconds(1));
  expect_error([&] { loader.next(batch.data()); },
               {path, "changed while the run was reading it", "rewritten in place"});
}

// Rewritten in place with an id >= vocab_size and the old modification time put back: the window's range check
// catches it, with the token's index and byte offset.
TEST(TokenLoader, ShardRewrittenWithABadIdIsCaughtByTheWindowCheck) {
  TempDir dir;
  const std::string path = dir.file("data.bin");
  write_shard(path, std::vector<uint32_t>(4096, 7), 2);
  LoaderOptions o = options(dir, 1, 8, 0, false);
  o.vocab_size = 256;
  TokenLoader loader(o);
  const auto opened = fs::last_write_time(path);
  {
    std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(1024 + 2 * 3);
    const uint16_t bad = 300;
    f.write(reinterpret_cast<const char*>(&bad), 2);
  }
  fs::last_write_time(path, opened);
  std::vector<int32_t> batch(9);
  expect_error([&] { loader.next(batch.data()); },
               {path, "changed while the run was reading it", "token index 3", "byte offset 1030", "id 300"});
}

// A loader keeps every shard open: 300 shards open under a soft limit of 128 files, which it raises to the hard one.
TEST(TokenLoader, OpensMoreShardsThanTheSoftOpenFileLimit) {
  TempDir dir;
  for (int s = 0; s < 300; ++s) write_shard(dir.file("s_" + std::to_string(1000 + s) + ".bin"), {1, 2, 3, 4, 5}, 2);
  struct rlimit saved {};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  if (saved.rlim_max < 400) GTEST_SKIP() << "the hard limit on open files is " << saved.rlim_max;
  struct rlimit low = saved;
  low.rlim_cur = 128;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  LoaderOptions o = options(dir, 1, 2, 0, false);
  o.vocab_size = 6;
  EXPECT_NO_THROW({
    TokenLoader loader(o);
    EXPECT_EQ(loader.total_tokens(), 1500);
  });
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
}

TEST(TokenLoader, TooLittleDataIsAClearError) {
  TempDir dir;
  make_shards(dir, {20});  // 2 windows at T=8
  LoaderOptions o = options(dir, 2, 8, 0, true);
  o.dp_size = 2;  // needs 4 windows
  try {
    TokenLoader loader(o);
    FAIL() << "2 windows cannot feed a batch of 2 on each of 2 ranks";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("too little data"), std::string::npos) << e.what();
  }
}

TEST(TokenLoader, ShippedTextShardsLoad) {
  const std::string dir = std::string(DYTRAIN_SOURCE_DIR) + "/data/tests/";
  const Shard train(dir + "text_bytes_train.bin"), val(dir + "text_bytes_val.bin");
  EXPECT_EQ(train.size(), 190000);  // the counts data/tests/README.md documents
  EXPECT_EQ(val.size(), 30000);
  const std::string title = "PRIDE AND PREJUDICE";
  for (size_t i = 0; i < title.size(); ++i) EXPECT_EQ(train[int64_t(i)], uint32_t(uint8_t(title[i])));

  LoaderOptions o;
  o.shards = dir + "text_bytes_train.bin";
  o.batch = 4;
  o.seq_len = 64;
  o.vocab_size = 256;  // byte-level
  TokenLoader loader(o);
  std::vector<int32_t> batch(4 * 65);
  for (int i = 0; i < 20; ++i) {
    loader.next(batch.data());
    for (int32_t t : batch) ASSERT_TRUE(t >= 10 && t < 128) << "plain ASCII text";
  }
}

}  // namespace
}  // namespace dytrain
