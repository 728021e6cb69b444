// llm.c token shards. Design decisions:
// - Reading is pread() from a file descriptor the Shard keeps open, not a memory map. A mapped file that shrinks
//   under the process (a shard truncated or rewritten by another job) turns the next access into SIGBUS: the run
//   dies with rc 135 and no message. pread reports a short read instead. The loader reads little per step (B windows
//   of T+1 tokens, kilobytes to a few MB, against a step of milliseconds or more), so copying out of the page cache
//   costs nothing next to a step, and the page cache still shares the file between the ranks of a node. The cost
//   is one descriptor per shard for the run's length: the loader raises the soft limit on open files to the hard
//   one (allow_many_open_shards), and opening past it names the limit and what to do.
// - Change detection: every read is followed by an fstat of the descriptor. A size or modification time other than
//   at open means the file was changed in place (truncated, extended, rewritten, or only touched) and the read
//   throws ShardError naming the file; a short read is the same error. The fstat comes after the pread so a write
//   that began before it is seen, whatever the read returned. A file replaced by rename, or deleted, is not an error:
//   the descriptor keeps the old inode, whose contents are intact, so the run keeps the data it started with. The
//   loader also range-checks every window against vocab_size, which catches an in-place rewrite that put the old
//   modification time back. Measured: a read of a 1025-token window, fstat included, takes 1.5-2 us.
// - scan_ids reads the whole file once, in chunks of 1M tokens (2 or 4 MB; 64K and 256K chunks measured the same):
//   a max over each chunk, a loop the compiler vectorizes (SSE2 at the default target), and a search for the first
//   bad token only in a chunk whose max reaches the limit. Measured from the page cache on the shared 2-core CI
//   machine (Shard.ScanCostPerHundredMillionTokens prints it): 27-42 ms per 100M uint16 tokens, 75-140 ms per 100M
//   uint32 tokens, 3-7 GB/s depending on the load. A file not yet cached is read at the disk's speed instead.
// - The header is decoded byte by byte (little endian by definition of the format); tokens are copied as they lie in
//   the file, which requires a little-endian host (checked at compile time). Every validation error names the file
//   and says what to do, because a bad shard is almost always a half-written or mislabelled file.
#include "trainer/data/shard.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/resource.h>
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

ShardError shard_error(const std::string& path, const std::string& what) {
  return ShardError(fmt::format("token shard '{}': {}", path, what));
}

int64_t mtime_ns(const struct stat& st) { return int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec; }

template <class T>
T max_of(const T* p, int64_t n) {
  T m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, p[i]);
  return m;
}

// scan_ids over tokens of type T; read(first, n, out) fills out (n) with tokens [first, first + n).
template <class T, class Read>
IdScan scan_chunks(int64_t count, uint32_t limit, Read read) {
  constexpr int64_t kChunkTokens = int64_t(1) << 20;
  std::vector<T> chunk(size_t(std::min(count, kChunkTokens)));
  IdScan r;
  for (int64_t first = 0; first < count; first += kChunkTokens) {
    const int64_t n = std::min(kChunkTokens, count - first);
    read(first, n, chunk.data());
    const uint32_t m = max_of(chunk.data(), n);
    r.max_id = std::max(r.max_id, m);
    if (r.first_bad < 0 && m >= limit) {
      const T* bad = std::find_if(chunk.data(), chunk.data() + n, [&](T t) { return t >= limit; });
      r.first_bad = first + (bad - chunk.data());
      r.first_bad_id = *bad;
    }
  }
  return r;
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
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0 && (errno == EMFILE || errno == ENFILE)) {
    throw shard_error(path, fmt::format("cannot open: {}; every shard stays open while it is read, so the limit "
                                        "on open files must exceed the number of shards: raise it (ulimit -n) or "
                                        "merge the data into fewer, larger shards",
                                        std::strerror(errno)));
  }
  if (fd_ < 0) throw shard_error(path, fmt::format("cannot open: {}", std::strerror(errno)));
  try {
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) throw shard_error(path, "not a regular file");
    file_bytes_ = st.st_size;
    mtime_ns_ = mtime_ns(st);
    if (file_bytes_ < kShardHeaderBytes) {
      throw shard_error(path, fmt::format("the file is {} bytes, shorter than the {}-byte header; it is not an llm.c "
                                          "token shard (or was cut short), re-prepare the data",
                                          file_bytes_, kShardHeaderBytes));
    }
    uint8_t header[kShardHeaderBytes];
    read_bytes(0, kShardHeaderBytes, header);
    token_bytes_ = check_header(path, header, file_bytes_, &count_);
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

Shard::~Shard() {
  if (fd_ >= 0) ::close(fd_);
}

Shard::Shard(Shard&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      file_bytes_(other.file_bytes_),
      mtime_ns_(other.mtime_ns_),
      count_(std::exchange(other.count_, 0)),
      token_bytes_(other.token_bytes_) {}

Shard& Shard::operator=(Shard&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    file_bytes_ = other.file_bytes_;
    mtime_ns_ = other.mtime_ns_;
    count_ = std::exchange(other.count_, 0);
    token_bytes_ = other.token_bytes_;
  }
  return *this;
}

void Shard::check_unchanged() const {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) throw shard_error(path_, fmt::format("fstat failed: {}", std::strerror(errno)));
  if (st.st_size == file_bytes_ && mtime_ns(st) == mtime_ns_) return;
  const std::string how = st.st_size != file_bytes_
                              ? fmt::format("size {} -> {} bytes", file_bytes_, int64_t(st.st_size))
                              : std::string("rewritten in place: same size, new modification time");
  throw ShardError(fmt::format("token shard '{}' changed while the run was reading it ({}): restore the file and "
                               "--resume from the last checkpoint",
                               path_, how));
}

void Shard::read_bytes(int64_t offset, int64_t n, void* out) const {
  auto* p = static_cast<uint8_t*>(out);
  int64_t done = 0;
  while (done < n) {
    const ssize_t got = ::pread(fd_, p + done, size_t(n - done), off_t(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      throw shard_error(path_, fmt::format("reading {} bytes at byte offset {} failed: {}; check the file and its disk",
                                           n - done, offset + done, std::strerror(errno)));
    }
    if (got == 0) break;  // end of file: shorter than at open
    done += got;
  }
  check_unchanged();
  if (done < n) {  // the file shrank and grew back between the read and the fstat
    throw ShardError(fmt::format("token shard '{}' changed while the run was reading it (a read of {} bytes at byte "
                                 "offset {} returned {}): restore the file and --resume from the last checkpoint",
                                 path_, n, offset, done));
  }
}

void Shard::read(int64_t first, int64_t n, uint32_t* out) const {
  if (first < 0 || n < 0 || first + n > count_) {
    throw std::out_of_range(fmt::format("token shard '{}': tokens [{}, {}) are outside [0, {})", path_, first,
                                        first + n, count_));
  }
  read_bytes(byte_offset(first), n * token_bytes_, out);
  if (token_bytes_ == 4) return;
  // uint16 ids now fill the first half of out; widen from the back, so out[i] only overwrites ids already widened.
  const auto* narrow = reinterpret_cast<const uint8_t*>(out);
  for (int64_t i = n - 1; i >= 0; --i) {
    uint16_t v;
    std::memcpy(&v, narrow + 2 * i, 2);
    out[i] = v;
  }
}

uint32_t Shard::operator[](int64_t i) const {
  uint32_t v;
  read(i, 1, &v);
  return v;
}

IdScan Shard::scan_ids(uint32_t limit) const {
  auto read = [&](int64_t first, int64_t n, void* out) { read_bytes(byte_offset(first), n * token_bytes_, out); };
  return token_bytes_ == 2 ? scan_chunks<uint16_t>(count_, limit, read) : scan_chunks<uint32_t>(count_, limit, read);
}

void allow_many_open_shards() {
  struct rlimit lim {};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur >= lim.rlim_max) return;
  lim.rlim_cur = lim.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &lim);  // if refused, a shard opened past the limit says what to do
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
