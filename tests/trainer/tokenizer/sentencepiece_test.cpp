// SentencePiece tokenizer: a tiny BPE model is trained here on a few KB of text (well under a second), then
// checked for exact round trips (including characters never seen in training, via byte fallback), the
// end-of-text token, determinism of training, and the error for a missing model file.
#include "trainer/tokenizer/sentencepiece_tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <unistd.h>

namespace dytrain {
namespace {

namespace fs = std::filesystem;

// Varied English with repetition, so BPE has merges to learn.
std::string training_text() {
  const char* paragraphs[] = {
      "It was a bright cold day in April, and the clocks were striking thirteen. The hallway smelt of boiled\n"
      "cabbage and old rag mats. At one end of it a coloured poster, too large for indoor display, had been\n"
      "tacked to the wall.\n",
      "The quick brown fox jumps over the lazy dog. The lazy dog sleeps in the sun while the fox runs away\n"
      "into the forest, where the trees are tall and the paths are narrow and winding.\n",
      "    def train(model, data):\n        for step in range(1000):\n            loss = model(data[step])\n"
      "            loss.backward()\n        return model\n",
      "In 1811 there were 3 sisters and 12 cousins; by 1817 the family counted 42 members, 7 of them abroad.\n",
      "She had been forced into prudence in her youth, she learned romance as she grew older: the natural\n"
      "sequel of an unnatural beginning. The estate was settled, the house was let, and the family moved.\n",
  };
  std::string text;
  for (int copy = 0; copy < 4; ++copy) {
    for (const char* p : paragraphs) text += std::string(p) + "\n";
  }
  return text;
}

class SentencePieceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() / ("dytrain_sp_test_" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    text_ = new std::string(training_text());
    SentencePieceTrainOptions options;
    options.vocab_size = kVocab;
    SentencePieceTokenizer::train(model_path(), {*text_}, options);
    tok_ = SentencePieceTokenizer::load(model_path(), "sp_test").release();
  }
  static void TearDownTestSuite() {
    delete tok_;
    fs::remove_all(*dir_);
    delete dir_;
    delete text_;
  }
  static std::string model_path() { return (*dir_ / "tiny.model").string(); }

  // 258 reserved pieces (<unk>, eot, 256 bytes) + ~60 characters + merges.
  static constexpr int kVocab = 400;
  static fs::path* dir_;
  static std::string* text_;
  static SentencePieceTokenizer* tok_;
};
fs::path* SentencePieceTest::dir_ = nullptr;
std::string* SentencePieceTest::text_ = nullptr;
SentencePieceTokenizer* SentencePieceTest::tok_ = nullptr;

TEST_F(SentencePieceTest, VocabSizeAndName) {
  EXPECT_EQ(tok_->vocab_size(), kVocab);
  EXPECT_EQ(tok_->name(), "sentencepiece:sp_test");
}

TEST_F(SentencePieceTest, RoundTripIsIdentity) {
  const std::vector<std::string> texts = {
      "",
      "The quick brown fox jumps over the lazy dog.",
      "  leading and trailing spaces  ",
      "tabs\tand\n\nblank lines\n\n\nand   runs   of    spaces",
      "    indented code:\n        return model\n",
      "numbers 1234567890 and 3.14159, -42",
      "na\xC3\xAFve caf\xC3\xA9 \xE2\x80\x94 \xE6\x9D\xB1\xE4\xBA\xAC \xF0\x9F\x9A\x80 "
      "\xCE\x95\xCE\xBB\xCE\xBB\xCE\xB7\xCE\xBD\xCE\xB9\xCE\xBA\xCE\xAC",  // naïve café — 東京 🚀 Ελληνικά
      "<|endoftext|> written as plain text stays plain text",
      "ZQXJ ~`!@#$%^&*()_+{}|:\"<>?[];',./ unseen punctuation",
  };
  for (const std::string& text : texts) {
    const std::vector<uint32_t> ids = tok_->encode(text);
    for (uint32_t id : ids) {
      ASSERT_LT(id, static_cast<uint32_t>(kVocab));
      EXPECT_NE(id, tok_->eot_id()) << "text must never encode to the end-of-text token: " << text;
    }
    EXPECT_EQ(tok_->decode(ids), text);
  }
  EXPECT_EQ(tok_->decode(tok_->encode(*text_)), *text_);
}

TEST_F(SentencePieceTest, UnseenCharactersFallBackToBytes) {
  // U+6771 is three UTF-8 bytes, absent from the training text: exactly three byte pieces.
  const std::vector<uint32_t> ids = tok_->encode("\xE6\x9D\xB1");
  EXPECT_EQ(ids.size(), 3u);
  EXPECT_EQ(tok_->decode(ids), "\xE6\x9D\xB1");
}

TEST_F(SentencePieceTest, LearnsMerges) {
  // Byte-level tokens would give one token per byte; BPE on its own training text must do far better.
  const std::vector<uint32_t> ids = tok_->encode(*text_);
  EXPECT_LT(static_cast<double>(ids.size()), 0.6 * static_cast<double>(text_->size()));
}

TEST_F(SentencePieceTest, EndOfTextIsOneTokenThatDecodesAsMarker) {
  const uint32_t eot = tok_->eot_id();
  EXPECT_LT(eot, static_cast<uint32_t>(kVocab));
  EXPECT_EQ(tok_->decode({eot}), std::string(kEotPiece));
  std::vector<uint32_t> ids = tok_->encode("first document");
  ids.push_back(eot);
  const std::vector<uint32_t> second = tok_->encode("second one");
  ids.insert(ids.end(), second.begin(), second.end());
  EXPECT_EQ(tok_->decode(ids), std::string("first document") + kEotPiece + "second one");
}

TEST_F(SentencePieceTest, TrainingIsDeterministicWithSampling) {
  // max_sentences below the line count exercises the seeded sampling path; two runs give the same bytes.
  SentencePieceTrainOptions options;
  options.vocab_size = kVocab;
  options.max_sentences = 30;
  const std::string a = (*dir_ / "a.model").string(), b = (*dir_ / "b.model").string();
  SentencePieceTokenizer::train(a, {*text_}, options);
  SentencePieceTokenizer::train(b, {*text_}, options);
  auto read = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const std::string bytes_a = read(a);
  EXPECT_FALSE(bytes_a.empty());
  EXPECT_EQ(bytes_a, read(b));
  EXPECT_FALSE(fs::exists(a + ".tmp"));
}

TEST_F(SentencePieceTest, MissingModelNamesTheFile) {
  const std::string missing = (*dir_ / "missing.model").string();
  try {
    SentencePieceTokenizer::load(missing, "x");
    FAIL() << "loading a missing model must throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
}

TEST_F(SentencePieceTest, EmptyTrainingTextNamesTheModel) {
  const std::string path = (*dir_ / "empty.model").string();
  try {
    SentencePieceTokenizer::train(path, {"", "\n\n"}, SentencePieceTrainOptions{});
    FAIL() << "training on no text must throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dytrain
