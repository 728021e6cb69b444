// safetensors files (the Hugging Face format): an 8-byte little-endian header length N, N bytes of JSON header
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}} padded with spaces to a
// multiple of 8, then the raw little-endian tensor bytes, offsets relative to the start of that data.
//
// Decisions:
// - dytrain writes F32 only (master weights and AdamW moments are fp32) and reads F32 and BF16, converting BF16 to
//   float, so bf16 exports from other tools load too.
// - The header is parsed with yaml-cpp: JSON is YAML flow style, and yaml-cpp is already a dependency.
// - Reading is split into the validated index (header) and reads of element ranges into a caller's buffer (pread at
//   the range's offset), so a checkpoint loads straight into the flat parameter buffer without a second copy of the
//   model in memory, and a tensor-parallel rank reads only its block of each tensor.
// - Writing streams: every tensor's place in the file follows from the names and shapes alone, so the header goes
//   first and the data follows in pieces, in any order (SafetensorsWriter). A writer gathering a large model piece by
//   piece never holds a whole tensor; write_safetensors is the same writer fed whole buffers.
// - Tensors are laid out in name order, as the PyTorch reference and the safetensors library write them.
// - Every error names the file, and the tensor where there is one.
#pragma once
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "trainer/checkpoint/atomic_file.h"

namespace dytrain {

struct SafetensorsError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using SafetensorsMetadata = std::map<std::string, std::string>;

// A tensor to write: fp32, row-major, `data` holds the product of `shape` elements.
struct TensorRef {
  std::string name;
  std::vector<int64_t> shape;
  const float* data;
};

// A tensor of a file to write: its name and shape (fp32, row-major).
struct TensorLayout {
  std::string name;
  std::vector<int64_t> shape;
};

// A safetensors file written piece by piece: the constructor writes the header of `tensors` (names unique) to
// path + ".tmp"; write() puts elements of a tensor at their place; commit() checks that every element was written
// once, fsyncs and renames the file onto `path`. A writer destroyed before commit() removes the .tmp file.
class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::string& path, const std::vector<TensorLayout>& tensors,
                    const SafetensorsMetadata& metadata = {});
  // data (count floats) as elements [first, first + count) of tensor `name`.
  void write(const std::string& name, int64_t first, const float* data, int64_t count);
  void commit();

 private:
  struct Slot {
    uint64_t offset;  // of the tensor's first byte in the file
    int64_t numel;
  };
  std::string path_;
  AtomicFile file_;
  std::map<std::string, Slot> slots_;
  int64_t elements_ = 0, written_ = 0;  // in the file; written so far
};

// Writes `tensors` (names unique) to path + ".tmp", fsyncs and renames it onto `path`.
void write_safetensors(const std::string& path, const std::vector<TensorRef>& tensors,
                       const SafetensorsMetadata& metadata = {});

enum class StDtype { f32, bf16 };

struct StTensorInfo {
  StDtype dtype;
  std::vector<int64_t> shape;
  int64_t numel;
  uint64_t begin, end;  // byte offsets relative to the data section
};

// The validated header of a file: every tensor has a supported dtype, offsets matching its shape, inside the file
// and not overlapping another tensor.
struct SafetensorsIndex {
  std::string path;
  uint64_t data_start;  // 8 + header length
  std::map<std::string, StTensorInfo> tensors;
  SafetensorsMetadata metadata;
};

SafetensorsIndex read_safetensors_index(const std::string& path);

// Reads tensor `name` of `index` into out (numel floats), converting BF16.
void read_tensor(float* out, const SafetensorsIndex& index, const std::string& name);

// A safetensors file open for reads of element ranges: the validated index, and one descriptor that every read
// preads from (no shared position), so a reader of strided blocks opens the file once.
class SafetensorsReader {
 public:
  explicit SafetensorsReader(const std::string& path);
  ~SafetensorsReader();
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;

  const SafetensorsIndex& index() const { return index_; }
  // Elements [first, first + count) of tensor `name` (row-major) into out, converting BF16.
  void read(float* out, const std::string& name, int64_t first, int64_t count) const;

 private:
  SafetensorsIndex index_;
  int fd_ = -1;
};

struct StTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// Every tensor of the file, in memory.
std::map<std::string, StTensor> read_safetensors(const std::string& path);

// "[2, 3]", for messages.
std::string format_shape(const std::vector<int64_t>& shape);

}  // namespace dytrain
