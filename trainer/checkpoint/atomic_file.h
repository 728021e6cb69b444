// Crash-safe file output: bytes go to `path.tmp`, which is fsynced, closed and renamed onto `path` only on commit(),
// so a reader never sees a half-written file under the final name. An AtomicFile destroyed without commit() (an
// exception mid-write) removes its .tmp. POSIX file descriptors rather than iostreams because fsync needs the fd.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace dytrain {

class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);  // creates path + ".tmp", truncating a stale one
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size_bytes);
  // At byte `offset` of the file (pwrite: the sequential position of write() is not moved); a gap left behind reads
  // as zeros.
  void write_at(const void* data, size_t size_bytes, uint64_t offset);
  void commit();  // fsync, close, rename onto the final path

 private:
  std::string path_, tmp_path_;
  int fd_ = -1;
};

// The whole of `content` written through an AtomicFile.
void write_file_atomic(const std::string& path, const std::string& content);

// fsync of a directory, so that renames and removals inside it survive a crash.
void fsync_dir(const std::string& dir);

}  // namespace dytrain
