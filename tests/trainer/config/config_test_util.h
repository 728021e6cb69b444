// Helpers shared by the config tests: a check that a call throws a
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

#include "tests/common/temp_dir.h"
#include "trainer/config/config.h"

namespace dytrain::testing {

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
