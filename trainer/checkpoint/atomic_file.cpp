#include "trainer/checkpoint/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace dytrain {
namespace {

std::runtime_error io_error(const std::string& what, const std::string& path) {
  return std::runtime_error(what + " " + path + ": " + std::strerror(errno) +
                            " (check that the directory exists, is writable and the disk is not full)");
}

}  // namespace

AtomicFile::AtomicFile(const std::string& path) : path_(path), tmp_path_(path + ".tmp") {
  fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw io_error("cannot create", tmp_path_);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_path_.c_str());
  }
}

void AtomicFile::write(const void* data, size_t size_bytes) {
  const char* p = static_cast<const char*>(data);
  while (size_bytes > 0) {
    ssize_t n = ::write(fd_, p, size_bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw io_error("cannot write", tmp_path_);
    p += n;
    size_bytes -= static_cast<size_t>(n);
  }
}

void AtomicFile::write_at(const void* data, size_t size_bytes, uint64_t offset) {
  const char* p = static_cast<const char*>(data);
  while (size_bytes > 0) {
    ssize_t n = ::pwrite(fd_, p, size_bytes, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw io_error("cannot write", tmp_path_);
    p += n;
    offset += static_cast<uint64_t>(n);
    size_bytes -= static_cast<size_t>(n);
  }
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0) throw io_error("cannot fsync", tmp_path_);
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    ::unlink(tmp_path_.c_str());
    throw io_error("cannot close", tmp_path_);
  }
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    ::unlink(tmp_path_.c_str());
    throw io_error("cannot rename " + tmp_path_ + " to", path_);
  }
}

void write_file_atomic(const std::string& path, const std::string& content) {
  AtomicFile f(path);
  f.write(content.data(), content.size());
  f.commit();
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw io_error("cannot open directory", dir);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw io_error("cannot fsync directory", dir);
}

}  // namespace dytrain
