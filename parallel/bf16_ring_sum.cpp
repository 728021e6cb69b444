#include "parallel/bf16_ring_sum.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace dytrain {

float round_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    u |= 0x00400000u;  // NaN: keep it a (quiet) NaN; the rounding below could carry it into infinity
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);  // to nearest, ties to the even upper half; overflow carries into infinity
  }
  u &= 0xffff0000u;
  float r;
  std::memcpy(&r, &u, sizeof(r));
  return r;
}

void bf16_ring_sum(float* out, const float* in, int ranks, int64_t n) {
  if (ranks < 1 || n < 0)
    throw std::invalid_argument("bf16_ring_sum: ranks = " + std::to_string(ranks) + " and n = " + std::to_string(n) +
                                " must satisfy ranks >= 1 and n >= 0");
  const int64_t chunk = (n + ranks - 1) / ranks;
  for (int c = 0; c < ranks; ++c) {
    const int64_t begin = std::min(n, c * chunk), end = std::min(n, begin + chunk);
    // Starts at rank c + 1 and ends at rank c: hop h adds rank (c + 1 + h) mod ranks.
    const float* first = in + int64_t((c + 1) % ranks) * n;
    std::copy(first + begin, first + end, out + begin);
    for (int h = 1; h < ranks; ++h) {
      const float* next = in + int64_t((c + 1 + h) % ranks) * n;
      for (int64_t i = begin; i < end; ++i) out[i] = round_to_bf16(out[i] + next[i]);
    }
  }
}

}  // namespace dytrain
