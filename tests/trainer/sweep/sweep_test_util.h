// Helpers shared by the sweep tests: a tiny base config on the shipped byte-level shard, and
// synthetic run directories (config.yaml + metrics.jsonl written by the trainer's own writers).
#pragma once
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/common/temp_dir.h"
#include "trainer/checkpoint/atomic_file.h"
#include "trainer/config/config.h"
#include "trainer/train/metrics.h"

namespace dytrain::testing {

inline void write_text(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

// A 2-layer byte-level model that trains a step in a few milliseconds on one core.
inline std::string tiny_base_yaml() {
  const std::string data = std::string(DYTRAIN_SOURCE_DIR) + "/data/tests/";
  return "model:\n  vocab_size: 256\n  dim: 32\n  n_layers: 2\n  n_heads: 2\n  n_kv_heads: 1\n  ffn_dim: 64\n"
         "  max_seq_len: 32\n"
         "optim:\n  lr: 0.003\n  min_lr: 0.0003\n  warmup_steps: 4\n"
         "data:\n  train: " + data + "text_bytes_train.bin\n  val: " + data + "text_bytes_val.bin\n"
         "train:\n  micro_batch: 4\n  seq_len: 32\n  max_steps: 12\n  log_every: 2\n  val_every: 6\n"
         "  val_batches: 2\n  device: cpu\n";
}

// A run directory as the trainer leaves it: config.yaml, metrics.jsonl and (optionally) the runner's status.yaml.
inline void write_run(const std::filesystem::path& dir, const Config& cfg, const std::vector<StepMetrics>& lines,
                      const std::string& status) {
  std::filesystem::create_directories(dir);
  write_file_atomic((dir / "config.yaml").string(), to_yaml(cfg));
  std::string text;
  for (const auto& m : lines) text += to_json_line(m) + "\n";
  write_text((dir / "metrics.jsonl").string(), text);
  if (!status.empty()) write_text((dir / "status.yaml").string(), "status: " + status + "\nexit_code: 0\n");
}

}  // namespace dytrain::testing
