#include "trainer/checkpoint/trainer_state.h"

#include <filesystem>
#include <limits>
#include <optional>

#include <fmt/format.h>

#include "trainer/checkpoint/checkpoint.h"
#include "trainer/config/yaml_keys.h"

namespace dytrain {
namespace {

const char* const kDamaged = "the checkpoint is damaged or was not written by dytrain: resume from another one "
                             "(--resume-from DIR)";

// map[key] as a T in [min, max]; `name` is the key as the user sees it (train_loader.cursor).
template <class T>
T get(const YAML::Node& map, const char* key, const std::string& name, const std::string& path,
      T min = std::numeric_limits<T>::min(), T max = std::numeric_limits<T>::max()) {
  const YAML::Node v = map[key];
  if (!v) throw CheckpointError(fmt::format("{}: key '{}' is missing; {}", path, name, kDamaged));
  T out{};
  try {
    if (!v.IsScalar()) throw YAML::BadConversion(v.Mark());
    out = v.as<T>();
  } catch (const YAML::Exception&) {
    throw CheckpointError(
        fmt::format("{}: key '{}' is not an integer in [{}, {}]; {}", path, name, min, max, kDamaged));
  }
  if (out < min || out > max) {
    const std::string want = min == max ? fmt::format("{}", min) : fmt::format("in [{}, {}]", min, max);
    throw CheckpointError(fmt::format("{}: key '{}' is {}, it must be {}; {}", path, name, out, want, kDamaged));
  }
  return out;
}

}  // namespace

TrainerState parse_trainer_state(const YAML::Node& node, const std::string& path, const std::string& dir) {
  if (!node.IsMap()) throw CheckpointError(fmt::format("{}: not a map of trainer state keys; {}", path, kDamaged));
  constexpr int64_t kMaxI64 = std::numeric_limits<int64_t>::max();
  TrainerState s;
  s.step = get<int64_t>(node, "step", "step", path, 0, kMaxI64);
  // A copied step_ directory must not pass for another step: --resume picks the highest name, and a resumed run
  // writes its next checkpoints under names derived from `step`.
  const std::optional<int64_t> named = checkpoint_step(dir);
  if (named && *named != s.step)
    throw CheckpointError(fmt::format("{}: key 'step' is {} but the directory is named {}: a copied or renamed "
                                      "checkpoint; rename it to {} or remove it",
                                      path, s.step, std::filesystem::path(dir).filename().string(),
                                      checkpoint_dir_name(s.step)));
  s.tokens = get<int64_t>(node, "tokens", "tokens", path, 0, kMaxI64);
  // One AdamW update per step (a step with a non-finite gradient norm ends the run before any checkpoint), so any
  // other count is damage; t < 1 would also divide by zero in the bias correction once the next update ran.
  s.adam_t = get<int64_t>(node, "adam_t", "adam_t", path, s.step, s.step);
  s.dp = node["dp"] ? get<int64_t>(node, "dp", "dp", path, 1, kMaxI64) : 1;
  s.config_hash = get<uint64_t>(node, "config_hash", "config_hash", path);

  const YAML::Node loader = node["train_loader"];
  if (!loader) throw CheckpointError(fmt::format("{}: key 'train_loader' is missing; {}", path, kDamaged));
  if (!loader.IsMap())
    throw CheckpointError(fmt::format("{}: key 'train_loader' is not a map of loader keys; {}", path, kDamaged));
  // The loader checks the values against the shards when it restores them; here only their types and signs.
  for (const char* key : {"epoch", "cursor", "shards", "tokens"})
    get<int64_t>(loader, key, std::string("train_loader.") + key, path, 0, kMaxI64);
  get<uint64_t>(loader, "seed", "train_loader.seed", path);
  s.train_loader = YAML::Clone(loader);
  return s;
}

TrainerState read_trainer_state(const std::string& dir) {
  if (!std::filesystem::is_directory(dir))
    throw CheckpointError(fmt::format("{}: no such checkpoint directory (RUN_DIR/checkpoints/step_N)", dir));
  const std::string path = (std::filesystem::path(dir) / "trainer_state.yaml").string();
  if (!std::filesystem::is_regular_file(path))
    throw CheckpointError(fmt::format("{}: missing; {}", path, kDamaged));
  YAML::Node node;
  try {
    node = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw CheckpointError(fmt::format("{}: not valid YAML ({}); {}", path, e.what(), kDamaged));
  }
  if (const std::string dup = duplicate_key_error(node, path); !dup.empty()) throw CheckpointError(dup);
  return parse_trainer_state(node, path, dir);
}

}  // namespace dytrain
