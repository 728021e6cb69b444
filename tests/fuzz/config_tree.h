// The config presets (configs/models, configs/train) copied into the scratch directory once, so that fuzzed configs
// and sweep specs written under scratch/configs/ can include or name them by the same relative paths as the files in
// the repository do (include: ../models/tiny.yaml, base: ../train/tiny.yaml).
#pragma once
#include <filesystem>
#include <string>

#include "tests/fuzz/fuzz_input.h"

namespace dytrain::fuzz {

// scratch_dir()/configs, holding models/ and train/.
inline const std::string& config_tree() {
  static const std::string root = [] {
    namespace fs = std::filesystem;
    const fs::path dst = fs::path(scratch_dir()) / "configs";
    for (const char* sub : {"models", "train"}) {
      fs::create_directories(dst / sub);
      for (const auto& e : fs::directory_iterator(fs::path(DYTRAIN_SOURCE_DIR) / "configs" / sub))
        fs::copy_file(e.path(), dst / sub / e.path().filename(), fs::copy_options::overwrite_existing);
    }
    return dst.string();
  }();
  return root;
}

}  // namespace dytrain::fuzz
