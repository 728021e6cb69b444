// AdamW on the GPU: one launch updates every parameter (or one ZeRO-1 range of them) with its group's settings, the
// fp32 master weights, both fp32 moments, and the bf16 copy of the weights that the GEMMs read. The update is
// kernels/cpu/adamw.h's, evaluated in the same operation order with the same roundings, so the two agree to fp32
// rounding (bit for bit when the CPU op is compiled without FMA contraction, the default on x86-64).
//
// Segments. The flat range [0, n) is described by a host list of segments, runs of elements that share one parameter
// group's settings (lr, beta2, weight decay), sorted, disjoint and covering [0, n). The entry point validates the list,
// computes each segment's bias correction 1 - beta2^t on the host in double (as the CPU op does), and uploads the
// table into a small caller-owned device workspace on `stream` before the launch. A host list rather than a device
// array: the lr changes every step, so the table is rebuilt every step anyway, and validation and the double-precision
// bias corrections need it on the host. The copy is stream-ordered, so the workspace may be reused by the next step on
// the same stream; the host list may be changed as soon as the call returns.
//
// All tensor pointers are device pointers; param, m, v and grad (n) are fp32. Work is queued on `stream`; nothing
// synchronizes the host. Bad arguments throw std::invalid_argument before anything is queued; CUDA failures throw
// std::runtime_error with a hint (check.h).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace dytrain::cuda {

struct AdamWSegment {  // a run [begin, end) of the flat range that shares one parameter group's settings
  int64_t begin = 0;
  int64_t end = 0;
  float lr = 0.0f;  // this step's lr: the group's peak lr times the schedule factor
  float beta2 = 0.95f;
  float weight_decay = 0.0f;
};

// Throws std::invalid_argument naming the first bad segment unless the segments are non-empty runs, sorted, disjoint
// and covering [0, n) exactly (segment 0 begins at 0, each begins where the previous ends, the last ends at n; no
// segments when n == 0), each with a finite lr and weight decay and beta2 in [0, 1).
void validate_adamw_segments(const std::vector<AdamWSegment>& segments, int64_t n);

// Device workspace adamw_update needs for a list of n_segments segments (16-byte aligned).
size_t adamw_workspace_bytes(size_t n_segments);

// One AdamW step of kernels/cpu/adamw.h over param (n) fp32 master weights and m, v (n) moments, from grad (n):
// g = grad * grad_scale, bias corrections from the 1-based step t, decoupled weight decay, each element with its
// segment's lr, beta2 and weight decay. param_bf16 (n): rewritten as bf16(new param), or nullptr for none.
void adamw_update(float* param, __nv_bfloat16* param_bf16, float* m, float* v, const float* grad, int64_t n,
                  const std::vector<AdamWSegment>& segments, float beta1, float eps, float grad_scale, int64_t t,
                  void* workspace, size_t workspace_bytes, cudaStream_t stream);

}  // namespace dytrain::cuda
