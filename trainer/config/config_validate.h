// Internal to trainer/config: the validation pass with a per-key origin, so that load_config can name the file and
// line that set each bad value (validate() names one source for every key).
#pragma once
#include <functional>
#include <string>

#include "trainer/config/config.h"

namespace dytrain {

// Maps a full key ("model.dim") to where its value came from ("configs/x.yaml:4", "--set").
using KeyOrigin = std::function<std::string(const std::string& key)>;

// Performs every check of validate(); throws one ConfigError listing every problem, one per line.
void validate_with_origins(const Config& cfg, const KeyOrigin& origin_of);

}  // namespace dytrain
