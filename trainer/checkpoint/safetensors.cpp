#include "trainer/checkpoint/safetensors.h"

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "trainer/checkpoint/atomic_file.h"

// The data section is the host's memory image of the floats; safetensors is little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes a little-endian host");

namespace dytrain {
namespace {

// The safetensors library refuses headers above 100 MB; a larger length means a corrupt or foreign file, and
// refusing it early avoids a huge allocation.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;
// Largest element count whose byte size cannot overflow int64 at 4 bytes per element.
constexpr int64_t kMaxNumel = int64_t(1) << 60;

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      out += fmt::format("\\u{:04x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

int64_t checked_numel(const std::vector<int64_t>& shape, const std::string& where) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw SafetensorsError(where + ": negative dimension in shape " + format_shape(shape));
    if (d != 0 && n > kMaxNumel / d) throw SafetensorsError(where + ": shape " + format_shape(shape) + " is too large");
    n *= d;
  }
  return n;
}

uint64_t element_bytes(StDtype d) { return d == StDtype::f32 ? 4 : 2; }

int64_t to_int(const YAML::Node& node, const std::string& where) {
  if (!node.IsScalar()) throw SafetensorsError(where + " must be an integer");
  try {
    int64_t v = node.as<int64_t>();
    if (v < 0) throw SafetensorsError(where + " must not be negative, got " + node.Scalar());
    return v;
  } catch (const YAML::Exception&) {
    throw SafetensorsError(where + " must be an integer, got '" + node.Scalar() + "'");
  }
}

StTensorInfo parse_tensor(const YAML::Node& info, const std::string& where) {
  if (!info.IsMap()) throw SafetensorsError(where + ": entry must be an object with dtype, shape, data_offsets");
  const YAML::Node dtype = info["dtype"], shape = info["shape"], offsets = info["data_offsets"];
  if (!dtype || !shape || !offsets)
    throw SafetensorsError(where + ": entry must have dtype, shape and data_offsets");
  StTensorInfo t{};
  const std::string dt = dtype.IsScalar() ? dtype.Scalar() : std::string("(not a string)");
  if (dt == "F32") {
    t.dtype = StDtype::f32;
  } else if (dt == "BF16") {
    t.dtype = StDtype::bf16;
  } else {
    throw SafetensorsError(where + ": unsupported dtype " + dt +
                           "; dytrain reads F32 and BF16 (convert the tensor to float32 before saving)");
  }
  if (!shape.IsSequence()) throw SafetensorsError(where + ": shape must be a list of integers");
  for (size_t i = 0; i < shape.size(); ++i) t.shape.push_back(to_int(shape[i], where + ": shape[" + std::to_string(i) + "]"));
  t.numel = checked_numel(t.shape, where);
  if (!offsets.IsSequence() || offsets.size() != 2)
    throw SafetensorsError(where + ": data_offsets must be a list [begin, end]");
  t.begin = static_cast<uint64_t>(to_int(offsets[0], where + ": data_offsets[0]"));
  t.end = static_cast<uint64_t>(to_int(offsets[1], where + ": data_offsets[1]"));
  const uint64_t expected = static_cast<uint64_t>(t.numel) * element_bytes(t.dtype);
  if (t.end < t.begin || t.end - t.begin != expected)
    throw SafetensorsError(fmt::format("{}: data_offsets [{}, {}] hold {} bytes, but {} {} needs {} bytes", where,
                                       t.begin, t.end, t.end < t.begin ? 0 : t.end - t.begin, dt,
                                       format_shape(t.shape), expected));
  return t;
}

// Offsets inside the data section and no two tensors sharing a byte.
void check_layout(const SafetensorsIndex& idx, uint64_t data_bytes) {
  std::vector<std::pair<uint64_t, const std::string*>> by_begin;
  for (const auto& [name, t] : idx.tensors) {
    if (t.end > data_bytes)
      throw SafetensorsError(fmt::format("{}: tensor {}: data_offsets [{}, {}] run past the end of the data section "
                                         "({} bytes); the file is truncated or corrupt",
                                         idx.path, name, t.begin, t.end, data_bytes));
    if (t.end > t.begin) by_begin.emplace_back(t.begin, &name);
  }
  std::sort(by_begin.begin(), by_begin.end());
  for (size_t i = 1; i < by_begin.size(); ++i) {
    const StTensorInfo& prev = idx.tensors.at(*by_begin[i - 1].second);
    if (by_begin[i].first < prev.end)
      throw SafetensorsError(fmt::format("{}: tensor {} (from byte {}) overlaps tensor {} (bytes {}..{}); the file "
                                         "is corrupt",
                                         idx.path, *by_begin[i].second, by_begin[i].first, *by_begin[i - 1].second,
                                         prev.begin, prev.end));
  }
}

const StTensorInfo& tensor_info(const SafetensorsIndex& index, const std::string& name) {
  auto it = index.tensors.find(name);
  if (it == index.tensors.end()) throw SafetensorsError(index.path + ": no tensor " + name);
  return it->second;
}

int open_for_reading(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw SafetensorsError(path + ": cannot open safetensors file: " + std::strerror(errno));
  return fd;
}

// All of `bytes` at `offset`; false on an error or an early end of file.
bool pread_all(int fd, void* out, uint64_t bytes, uint64_t offset) {
  char* p = static_cast<char*>(out);
  while (bytes > 0) {
    const ssize_t n = ::pread(fd, p, bytes, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    offset += static_cast<uint64_t>(n);
    bytes -= static_cast<uint64_t>(n);
  }
  return true;
}

// Elements [first, first + count) of tensor `name` of the file open as fd, converting BF16.
void read_elements(int fd, float* out, const SafetensorsIndex& index, const std::string& name, int64_t first,
                   int64_t count) {
  const StTensorInfo& t = tensor_info(index, name);
  if (first < 0 || count < 0 || count > t.numel - first)
    throw SafetensorsError(fmt::format("{}: tensor {}: elements [{}, {}) are outside its {} elements", index.path,
                                       name, first, first + count, t.numel));
  const uint64_t esize = element_bytes(t.dtype);
  const uint64_t at = index.data_start + t.begin + static_cast<uint64_t>(first) * esize;
  bool ok = true;
  if (t.dtype == StDtype::f32) {
    ok = pread_all(fd, out, static_cast<uint64_t>(count) * 4, at);
  } else {
    // bf16 is the top half of an fp32: widen chunk by chunk to bound the staging buffer.
    constexpr int64_t kChunk = 1 << 20;
    std::vector<uint16_t> buf(static_cast<size_t>(std::min(count, kChunk)));
    for (int64_t i = 0; i < count && ok; i += kChunk) {
      const int64_t m = std::min(kChunk, count - i);
      ok = pread_all(fd, buf.data(), static_cast<uint64_t>(m) * 2, at + static_cast<uint64_t>(i) * 2);
      for (int64_t j = 0; j < m && ok; ++j) {
        const uint32_t bits = static_cast<uint32_t>(buf[j]) << 16;
        std::memcpy(out + i + j, &bits, sizeof bits);
      }
    }
  }
  if (!ok)
    throw SafetensorsError(index.path + ": tensor " + name + ": read failed (was the file changed or truncated?)");
}

}  // namespace

std::string format_shape(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

SafetensorsWriter::SafetensorsWriter(const std::string& path, const std::vector<TensorLayout>& tensors,
                                     const SafetensorsMetadata& metadata)
    : path_(path), file_(path) {
  std::vector<const TensorLayout*> sorted;
  for (const TensorLayout& t : tensors) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(),
            [](const TensorLayout* a, const TensorLayout* b) { return a->name < b->name; });

  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      header += (first ? "" : ",") + json_string(k) + ":" + json_string(v);
      first = false;
    }
    header += "}";
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < sorted.size(); ++i) {
    const TensorLayout& t = *sorted[i];
    const std::string where = path + ": tensor " + t.name;
    if (t.name.empty() || t.name == "__metadata__") throw SafetensorsError(where + ": invalid tensor name");
    if (i > 0 && sorted[i - 1]->name == t.name) throw SafetensorsError(where + ": name given twice");
    const int64_t numel = checked_numel(t.shape, where);
    const uint64_t bytes = static_cast<uint64_t>(numel) * 4;
    header += fmt::format("{}{}:{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
                          header.size() > 1 ? "," : "", json_string(t.name), fmt::join(t.shape, ","), offset,
                          offset + bytes);
    slots_[t.name] = Slot{offset, numel};  // relative to the data section until the header's length is known
    offset += bytes;
    elements_ += numel;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');

  const uint64_t n = header.size();
  file_.write(&n, sizeof n);
  file_.write(header.data(), header.size());
  for (auto& [name, slot] : slots_) slot.offset += 8 + n;
}

void SafetensorsWriter::write(const std::string& name, int64_t first, const float* data, int64_t count) {
  auto it = slots_.find(name);
  if (it == slots_.end()) throw SafetensorsError(path_ + ": tensor " + name + " is not in the header");
  const Slot& slot = it->second;
  if (first < 0 || count < 0 || count > slot.numel - first)
    throw SafetensorsError(fmt::format("{}: tensor {}: elements [{}, {}) are outside its {} elements", path_, name,
                                       first, first + count, slot.numel));
  if (count == 0) return;
  if (data == nullptr) throw SafetensorsError(path_ + ": tensor " + name + ": no data");
  file_.write_at(data, static_cast<size_t>(count) * 4, slot.offset + static_cast<uint64_t>(first) * 4);
  written_ += count;
}

void SafetensorsWriter::commit() {
  // Pieces never overlap in this code's writers, so a count short of the total is a tensor left out.
  if (written_ != elements_)
    throw SafetensorsError(fmt::format("{}: {} of {} elements written; refusing to commit an incomplete file", path_,
                                       written_, elements_));
  file_.commit();
}

void write_safetensors(const std::string& path, const std::vector<TensorRef>& tensors,
                       const SafetensorsMetadata& metadata) {
  std::vector<TensorLayout> layout;
  for (const TensorRef& t : tensors) layout.push_back({t.name, t.shape});
  SafetensorsWriter w(path, layout, metadata);
  for (const TensorRef& t : tensors) {
    const int64_t numel = checked_numel(t.shape, path + ": tensor " + t.name);
    if (numel > 0 && t.data == nullptr) throw SafetensorsError(path + ": tensor " + t.name + ": no data");
    w.write(t.name, 0, t.data, numel);
  }
  w.commit();
}

SafetensorsIndex read_safetensors_index(const std::string& path) {
  std::error_code ec;
  const uint64_t file_bytes = std::filesystem::file_size(path, ec);
  if (ec) throw SafetensorsError(path + ": cannot read safetensors file: " + ec.message());
  std::ifstream in(path, std::ios::binary);
  if (!in) throw SafetensorsError(path + ": cannot open safetensors file");
  if (file_bytes < 8)
    throw SafetensorsError(fmt::format("{}: {} bytes is too short for a safetensors file (8-byte header length "
                                       "first); the file is truncated or not safetensors",
                                       path, file_bytes));
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), sizeof n);
  if (n > file_bytes - 8 || n > kMaxHeaderBytes)
    throw SafetensorsError(fmt::format("{}: header length {} runs past the end of the file ({} bytes); the file is "
                                       "truncated or not safetensors",
                                       path, n, file_bytes));
  std::string header(n, '\0');
  in.read(header.data(), static_cast<std::streamsize>(n));
  if (!in) throw SafetensorsError(path + ": cannot read the header");

  YAML::Node root;
  try {
    root = YAML::Load(header);
  } catch (const YAML::Exception& e) {
    throw SafetensorsError(path + ": the header is not valid JSON: " + e.what());
  }
  if (!root.IsMap()) throw SafetensorsError(path + ": the header must be a JSON object");

  SafetensorsIndex idx{path, 8 + n, {}, {}};
  for (const auto& kv : root) {
    const std::string name = kv.first.Scalar();
    if (name == "__metadata__") {
      if (!kv.second.IsMap()) throw SafetensorsError(path + ": __metadata__ must be an object of strings");
      for (const auto& m : kv.second) {
        if (!m.second.IsScalar())
          throw SafetensorsError(path + ": __metadata__ value of " + m.first.Scalar() + " must be a string");
        idx.metadata[m.first.Scalar()] = m.second.Scalar();
      }
      continue;
    }
    const std::string where = path + ": tensor " + name;
    if (!idx.tensors.emplace(name, parse_tensor(kv.second, where)).second)
      throw SafetensorsError(where + ": listed twice in the header; the file is corrupt");
  }
  check_layout(idx, file_bytes - idx.data_start);
  return idx;
}

void read_tensor(float* out, const SafetensorsIndex& index, const std::string& name) {
  const int fd = open_for_reading(index.path);
  try {
    read_elements(fd, out, index, name, 0, tensor_info(index, name).numel);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

SafetensorsReader::SafetensorsReader(const std::string& path)
    : index_(read_safetensors_index(path)), fd_(open_for_reading(path)) {}

SafetensorsReader::~SafetensorsReader() { ::close(fd_); }

void SafetensorsReader::read(float* out, const std::string& name, int64_t first, int64_t count) const {
  read_elements(fd_, out, index_, name, first, count);
}

std::map<std::string, StTensor> read_safetensors(const std::string& path) {
  const SafetensorsIndex idx = read_safetensors_index(path);
  std::map<std::string, StTensor> out;
  for (const auto& [name, info] : idx.tensors) {
    StTensor& t = out[name];
    t.shape = info.shape;
    t.data.resize(static_cast<size_t>(info.numel));
    read_tensor(t.data.data(), idx, name);
  }
  return out;
}

}  // namespace dytrain
