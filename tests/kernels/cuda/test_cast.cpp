// f32_to_bf16 against the host's round to nearest even on the bit pattern (bf16_bits in cuda_test_util.h, written
// apart from cuda_bf16.h). Both are the IEEE rounding of the same float, so every finite input must give the same
// bits: no tolerance. Inputs are random bit patterns (every exponent: subnormals, values that round up to infinity)
// plus hand-picked ties, over lengths that leave every remainder mod 8, on the 16-byte path and on the scalar
// fallback (misaligned views); elements outside the view must stay untouched. Infinities and NaN are checked apart.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/cast.cuh"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace dytrain::test {
namespace {

constexpr uint16_t kSentinel = 0xABCD;  // bf16 bits the kernel never writes outside the view

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// Finite floats: ties and rounding edges first, then random bit patterns with every exponent but 0xff.
std::vector<float> cast_inputs(size_t n, uint32_t seed) {
  const std::vector<uint32_t> edges = {
      0x3F808000u,  // 1 + 2^-8: halfway between 1 and 1 + 2^-7, ties to even 1
      0x3F818000u,  // 1 + 3 * 2^-8: halfway, ties to even 1 + 2^-6
      0xBF808000u,  // negative tie
      0x3F808001u,  // just above the tie: rounds up
      0x7F7FFFFFu,  // FLT_MAX: rounds up to infinity
      0x7F7F7FFFu,  // just below the overflow tie: largest bf16
      0x00000001u,  // smallest subnormal: rounds to 0
      0x00018000u,  // subnormal tie: ties to even 0x0002
      0x007FFFFFu,  // largest subnormal: rounds up to the smallest normal
      0x80000000u,  // -0
      0x00000000u,  // +0
  };
  std::mt19937 gen(seed);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    uint32_t u = i < edges.size() ? edges[i] : static_cast<uint32_t>(gen());
    if ((u & 0x7F800000u) == 0x7F800000u) u &= 0xBFFFFFFFu;  // exponent 0xff (inf, NaN) -> a finite exponent
    v[i] = from_bits(u);
  }
  return v;
}

// Converts inputs with the views in = base + in_offset, out = base + out_offset (elements) and checks every bit.
void check_cast(const std::vector<float>& inputs, size_t in_offset, size_t out_offset) {
  const size_t n = inputs.size();
  std::vector<float> in_host(n + in_offset + 8, 1.0f);
  std::copy(inputs.begin(), inputs.end(), in_host.begin() + in_offset);
  DeviceBuffer<float> in(in_host);
  DeviceBuffer<uint16_t> out(std::vector<uint16_t>(n + out_offset + 8, kSentinel));
  cuda::f32_to_bf16(reinterpret_cast<__nv_bfloat16*>(out.get()) + out_offset, in.get() + in_offset,
                    static_cast<int64_t>(n), nullptr);
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<uint16_t> got = out.download();
  int failures = 0;
  for (size_t i = 0; i < got.size() && failures < 5; ++i) {
    const bool inside = i >= out_offset && i < out_offset + n;
    const uint16_t want = inside ? bf16_bits(inputs[i - out_offset]) : kSentinel;
    if (got[i] != want) {
      ADD_FAILURE() << (inside ? "element " + std::to_string(i - out_offset)
                               : "outside the view at " + std::to_string(i))
                    << ": got 0x" << std::hex << got[i] << ", want 0x" << want << std::dec;
      ++failures;
    }
  }
}

using CudaCast = CudaTest;

TEST_F(CudaCast, MatchesRoundToNearestEvenBitForBit) {
  // (1 << 24) + 3 elements: 8193 blocks of 8-element groups, one group per thread, and a tail of 3.
  for (size_t n :
       {size_t{1}, size_t{7}, size_t{8}, size_t{11}, size_t{13}, size_t{1000}, size_t{4099}, (size_t{1} << 24) + 3}) {
    SCOPED_TRACE("n=" + std::to_string(n));
    check_cast(cast_inputs(n, static_cast<uint32_t>(n)), 0, 0);
  }
}

TEST_F(CudaCast, MisalignedViewsTakeTheScalarPath) {
  for (size_t n : {size_t{1}, size_t{13}, size_t{4099}}) {
    const std::vector<float> inputs = cast_inputs(n, 7);
    for (auto [in_offset, out_offset] : {std::pair<size_t, size_t>{1, 0}, {0, 3}, {4, 4}, {3, 1}}) {
      SCOPED_TRACE("n=" + std::to_string(n) + " in_offset=" + std::to_string(in_offset) +
                   " out_offset=" + std::to_string(out_offset));
      check_cast(inputs, in_offset, out_offset);
    }
  }
}

TEST_F(CudaCast, InfinitiesAndNaN) {
  const std::vector<float> in_host = {from_bits(0x7F800000u), from_bits(0xFF800000u), from_bits(0x7FC00000u),
                                      from_bits(0x7F800001u)};  // +inf, -inf, quiet NaN, NaN with low payload only
  DeviceBuffer<float> in(in_host);
  DeviceBuffer<uint16_t> out(in_host.size());
  cuda::f32_to_bf16(reinterpret_cast<__nv_bfloat16*>(out.get()), in.get(), 4, nullptr);
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<uint16_t> got = out.download();
  EXPECT_EQ(got[0], 0x7F80u);
  EXPECT_EQ(got[1], 0xFF80u);
  for (int i : {2, 3}) {
    // NaN: all-ones exponent, nonzero mantissa (truncating 0x7F800001 would wrongly give infinity).
    EXPECT_TRUE((got[i] & 0x7F80u) == 0x7F80u && (got[i] & 0x7Fu) != 0)
        << "element " << i << ": 0x" << std::hex << got[i];
  }
}

// These run with or without a GPU: the entry point checks its arguments before any CUDA call.
TEST(CudaCastArguments, AreCheckedBeforeAnyDeviceWork) {
  // Stand-in device addresses, never dereferenced.
  auto* out = reinterpret_cast<__nv_bfloat16*>(uintptr_t{1024});
  auto* in = reinterpret_cast<const float*>(uintptr_t{4096});
  EXPECT_THROW(cuda::f32_to_bf16(out, in, -1, nullptr), std::invalid_argument);
  EXPECT_THROW(cuda::f32_to_bf16(nullptr, in, 8, nullptr), std::invalid_argument);
  EXPECT_THROW(cuda::f32_to_bf16(out, nullptr, 8, nullptr), std::invalid_argument);
  // out [1024, 1024 + 2 * 2000) overlaps in [4096, 4096 + 4 * 2000).
  try {
    cuda::f32_to_bf16(out, in, 2000, nullptr);
    ADD_FAILURE() << "overlapping in and out accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("f32_to_bf16"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(cuda::f32_to_bf16(out, in, 0, nullptr));
}

}  // namespace
}  // namespace dytrain::test
