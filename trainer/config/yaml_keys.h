// Duplicate keys in YAML maps. YAML forbids them, but yaml-cpp loads `{lr: 1, lr: 2}` without a word and keeps both
// pairs: node["lr"] then returns the first value while code that iterates the map (the config loader) applies the
// last one, so the same file means 1 to one reader and 2 to another. Every reader of a YAML file that a person writes
// or may edit (configs, sweep specs, data recipes, alpha fits, sweep status files, trainer_state.yaml) calls this
// right after parsing.
#pragma once
#include <string>

#include <yaml-cpp/yaml.h>

namespace dytrain {

// The first duplicate key in any map of `root` (nested maps and list items included) as
// "FILE:LINE: key 'optim.lr' is given twice (first at line N) ...", or empty when every key is unique.
std::string duplicate_key_error(const YAML::Node& root, const std::string& file);

// Throws ConfigError with duplicate_key_error's message when there is one.
void require_unique_keys(const YAML::Node& root, const std::string& file);

}  // namespace dytrain
