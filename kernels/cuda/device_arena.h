// Device memory planned up front: a model lists every buffer it needs once, in one function, and runs that function
// twice, first against a planner that only adds up sizes, then against the single cudaMalloc of the total. So the
// peak memory of a run is known before the first step (and reported by category), nothing is allocated inside the
// training loop, and there is one list of buffers to read.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "kernels/cuda/check.h"

namespace dytrain::cuda {

class ArenaPlanner {
 public:
  static constexpr size_t kAlignBytes = 256;  // cudaMalloc's own alignment: every buffer suits vector loads and cuBLASLt

  // base == nullptr: sizing pass (pointers come out null); else the pass that hands out pointers into base.
  explicit ArenaPlanner(char* base = nullptr) : base_(base) {}

  template <typename T>
  void take(T** ptr, int64_t n, const std::string& category) {
    offset_ = (offset_ + kAlignBytes - 1) / kAlignBytes * kAlignBytes;
    *ptr = base_ ? reinterpret_cast<T*>(base_ + offset_) : nullptr;
    const size_t bytes = size_t(n > 0 ? n : 0) * sizeof(T);
    offset_ += bytes;
    by_category_[category] += bytes;
  }

  size_t bytes() const { return offset_; }
  const std::map<std::string, size_t>& by_category() const { return by_category_; }

 private:
  char* base_;
  size_t offset_ = 0;
  std::map<std::string, size_t> by_category_;
};

// One device allocation, freed at scope exit.
class DeviceArena {
 public:
  DeviceArena() = default;
  explicit DeviceArena(size_t bytes) : bytes_(bytes) {
    if (bytes_ > 0) DYTRAIN_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&base_), bytes_));
  }
  ~DeviceArena() { cudaFree(base_); }
  DeviceArena(DeviceArena&& o) noexcept : base_(o.base_), bytes_(o.bytes_) { o.base_ = nullptr, o.bytes_ = 0; }
  DeviceArena& operator=(DeviceArena&& o) noexcept {
    std::swap(base_, o.base_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;

  char* base() const { return base_; }
  size_t bytes() const { return bytes_; }

 private:
  char* base_ = nullptr;
  size_t bytes_ = 0;
};

// Runs plan(ArenaPlanner&) twice (sizes, then pointers) and returns the arena that holds the buffers.
template <typename Plan>
DeviceArena allocate_planned(Plan&& plan, std::map<std::string, size_t>* by_category = nullptr) {
  ArenaPlanner sizing;
  plan(sizing);
  DeviceArena arena(sizing.bytes());
  ArenaPlanner placing(arena.base());
  plan(placing);
  if (by_category) *by_category = placing.by_category();
  return arena;
}

}  // namespace dytrain::cuda
