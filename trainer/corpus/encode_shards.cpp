// Documents are encoded in batches of about kBatchBytes of text, in parallel within a batch (OpenMP, dynamic
// schedule because documents range from a few bytes to a whole novel), then appended in document order, so
// the output does not depend on the thread count and memory stays bounded by one batch of tokens.
#include "trainer/corpus/encode_shards.h"

#include <filesystem>
#include <stdexcept>

#include "trainer/data/shard.h"

namespace dytrain {
namespace {

constexpr int64_t kBatchBytes = 64 << 20;

}  // namespace

SplitInfo encode_to_shards(const Tokenizer& tokenizer, const std::vector<Document>& docs, const std::string& dir,
                           const std::string& split, int token_bytes, int64_t shard_tokens, int threads) {
  SplitInfo info;
  if (docs.empty()) return info;
  ShardWriter writer(dir + "/" + split, token_bytes, shard_tokens);
  const uint32_t eot = tokenizer.eot_id();
  size_t begin = 0;
  while (begin < docs.size()) {
    size_t end = begin;
    int64_t batch_bytes = 0;
    while (end < docs.size() && (end == begin || batch_bytes < kBatchBytes)) {
      batch_bytes += static_cast<int64_t>(docs[end].text.size());
      ++end;
    }
    std::vector<std::vector<uint32_t>> ids(end - begin);
    std::string error;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t i = 0; i < static_cast<int64_t>(end - begin); ++i) {
      try {
        ids[static_cast<size_t>(i)] = tokenizer.encode(docs[begin + static_cast<size_t>(i)].text);
      } catch (const std::exception& e) {
#pragma omp critical
        error = "document " + docs[begin + static_cast<size_t>(i)].name + ": " + e.what();
      }
    }
    if (!error.empty()) throw std::runtime_error(error);
    for (size_t i = 0; i < ids.size(); ++i) {
      writer.add(&eot, 1);
      writer.add(ids[i].data(), static_cast<int64_t>(ids[i].size()));
      info.tokens += 1 + static_cast<int64_t>(ids[i].size());
      info.bytes += static_cast<int64_t>(docs[begin + i].text.size());
    }
    info.docs += static_cast<int64_t>(end - begin);
    begin = end;
  }
  int64_t written = 0;
  for (const std::string& path : writer.finish()) {
    const Shard shard(path);
    written += shard.size();
    info.shards.push_back({std::filesystem::path(path).filename().string(), shard.size()});
  }
  if (written != info.tokens) {
    throw std::runtime_error("shards " + dir + "/" + split + "_*.bin hold " + std::to_string(written) +
                             " tokens but " + std::to_string(info.tokens) + " were encoded; disk full?");
  }
  return info;
}

}  // namespace dytrain
