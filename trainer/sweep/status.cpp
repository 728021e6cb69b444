#include "trainer/sweep/status.h"

#include <filesystem>
#include <sstream>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "trainer/checkpoint/atomic_file.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/trainer_state.h"
#include "trainer/config/yaml_keys.h"

namespace dytrain {
namespace {

namespace fs = std::filesystem;

// Double-quoted YAML scalar: reasons carry colons and quotes from error messages.
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c == '\n' ? ' ' : c;
  }
  return out + "\"";
}

std::optional<YAML::Node> load_yaml(const fs::path& path) {
  if (!fs::exists(path)) return std::nullopt;
  YAML::Node root;
  try {
    root = YAML::LoadFile(path.string());
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(fmt::format("{}: cannot read it ({}); delete the file to let the sweep rewrite it",
                                         path.string(), e.what()));
  }
  // A hand-edited status with `status: done` twice would be read as the first one by one reader, the last by another.
  if (const std::string dup = duplicate_key_error(root, path.string()); !dup.empty())
    throw std::runtime_error(dup + "; or delete the file to let the sweep rewrite it");
  return root;
}

}  // namespace

bool is_final(const PointStatus& s) { return s.status == "done" || s.status == "diverged"; }

std::optional<PointStatus> read_point_status(const std::string& point_dir) {
  const auto n = load_yaml(fs::path(point_dir) / "status.yaml");
  if (!n) return std::nullopt;
  PointStatus s;
  s.status = (*n)["status"].as<std::string>("");
  s.exit_code = (*n)["exit_code"].as<int>(0);
  s.elapsed_s = (*n)["elapsed_s"].as<double>(0.0);
  s.reason = (*n)["reason"].as<std::string>("");
  return s;
}

void write_point_status(const std::string& point_dir, const PointStatus& s) {
  fs::create_directories(point_dir);
  write_file_atomic((fs::path(point_dir) / "status.yaml").string(),
                    fmt::format("status: {}\nexit_code: {}\nelapsed_s: {:.3f}\nreason: {}\n", s.status, s.exit_code,
                                s.elapsed_s, quoted(s.reason)));
}

void write_sweep_index(const std::string& sweep_dir, const SweepIndex& index) {
  std::ostringstream out;
  out << "name: " << quoted(index.name) << "\nspec: " << quoted(index.spec) << "\npoints:\n";
  for (const auto& p : index.points) out << "  - {name: " << quoted(p.name) << ", max_steps: " << p.max_steps << "}\n";
  fs::create_directories(sweep_dir);
  write_file_atomic((fs::path(sweep_dir) / "sweep.yaml").string(), out.str());
}

std::optional<SweepIndex> read_sweep_index(const std::string& sweep_dir) {
  const auto n = load_yaml(fs::path(sweep_dir) / "sweep.yaml");
  if (!n) return std::nullopt;
  SweepIndex index;
  index.name = (*n)["name"].as<std::string>("");
  index.spec = (*n)["spec"].as<std::string>("");
  for (const auto& p : (*n)["points"])
    index.points.push_back({p["name"].as<std::string>(), p["max_steps"].as<int>(0)});
  return index;
}

std::optional<long long> latest_checkpoint_step(const std::string& run_dir) {
  // The newest checkpoint whose trainer_state.yaml is sound and agrees with its folder name, as --resume picks it: a
  // damaged or copied folder (step_999999999999) must not mark a point done.
  for (const std::string& dir : complete_checkpoints_newest_first(run_dir)) {
    try {
      return read_trainer_state(dir).step;
    } catch (const CheckpointError&) {
    }
  }
  return std::nullopt;
}

}  // namespace dytrain
