// MPI counts are int: a message of more than INT_MAX elements (a 2 GiB+ broadcast of a checkpoint, say) is sent as a
// sequence of chunks. The split is its own function so the tests can check it on tiny chunk sizes.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace dytrain {

struct Chunk {
  int64_t offset;  // elements from the start of the buffer
  int count;       // elements in this chunk, 1 .. max_count
};

// Covers [0, n) in order with chunks of max_count elements, the last one ragged; none when n == 0.
inline std::vector<Chunk> split_into_chunks(int64_t n, int64_t max_count) {
  if (n < 0 || max_count < 1 || max_count > INT32_MAX) {
    throw std::invalid_argument("split_into_chunks: n = " + std::to_string(n) + " and max_count = " +
                                std::to_string(max_count) + " must satisfy n >= 0 and 1 <= max_count <= INT_MAX");
  }
  std::vector<Chunk> chunks;
  for (int64_t offset = 0; offset < n; offset += max_count) {
    chunks.push_back({offset, static_cast<int>(n - offset < max_count ? n - offset : max_count)});
  }
  return chunks;
}

}  // namespace dytrain
