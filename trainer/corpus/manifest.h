// manifest.yaml beside the shards of a prepared recipe: what was read (sources, package versions, document
// and byte counts), how it was tokenized, every shard with its token count, and the time taken. It is
// written last, by rename, with complete: true, so its presence means the directory is whole; the input
// fingerprint decides whether a re-run has anything to do.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dytrain {

struct ShardInfo {
  std::string file;        // relative to the manifest's directory
  int64_t tokens = 0;
};

struct SplitInfo {
  int64_t docs = 0;
  int64_t bytes = 0;       // UTF-8 bytes of text
  int64_t tokens = 0;      // including one end-of-text token per document
  std::vector<ShardInfo> shards;
};

struct SourceInfo {
  std::string label;       // "janeaustenr", "text_files:linux-doc-6.1", ...
  std::string packages;    // "r-cran-janeaustenr=1.0.0-1", comma separated
  int64_t files = 0;
  int64_t docs = 0;        // after dropping blank documents, before deduplication
  int64_t bytes = 0;
};

struct Manifest {
  std::string recipe;              // recipe name
  std::string recipe_file;
  std::string fingerprint;         // hash of recipe text, input files (size, mtime) and package versions
  bool complete = false;
  std::string created_utc;         // ISO 8601
  std::string tokenizer_kind;      // "sentencepiece" | "gpt2"
  std::string tokenizer_name;      // Tokenizer::name()
  std::string tokenizer_file;      // "tokenizer.model" | "encoder.json", relative to the manifest's directory
  bool tokenizer_trained = false;  // trained by this run (false: reused from the recipe's `model`)
  int vocab_size = 0;
  uint32_t eot_id = 0;
  int token_bytes = 2;             // 2: uint16 shards, 4: uint32 shards
  std::vector<SourceInfo> sources;
  int64_t duplicates_removed = 0;
  SplitInfo train, val;
  double read_s = 0, tokenizer_s = 0, encode_s = 0, total_s = 0;
};

void write_manifest(const std::string& path, const Manifest& m);  // temporary name, then rename
Manifest read_manifest(const std::string& path);                  // throws naming the file
std::string manifest_path(const std::string& dir);                // DIR/manifest.yaml

}  // namespace dytrain
