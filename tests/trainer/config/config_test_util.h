// Helpers shared by the config tests: a fresh temporary folder per test and a check that a call throws a
// ConfigError whose message contains given pieces (file name, key, what is allowed).
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "trainer/config/config.h"

namespace dytrain::testing {

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("dytrain_config_test_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Writes `text` to `name` (which may contain folders) and returns the full path.
  std::string write(const std::string& name, const std::string& text) const {
    const std::filesystem::path p = path_ / name;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }
  std::string path(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// A config that validates: the tests write it and change one thing.
inline const char* kValidYaml =
    "model:\n  vocab_size: 64\n  dim: 32\n  n_layers: 2\n  n_heads: 4\n  max_seq_len: 64\n"
    "data:\n  train: shards/train_*.bin\n"
    "train:\n  seq_len: 32\n";

// Runs `fn`, expects a ConfigError whose message contains every piece; returns the message.
inline std::string expect_config_error(const std::function<void()>& fn, const std::vector<std::string>& pieces) {
  try {
    fn();
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    for (const std::string& p : pieces) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    return msg;
  }
  ADD_FAILURE() << "expected a ConfigError containing '" << (pieces.empty() ? "" : pieces[0]) << "'";
  return {};
}

}  // namespace dytrain::testing
