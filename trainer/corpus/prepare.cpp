// The pipeline runs in stages that each log with spdlog: inputs are listed first (cheap; a missing package
// fails here), the fingerprint is compared with the manifest, and only then is text read and tokenized.
// Before writing, the old manifest is removed, so a run that dies midway never leaves a directory that looks
// complete; shards and the model are each written to a temporary name and renamed; the manifest comes last.
#include "trainer/corpus/prepare.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "trainer/corpus/encode_shards.h"
#include "trainer/corpus/normalize.h"
#include "trainer/corpus/recipe.h"
#include "trainer/corpus/sources.h"
#include "trainer/corpus/split.h"

namespace dytrain {
namespace {

namespace fs = std::filesystem;

// Bumped when the output format or the processing changes, so old directories are rebuilt.
constexpr const char* kPipelineVersion = "dytrain-data-1";

class Fnv64 {
 public:
  void add(std::string_view s) {
    for (unsigned char c : s) h_ = (h_ ^ c) * 1099511628211ULL;
    h_ = (h_ ^ 0xFF) * 1099511628211ULL;  // field separator, so ("ab","c") != ("a","bc")
  }
  void add_file_stat(const std::string& path) {
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    const auto mtime = fs::last_write_time(path, ec).time_since_epoch().count();
    add(path);
    add(std::to_string(size) + ":" + std::to_string(mtime));
  }
  std::string hex() const {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h_));
    return buf;
  }

 private:
  uint64_t h_ = 1469598103934665603ULL;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// True when DIR's manifest is complete, has `fingerprint`, and every file it lists is there at full size.
bool is_up_to_date(const std::string& dir, const std::string& fingerprint, Manifest* out) {
  const std::string mpath = manifest_path(dir);
  if (!fs::is_regular_file(mpath)) return false;
  Manifest m;
  try {
    m = read_manifest(mpath);
  } catch (const std::runtime_error& e) {
    spdlog::warn("{}; rebuilding", e.what());
    return false;
  }
  if (!m.complete || m.fingerprint != fingerprint) return false;
  for (const std::string& f : tokenizer_files(m.tokenizer_kind)) {
    if (!fs::is_regular_file(dir + "/" + f)) return false;
  }
  for (const SplitInfo* split : {&m.train, &m.val}) {
    for (const ShardInfo& s : split->shards) {
      std::error_code ec;
      const auto size = fs::file_size(dir + "/" + s.file, ec);
      if (ec || static_cast<int64_t>(size) != 1024 + s.tokens * m.token_bytes) return false;
    }
  }
  *out = std::move(m);
  return true;
}

// Removes the outputs of an earlier run (manifest first), leaving anything else in DIR alone.
void clear_outputs(const std::string& dir) {
  fs::remove(manifest_path(dir));
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    const bool shard = (name.rfind("train_", 0) == 0 || name.rfind("val_", 0) == 0) &&
                       entry.path().extension() == ".bin";
    if (shard || is_tokenizer_file(name)) fs::remove(entry.path());
  }
}

std::string read_whole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

PrepareResult prepare_data(const std::string& recipe_path, bool force) {
  const auto t_start = std::chrono::steady_clock::now();
  const DataRecipe recipe = load_recipe(recipe_path);
  PrepareResult result;
  result.output_dir = recipe.output_dir;

  std::vector<SourceInputs> inputs;
  Fnv64 fp;
  fp.add(kPipelineVersion);
  fp.add(read_whole(recipe_path));
  for (const SourceSpec& s : recipe.sources) {
    inputs.push_back(list_source_inputs(s));
    for (const std::string& f : inputs.back().files) fp.add_file_stat(f);
    for (const auto& [package, version] : inputs.back().packages) fp.add(package + "=" + version);
  }
  for (const std::string& f : tokenizer_inputs(recipe.tokenizer, recipe_path)) fp.add_file_stat(f);
  const std::string fingerprint = fp.hex();

  if (!force && is_up_to_date(recipe.output_dir, fingerprint, &result.manifest)) {
    result.up_to_date = true;
    spdlog::info("data {}: {} is up to date ({} train / {} val tokens); --force rebuilds it", recipe.name,
                 recipe.output_dir, result.manifest.train.tokens, result.manifest.val.tokens);
    return result;
  }

  Manifest& m = result.manifest;
  m.recipe = recipe.name;
  m.recipe_file = recipe_path;
  m.fingerprint = fingerprint;

  const auto t_read = std::chrono::steady_clock::now();
  std::vector<Document> docs;
  for (size_t i = 0; i < recipe.sources.size(); ++i) {
    const SourceSpec& s = recipe.sources[i];
    std::vector<Document> got = read_source(s, inputs[i]);
    SourceInfo info{s.label(), "", static_cast<int64_t>(inputs[i].files.size()), static_cast<int64_t>(got.size()), 0};
    for (const auto& [package, version] : inputs[i].packages) {
      info.packages += (info.packages.empty() ? "" : ",") + package + "=" + (version.empty() ? "unknown" : version);
    }
    for (const Document& d : got) info.bytes += static_cast<int64_t>(d.text.size());
    spdlog::info("data {}: {}: {} documents, {:.1f} MB", recipe.name, info.label, info.docs, info.bytes / 1e6);
    if (got.empty()) {
      throw std::runtime_error("data recipe " + recipe_path + ": source " + s.label() + " gave no text: its " +
                               std::to_string(inputs[i].files.size()) + " file(s), first " +
                               (inputs[i].files.empty() ? std::string("(none)") : inputs[i].files.front()) +
                               ", are empty; check the glob or reinstall the package");
    }
    m.sources.push_back(info);
    std::move(got.begin(), got.end(), std::back_inserter(docs));
  }
  m.duplicates_removed = remove_duplicates(&docs);
  if (m.duplicates_removed > 0) spdlog::info("data {}: dropped {} exact duplicates", recipe.name, m.duplicates_removed);
  std::vector<Document> val = split_validation(&docs, recipe.validation, recipe_path);
  m.read_s = seconds_since(t_read);

  fs::create_directories(recipe.output_dir);
  clear_outputs(recipe.output_dir);

  const auto t_tok = std::chrono::steady_clock::now();
  spdlog::info("data {}: {} tokenizer {} on {} training documents", recipe.name,
               recipe.tokenizer.trains() ? "training" : "reusing", recipe.tokenizer.tag, docs.size());
  const std::unique_ptr<Tokenizer> tok = build_tokenizer(recipe.tokenizer, docs, recipe.output_dir, recipe_path);
  m.tokenizer_s = seconds_since(t_tok);
  m.tokenizer_kind = recipe.tokenizer.kind;
  m.tokenizer_name = tok->name();
  m.tokenizer_file = tokenizer_files(recipe.tokenizer.kind).front();
  m.tokenizer_trained = recipe.tokenizer.trains();
  m.vocab_size = tok->vocab_size();
  m.eot_id = tok->eot_id();
  m.token_bytes = tok->vocab_size() <= 65536 ? 2 : 4;

  const auto t_enc = std::chrono::steady_clock::now();
  const int threads = recipe.tokenizer.num_threads;
  m.train = encode_to_shards(*tok, docs, recipe.output_dir, "train", m.token_bytes, recipe.shard_tokens, threads);
  m.val = encode_to_shards(*tok, val, recipe.output_dir, "val", m.token_bytes, recipe.shard_tokens, threads);
  m.encode_s = seconds_since(t_enc);

  m.total_s = seconds_since(t_start);
  m.created_utc = utc_now();
  m.complete = true;
  write_manifest(manifest_path(recipe.output_dir), m);
  spdlog::info("data {}: wrote {}: train {} docs {} tokens in {} shard(s), val {} docs {} tokens ({:.1f} s)",
               recipe.name, recipe.output_dir, m.train.docs, m.train.tokens, m.train.shards.size(), m.val.docs,
               m.val.tokens, m.total_s);
  return result;
}

}  // namespace dytrain
