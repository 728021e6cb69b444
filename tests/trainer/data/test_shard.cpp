// Shard format tests. Good files are checked against bytes decoded here independently of the reader (little-endian
// header ints, then raw tokens); bad files are built byte by byte so each error path is hit on purpose, and every
// error must name the file so a user knows which of thousands of shards is broken.
#include <sys/resource.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/common/temp_dir.h"
#include "trainer/data/shard.h"

namespace dytrain {
namespace {

using testing::TempDir;
namespace fs = std::filesystem;

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

int32_t le_i32(const std::vector<uint8_t>& b, size_t at) {
  return int32_t(uint32_t(b[at]) | uint32_t(b[at + 1]) << 8 | uint32_t(b[at + 2]) << 16 | uint32_t(b[at + 3]) << 24);
}

// A file with header ints [magic, version, count] and `payload_bytes` bytes after the header.
void write_raw(const std::string& path, int32_t magic, int32_t version, int32_t count, size_t payload_bytes) {
  std::vector<int32_t> header(256, 0);
  header[0] = magic, header[1] = version, header[2] = count;
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(header.data()), 1024);
  std::vector<char> payload(payload_bytes, 7);
  f.write(payload.data(), std::streamsize(payload.size()));
}

// Runs fn, expects a std::exception whose message holds every one of `parts`.
template <class Fn>
void expect_error(Fn fn, const std::vector<std::string>& parts) {
  try {
    fn();
    FAIL() << "no exception; expected one mentioning " << parts.front();
  } catch (const std::exception& e) {
    for (const std::string& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST(Shard, RoundTripUint16) {
  TempDir dir;
  const std::string path = dir.file("a.bin");
  const std::vector<uint32_t> tokens = {0, 1, 255, 256, 12345, 65535, 42};
  write_shard(path, tokens, 2);

  const std::vector<uint8_t> raw = read_bytes(path);
  ASSERT_EQ(raw.size(), 1024 + 2 * tokens.size());
  EXPECT_EQ(le_i32(raw, 0), 20240520);
  EXPECT_EQ(le_i32(raw, 4), 1);
  EXPECT_EQ(le_i32(raw, 8), int32_t(tokens.size()));
  for (size_t i = 0; i < tokens.size(); ++i) EXPECT_EQ(raw[1024 + 2 * i] | raw[1025 + 2 * i] << 8, int(tokens[i]));

  const Shard shard(path);
  EXPECT_EQ(shard.size(), int64_t(tokens.size()));
  EXPECT_EQ(shard.token_bytes(), 2);
  EXPECT_EQ(shard.path(), path);
  for (size_t i = 0; i < tokens.size(); ++i) EXPECT_EQ(shard[int64_t(i)], tokens[i]) << i;
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(Shard, RoundTripUint32) {
  TempDir dir;
  const std::string path = dir.file("b.bin");
  const std::vector<uint32_t> tokens = {65536, 0, 100277, 0xFFFFFFFFu, 7};
  write_shard(path, tokens, 4);

  const std::vector<uint8_t> raw = read_bytes(path);
  ASSERT_EQ(raw.size(), 1024 + 4 * tokens.size());
  EXPECT_EQ(le_i32(raw, 0), 20240801);
  EXPECT_EQ(le_i32(raw, 4), 7);
  EXPECT_EQ(le_i32(raw, 8), int32_t(tokens.size()));

  Shard moved_from(path);
  const Shard shard(std::move(moved_from));  // the mapping moves with the object
  EXPECT_EQ(shard.size(), int64_t(tokens.size()));
  EXPECT_EQ(shard.token_bytes(), 4);
  for (size_t i = 0; i < tokens.size(); ++i) EXPECT_EQ(shard[int64_t(i)], tokens[i]) << i;
}

TEST(Shard, RejectsWrongMagicNamingAllowedValues) {
  TempDir dir;
  const std::string path = dir.file("magic.bin");
  write_raw(path, 12345, 1, 4, 8);
  expect_error([&] { Shard s(path); }, {path, "12345", "20240520", "20240801"});
}

TEST(Shard, RejectsWrongVersion) {
  TempDir dir;
  const std::string path = dir.file("version.bin");
  write_raw(path, kShardMagicU16, 7, 4, 8);  // the uint32 version with the uint16 magic
  expect_error([&] { Shard s(path); }, {path, "version 1", "version 7"});
}

TEST(Shard, RejectsTruncatedFile) {
  TempDir dir;
  const std::string path = dir.file("trunc.bin");
  write_shard(path, std::vector<uint32_t>(100, 3), 2);
  fs::resize_file(path, 1024 + 2 * 100 - 2);
  expect_error([&] { Shard s(path); }, {path, "1224", "1222", "truncated"});
}

TEST(Shard, RejectsHeaderCountBelowData) {
  TempDir dir;
  const std::string path = dir.file("count.bin");
  write_raw(path, kShardMagicU32, kShardVersionU32, 3, 4 * 5);  // says 3 tokens, holds 5
  expect_error([&] { Shard s(path); }, {path, "3 tokens", "1036", "1044"});
}

TEST(Shard, RejectsFileShorterThanHeader) {
  TempDir dir;
  const std::string path = dir.file("short.bin");
  std::ofstream(path, std::ios::binary) << "not a shard";
  expect_error([&] { Shard s(path); }, {path, "11 bytes", "header"});
}

TEST(Shard, RejectsZeroTokensAndMissingFile) {
  TempDir dir;
  const std::string path = dir.file("empty.bin");
  write_raw(path, kShardMagicU16, kShardVersionU16, 0, 0);
  expect_error([&] { Shard s(path); }, {path, "zero tokens"});
  const std::string missing = dir.file("missing.bin");
  expect_error([&] { Shard s(missing); }, {missing, "cannot open"});
}

TEST(Shard, Uint16RejectsLargeIdAndLeavesNoFile) {
  TempDir dir;
  const std::string path = dir.file("big.bin");
  expect_error([&] { write_shard(path, {1, 2, 65536}, 2); }, {path, "65536", "offset 2"});
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

// read() of ranges at every position, both widths: uint16 ids are widened in place inside the caller's buffer.
TEST(Shard, ReadRangesMatchTheTokens) {
  TempDir dir;
  std::vector<uint32_t> tokens(3000);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = uint32_t(i * 7919 % 65536);
  for (int width : {2, 4}) {
    const std::string path = dir.file("r" + std::to_string(width) + ".bin");
    write_shard(path, tokens, width);
    const Shard shard(path);
    for (int64_t first : {0, 1, 999, 2000}) {
      for (int64_t n : {1, 2, 3, 257, 1000}) {
        std::vector<uint32_t> got(size_t(n) + 1, 0xDEADBEEFu);
        shard.read(first, n, got.data());
        EXPECT_EQ(std::vector<uint32_t>(got.begin(), got.end() - 1),
                  std::vector<uint32_t>(tokens.begin() + first, tokens.begin() + first + n))
            << width << "-byte tokens [" << first << ", " << first + n << ")";
        EXPECT_EQ(got.back(), 0xDEADBEEFu) << "nothing written past n";
      }
    }
    EXPECT_THROW(shard.read(2999, 2, tokens.data()), std::out_of_range);
  }
}

// The scan's max and first bad token, for bad ids at both ends and across the 1M-token chunks it reads in.
TEST(Shard, ScanFindsTheMaxAndTheFirstIdAtOrAboveTheLimit) {
  TempDir dir;
  const int64_t n = (int64_t(1) << 21) + 3;  // two full chunks and three tokens
  for (int width : {2, 4}) {
    for (int64_t at : {int64_t(0), (int64_t(1) << 20) - 1, int64_t(1) << 20, n - 1}) {
      const uint32_t largest = width == 2 ? 65535u : 0xFFFFFFFFu;
      std::vector<uint32_t> tokens(size_t(n), 100);
      tokens[size_t(at)] = largest;
      if (at + 1 < n) tokens[size_t(at + 1)] = 1000;  // a later bad id, not the first
      const std::string path = dir.file("s.bin");
      write_shard(path, tokens, width);
      const Shard shard(path);
      const IdScan scan = shard.scan_ids(1000);
      EXPECT_EQ(scan.max_id, largest);
      EXPECT_EQ(scan.first_bad, at) << width << "-byte tokens";
      EXPECT_EQ(scan.first_bad_id, largest);
      EXPECT_EQ(shard.byte_offset(at), 1024 + at * width);
      EXPECT_EQ(shard.scan_ids(1001).first_bad, at);
      EXPECT_EQ(shard.scan_ids(0xFFFFFFFFu).first_bad, width == 2 ? -1 : at) << "limit above every uint16 id";
      EXPECT_EQ(shard.scan_ids(0xFFFFFFFFu).max_id, largest);
    }
  }
}

// After open, a truncated shard fails every read with an error naming the file (a memory-mapped one raises SIGBUS),
// and so does one that grew.
TEST(Shard, ReadsAfterTheFileChangedThrowNamingIt) {
  TempDir dir;
  const std::string path = dir.file("t.bin");
  write_shard(path, std::vector<uint32_t>(10000, 3), 2);
  const Shard shard(path);
  EXPECT_EQ(shard[9999], 3u);
  fs::resize_file(path, 1024 + 2 * 10);
  expect_error([&] { (void)shard[5]; }, {path, "changed while the run was reading it", "21024 -> 1044 bytes"});
  expect_error([&] { (void)shard[9999]; }, {path, "changed"});
  expect_error([&] { shard.scan_ids(10); }, {path, "changed"});
  fs::resize_file(path, 1024 + 2 * 20000);
  expect_error([&] { (void)shard[5]; }, {path, "21024 -> 41024 bytes"});
}

// Every open shard holds a descriptor: past the limit on open files, the error says so and what to do.
TEST(Shard, OpeningPastTheOpenFileLimitSaysWhatToDo) {
  TempDir dir;
  const std::string path = dir.file("f.bin");
  write_shard(path, {1, 2, 3}, 2);
  struct rlimit saved {};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  struct rlimit low = saved;
  low.rlim_cur = 32;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  std::vector<Shard> open;
  try {
    for (int i = 0; i < 40; ++i) open.emplace_back(path);
    ADD_FAILURE() << "40 shards opened under a limit of 32 files";
  } catch (const ShardError& e) {
    for (const char* part : {"f.bin", "open files", "ulimit -n", "fewer, larger shards"})
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
  open.clear();
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
}

// Not a test of speed (timed assertions fail on busy machines): it prints what scanning and a window read cost, the
// figures quoted in shard.cpp. 32M tokens per width; the file was just written, so it is read from the page cache.
TEST(Shard, ScanCostPerHundredMillionTokens) {
  TempDir dir;
  const int64_t n = int64_t(1) << 25;
  std::vector<uint32_t> tokens(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) tokens[size_t(i)] = uint32_t(i % 50000);
  for (int width : {2, 4}) {
    const std::string path = dir.file("cost.bin");
    write_shard(path, tokens, width);
    const Shard shard(path);
    double best_s = 1e9;
    for (int rep = 0; rep < 3; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      const IdScan scan = shard.scan_ids(50000);
      best_s = std::min(best_s, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      EXPECT_EQ(scan.max_id, 49999u);
      EXPECT_EQ(scan.first_bad, -1);
    }
    std::printf("scan of %d-byte tokens: %.1f ms per 100M tokens (%.2f GB/s, page cache, best of 3)\n", width,
                best_s * 1e3 * 1e8 / double(n), double(n) * width / best_s / 1e9);

    // What the loader pays per window: one read of T+1 = 1025 tokens (pread, fstat, widening), at random places.
    std::vector<uint32_t> window(1025);
    const int reads = 20000;
    uint64_t sum = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < reads; ++r) {
      shard.read(int64_t(uint64_t(r) * 2654435761u % uint64_t(n - 1025)), 1025, window.data());
      sum += window[0];
    }
    const double per_read_us =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * 1e6 / reads;
    EXPECT_LT(sum, uint64_t(reads) * 50000);
    std::printf("read of a 1025-token window of %d-byte tokens: %.2f us\n", width, per_read_us);
  }
}

TEST(ShardWriter, SplitsAtMaxTokensAndKeepsOrder) {
  TempDir dir;
  std::vector<uint32_t> tokens(25);
  std::iota(tokens.begin(), tokens.end(), 1000u);
  ShardWriter writer(dir.file("train"), 2, 10);
  // Pieces that end before, exactly at and across shard boundaries.
  writer.add(tokens.data(), 3);
  writer.add(tokens.data() + 3, 7);
  writer.add(tokens.data() + 10, 15);
  const std::vector<std::string> paths = writer.finish();

  ASSERT_EQ(paths.size(), 3u);
  EXPECT_EQ(paths[0], dir.file("train_000000.bin"));
  EXPECT_EQ(paths[2], dir.file("train_000002.bin"));
  const std::vector<int64_t> sizes = {10, 10, 5};
  std::vector<uint32_t> joined;
  for (size_t i = 0; i < paths.size(); ++i) {
    const Shard s(paths[i]);
    EXPECT_EQ(s.size(), sizes[i]);
    for (int64_t j = 0; j < s.size(); ++j) joined.push_back(s[j]);
  }
  EXPECT_EQ(joined, tokens);
}

TEST(ShardWriter, ExactMultipleWritesNoEmptyTail) {
  TempDir dir;
  const std::vector<uint32_t> tokens(20, 5);
  ShardWriter writer(dir.file("val"), 4, 10);
  writer.add(tokens.data(), 20);
  const std::vector<std::string> paths = writer.finish();
  ASSERT_EQ(paths.size(), 2u);
  EXPECT_EQ(Shard(paths[1]).size(), 10);
  EXPECT_EQ(expand_shards(dir.path().string()).size(), 2u);
}

TEST(ExpandShards, FileDirectoryGlobAndNoMatch) {
  TempDir dir;
  for (const char* name : {"train_000001.bin", "train_000000.bin", "val_000000.bin"}) {
    write_shard(dir.file(name), {1, 2, 3}, 2);
  }
  std::ofstream(dir.file("notes.txt")) << "not a shard";
  fs::create_directory(dir.file("sub.bin"));  // a directory named like a shard is not a shard

  EXPECT_EQ(expand_shards(dir.file("val_000000.bin")), std::vector<std::string>{dir.file("val_000000.bin")});
  EXPECT_EQ(expand_shards(dir.path().string()),
            (std::vector<std::string>{dir.file("train_000000.bin"), dir.file("train_000001.bin"),
                                      dir.file("val_000000.bin")}));
  EXPECT_EQ(expand_shards(dir.file("train_*.bin")),
            (std::vector<std::string>{dir.file("train_000000.bin"), dir.file("train_000001.bin")}));
  const std::string none = dir.file("test_*.bin");
  expect_error([&] { expand_shards(none); }, {none, "data preparation"});
}

}  // namespace
}  // namespace dytrain
