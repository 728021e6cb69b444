#include "trainer/checkpoint/checkpoint.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <set>
#include <vector>

#include <fmt/format.h>

#include "trainer/checkpoint/atomic_file.h"
#include "trainer/checkpoint/hf_config.h"
#include "trainer/checkpoint/safetensors.h"
#include "trainer/config/yaml_keys.h"

namespace dytrain {
namespace fs = std::filesystem;
namespace {

const char* const kModelFile = kCheckpointFiles[0];
const char* const kHfConfigFile = kCheckpointFiles[1];
const char* const kOptimizerFile = kCheckpointFiles[2];
const char* const kTrainerStateFile = kCheckpointFiles[3];
const char* const kConfigFile = kCheckpointFiles[4];

const SafetensorsMetadata kPtMetadata = {{"format", "pt"}};  // transformers refuses safetensors without it

bool is_complete(const fs::path& dir) {
  for (const char* f : kCheckpointFiles)
    if (!fs::is_regular_file(dir / f)) return false;
  return true;
}

// Complete checkpoints under run_dir/checkpoints, by ascending step.
std::vector<std::pair<int64_t, fs::path>> complete_checkpoints(const fs::path& ckpt_root) {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  if (!fs::is_directory(ckpt_root, ec)) return out;
  for (const fs::directory_entry& e : fs::directory_iterator(ckpt_root)) {
    const std::optional<int64_t> step = checkpoint_step(e.path().string());
    if (step && e.is_directory() && is_complete(e.path())) out.emplace_back(*step, e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<TensorRef> tensor_refs(const ParamTable& table, const float* buf, const std::string& prefix) {
  std::vector<TensorRef> refs;
  for (const ParamSpec& s : table.specs()) refs.push_back(TensorRef{prefix + s.name, s.shape, buf + s.offset});
  return refs;
}

std::string emit_yaml(const YAML::Node& node) {
  YAML::Emitter e;
  e << node;
  return std::string(e.c_str()) + "\n";
}

// The index of `path` after checking that it holds exactly prefix + name for every prefix and table name, each with
// the table's shape.
SafetensorsIndex matching_index(const std::string& path, const ParamTable& table,
                                const std::vector<std::string>& prefixes) {
  SafetensorsIndex idx = read_safetensors_index(path);
  const std::string hint = "; was this checkpoint written by a different model config? Compare its config.yaml with "
                           "the current config";
  std::set<std::string> expected;
  for (const std::string& prefix : prefixes)
    for (const ParamSpec& s : table.specs()) {
      const std::string name = prefix + s.name;
      expected.insert(name);
      auto it = idx.tensors.find(name);
      if (it == idx.tensors.end())
        throw CheckpointError(fmt::format("{}: tensor {} is missing (expected {} tensors, the file has {}){}", path,
                                          name, prefixes.size() * table.specs().size(), idx.tensors.size(), hint));
      if (it->second.shape != s.shape)
        throw CheckpointError(fmt::format("{}: tensor {} has shape {}, the model expects {}{}", path, name,
                                          format_shape(it->second.shape), format_shape(s.shape), hint));
    }
  for (const auto& [name, info] : idx.tensors)
    if (!expected.count(name))
      throw CheckpointError(fmt::format("{}: tensor {} is not a tensor of the model{}", path, name, hint));
  return idx;
}

void read_all(float* buf, const SafetensorsIndex& idx, const ParamTable& table, const std::string& prefix) {
  for (const ParamSpec& s : table.specs()) read_tensor(buf + s.offset, idx, prefix + s.name);
}

// The first tensor of `table` in buf holding NaN or inf, nullptr when all are finite. A float is NaN or inf exactly
// when its exponent field is all ones; the largest exponent field of a tensor is an integer max that the compiler
// vectorizes (measured 3-4 GB/s on a loaded 2-core host against 2 GB/s for a per-element flag), far below the cost of
// writing or reading the same bytes.
const ParamSpec* first_non_finite(const float* buf, const ParamTable& table) {
  constexpr uint32_t kExponent = 0x7f800000u;
  for (const ParamSpec& s : table.specs()) {
    const float* x = buf + s.offset;
    uint32_t largest = 0;
    for (int64_t i = 0; i < s.numel; ++i) {
      uint32_t bits;
      std::memcpy(&bits, x + i, sizeof(bits));
      largest = std::max(largest, bits & kExponent);
    }
    if (largest == kExponent) return &s;
  }
  return nullptr;
}

}  // namespace

std::string checkpoint_dir_name(int64_t step) { return fmt::format("step_{:08d}", step); }

std::optional<int64_t> checkpoint_step(const std::string& dir) {
  const std::string name = fs::path(dir).filename().string();
  const std::string prefix = "step_";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  const char* begin = name.data() + prefix.size();
  const char* end = name.data() + name.size();
  if (!std::all_of(begin, end, [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  int64_t step = 0;
  const auto [ptr, ec] = std::from_chars(begin, end, step);  // ec is result_out_of_range past int64
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return step;
}

void require_finite(const CheckpointData& data) {
  const std::pair<const char*, const float*> buffers[] = {
      {"parameter", data.params}, {"AdamW exp_avg of", data.exp_avg}, {"AdamW exp_avg_sq of", data.exp_avg_sq}};
  for (const auto& [what, buf] : buffers)
    if (const ParamSpec* s = first_non_finite(buf, *data.table))
      throw NonFiniteError(fmt::format("the {} {} holds NaN or inf: training diverged, and no checkpoint is written "
                                       "with a non-finite value (resume from the last one with a lower optim.lr or "
                                       "smaller alpha inits)",
                                       what, s->name));
}

std::string save_checkpoint(const std::string& run_dir, int64_t step, const CheckpointData& data, int keep_last) {
  if (step < 0) throw std::invalid_argument(fmt::format("save_checkpoint: step {} is negative", step));
  if (!data.cfg || !data.table || !data.params || !data.exp_avg || !data.exp_avg_sq)
    throw std::invalid_argument("save_checkpoint: config, table, params and both AdamW moments are required");
  require_finite(data);  // before anything is created: a refused save leaves the checkpoints as they were
  const fs::path root = fs::path(run_dir) / "checkpoints";
  const fs::path final_dir = root / checkpoint_dir_name(step);
  const fs::path tmp_dir = root / (checkpoint_dir_name(step) + ".tmp");
  fs::create_directories(root);
  fs::remove_all(tmp_dir);  // left by a save of this step that crashed
  fs::create_directory(tmp_dir);

  const ParamTable& table = *data.table;
  write_safetensors((tmp_dir / kModelFile).string(), tensor_refs(table, data.params, ""), kPtMetadata);
  std::vector<TensorRef> moments = tensor_refs(table, data.exp_avg, "exp_avg.");
  for (TensorRef& r : tensor_refs(table, data.exp_avg_sq, "exp_avg_sq.")) moments.push_back(std::move(r));
  write_safetensors((tmp_dir / kOptimizerFile).string(), moments, kPtMetadata);
  write_file_atomic((tmp_dir / kHfConfigFile).string(), hf_config_json(data.cfg->model));
  write_file_atomic((tmp_dir / kTrainerStateFile).string(), emit_yaml(data.trainer_state));
  write_file_atomic((tmp_dir / kConfigFile).string(), to_yaml(*data.cfg));
  fsync_dir(tmp_dir.string());

  // A checkpoint of the same step (a rerun) is replaced; rename cannot replace a non-empty directory.
  fs::remove_all(final_dir);
  fs::rename(tmp_dir, final_dir);
  fsync_dir(root.string());

  if (keep_last > 0) {
    std::vector<std::pair<int64_t, fs::path>> older;
    for (auto& c : complete_checkpoints(root))
      if (c.first < step) older.push_back(std::move(c));
    const size_t keep_older = static_cast<size_t>(keep_last - 1);
    for (size_t i = 0; i + keep_older < older.size(); ++i) fs::remove_all(older[i].second);
    fsync_dir(root.string());
  }
  return final_dir.string();
}

std::vector<std::string> complete_checkpoints_newest_first(const std::string& run_dir) {
  std::vector<std::string> out;
  for (const auto& c : complete_checkpoints(fs::path(run_dir) / "checkpoints")) out.push_back(c.second.string());
  std::reverse(out.begin(), out.end());
  return out;
}

std::optional<std::string> latest_checkpoint(const std::string& run_dir) {
  const auto all = complete_checkpoints_newest_first(run_dir);
  if (all.empty()) return std::nullopt;
  return all.front();
}

YAML::Node load_checkpoint(float* params, float* exp_avg, float* exp_avg_sq, const std::string& dir,
                           const ParamTable& table) {
  if (!params) throw std::invalid_argument("load_checkpoint: params buffer is required");
  const fs::path d(dir);
  std::vector<const char*> needed = {kModelFile, kTrainerStateFile};
  if (exp_avg || exp_avg_sq) needed.push_back(kOptimizerFile);
  for (const char* f : needed)
    if (!fs::is_regular_file(d / f))
      throw CheckpointError(fmt::format("{}: {} is missing; the checkpoint is incomplete (an interrupted save?): "
                                        "resume from another one, e.g. the one latest_checkpoint picks",
                                        dir, f));

  // A damaged file (truncated, a bad header, a failed read) is a damaged checkpoint, whichever layer finds it.
  try {
    // Every name and shape is checked before any buffer is written. Both moments are checked even when one is
    // skipped: a moments file missing either is a broken checkpoint.
    const SafetensorsIndex model = matching_index((d / kModelFile).string(), table, {""});
    std::optional<SafetensorsIndex> moments;
    if (exp_avg || exp_avg_sq)
      moments = matching_index((d / kOptimizerFile).string(), table, {"exp_avg.", "exp_avg_sq."});
    YAML::Node state;
    const std::string state_path = (d / kTrainerStateFile).string();
    try {
      state = YAML::LoadFile(state_path);
    } catch (const YAML::Exception& e) {
      throw CheckpointError(fmt::format("{}: not valid YAML ({}); the checkpoint is damaged: resume from another one",
                                        state_path, e.what()));
    }
    if (const std::string dup = duplicate_key_error(state, state_path); !dup.empty()) throw CheckpointError(dup);

    const std::pair<const char*, float*> targets[] = {
        {"", params}, {"exp_avg.", exp_avg}, {"exp_avg_sq.", exp_avg_sq}};
    for (const auto& [prefix, buf] : targets) {
      if (!buf) continue;
      const std::string file = (d / (*prefix ? kOptimizerFile : kModelFile)).string();
      read_all(buf, *prefix ? *moments : model, table, prefix);
      if (const ParamSpec* s = first_non_finite(buf, table))
        throw CheckpointError(fmt::format("{}: tensor {}{} holds NaN or inf; the checkpoint is unusable: resume from "
                                          "another one",
                                          file, prefix, s->name));
    }
    return state;
  } catch (const SafetensorsError& e) {
    throw CheckpointError(fmt::format("{}; the checkpoint is damaged: resume from another one", e.what()));
  }
}

}  // namespace dytrain
