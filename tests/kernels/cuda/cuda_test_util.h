// Helpers shared by the CUDA kernel tests: the fixture that skips without a GPU, device buffers, bf16 on the host,
// and element-wise comparisons that name the first bad index.
//
// bf16 on the host is written here (round to nearest even on the bit pattern) rather than taken from cuda_bf16.h, so
// the reference does not share code with what it checks. Inputs are drawn as floats and rounded to bf16; the CPU op
// then runs in fp32 on exactly the values the kernel reads.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/check.h"

namespace dytrain::test {

// Every CUDA test derives from this fixture, so none can forget to skip on a machine without a GPU.
class CudaTest : public testing::Test {
 protected:
  void SetUp() override {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess || count == 0) {
      GTEST_SKIP() << "no CUDA device (cudaGetDeviceCount: "
                   << (status != cudaSuccess ? cudaGetErrorName(status) : "0 devices") << ")";
    }
  }
};

inline uint16_t bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even (inputs here are finite)
  return static_cast<uint16_t>(u >> 16);
}

inline float bf16_value(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

inline float round_bf16(float f) { return bf16_value(bf16_bits(f)); }

// The spacing of bf16 numbers at |v| (8 significant bits); normal range only, as in these tests.
inline double bf16_ulp(double v) {
  int exponent = 0;
  std::frexp(std::fmax(std::fabs(v), 0x1p-126), &exponent);  // |v| in [2^(exponent-1), 2^exponent)
  return std::ldexp(1.0, exponent - 8);
}

// n values uniform in [lo, hi), rounded to bf16 (as floats).
inline std::vector<float> random_bf16_values(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = round_bf16(dist(gen));
  return v;
}

inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

// A device array of n elements, freed at scope exit.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    DYTRAIN_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ptr_), std::max<size_t>(n, 1) * sizeof(T)));
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return ptr_; }
  size_t size() const { return n_; }
  // cudaMemcpy from pageable memory may return before the DMA has landed; work queued on a non-blocking stream
  // (NCCL's, the engine's) would not wait for it, so the upload ends with a device-wide sync.
  void upload(const std::vector<T>& host) {
    DYTRAIN_CUDA_CHECK(cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
    DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    DYTRAIN_CUDA_CHECK(cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  T* ptr_ = nullptr;
  size_t n_;
};

// A bf16 device tensor holding the given (bf16-exact) floats.
class DeviceBf16 {
 public:
  explicit DeviceBf16(const std::vector<float>& values) : bits_(values.size()) {
    std::vector<uint16_t> host(values.size());
    for (size_t i = 0; i < values.size(); ++i) host[i] = bf16_bits(values[i]);
    bits_.upload(host);
  }
  __nv_bfloat16* get() const { return reinterpret_cast<__nv_bfloat16*>(bits_.get()); }
  std::vector<float> download() const {
    const std::vector<uint16_t> host = bits_.download();
    std::vector<float> values(host.size());
    for (size_t i = 0; i < host.size(); ++i) values[i] = bf16_value(host[i]);
    return values;
  }
  std::vector<uint16_t> download_bits() const { return bits_.download(); }

 private:
  DeviceBuffer<uint16_t> bits_;
};

// Shapes every kernel test runs over: the brief's N x C grid (C = 13 ragged, the others multiples of 8) plus shapes
// that reach each layout: several row groups per block with a column reduction in shared memory (C <= 2048),
// ragged C on the scalar path up to its limit, the two-slot path (C = 8192), and N large enough that blocks stride
// over several rows (grid < rows / rows_per_block).
struct Shape {
  int64_t N;
  int C;
};

inline std::vector<Shape> norm_test_shapes() {
  std::vector<Shape> shapes;
  for (int64_t N : {1, 7, 64, 1000}) {
    for (int C : {8, 13, 64, 768, 1000, 4096}) shapes.push_back({N, C});
  }
  for (Shape s : {Shape{64, 2048}, Shape{64, 2047}, Shape{7, 4095}, Shape{33, 8192}, Shape{600, 8192}, Shape{20000, 64},
                  Shape{4096, 768}, Shape{3000, 13}}) {
    shapes.push_back(s);
  }
  return shapes;
}

inline void PrintTo(const Shape& s, std::ostream* os) { *os << "N=" << s.N << " C=" << s.C; }

inline std::string shape_name(const testing::TestParamInfo<Shape>& info) {
  return "N" + std::to_string(info.param.N) + "_C" + std::to_string(info.param.C);
}

// Each |got[i] - want[i]| <= tol[i]; reports the first few failures by name and index.
inline void expect_each_near(const std::vector<float>& got, const std::vector<float>& want,
                             const std::vector<double>& tol, const std::string& name) {
  ASSERT_EQ(got.size(), want.size()) << name;
  int failures = 0;
  for (size_t i = 0; i < got.size() && failures < 5; ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(err <= tol[i])) {
      ADD_FAILURE() << name << "[" << i << "]: got " << got[i] << ", reference " << want[i] << ", |error| " << err
                    << " > tolerance " << tol[i];
      ++failures;
    }
  }
}

// The bf16-output rule of these tests: |got - want| <= 1 bf16 ulp of want + slack[i], where slack covers the fp32
// arithmetic (a few 1e-6 relative to the terms) that may move a value across a rounding boundary. The kernel rounds
// once (0.5 ulp); the remaining half ulp is margin for that fp32 difference and for want's own fp32 rounding.
inline void expect_bf16_near(const std::vector<float>& got, const std::vector<float>& want,
                             const std::vector<double>& slack, const std::string& name) {
  std::vector<double> tol(want.size());
  for (size_t i = 0; i < want.size(); ++i) tol[i] = bf16_ulp(want[i]) + slack[i];
  expect_each_near(got, want, tol, name);
}

}  // namespace dytrain::test
