#include "trainer/checkpoint/checkpoint.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <set>
#include <tuple>
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

std::string emit_yaml(const YAML::Node& node) {
  YAML::Emitter e;
  e << node;
  return std::string(e.c_str()) + "\n";
}

// `path` open, after checking that it holds exactly prefix + name for every prefix and table name, each with the
// table's whole shape.
std::unique_ptr<SafetensorsReader> matching_file(const std::string& path, const ParamTable& table,
                                                 const std::vector<std::string>& prefixes) {
  auto file = std::make_unique<SafetensorsReader>(path);
  const SafetensorsIndex& idx = file->index();
  const std::string hint = "; was this checkpoint written by a different model config? Compare its config.yaml with "
                           "the current config";
  std::set<std::string> expected;
  for (const std::string& prefix : prefixes)
    for (const ParamSpec& s : table.specs()) {
      const std::string name = prefix + s.name;
      expected.insert(name);
      auto it = idx.tensors.find(name);
      if (it == idx.tensors.end())
        throw CheckpointMismatchError(fmt::format("{}: tensor {} is missing (expected {} tensors, the file has {}){}",
                                                  path, name, prefixes.size() * table.specs().size(),
                                                  idx.tensors.size(), hint));
      if (it->second.shape != s.full_shape)
        throw CheckpointMismatchError(fmt::format("{}: tensor {} has shape {}, the model expects {}{}", path, name,
                                                  format_shape(it->second.shape), format_shape(s.full_shape), hint));
    }
  for (const auto& [name, info] : idx.tensors)
    if (!expected.count(name))
      throw CheckpointMismatchError(
          fmt::format("{}: tensor {} is not a tensor of the model{}", path, name, hint));
  return file;
}

// Elements [first, first + count) of tp rank tp_rank's block of tensor s (in the block's row-major order) into out,
// from the whole tensor `name` of the file: one read for a replicated or row-split tensor (its block is contiguous
// rows), one per row for a column split (the inverse of take_tp_block's mapping).
void read_block(const SafetensorsReader& file, const std::string& name, const ParamSpec& s, int tp_rank,
                int64_t first, int64_t count, float* out) {
  if (s.split == TpSplit::cols && s.shape != s.full_shape) {
    const int64_t cols = s.shape[1], full_cols = s.full_shape[1];
    while (count > 0) {
      const int64_t row = first / cols, col = first % cols, n = std::min(count, cols - col);
      file.read(out, name, row * full_cols + tp_rank * cols + col, n);
      out += n;
      first += n;
      count -= n;
    }
  } else {
    file.read(out, name, (s.shape == s.full_shape ? 0 : tp_rank * s.numel) + first, count);
  }
}

// The elements of tensor s inside the flat range [begin, end): [lo, hi), empty when lo >= hi.
std::pair<int64_t, int64_t> overlap(const ParamSpec& s, int64_t begin, int64_t end) {
  return {std::max(begin, s.offset), std::min(end, s.offset + s.numel)};
}

// The first tensor of `table` holding NaN or inf in buf, which holds the flat range [begin, end) of the table's
// buffer; nullptr when all are finite. A float is NaN or inf exactly when its exponent field is all ones; the largest
// exponent field of a tensor is an integer max that the compiler vectorizes (measured 3-4 GB/s on a loaded 2-core host
// against 2 GB/s for a per-element flag), far below the cost of writing or reading the same bytes.
const ParamSpec* first_non_finite(const float* buf, const ParamTable& table, int64_t begin, int64_t end) {
  constexpr uint32_t kExponent = 0x7f800000u;
  for (const ParamSpec& s : table.specs()) {
    const auto [lo, hi] = overlap(s, begin, end);
    if (lo >= hi) continue;
    const float* x = buf + (lo - begin);
    uint32_t largest = 0;
    for (int64_t i = 0; i < hi - lo; ++i) {
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

void require_finite(const ParamTable& table, const float* params, const float* exp_avg, const float* exp_avg_sq,
                    int64_t moments_begin, int64_t moments_end) {
  const std::tuple<const char*, const float*, int64_t, int64_t> buffers[] = {
      {"parameter", params, 0, table.total()},
      {"AdamW exp_avg of", exp_avg, moments_begin, moments_end},
      {"AdamW exp_avg_sq of", exp_avg_sq, moments_begin, moments_end}};
  for (const auto& [what, buf, begin, end] : buffers)
    if (const ParamSpec* s = first_non_finite(buf, table, begin, end))
      throw NonFiniteError(fmt::format("the {} {} holds NaN or inf: training diverged, and no checkpoint is written "
                                       "with a non-finite value (resume from the last one with a lower optim.lr or "
                                       "smaller alpha inits)",
                                       what, s->name));
}

CheckpointWriter::CheckpointWriter(const std::string& run_dir, int64_t step, const ParamTable& table)
    : root_((fs::path(run_dir) / "checkpoints").string()),
      tmp_dir_((fs::path(root_) / (checkpoint_dir_name(step) + ".tmp")).string()),
      final_dir_((fs::path(root_) / checkpoint_dir_name(step)).string()),
      step_(step) {
  if (step < 0) throw std::invalid_argument(fmt::format("save_checkpoint: step {} is negative", step));
  fs::create_directories(root_);
  fs::remove_all(tmp_dir_);  // left by a save of this step that crashed
  fs::create_directory(tmp_dir_);
  std::vector<TensorLayout> model, moments;
  for (const ParamSpec& s : table.specs()) model.push_back({s.name, s.full_shape});
  for (const char* prefix : {"exp_avg.", "exp_avg_sq."})
    for (const ParamSpec& s : table.specs()) moments.push_back({prefix + s.name, s.full_shape});
  try {
    model_ = std::make_unique<SafetensorsWriter>((fs::path(tmp_dir_) / kModelFile).string(), model, kPtMetadata);
    moments_ =
        std::make_unique<SafetensorsWriter>((fs::path(tmp_dir_) / kOptimizerFile).string(), moments, kPtMetadata);
  } catch (...) {
    model_.reset();
    std::error_code ec;
    fs::remove_all(tmp_dir_, ec);
    throw;
  }
}

CheckpointWriter::~CheckpointWriter() {
  model_.reset();  // closes and removes the .tmp files first
  moments_.reset();
  std::error_code ec;  // a destructor must not throw; a directory left behind is removed by the next save
  if (!tmp_dir_.empty() && fs::exists(tmp_dir_, ec)) fs::remove_all(tmp_dir_, ec);
}

void CheckpointWriter::write(StateBuffer buffer, const std::string& name, int64_t first, const float* data,
                             int64_t count) {
  switch (buffer) {
    case StateBuffer::params: return model_->write(name, first, data, count);
    case StateBuffer::exp_avg: return moments_->write("exp_avg." + name, first, data, count);
    case StateBuffer::exp_avg_sq: return moments_->write("exp_avg_sq." + name, first, data, count);
  }
}

std::string CheckpointWriter::commit(const Config& cfg, const YAML::Node& trainer_state, int keep_last) {
  const fs::path tmp(tmp_dir_), root(root_), final_dir(final_dir_);
  model_->commit();
  moments_->commit();
  write_file_atomic((tmp / kHfConfigFile).string(), hf_config_json(cfg.model));
  write_file_atomic((tmp / kTrainerStateFile).string(), emit_yaml(trainer_state));
  write_file_atomic((tmp / kConfigFile).string(), to_yaml(cfg));
  fsync_dir(tmp_dir_);

  // A checkpoint of the same step (a rerun) is replaced; rename cannot replace a non-empty directory.
  fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
  tmp_dir_.clear();  // renamed: nothing for the destructor to remove
  fsync_dir(root_);

  if (keep_last > 0) {
    std::vector<std::pair<int64_t, fs::path>> older;
    for (auto& c : complete_checkpoints(root))
      if (c.first < step_) older.push_back(std::move(c));
    const size_t keep_older = static_cast<size_t>(keep_last - 1);
    for (size_t i = 0; i + keep_older < older.size(); ++i) fs::remove_all(older[i].second);
    fsync_dir(root_);
  }
  return final_dir_;
}

std::string save_checkpoint(const std::string& run_dir, int64_t step, const CheckpointData& data, int keep_last) {
  if (!data.cfg || !data.table || !data.params || !data.exp_avg || !data.exp_avg_sq)
    throw std::invalid_argument("save_checkpoint: config, table, params and both AdamW moments are required");
  const ParamTable& table = *data.table;
  // Before anything is created: a refused save leaves the checkpoints as they were.
  require_finite(table, data.params, data.exp_avg, data.exp_avg_sq, 0, table.total());
  CheckpointWriter writer(run_dir, step, table);
  const std::pair<StateBuffer, const float*> buffers[] = {
      {StateBuffer::params, data.params},
      {StateBuffer::exp_avg, data.exp_avg},
      {StateBuffer::exp_avg_sq, data.exp_avg_sq}};
  for (const auto& [buffer, buf] : buffers)
    for (const ParamSpec& s : table.specs()) writer.write(buffer, s.name, 0, buf + s.offset, s.numel);
  return writer.commit(*data.cfg, data.trainer_state, keep_last);
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
  return load_checkpoint_slice(params, exp_avg, exp_avg_sq, dir, CheckpointSlice{&table, 0, 0, table.total()});
}

YAML::Node load_checkpoint_slice(float* params, float* exp_avg, float* exp_avg_sq, const std::string& dir,
                                 const CheckpointSlice& slice) {
  if (!params) throw std::invalid_argument("load_checkpoint: params buffer is required");
  const ParamTable& table = *slice.table;
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
    const std::unique_ptr<SafetensorsReader> model = matching_file((d / kModelFile).string(), table, {""});
    std::unique_ptr<SafetensorsReader> moments;
    if (exp_avg || exp_avg_sq)
      moments = matching_file((d / kOptimizerFile).string(), table, {"exp_avg.", "exp_avg_sq."});
    YAML::Node state;
    const std::string state_path = (d / kTrainerStateFile).string();
    try {
      state = YAML::LoadFile(state_path);
    } catch (const YAML::Exception& e) {
      throw CheckpointError(fmt::format("{}: not valid YAML ({}); the checkpoint is damaged: resume from another one",
                                        state_path, e.what()));
    }
    if (const std::string dup = duplicate_key_error(state, state_path); !dup.empty()) throw CheckpointError(dup);

    // params holds the whole flat buffer of the table, each moment its range (alignment gaps zero).
    const int64_t begin = slice.moments_begin, end = slice.moments_end;
    const std::tuple<const char*, float*, int64_t, int64_t> targets[] = {
        {"", params, 0, table.total()}, {"exp_avg.", exp_avg, begin, end}, {"exp_avg_sq.", exp_avg_sq, begin, end}};
    for (const auto& [prefix, buf, lo_all, hi_all] : targets) {
      if (!buf) continue;
      const SafetensorsReader& file = *prefix ? *moments : *model;
      if (*prefix) std::fill(buf, buf + (hi_all - lo_all), 0.0f);
      for (const ParamSpec& s : table.specs()) {
        const auto [lo, hi] = overlap(s, lo_all, hi_all);
        if (lo < hi) read_block(file, prefix + s.name, s, slice.tp_rank, lo - s.offset, hi - lo, buf + (lo - lo_all));
      }
      if (const ParamSpec* s = first_non_finite(buf, table, lo_all, hi_all))
        throw CheckpointError(fmt::format("{}: tensor {}{} holds NaN or inf; the checkpoint is unusable: resume from "
                                          "another one",
                                          file.index().path, prefix, s->name));
    }
    return state;
  } catch (const SafetensorsError& e) {
    throw CheckpointError(fmt::format("{}; the checkpoint is damaged: resume from another one", e.what()));
  }
}

}  // namespace dytrain
