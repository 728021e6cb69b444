// AdamW kernel (adamw.cuh): kernel -> launcher -> entry point, plus the host-side segment validation.
//
// One thread per element in a grid-stride loop, scalar fp32 accesses: the parameter arrays of a ZeRO-1 range start at
// any element, and coalesced 4-byte accesses already stream at memory speed. Each element finds its segment by a
// binary search over the uploaded table (32 bytes a segment, tens to hundreds of them, held in L1; the threads of a
// warp almost always walk the same path); the loads of param, grad, m and v do not depend on it, so its latency hides
// behind theirs.
//
// Rounding. The update is written with the _rn intrinsics, one per operation of the CPU op, in its order: nvcc would
// otherwise contract a * b + c into an FMA with one rounding fewer, and the results would drift from the CPU
// reference by an ulp here and there. The bias corrections are the CPU op's expression, evaluated on the host in
// double and rounded to float once.
#include "kernels/cuda/adamw.cuh"

#include <algorithm>
#include <climits>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/check.h"
#include "kernels/cuda/norm_rows.cuh"

namespace dytrain::cuda {
namespace {

using detail::bf16;

constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = 1 << 14;  // 4M threads; larger ranges are strided over

// The kernel's copy of an AdamWSegment, with its bias correction.
struct alignas(16) PackedSegment {
  int64_t begin;
  int64_t end;
  float lr;
  float beta2;
  float weight_decay;
  float bc2;  // 1 - beta2^t
};
static_assert(sizeof(PackedSegment) == 32, "PackedSegment is uploaded as raw bytes");

float bias_correction(float beta, int64_t t) {
  return static_cast<float>(1.0 - std::pow(static_cast<double>(beta), static_cast<double>(t)));
}

// param, m, v, grad, param_bf16 (n); segments (n_segments), sorted and covering [0, n).
__global__ void __launch_bounds__(kThreads)
    adamw_kernel(float* __restrict__ param, bf16* __restrict__ param_bf16, float* __restrict__ m, float* __restrict__ v,
                 const float* __restrict__ grad, int64_t n, const PackedSegment* __restrict__ segments, int n_segments,
                 float beta1, float eps, float grad_scale, float bc1) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride) {
    const float p = param[i];
    const float g0 = grad[i];
    const float m0 = m[i];
    const float v0 = v[i];
    // The last segment that begins at or before i; segments[0].begin == 0 <= i keeps lo valid throughout.
    int lo = 0;
    int hi = n_segments - 1;
    while (lo < hi) {
      const int mid = lo + (hi - lo + 1) / 2;
      if (segments[mid].begin <= i) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    const PackedSegment s = segments[lo];

    const float g = __fmul_rn(g0, grad_scale);
    const float mi = __fadd_rn(__fmul_rn(beta1, m0), __fmul_rn(__fsub_rn(1.0f, beta1), g));
    const float vi = __fadd_rn(__fmul_rn(s.beta2, v0), __fmul_rn(__fmul_rn(__fsub_rn(1.0f, s.beta2), g), g));
    const float update = __fdiv_rn(__fdiv_rn(mi, bc1), __fadd_rn(__fsqrt_rn(__fdiv_rn(vi, s.bc2)), eps));
    const float p_new = __fsub_rn(p, __fmul_rn(s.lr, __fadd_rn(update, __fmul_rn(s.weight_decay, p))));
    m[i] = mi;
    v[i] = vi;
    param[i] = p_new;
    if (param_bf16 != nullptr) param_bf16[i] = __float2bfloat16_rn(p_new);
  }
}

void launch_adamw(float* param, bf16* param_bf16, float* m, float* v, const float* grad, int64_t n,
                  const PackedSegment* segments, int n_segments, float beta1, float eps, float grad_scale, float bc1,
                  cudaStream_t stream) {
  const int grid = static_cast<int>(std::min(detail::ceil_div(n, kThreads), kMaxGrid));
  adamw_kernel<<<grid, kThreads, 0, stream>>>(param, param_bf16, m, v, grad, n, segments, n_segments, beta1, eps,
                                              grad_scale, bc1);
  DYTRAIN_CUDA_CHECK(cudaGetLastError());
}

std::string segment_text(const std::vector<AdamWSegment>& segments, size_t k) {
  return "segment " + std::to_string(k) + " [" + std::to_string(segments[k].begin) + ", " +
         std::to_string(segments[k].end) + ")";
}

void check_finite(const char* op, const char* name, float value, bool ok) {
  if (!std::isfinite(value) || !ok) {
    throw std::invalid_argument(detail::op_name(op) + ": " + name + " = " + std::to_string(value) +
                                " is out of range; check the optimizer settings");
  }
}

}  // namespace

void validate_adamw_segments(const std::vector<AdamWSegment>& segments, int64_t n) {
  const std::string where = "dytrain::cuda AdamW segments (n = " + std::to_string(n) + "): ";
  const std::string fix =
      "; give one segment per run of parameters with the same group settings, in order, "
      "without gaps, covering the whole flat range";
  if (n < 0) throw std::invalid_argument(where + "the number of elements is negative");
  if (segments.size() > static_cast<size_t>(INT_MAX)) {
    throw std::invalid_argument(where + std::to_string(segments.size()) + " segments are more than the kernel indexes");
  }
  if (n > 0 && segments.empty()) throw std::invalid_argument(where + "no segments" + fix);
  int64_t expected_begin = 0;
  for (size_t k = 0; k < segments.size(); ++k) {
    const AdamWSegment& s = segments[k];
    if (s.begin != expected_begin) {
      throw std::invalid_argument(where + segment_text(segments, k) + " begins at " + std::to_string(s.begin) +
                                  ", not at " + std::to_string(expected_begin) +
                                  (k == 0 ? " (the range begins at 0)" : " (where the previous segment ends)") + fix);
    }
    if (s.end <= s.begin) {
      throw std::invalid_argument(where + segment_text(segments, k) + " is empty or reversed" + fix +
                                  " (leave out groups with no elements in this range)");
    }
    if (s.end > n) {
      throw std::invalid_argument(where + segment_text(segments, k) + " ends past n" + fix);
    }
    if (!std::isfinite(s.lr) || !std::isfinite(s.weight_decay) || !(s.beta2 >= 0.0f && s.beta2 < 1.0f)) {
      throw std::invalid_argument(where + segment_text(segments, k) + " has lr " + std::to_string(s.lr) +
                                  ", weight_decay " + std::to_string(s.weight_decay) + ", beta2 " +
                                  std::to_string(s.beta2) + ": need a finite lr and weight decay and beta2 in [0, 1)");
    }
    expected_begin = s.end;
  }
  if (expected_begin != n) {
    throw std::invalid_argument(where + "the segments end at " + std::to_string(expected_begin) + ", not at n" + fix);
  }
}

size_t adamw_workspace_bytes(size_t n_segments) { return n_segments * sizeof(PackedSegment); }

void adamw_update(float* param, bf16* param_bf16, float* m, float* v, const float* grad, int64_t n,
                  const std::vector<AdamWSegment>& segments, float beta1, float eps, float grad_scale, int64_t t,
                  void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  const char* op = "adamw_update";
  detail::check_not_null(op, "param", param);
  detail::check_not_null(op, "m", m);
  detail::check_not_null(op, "v", v);
  detail::check_not_null(op, "grad", grad);
  check_finite(op, "beta1", beta1, beta1 >= 0.0f && beta1 < 1.0f);
  check_finite(op, "eps", eps, eps >= 0.0f);
  check_finite(op, "grad_scale", grad_scale, true);
  if (t < 1) {
    throw std::invalid_argument(detail::op_name(op) + ": step t = " + std::to_string(t) +
                                " is not 1-based; pass the number of updates including this one");
  }
  validate_adamw_segments(segments, n);
  const size_t needed_bytes = adamw_workspace_bytes(segments.size());
  if (needed_bytes > 0 &&
      (workspace == nullptr || workspace_bytes < needed_bytes || reinterpret_cast<uintptr_t>(workspace) % 16 != 0)) {
    throw std::invalid_argument(detail::op_name(op) + ": the workspace must be 16-byte aligned and hold " +
                                std::to_string(needed_bytes) + " bytes (got " + std::to_string(workspace_bytes) +
                                "); size it with dytrain::cuda::adamw_workspace_bytes(segments.size())");
  }
  if (n == 0) return;

  std::vector<PackedSegment> packed(segments.size());
  for (size_t k = 0; k < segments.size(); ++k) {
    const AdamWSegment& s = segments[k];
    packed[k] = {s.begin, s.end, s.lr, s.beta2, s.weight_decay, bias_correction(s.beta2, t)};
  }
  // From pageable memory the copy is staged before cudaMemcpyAsync returns, so `packed` may go out of scope.
  DYTRAIN_CUDA_CHECK(cudaMemcpyAsync(workspace, packed.data(), needed_bytes, cudaMemcpyHostToDevice, stream));
  launch_adamw(param, param_bf16, m, v, grad, n, static_cast<const PackedSegment*>(workspace),
               static_cast<int>(segments.size()), beta1, eps, grad_scale, bias_correction(beta1, t), stream);
}

}  // namespace dytrain::cuda
