// YAML in and out with yaml-cpp; the reader accepts exactly what the writer emits and names the file and
// key when something is missing.
#include "trainer/corpus/manifest.h"

#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <fstream>
#include <stdexcept>

#include "trainer/config/yaml_keys.h"

namespace dytrain {
namespace {

void emit_split(YAML::Emitter* out, const char* key, const SplitInfo& s) {
  YAML::Emitter& e = *out;
  e << YAML::Key << key << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "docs" << YAML::Value << s.docs;
  e << YAML::Key << "bytes" << YAML::Value << s.bytes;
  e << YAML::Key << "tokens" << YAML::Value << s.tokens;
  e << YAML::Key << "shards" << YAML::Value << YAML::BeginSeq;
  for (const ShardInfo& sh : s.shards) {
    e << YAML::Flow << YAML::BeginMap << YAML::Key << "file" << YAML::Value << sh.file << YAML::Key << "tokens"
      << YAML::Value << sh.tokens << YAML::EndMap;
  }
  e << YAML::EndSeq << YAML::EndMap;
}

SplitInfo read_split(const YAML::Node& n) {
  SplitInfo s;
  s.docs = n["docs"].as<int64_t>();
  s.bytes = n["bytes"].as<int64_t>();
  s.tokens = n["tokens"].as<int64_t>();
  for (const auto& sh : n["shards"]) s.shards.push_back({sh["file"].as<std::string>(), sh["tokens"].as<int64_t>()});
  return s;
}

}  // namespace

std::string manifest_path(const std::string& dir) { return dir + "/manifest.yaml"; }

void write_manifest(const std::string& path, const Manifest& m) {
  YAML::Emitter e;
  e.SetDoublePrecision(6);  // seconds: enough digits, without the noise of a full double
  e << YAML::BeginMap;
  e << YAML::Key << "recipe" << YAML::Value << m.recipe;
  e << YAML::Key << "recipe_file" << YAML::Value << m.recipe_file;
  e << YAML::Key << "fingerprint" << YAML::Value << m.fingerprint;
  e << YAML::Key << "complete" << YAML::Value << m.complete;
  e << YAML::Key << "created_utc" << YAML::Value << m.created_utc;
  e << YAML::Key << "tokenizer" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "kind" << YAML::Value << m.tokenizer_kind;
  e << YAML::Key << "name" << YAML::Value << m.tokenizer_name;
  e << YAML::Key << "file" << YAML::Value << m.tokenizer_file;
  e << YAML::Key << "trained" << YAML::Value << m.tokenizer_trained;
  e << YAML::Key << "vocab_size" << YAML::Value << m.vocab_size;
  e << YAML::Key << "eot_id" << YAML::Value << m.eot_id;
  e << YAML::EndMap;
  e << YAML::Key << "token_bytes" << YAML::Value << m.token_bytes;
  e << YAML::Key << "sources" << YAML::Value << YAML::BeginSeq;
  for (const SourceInfo& s : m.sources) {
    e << YAML::BeginMap << YAML::Key << "label" << YAML::Value << s.label << YAML::Key << "packages" << YAML::Value
      << s.packages << YAML::Key << "files" << YAML::Value << s.files << YAML::Key << "docs" << YAML::Value << s.docs
      << YAML::Key << "bytes" << YAML::Value << s.bytes << YAML::EndMap;
  }
  e << YAML::EndSeq;
  e << YAML::Key << "duplicates_removed" << YAML::Value << m.duplicates_removed;
  emit_split(&e, "train", m.train);
  emit_split(&e, "val", m.val);
  e << YAML::Key << "seconds" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "read" << YAML::Value << m.read_s << YAML::Key << "tokenizer" << YAML::Value << m.tokenizer_s
    << YAML::Key << "encode" << YAML::Value << m.encode_s << YAML::Key << "total" << YAML::Value << m.total_s;
  e << YAML::EndMap << YAML::EndMap;

  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << e.c_str() << "\n";
    if (!out) throw std::runtime_error("cannot write " + tmp + ": check that the directory is writable");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot rename " + tmp + " to " + path);
}

Manifest read_manifest(const std::string& path) {
  try {
    const YAML::Node n = YAML::LoadFile(path);
    if (const std::string dup = duplicate_key_error(n, path); !dup.empty())
      throw std::runtime_error("manifest " + dup + "; re-run `dytrain data prepare RECIPE.yaml --force`");
    Manifest m;
    m.recipe = n["recipe"].as<std::string>();
    m.recipe_file = n["recipe_file"].as<std::string>();
    m.fingerprint = n["fingerprint"].as<std::string>();
    m.complete = n["complete"].as<bool>();
    m.created_utc = n["created_utc"].as<std::string>();
    const YAML::Node t = n["tokenizer"];
    m.tokenizer_kind = t["kind"].as<std::string>();
    m.tokenizer_name = t["name"].as<std::string>();
    m.tokenizer_file = t["file"].as<std::string>();
    m.tokenizer_trained = t["trained"].as<bool>();
    m.vocab_size = t["vocab_size"].as<int>();
    m.eot_id = t["eot_id"].as<uint32_t>();
    m.token_bytes = n["token_bytes"].as<int>();
    for (const auto& s : n["sources"]) {
      m.sources.push_back({s["label"].as<std::string>(), s["packages"].as<std::string>(), s["files"].as<int64_t>(),
                           s["docs"].as<int64_t>(), s["bytes"].as<int64_t>()});
    }
    m.duplicates_removed = n["duplicates_removed"].as<int64_t>();
    m.train = read_split(n["train"]);
    m.val = read_split(n["val"]);
    const YAML::Node sec = n["seconds"];
    m.read_s = sec["read"].as<double>();
    m.tokenizer_s = sec["tokenizer"].as<double>();
    m.encode_s = sec["encode"].as<double>();
    m.total_s = sec["total"].as<double>();
    return m;
  } catch (const YAML::Exception& e) {
    throw std::runtime_error("manifest " + path + " is unreadable or incomplete (" + e.what() +
                             "); re-run `dytrain data prepare RECIPE.yaml --force`");
  }
}

}  // namespace dytrain
