// R's serialization format as written by serialize()/saveRDS() in XDR (big-endian) form. Each item starts
// with a flags word: low byte the type, bit 8 "is object", bit 9 "has attributes", bit 10 "has tag", bits
// 12.. the "levels" (for strings: the encoding). Symbols enter a reference table that later REFSXP items
// point into. Attributes follow the payload of vectors and precede the tag/car/cdr of pairlists.
#include "trainer/corpus/r_unserialize.h"

#include <cstring>
#include <stdexcept>

#include "trainer/corpus/normalize.h"

namespace dytrain {
namespace {

constexpr int kCharSxp = 9, kExprSxp = 20, kRefSxp = 255, kNilValueSxp = 254;
constexpr int kLatin1Mask = 1 << 2;  // CHARSXP levels: string stored in Latin-1
constexpr int kMaxDepth = 1000;      // deeper nesting than this is a corrupt file, not a data set

class Reader {
 public:
  Reader(std::string_view bytes, const std::string& what) : bytes_(bytes), what_(what) {}

  RValue read_file() {
    if (bytes_.size() < 2 || bytes_.substr(0, 2) != "X\n") {
      fail("not an XDR R serialization (expected \"X\\n\" at offset 0)");
    }
    pos_ = 2;
    const int32_t version = read_int();
    read_int();  // writer R version
    read_int();  // minimal reader R version
    if (version == 3) {
      const int32_t n = read_int();
      read_bytes(n);  // native encoding name; strings carry their own encoding flags
    } else if (version != 2) {
      fail("unsupported serialization version " + std::to_string(version) + " (R writes 2 or 3)");
    }
    return read_item(0);
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw std::runtime_error(what_ + ": " + why + " at byte offset " + std::to_string(pos_) +
                             "; the R data file may be corrupt: reinstall its package");
  }

  int32_t read_int() {
    if (pos_ + 4 > bytes_.size()) fail("unexpected end of data");
    const auto* p = reinterpret_cast<const unsigned char*>(bytes_.data() + pos_);
    pos_ += 4;
    return static_cast<int32_t>((uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3]);
  }

  double read_double() {
    const uint64_t hi = static_cast<uint32_t>(read_int()), lo = static_cast<uint32_t>(read_int());
    const uint64_t bits = (hi << 32) | lo;
    double d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
  }

  std::string_view read_bytes(int64_t n) {
    if (n < 0 || pos_ + static_cast<size_t>(n) > bytes_.size()) fail("string length out of range");
    std::string_view s = bytes_.substr(pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  }

  int64_t read_length() {
    const int32_t n = read_int();
    if (n >= 0) return n;
    if (n != -1) fail("negative vector length");
    const int64_t hi = read_int(), lo = static_cast<uint32_t>(read_int());
    return (hi << 32) | lo;  // long vectors store the length as two words
  }

  // A CHARSXP body (after its flags): NA, or bytes converted to UTF-8.
  std::optional<std::string> read_chars(int levels) {
    const int32_t n = read_int();
    if (n == -1) return std::nullopt;
    std::string_view raw = read_bytes(n);
    if (levels & kLatin1Mask) return latin1_to_utf8(raw);
    return std::string(raw);
  }

  RValue read_item(int depth) {
    if (depth > kMaxDepth) fail("objects nested too deeply");
    const int32_t flags = read_int();
    const int type = flags & 0xFF;
    const int levels = flags >> 12;
    const bool has_attr = flags & (1 << 9);
    const bool has_tag = flags & (1 << 10);
    RValue v;
    v.type = type;
    switch (type) {
      case kNilValueSxp:
        v.type = 0;
        return v;
      case kRefSxp: {
        int64_t index = flags >> 8;
        if (index == 0) index = read_int();
        if (index < 1 || index > static_cast<int64_t>(refs_.size())) fail("reference to an unknown symbol");
        return refs_[static_cast<size_t>(index - 1)];
      }
      case kRSymSxp: {
        const int32_t char_flags = read_int();
        if ((char_flags & 0xFF) != kCharSxp) fail("symbol without a name");
        v.symbol = read_chars(char_flags >> 12).value_or("NA");
        refs_.push_back(v);
        return v;
      }
      case kRListSxp: {
        // A pairlist: walk the cdr chain iteratively, collecting each value with its tag.
        v.type = kRListSxp;
        bool attr = has_attr, tag = has_tag;
        while (true) {
          if (attr) read_attributes(&v, depth);
          v.tags.push_back(tag ? read_item(depth + 1).symbol : std::string());
          v.elements.push_back(read_item(depth + 1));
          const int32_t next = read_int();
          if ((next & 0xFF) == kNilValueSxp) return v;
          if ((next & 0xFF) != kRListSxp) fail("pairlist ending in type " + std::to_string(next & 0xFF));
          attr = next & (1 << 9);
          tag = next & (1 << 10);
        }
      }
      case kCharSxp:
        v.strings.push_back(read_chars(levels));
        return v;
      case kRLglSxp:
      case kRIntSxp: {
        const int64_t n = read_length();
        v.ints.resize(static_cast<size_t>(n));
        for (auto& x : v.ints) x = read_int();
        break;
      }
      case kRRealSxp: {
        const int64_t n = read_length();
        v.reals.resize(static_cast<size_t>(n));
        for (auto& x : v.reals) x = read_double();
        break;
      }
      case kRStrSxp: {
        const int64_t n = read_length();
        v.strings.reserve(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) {
          const int32_t char_flags = read_int();
          if ((char_flags & 0xFF) != kCharSxp) fail("character vector element of type " +
                                                    std::to_string(char_flags & 0xFF));
          v.strings.push_back(read_chars(char_flags >> 12));
        }
        break;
      }
      case kRVecSxp:
      case kExprSxp: {
        const int64_t n = read_length();
        v.type = kRVecSxp;
        v.elements.reserve(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) v.elements.push_back(read_item(depth + 1));
        break;
      }
      default:
        fail("R object of type " + std::to_string(type) +
             " is not supported (only NULL, symbols, pairlists, vectors and lists)");
    }
    if (has_attr) read_attributes(&v, depth);
    return v;
  }

  void read_attributes(RValue* v, int depth) {
    RValue list = read_item(depth + 1);
    if (list.type != kRListSxp) fail("attributes that are not a pairlist");
    for (size_t i = 0; i < list.elements.size(); ++i) {
      v->attributes.emplace_back(list.tags[i], std::move(list.elements[i]));
    }
  }

  std::string_view bytes_;
  const std::string& what_;
  size_t pos_ = 0;
  std::vector<RValue> refs_;
};

}  // namespace

const RValue* RValue::attribute(const std::string& name) const {
  for (const auto& [key, value] : attributes) {
    if (key == name) return &value;
  }
  return nullptr;
}

RValue r_unserialize(std::string_view bytes, const std::string& what) { return Reader(bytes, what).read_file(); }

}  // namespace dytrain
