// Token shards in the llm.c format, so existing shards work: a header of 256 int32 (little endian) with
// [0] magic, [1] version, [2] token count, then the tokens. magic 20240520 / version 1: uint16 tokens;
// magic 20240801 / version 7: uint32 tokens. The file size must match the count exactly.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace dytrain {

constexpr int32_t kShardMagicU16 = 20240520, kShardVersionU16 = 1;
constexpr int32_t kShardMagicU32 = 20240801, kShardVersionU32 = 7;
constexpr int64_t kShardHeaderBytes = 256 * 4;

// Bad data: a shard that cannot be read, holds ids the model cannot take, or changed while a run was reading it.
// The message names the file and says what to do; the trainer treats it as bad input (exit code 2).
struct ShardError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What Shard::scan_ids found over the whole file.
struct IdScan {
  uint32_t max_id = 0;       // the largest id in the shard
  int64_t first_bad = -1;    // index of the first token with id >= the limit asked for; -1: none
  uint32_t first_bad_id = 0;
};

// A read-only shard, read through a file descriptor it keeps open (shard.cpp says why not mmap). Opening validates
// magic, version and size; every error names the file. Reads throw ShardError when the file changed since it was
// opened, so a shard truncated or rewritten under a running job ends it with a message rather than a signal.
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
  const std::string& path() const { return path_; }
  int64_t byte_offset(int64_t i) const { return kShardHeaderBytes + i * token_bytes_; }  // of token i in the file

  // out (n) = tokens [first, first + n), which must lie in [0, size()). One pread and one fstat; throws ShardError
  // when the file changed since it was opened.
  void read(int64_t first, int64_t n, uint32_t* out) const;
  // Token i through read(): a pread and an fstat per token, for tests and tools that read a few tokens.
  uint32_t operator[](int64_t i) const;

  // Reads every token once (in chunks, a vectorized max per chunk) and reports the largest id and the first token
  // whose id is >= limit. Throws ShardError if the file changes during the scan.
  IdScan scan_ids(uint32_t limit) const;

 private:
  void read_bytes(int64_t offset, int64_t n, void* out) const;  // pread of exactly n bytes, then check_unchanged()
  void check_unchanged() const;

  std::string path_;
  int fd_ = -1;
  int64_t file_bytes_ = 0;   // size and modification time at open: any change to either means the file changed
  int64_t mtime_ns_ = 0;
  int64_t count_ = 0;
  int token_bytes_ = 2;
};

// Raises this process's soft limit on open files to its hard limit, best effort: every open Shard holds a file
// descriptor, and a data set of thousands of shards passes the usual soft limit of 1024.
void allow_many_open_shards();

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
