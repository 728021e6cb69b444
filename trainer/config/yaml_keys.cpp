// Walks a loaded YAML tree once, iteratively (a deep file cannot overflow the stack here; yaml-cpp's parser already
// limits nesting). Aliases make the tree a graph in which one map may be reached many times (`*a` repeated, nested
// "billion laughs" anchors): each map or list is checked once, found again by its start position and Node::is.
#include "trainer/config/yaml_keys.h"

#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "trainer/config/config.h"

namespace dytrain {
namespace {

std::string line_of(const YAML::Node& n) {
  return n.Mark().is_null() ? std::string("?") : std::to_string(n.Mark().line + 1);
}

// A key as text: a scalar's own text ('a' and a are one key), any other key in YAML flow form.
std::string key_text(const YAML::Node& key) {
  if (key.IsScalar()) return key.Scalar();
  if (key.IsNull()) return "~";
  YAML::Emitter e;
  e << YAML::Flow << key;
  return e.c_str();
}

std::string child_path(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

class Walk {
 public:
  explicit Walk(const std::string& file) : file_(file) {}

  std::string run(const YAML::Node& root) {
    push(root, "");
    while (!stack_.empty()) {
      auto [node, path] = std::move(stack_.back());
      stack_.pop_back();
      std::vector<std::pair<YAML::Node, std::string>> children;
      if (node.IsMap()) {
        std::unordered_map<std::string, YAML::Node> seen;
        for (const auto& kv : node) {
          const std::string key = key_text(kv.first);
          const auto [it, inserted] = seen.emplace(key, kv.first);
          if (!inserted)
            return fmt::format("{}:{}: key '{}' is given twice (first at line {}); a YAML map takes each key once: "
                               "keep the one you mean",
                               file_, line_of(kv.first), child_path(path, key), line_of(it->second));
          if (!kv.first.IsScalar()) children.emplace_back(kv.first, child_path(path, key));
          children.emplace_back(kv.second, child_path(path, key));
        }
      } else if (node.IsSequence()) {
        size_t i = 0;
        for (const auto& item : node) children.emplace_back(item, fmt::format("{}[{}]", path, i++));
      }
      // Reversed onto the stack so the file is checked top to bottom and the first duplicate is the one reported.
      for (auto c = children.rbegin(); c != children.rend(); ++c) push(c->first, c->second);
    }
    return "";
  }

 private:
  void push(const YAML::Node& n, std::string path) {
    if (!n.IsMap() && !n.IsSequence()) return;
    const size_t pos = n.Mark().is_null() ? SIZE_MAX : size_t(n.Mark().pos);
    const auto range = visited_.equal_range(pos);
    for (auto it = range.first; it != range.second; ++it)
      if (it->second.is(n)) return;
    visited_.emplace(pos, n);
    stack_.emplace_back(n, std::move(path));
  }

  const std::string& file_;
  std::vector<std::pair<YAML::Node, std::string>> stack_;
  std::unordered_multimap<size_t, YAML::Node> visited_;  // start position -> maps and lists already queued
};

}  // namespace

std::string duplicate_key_error(const YAML::Node& root, const std::string& file) { return Walk(file).run(root); }

void require_unique_keys(const YAML::Node& root, const std::string& file) {
  const std::string error = duplicate_key_error(root, file);
  if (!error.empty()) throw ConfigError(error);
}

}  // namespace dytrain
