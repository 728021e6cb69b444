// dytrain_bench_norms: effective bandwidth of the CUDA DyT and RMSNorm kernels (kernels/cuda) next to a
// device-to-device copy measured in the same run, the memory-bound ceiling they are held to.
//
// Bytes counted per element (bf16, ideal traffic, as in ../shared/bench/torch_dyt_kernel_bench.py):
//   copy: read + write                         4
//   fwd: read x, write y                       4   (RMSNorm's rstd, 4 bytes per row, is not counted)
//   fwd+bwd: 4 + read x, dy, write dx          10
//   residual fwd: read residual, branch, write residual, y                   8
//   residual fwd+bwd: 8 + read x, dy, dresidual, write dresidual            16
// Parameter-gradient partials and the second-stage reductions are not counted but are inside the timed region.
// Targets: DyT fwd >= 90% and fwd+bwd >= 80% of copy bandwidth.
//
// PyTorch on the same H100 at 16384 x 4096 (../shared/bench/torch_dyt_kernel_bench.py, same byte counts):
//   copy 2922 GB/s; torch.compile DyT fwd 1639, fwd+bwd 559; eager RMSNorm fwd 2064, fwd+bwd 1153.
//
// Method: CUDA events around 8 back-to-back calls per sample, median of 15 samples after a warm-up. Calls rotate
// over enough buffer sets (at least 3x the L2 size in all) that no call finds its inputs in L2, as in training,
// where each norm's input was written long before. fwd+bwd runs the backward right after its forward, as the PyTorch
// script does, so at 16384 x 768 part of x may still be in L2 when the backward re-reads it. Moments are off (they are
// gathered at log steps only).
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cuda/check.h"
#include "kernels/cuda/dyt.cuh"
#include "kernels/cuda/rmsnorm.cuh"

namespace {

using bf16 = __nv_bfloat16;

constexpr int kSamples = 15;
constexpr int kCallsPerSample = 8;
constexpr double kTorchCopyGBs = 2922, kTorchDytFwdGBs = 1639, kTorchDytFwdBwdGBs = 559, kTorchRmsFwdGBs = 2064,
                 kTorchRmsFwdBwdGBs = 1153;

// A device allocation freed at scope exit.
class DeviceMemory {
 public:
  explicit DeviceMemory(size_t bytes) : bytes_(bytes) {
    DYTRAIN_CUDA_CHECK(cudaMalloc(&ptr_, std::max<size_t>(bytes, 16)));
  }
  ~DeviceMemory() { cudaFree(ptr_); }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_;
};

// Pseudo-random bf16 values in [-2, 2): benchmark data, any values without NaN or inf would do.
std::vector<uint16_t> random_bf16_bits(size_t n) {
  std::vector<uint16_t> bits(n);
  uint64_t state = 0x9e3779b97f4a7c15ull;
  for (auto& b : bits) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    const float f = static_cast<float>(state >> 40) * 0x1p-22f - 2.0f;
    uint32_t u;
    std::memcpy(&u, &f, sizeof(u));
    b = static_cast<uint16_t>(u >> 16);
  }
  return bits;
}

// The activations of one call.
struct ActivationSet {
  DeviceMemory x, y, dy, dx, branch, rstd;
  ActivationSet(int64_t N, int C, const std::vector<uint16_t>& fill)
      : x(fill.size() * 2),
        y(fill.size() * 2),
        dy(fill.size() * 2),
        dx(fill.size() * 2),
        branch(fill.size() * 2),
        rstd(static_cast<size_t>(N) * sizeof(float)) {
    for (const DeviceMemory* m : {&x, &y, &dy, &dx, &branch}) {
      DYTRAIN_CUDA_CHECK(cudaMemcpy(m->as<void>(), fill.data(), m->bytes(), cudaMemcpyHostToDevice));
    }
  }
};

// Median seconds per call of fn(set), rotating over the sets.
double time_per_call_s(const std::function<void(int)>& fn, int sets, cudaStream_t stream) {
  for (int i = 0; i < 2 * sets; ++i) fn(i % sets);
  cudaEvent_t start, stop;
  DYTRAIN_CUDA_CHECK(cudaEventCreate(&start));
  DYTRAIN_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<float> ms(kSamples);
  int call = 0;
  for (float& sample : ms) {
    DYTRAIN_CUDA_CHECK(cudaEventRecord(start, stream));
    for (int i = 0; i < kCallsPerSample; ++i) fn(call++ % sets);
    DYTRAIN_CUDA_CHECK(cudaEventRecord(stop, stream));
    DYTRAIN_CUDA_CHECK(cudaEventSynchronize(stop));
    DYTRAIN_CUDA_CHECK(cudaEventElapsedTime(&sample, start, stop));
  }
  DYTRAIN_CUDA_CHECK(cudaEventDestroy(start));
  DYTRAIN_CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(ms.begin(), ms.end());
  return ms[kSamples / 2] * 1e-3 / kCallsPerSample;
}

struct Result {
  std::string name;   // JSON key stem
  std::string label;  // table label
  int bytes_per_elem;
  double time_s;
  std::string target;  // printed beside the figure
};

void bench_shape(int64_t N, int C, const cudaDeviceProp& prop, cudaStream_t stream) {
  using namespace dytrain;
  const size_t n = static_cast<size_t>(N) * C;
  const size_t set_bytes = 5 * n * sizeof(bf16);
  const int sets =
      static_cast<int>(std::max<size_t>(1, (3 * static_cast<size_t>(prop.l2CacheSize) + set_bytes - 1) / set_bytes));
  const std::vector<uint16_t> fill = random_bf16_bits(n);
  std::vector<std::unique_ptr<ActivationSet>> act;
  for (int s = 0; s < sets; ++s) act.push_back(std::make_unique<ActivationSet>(N, C, fill));

  const std::vector<float> ones(C, 1.0f), zeros(C, 0.0f);
  DeviceMemory alpha(sizeof(float)), dalpha(sizeof(float)), gamma(C * sizeof(float)), beta(C * sizeof(float)),
      dgamma(C * sizeof(float)), dbeta(C * sizeof(float));
  const float alpha_value = 0.5f;
  DYTRAIN_CUDA_CHECK(cudaMemcpy(alpha.as<void>(), &alpha_value, sizeof(float), cudaMemcpyHostToDevice));
  DYTRAIN_CUDA_CHECK(cudaMemcpy(gamma.as<void>(), ones.data(), C * sizeof(float), cudaMemcpyHostToDevice));
  DYTRAIN_CUDA_CHECK(cudaMemcpy(beta.as<void>(), zeros.data(), C * sizeof(float), cudaMemcpyHostToDevice));
  DYTRAIN_CUDA_CHECK(cudaMemset(dalpha.as<void>(), 0, sizeof(float)));
  DYTRAIN_CUDA_CHECK(cudaMemset(dgamma.as<void>(), 0, C * sizeof(float)));
  DYTRAIN_CUDA_CHECK(cudaMemset(dbeta.as<void>(), 0, C * sizeof(float)));
  DeviceMemory workspace(
      std::max(cuda::dyt_backward_workspace_bytes(N, C), cuda::rmsnorm_backward_workspace_bytes(N, C)));
  const float eps = 1e-6f;
  void* ws = workspace.as<void>();
  const size_t ws_bytes = workspace.bytes();
  float* g = gamma.as<float>();
  float* dg = dgamma.as<float>();

  auto dyt_fwd = [&](int s) {
    cuda::dyt_forward(act[s]->y.as<bf16>(), act[s]->x.as<bf16>(), alpha.as<float>(), g, beta.as<float>(), N, C, nullptr,
                      nullptr, 0, stream);
  };
  auto dyt_bwd = [&](int s) {
    cuda::dyt_backward(act[s]->dx.as<bf16>(), dalpha.as<float>(), dg, dbeta.as<float>(), act[s]->dy.as<bf16>(),
                       act[s]->x.as<bf16>(), alpha.as<float>(), g, N, C, ws, ws_bytes, stream);
  };
  auto dyt_res_fwd = [&](int s) {
    cuda::dyt_residual_forward(act[s]->y.as<bf16>(), act[s]->x.as<bf16>(), act[s]->branch.as<bf16>(), alpha.as<float>(),
                               g, beta.as<float>(), N, C, nullptr, nullptr, 0, stream);
  };
  auto dyt_res_bwd = [&](int s) {
    cuda::dyt_residual_backward(act[s]->dx.as<bf16>(), dalpha.as<float>(), dg, dbeta.as<float>(), act[s]->dy.as<bf16>(),
                                act[s]->x.as<bf16>(), alpha.as<float>(), g, N, C, ws, ws_bytes, stream);
  };
  auto rms_fwd = [&](int s) {
    cuda::rmsnorm_forward(act[s]->y.as<bf16>(), act[s]->rstd.as<float>(), act[s]->x.as<bf16>(), g, eps, N, C, nullptr,
                          nullptr, 0, stream);
  };
  auto rms_bwd = [&](int s) {
    cuda::rmsnorm_backward(act[s]->dx.as<bf16>(), dg, act[s]->dy.as<bf16>(), act[s]->x.as<bf16>(), g,
                           act[s]->rstd.as<float>(), N, C, ws, ws_bytes, stream);
  };
  auto rms_res_fwd = [&](int s) {
    cuda::rmsnorm_residual_forward(act[s]->y.as<bf16>(), act[s]->rstd.as<float>(), act[s]->x.as<bf16>(),
                                   act[s]->branch.as<bf16>(), g, eps, N, C, nullptr, nullptr, 0, stream);
  };
  auto rms_res_bwd = [&](int s) {
    cuda::rmsnorm_residual_backward(act[s]->dx.as<bf16>(), dg, act[s]->dy.as<bf16>(), act[s]->x.as<bf16>(), g,
                                    act[s]->rstd.as<float>(), N, C, ws, ws_bytes, stream);
  };
  auto copy = [&](int s) {
    DYTRAIN_CUDA_CHECK(cudaMemcpyAsync(act[s]->y.as<void>(), act[s]->x.as<void>(), n * sizeof(bf16),
                                       cudaMemcpyDeviceToDevice, stream));
  };
  auto both = [](auto f, auto b) {
    return [f, b](int s) {
      f(s);
      b(s);
    };
  };

  const bool torch_shape = N == 16384 && C == 4096;
  auto torch = [&](double gbs) {
    return torch_shape ? "PyTorch " + std::to_string(static_cast<int>(gbs)) + " GB/s" : std::string();
  };
  std::vector<Result> results = {
      {"copy", "copy (device to device)", 4, time_per_call_s(copy, sets, stream), torch(kTorchCopyGBs)},
      {"dyt_fwd", "dyt fwd", 4, time_per_call_s(dyt_fwd, sets, stream), ">= 90% " + torch(kTorchDytFwdGBs)},
      {"dyt_fwdbwd", "dyt fwd+bwd", 10, time_per_call_s(both(dyt_fwd, dyt_bwd), sets, stream),
       ">= 80% " + torch(kTorchDytFwdBwdGBs)},
      {"rms_fwd", "rmsnorm fwd", 4, time_per_call_s(rms_fwd, sets, stream), torch(kTorchRmsFwdGBs)},
      {"rms_fwdbwd", "rmsnorm fwd+bwd", 10, time_per_call_s(both(rms_fwd, rms_bwd), sets, stream),
       torch(kTorchRmsFwdBwdGBs)},
      {"dyt_res_fwd", "dyt residual fwd", 8, time_per_call_s(dyt_res_fwd, sets, stream), ""},
      {"dyt_res_fwdbwd", "dyt residual fwd+bwd", 16, time_per_call_s(both(dyt_res_fwd, dyt_res_bwd), sets, stream), ""},
      {"rms_res_fwd", "rmsnorm residual fwd", 8, time_per_call_s(rms_res_fwd, sets, stream), ""},
      {"rms_res_fwdbwd", "rmsnorm residual fwd+bwd", 16, time_per_call_s(both(rms_res_fwd, rms_res_bwd), sets, stream),
       ""},
  };
  DYTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream));

  const double copy_gbs = 4.0 * n / results[0].time_s / 1e9;
  std::string json = "{\"bench\":\"norms\",\"device\":\"" + std::string(prop.name) + "\",\"N\":" + std::to_string(N) +
                     ",\"C\":" + std::to_string(C) + ",\"buffer_sets\":" + std::to_string(sets);
  for (const Result& r : results) {
    const double gbs = static_cast<double>(r.bytes_per_elem) * n / r.time_s / 1e9;
    const double pct = 100.0 * gbs / copy_gbs;
    std::printf("%6lld x %-5d %-26s %3d %10.1f %8.0f %7.1f%%   %s\n", static_cast<long long>(N), C, r.label.c_str(),
                r.bytes_per_elem, r.time_s * 1e6, gbs, pct, r.target.c_str());
    char fields[160];
    std::snprintf(fields, sizeof(fields), ",\"%s_us\":%.2f,\"%s_GBs\":%.1f,\"%s_pct_copy\":%.1f", r.name.c_str(),
                  r.time_s * 1e6, r.name.c_str(), gbs, r.name.c_str(), pct);
    json += fields;
  }
  std::printf("%s}\n\n", json.c_str());
  std::fflush(stdout);
}

}  // namespace

int main() {
  try {
    int device = 0;
    DYTRAIN_CUDA_CHECK(cudaGetDevice(&device));
    cudaDeviceProp prop{};
    DYTRAIN_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    cudaStream_t stream;
    DYTRAIN_CUDA_CHECK(cudaStreamCreate(&stream));
    std::printf("dytrain_bench_norms: %s, %d SMs, L2 %d MB; bf16; median of %d samples of %d calls\n", prop.name,
                prop.multiProcessorCount, prop.l2CacheSize >> 20, kSamples, kCallsPerSample);
    std::printf(
        "targets: dyt fwd >= 90%% and fwd+bwd >= 80%% of copy. PyTorch at 16384 x 4096 on an H100: copy %.0f, "
        "torch.compile dyt fwd %.0f, fwd+bwd %.0f; eager rmsnorm fwd %.0f, fwd+bwd %.0f GB/s\n\n",
        kTorchCopyGBs, kTorchDytFwdGBs, kTorchDytFwdBwdGBs, kTorchRmsFwdGBs, kTorchRmsFwdBwdGBs);
    std::printf("%-14s %-26s %3s %10s %8s %8s   %s\n", "N x C", "kernel", "B/e", "us/call", "GB/s", "%copy", "target");
    for (auto [N, C] : {std::pair<int64_t, int>{16384, 768}, {16384, 2048}, {16384, 4096}, {8192, 8192}}) {
      bench_shape(N, C, prop, stream);
    }
    DYTRAIN_CUDA_CHECK(cudaStreamDestroy(stream));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dytrain_bench_norms: %s\n", e.what());
    return 1;
  }
  return 0;
}
