// Token shards in the llm.c format, so existing shards work: a header of 256 int32 (little endian) with
// [0] magic, [1] version, [2] token count, then the tokens. magic 20240520 / version 1: uint16 tokens;
// magic 20240801 / version 7: uint32 tokens. The file size must match the count exactly.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dytrain {

constexpr int32_t kShardMagicU16 = 20240520, kShardVersionU16 = 1;
constexpr int32_t kShardMagicU32 = 20240801, kShardVersionU32 = 7;
constexpr int64_t kShardHeaderBytes = 256 * 4;

// A read-only, memory-mapped shard. Opening validates magic, version and size; errors name the file.
class Shard {
 public:
  explicit Shard(const std::string& path);
  ~Shard();
  Shard(Shard&&) noexcept;
  Shard& operator=(Shard&&) noexcept;
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  int64_t size() const { return count_; }            // tokens
  int token_bytes() const { return token_bytes_; }   // 2 or 4
  uint32_t operator[](int64_t i) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* map_ = nullptr;
  int64_t map_bytes_ = 0;
  int64_t count_ = 0;
  int token_bytes_ = 2;
};

// Writes tokens as one shard, to a temporary name then renamed. token_bytes 2 (every id < 65536, checked) or 4.
void write_shard(const std::string& path, const std::vector<uint32_t>& tokens, int token_bytes);

// Splits a token stream into shards of at most max_tokens each: prefix_000000.bin, prefix_000001.bin, ...
class ShardWriter {
 public:
  ShardWriter(std::string prefix, int token_bytes, int64_t max_tokens_per_shard);
  void add(const uint32_t* tokens, int64_t n);
  std::vector<std::string> finish();  // flushes the last shard, returns every path written
 private:
  std::string prefix_;
  int token_bytes_;
  int64_t max_tokens_;
  std::vector<uint32_t> pending_;
  std::vector<std::string> written_;
};

// Expands a shard spec: a file, a directory (its *.bin files) or a glob; sorted. Throws naming the spec when empty.
std::vector<std::string> expand_shards(const std::string& spec);

}  // namespace dytrain
