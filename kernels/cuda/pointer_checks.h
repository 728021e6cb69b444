// Host-side pointer predicates the entry points of kernels/cuda use to pick a vectorized path (16-byte accesses need
// 16-byte aligned addresses) and to refuse in-place calls an op does not support.
#pragma once
#include <cstdint>

namespace dytrain::cuda::detail {

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Whether the byte ranges [a, a + a_bytes) and [b, b + b_bytes) share a byte.
inline bool overlaps(const void* a, int64_t a_bytes, const void* b, int64_t b_bytes) {
  const uintptr_t pa = reinterpret_cast<uintptr_t>(a);
  const uintptr_t pb = reinterpret_cast<uintptr_t>(b);
  return pa < pb + static_cast<uintptr_t>(b_bytes) && pb < pa + static_cast<uintptr_t>(a_bytes);
}

}  // namespace dytrain::cuda::detail
