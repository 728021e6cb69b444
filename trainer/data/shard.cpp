// llm.c token shards. Reading maps the file read-only so a multi-GB shard costs no copy and pages are shared by
// every rank on a node; the header is decoded byte by byte (little endian by definition of the format) and the
// tokens are read in place, which requires a little-endian host (checked at compile time). Every validation error
// names the file and says what to do, because a bad shard is almost always a half-written or mislabelled file.
#include "trainer/data/shard.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "dytrain reads llm.c shard tokens in place and needs a little-endian host"
#endif

namespace dytrain {
namespace {

int32_t read_le_i32(const uint8_t* p) {
  uint32_t v = uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
  int32_t out;
  std::memcpy(&out, &v, sizeof out);
  return out;
}

void put_le_i32(uint8_t* p, int32_t value) {
  uint32_t v;
  std::memcpy(&v, &value, sizeof v);
  for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (8 * i));
}

std::runtime_error shard_error(const std::string& path, const std::string& what) {
  return std::runtime_error(fmt::format("token shard '{}': {}", path, what));
}

// Checks the header and returns the bytes per token (2 or 4). The error messages list the allowed pairs.
int check_header(const std::string& path, const uint8_t* header, int64_t file_bytes, int64_t* count) {
  const int32_t magic = read_le_i32(header), version = read_le_i32(header + 4);
  int token_bytes = 0;
  int32_t want_version = 0;
  if (magic == kShardMagicU16) {
    token_bytes = 2, want_version = kShardVersionU16;
  } else if (magic == kShardMagicU32) {
    token_bytes = 4, want_version = kShardVersionU32;
  } else {
    throw shard_error(path, fmt::format("bad magic {}; allowed are {} (uint16 tokens, version {}) and {} (uint32 "
                                        "tokens, version {}). Is this an llm.c token shard?",
                                        magic, kShardMagicU16, kShardVersionU16, kShardMagicU32,
                                        kShardVersionU32));
  }
  if (version != want_version) {
    throw shard_error(path, fmt::format("magic {} requires version {} but the header says version {}; the file "
                                        "was written by an incompatible tool, re-prepare it",
                                        magic, want_version, version));
  }
  const int32_t n = read_le_i32(header + 8);
  if (n < 0) throw shard_error(path, fmt::format("negative token count {} in the header; re-prepare the file", n));
  if (n == 0) throw shard_error(path, "the header says zero tokens; remove the empty shard or re-prepare the data");
  const int64_t expected = kShardHeaderBytes + int64_t(n) * token_bytes;
  if (expected != file_bytes) {
    throw shard_error(path, fmt::format("the header says {} tokens of {} bytes, so the file should be {} bytes, but "
                                        "it is {} bytes ({}); re-prepare the data",
                                        n, token_bytes, expected, file_bytes,
                                        file_bytes < expected ? "truncated file?" : "trailing bytes"));
  }
  *count = n;
  return token_bytes;
}

}  // namespace

Shard::Shard(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw shard_error(path, fmt::format("cannot open: {}", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw shard_error(path, "not a regular file");
  }
  const int64_t file_bytes = st.st_size;
  if (file_bytes < kShardHeaderBytes) {
    ::close(fd);
    throw shard_error(path, fmt::format("the file is {} bytes, shorter than the {}-byte header; it is not an llm.c "
                                        "token shard (or was cut short), re-prepare the data",
                                        file_bytes, kShardHeaderBytes));
  }
  void* map = ::mmap(nullptr, size_t(file_bytes), PROT_READ, MAP_SHARED, fd, 0);
  const int map_errno = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) throw shard_error(path, fmt::format("mmap failed: {}", std::strerror(map_errno)));
  map_ = static_cast<const uint8_t*>(map);
  map_bytes_ = file_bytes;
  try {
    token_bytes_ = check_header(path, map_, file_bytes, &count_);
  } catch (...) {
    ::munmap(const_cast<uint8_t*>(map_), size_t(map_bytes_));
    throw;
  }
}

Shard::~Shard() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), size_t(map_bytes_));
}

Shard::Shard(Shard&& other) noexcept
    : path_(std::move(other.path_)),
      map_(std::exchange(other.map_, nullptr)),
      map_bytes_(std::exchange(other.map_bytes_, 0)),
      count_(std::exchange(other.count_, 0)),
      token_bytes_(other.token_bytes_) {}

Shard& Shard::operator=(Shard&& other) noexcept {
  if (this != &other) {
    if (map_) ::munmap(const_cast<uint8_t*>(map_), size_t(map_bytes_));
    path_ = std::move(other.path_);
    map_ = std::exchange(other.map_, nullptr);
    map_bytes_ = std::exchange(other.map_bytes_, 0);
    count_ = std::exchange(other.count_, 0);
    token_bytes_ = other.token_bytes_;
  }
  return *this;
}

// i in [0, size()); not range-checked because the loader reads millions of tokens per step from checked windows.
uint32_t Shard::operator[](int64_t i) const {
  const uint8_t* p = map_ + kShardHeaderBytes + i * token_bytes_;
  if (token_bytes_ == 2) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
  }
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

void write_shard(const std::string& path, const std::vector<uint32_t>& tokens, int token_bytes) {
  if (token_bytes != 2 && token_bytes != 4) {
    throw std::invalid_argument(
        fmt::format("token shard '{}': token_bytes must be 2 (uint16) or 4 (uint32), got {}", path, token_bytes));
  }
  if (tokens.empty()) throw std::invalid_argument(fmt::format("token shard '{}': no tokens to write", path));
  if (tokens.size() > size_t(std::numeric_limits<int32_t>::max())) {
    throw std::invalid_argument(fmt::format("token shard '{}': {} tokens do not fit the int32 header count; split "
                                            "them with ShardWriter",
                                            path, tokens.size()));
  }
  if (token_bytes == 2) {
    const auto big = std::find_if(tokens.begin(), tokens.end(), [](uint32_t t) { return t > 0xFFFFu; });
    if (big != tokens.end()) {
      throw std::invalid_argument(fmt::format("token shard '{}': token id {} at offset {} does not fit a uint16 "
                                              "shard; write it with 4-byte tokens (magic {})",
                                              path, *big, big - tokens.begin(), kShardMagicU32));
    }
  }

  std::vector<uint8_t> header(kShardHeaderBytes, 0);
  put_le_i32(header.data(), token_bytes == 2 ? kShardMagicU16 : kShardMagicU32);
  put_le_i32(header.data() + 4, token_bytes == 2 ? kShardVersionU16 : kShardVersionU32);
  put_le_i32(header.data() + 8, int32_t(tokens.size()));

  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw shard_error(path, fmt::format("cannot create '{}': {}", tmp, std::strerror(errno)));
  bool ok = std::fwrite(header.data(), 1, header.size(), f) == header.size();
  if (token_bytes == 4) {
    ok = ok && std::fwrite(tokens.data(), 4, tokens.size(), f) == tokens.size();
  } else {
    std::vector<uint16_t> narrow(tokens.begin(), tokens.end());
    ok = ok && std::fwrite(narrow.data(), 2, narrow.size(), f) == narrow.size();
  }
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    throw shard_error(path, fmt::format("writing failed: {} (disk full or no permission?)", std::strerror(err)));
  }
}

ShardWriter::ShardWriter(std::string prefix, int token_bytes, int64_t max_tokens_per_shard)
    : prefix_(std::move(prefix)), token_bytes_(token_bytes), max_tokens_(max_tokens_per_shard) {
  if (token_bytes_ != 2 && token_bytes_ != 4) {
    throw std::invalid_argument(
        fmt::format("shards '{}_*.bin': token_bytes must be 2 or 4, got {}", prefix_, token_bytes_));
  }
  if (max_tokens_ <= 0 || max_tokens_ > std::numeric_limits<int32_t>::max()) {
    throw std::invalid_argument(fmt::format("shards '{}_*.bin': max tokens per shard must be in [1, 2^31-1], got {}",
                                            prefix_, max_tokens_));
  }
}

// Tokens are buffered up to one full shard; a shard is written the moment it is full, so memory stays bounded.
void ShardWriter::add(const uint32_t* tokens, int64_t n) {
  while (n > 0) {
    const int64_t take = std::min<int64_t>(n, max_tokens_ - int64_t(pending_.size()));
    pending_.insert(pending_.end(), tokens, tokens + take);
    tokens += take;
    n -= take;
    if (int64_t(pending_.size()) == max_tokens_) {
      const std::string path = fmt::format("{}_{:06d}.bin", prefix_, written_.size());
      write_shard(path, pending_, token_bytes_);
      written_.push_back(path);
      pending_.clear();
    }
  }
}

std::vector<std::string> ShardWriter::finish() {
  if (!pending_.empty()) {
    const std::string path = fmt::format("{}_{:06d}.bin", prefix_, written_.size());
    write_shard(path, pending_, token_bytes_);
    written_.push_back(path);
    pending_.clear();
  }
  return written_;
}

std::vector<std::string> expand_shards(const std::string& spec) {
  namespace fs = std::filesystem;
  std::vector<std::string> paths;
  std::error_code ec;
  if (fs::is_regular_file(spec, ec)) {
    paths.push_back(spec);
  } else if (fs::is_directory(spec, ec)) {
    for (const auto& entry : fs::directory_iterator(spec, ec)) {
      if (entry.is_regular_file(ec) && entry.path().extension() == ".bin") paths.push_back(entry.path().string());
    }
  } else {
    glob_t g{};
    if (::glob(spec.c_str(), 0, nullptr, &g) == 0) {
      for (size_t i = 0; i < g.gl_pathc; ++i) {
        if (fs::is_regular_file(g.gl_pathv[i], ec)) paths.emplace_back(g.gl_pathv[i]);
      }
    }
    ::globfree(&g);
  }
  if (paths.empty()) {
    throw std::runtime_error(fmt::format("token shards '{}': no shard files found (expected a .bin file, a directory "
                                         "holding *.bin shards, or a glob such as data/x/train_*.bin); check the "
                                         "path or run the data preparation step to write the shards first",
                                         spec));
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

}  // namespace dytrain
