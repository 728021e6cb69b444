// safetensors I/O: round trips are bit-exact, files in the PyTorch reference's exact byte layout (compact JSON header,
// "__metadata__" first, names sorted) are read and reproduced byte for byte, BF16 is widened exactly, and every
// malformed file is rejected with a message naming the file (and the tensor where there is one).
#include "trainer/checkpoint/safetensors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <sstream>

#include "tests/common/temp_dir.h"

namespace dytrain {
namespace {

using testing::TempDir;

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

std::string f32_bytes(const std::vector<float>& v) {
  std::string s(v.size() * 4, '\0');
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, &v[i], 4);
    for (int b = 0; b < 4; ++b) s[4 * i + b] = static_cast<char>((bits >> (8 * b)) & 0xff);
  }
  return s;
}

// A file as the Python reference lays it out: length, header padded with spaces to a multiple of 8, data.
std::string st_file(std::string header, const std::string& data) {
  header.append((8 - header.size() % 8) % 8, ' ');
  return le64(header.size()) + header + data;
}

bool same_bits(const std::vector<float>& a, const float* b) { return std::memcmp(a.data(), b, a.size() * 4) == 0; }

// The message of the SafetensorsError `f` throws; fails the test when it throws nothing.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const SafetensorsError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no SafetensorsError thrown";
  return "";
}

TEST(Safetensors, RoundTripIsBitExactWithShapesAndMetadata) {
  TempDir dir;
  const std::string path = dir.file("t.safetensors");
  // Values that a lossy path would change: signed zero, infinities, a NaN payload, a denormal, an odd mantissa.
  uint32_t nan_bits = 0x7fc12345;
  float nan_payload;
  std::memcpy(&nan_payload, &nan_bits, 4);
  const std::vector<float> a = {-0.0f, std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                                nan_payload, std::numeric_limits<float>::denorm_min(), 0.1f};
  const std::vector<float> b = {3.25f};
  std::vector<float> c(2 * 3 * 4);
  for (size_t i = 0; i < c.size(); ++i) c[i] = std::sin(static_cast<float>(i)) * 1e-3f;
  const SafetensorsMetadata meta = {{"format", "pt"}, {"note", "quote \" backslash \\ newline \n tab \t é"}};
  // Given out of name order: the file must still be laid out sorted.
  write_safetensors(path,
                    {{"z.weight", {2, 3}, a.data()}, {"model.embed_scale", {1}, b.data()},
                     {"m.layers.0.w", {2, 3, 4}, c.data()}, {"empty", {0, 5}, nullptr}},
                    meta);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  const SafetensorsIndex idx = read_safetensors_index(path);
  EXPECT_EQ(idx.metadata, meta);
  EXPECT_EQ(idx.data_start % 8, 0u);
  ASSERT_EQ(idx.tensors.size(), 4u);
  EXPECT_LT(idx.tensors.at("m.layers.0.w").begin, idx.tensors.at("model.embed_scale").begin);
  EXPECT_LT(idx.tensors.at("model.embed_scale").begin, idx.tensors.at("z.weight").begin);

  const auto t = read_safetensors(path);
  ASSERT_EQ(t.size(), 4u);
  EXPECT_EQ(t.at("z.weight").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_TRUE(same_bits(a, t.at("z.weight").data.data()));
  EXPECT_EQ(t.at("model.embed_scale").shape, (std::vector<int64_t>{1}));
  EXPECT_TRUE(same_bits(b, t.at("model.embed_scale").data.data()));
  EXPECT_EQ(t.at("m.layers.0.w").shape, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_TRUE(same_bits(c, t.at("m.layers.0.w").data.data()));
  EXPECT_EQ(t.at("empty").shape, (std::vector<int64_t>{0, 5}));
  EXPECT_TRUE(t.at("empty").data.empty());
  // 8-byte length + padded header + exactly the payload, nothing else.
  EXPECT_EQ(std::filesystem::file_size(path), idx.data_start + 4 * (a.size() + b.size() + c.size()));
}

// The exact bytes torch_llama_dyt.py's write_safetensors produces for these tensors (json.dumps with separators
// (",", ":"), "__metadata__" first, names sorted, space padding), spelled out by hand.
std::string reference_layout_file(const std::vector<float>& embed, const std::vector<float>& alpha) {
  const std::string header =
      "{\"__metadata__\":{\"format\":\"pt\"},"
      "\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24]},"
      "\"model.norm.alpha\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[24,28]}}";
  return st_file(header, f32_bytes(embed) + f32_bytes(alpha));
}

TEST(Safetensors, ReadsAndReproducesThePyTorchReferenceLayout) {
  TempDir dir;
  const std::vector<float> embed = {0.5f, -1.25f, 2.0f, 1e-7f, -3e5f, 0.0f};  // (3, 2)
  const std::vector<float> alpha = {0.8f};
  const std::string ref = reference_layout_file(embed, alpha);
  write_bytes(dir.file("ref.safetensors"), ref);

  const auto t = read_safetensors(dir.file("ref.safetensors"));
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t.at("model.embed_tokens.weight").shape, (std::vector<int64_t>{3, 2}));
  EXPECT_TRUE(same_bits(embed, t.at("model.embed_tokens.weight").data.data()));
  EXPECT_TRUE(same_bits(alpha, t.at("model.norm.alpha").data.data()));
  EXPECT_EQ(read_safetensors_index(dir.file("ref.safetensors")).metadata.at("format"), "pt");

  write_safetensors(dir.file("ours.safetensors"),
                    {{"model.norm.alpha", {1}, alpha.data()}, {"model.embed_tokens.weight", {3, 2}, embed.data()}},
                    {{"format", "pt"}});
  EXPECT_EQ(read_bytes(dir.file("ours.safetensors")), ref);
}

// The header goes through yaml-cpp: JSON constructs YAML might read differently must come out as JSON means them.
TEST(Safetensors, HeaderParsesAsJson) {
  TempDir dir;
  const std::vector<float> v = {1.0f, 2.0f};
  // Python's default ensure_ascii escapes (\u00e9), an escaped slash and quote, whitespace and newlines between
  // tokens, a YAML-looking name ("null", "yes: no"), keys in any order, and integer values with no spaces after ':'.
  const std::string header =
      "{ \"__metadata__\" : {\"s\":\"caf\\u00e9 a\\/b \\\"q\\\"\", \"n\":\"123\"},\n"
      "  \"null\":{\"data_offsets\":[0,4],\"shape\":[1],\"dtype\":\"F32\"},\n"
      "  \"yes: no\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[4,8]}}";
  write_bytes(dir.file("j.safetensors"), st_file(header, f32_bytes(v)));
  const SafetensorsIndex idx = read_safetensors_index(dir.file("j.safetensors"));
  EXPECT_EQ(idx.metadata.at("s"), "caf\xc3\xa9 a/b \"q\"");
  EXPECT_EQ(idx.metadata.at("n"), "123");
  const auto t = read_safetensors(dir.file("j.safetensors"));
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t.at("null").data, std::vector<float>{1.0f});
  EXPECT_TRUE(t.at("yes: no").shape.empty());  // a 0-d tensor holds one element
  EXPECT_EQ(t.at("yes: no").data, std::vector<float>{2.0f});
}

TEST(Safetensors, Bf16IsWidenedExactly) {
  TempDir dir;
  // bf16 bit patterns and the floats they stand for (the top 16 bits of an fp32).
  const std::vector<uint16_t> bf = {0x3f80, 0xc040, 0x3eab, 0x7f80, 0x0001, 0x8000};
  const std::vector<float> expect = {1.0f, -3.0f, 0.333984375f, std::numeric_limits<float>::infinity(),
                                     9.18354961579912115600575419705e-41f, -0.0f};
  std::string data;
  for (uint16_t b : bf) data += std::string{static_cast<char>(b & 0xff), static_cast<char>(b >> 8)};
  const std::vector<float> f = {7.5f};
  data += f32_bytes(f);
  const std::string header =
      "{\"a.bf\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
      "\"b.f\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}";
  write_bytes(dir.file("bf.safetensors"), st_file(header, data));
  const auto t = read_safetensors(dir.file("bf.safetensors"));
  EXPECT_EQ(t.at("a.bf").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_TRUE(same_bits(expect, t.at("a.bf").data.data()));
  EXPECT_EQ(t.at("b.f").data, f);
}

struct BadFile {
  const char* what;
  std::string bytes;
  std::vector<std::string> message_has;  // besides the path
};

TEST(Safetensors, EveryMalformedFileIsRejectedNamingFileAndTensor) {
  const std::string d8 = std::string(8, '\0');
  const std::vector<BadFile> cases = {
      {"too short", "abcde", {"too short"}},
      {"header length past the end", le64(1000) + "{}      ", {"header length 1000", "past the end"}},
      {"not JSON", st_file("{\"a\": [1, 2", ""), {"not valid JSON"}},
      {"not an object", st_file("[1,2]", ""), {"JSON object"}},
      {"offsets do not match the shape",
       st_file("{\"w.bad\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", std::string(16, '\0')),
       {"w.bad", "[2, 2]", "16 bytes"}},
      {"unsupported dtype", st_file("{\"w.half\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]}}", d8),
       {"w.half", "unsupported dtype F16"}},
      {"negative dimension", st_file("{\"w.neg\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", d8),
       {"w.neg", "negative"}},
      {"non-integer offset", st_file("{\"w.f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.5]}}", d8),
       {"w.f", "data_offsets[1]"}},
      {"missing field", st_file("{\"w.m\":{\"dtype\":\"F32\",\"shape\":[2]}}", d8), {"w.m", "data_offsets"}},
      {"out of range", st_file("{\"w.far\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", d8),
       {"w.far", "past the end of the data"}},
      {"overlap",
       st_file("{\"w.a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"w.b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               std::string(12, '\0')),
       {"w.b", "overlaps tensor w.a"}},
      {"duplicate name",
       st_file("{\"w.d\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"w.d\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               d8),
       {"w.d", "twice"}},
  };
  TempDir dir;
  for (const BadFile& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string path = dir.file(std::string("bad_") + std::to_string(&c - cases.data()) + ".safetensors");
    write_bytes(path, c.bytes);
    const std::string msg = error_of([&] { read_safetensors(path); });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    for (const std::string& s : c.message_has) EXPECT_NE(msg.find(s), std::string::npos) << msg;
  }
  const std::string missing = dir.file("absent.safetensors");
  EXPECT_NE(error_of([&] { read_safetensors(missing); }).find(missing), std::string::npos);
}

TEST(Safetensors, WriterRejectsDuplicateNamesAndLeavesNoFile) {
  TempDir dir;
  const float x = 1.0f;
  const std::string path = dir.file("dup.safetensors");
  const std::string msg = error_of([&] { write_safetensors(path, {{"w", {1}, &x}, {"w", {1}, &x}}); });
  EXPECT_NE(msg.find("w"), std::string::npos);
  EXPECT_NE(msg.find(path), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

// The streaming writer: pieces given in any order make the file write_safetensors makes from whole buffers; ranges
// are read back from anywhere in a tensor; a file missing a piece is never committed, and an abandoned one leaves
// nothing behind.
TEST(Safetensors, StreamedPiecesMakeTheSameFileAndRangesReadBack) {
  TempDir dir;
  std::vector<float> a(7 * 5), b(3);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i) * 0.5f - 3.0f;
  b = {1.0f, -2.0f, 4.0f};
  const SafetensorsMetadata meta = {{"format", "pt"}};
  write_safetensors(dir.file("whole.safetensors"), {{"b", {3}, b.data()}, {"a", {7, 5}, a.data()}}, meta);
  {
    SafetensorsWriter w(dir.file("pieces.safetensors"), {{"b", {3}}, {"a", {7, 5}}}, meta);
    w.write("a", 20, a.data() + 20, 15);
    w.write("b", 0, b.data(), 3);
    w.write("a", 0, a.data(), 20);
    w.commit();
  }
  auto bytes = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  EXPECT_EQ(bytes(dir.file("pieces.safetensors")), bytes(dir.file("whole.safetensors")));

  const SafetensorsReader r(dir.file("pieces.safetensors"));
  std::vector<float> out(9);
  r.read(out.data(), "a", 13, 9);
  EXPECT_TRUE(same_bits(std::vector<float>(a.begin() + 13, a.begin() + 22), out.data()));
  EXPECT_NE(error_of([&] { r.read(out.data(), "a", 30, 9); }).find("elements [30, 39) are outside its 35"),
            std::string::npos);

  const std::string partial = dir.file("partial.safetensors");
  {
    SafetensorsWriter w(partial, {{"a", {7, 5}}});
    w.write("a", 0, a.data(), 34);
    EXPECT_NE(error_of([&] { w.commit(); }).find("34 of 35 elements written"), std::string::npos);
    EXPECT_NE(error_of([&] { w.write("a", 30, a.data(), 6); }).find("outside"), std::string::npos);
  }
  EXPECT_FALSE(std::filesystem::exists(partial));
  EXPECT_FALSE(std::filesystem::exists(partial + ".tmp"));
}

}  // namespace
}  // namespace dytrain
