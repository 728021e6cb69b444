// Rotary position embedding on the GPU, rotate_half convention exactly as kernels/cpu/rope.h (dimension i of a head
// pairs with i + D/2): for i < D/2, with c = cos[t, i] and s = sin[t, i],
//   out[i] = x[i] c - x[i + D/2] s,   out[i + D/2] = x[i + D/2] c + x[i] s.
// The angle tables cos, sin (T, D/2) are fp32, computed on the host by cpu::rope_tables (in double, rounded once) and
// uploaded, so both backends rotate by the same numbers; they must hold at least T positions.
//
// q and k are column slices of the fused qkv GEMM's output rows, so x is addressed with a row stride: element
// (b, t, h, i) sits at x[(b * T + t) * ld + h * D + i], ld >= H * D, and the columns of a row outside the slice are
// neither read nor written. The rotation is done in place (bf16 in, fp32 math, bf16 out). Its backward is the rotation
// by the negative angle (the transpose), also in place: unlike the CPU op's backward, which accumulates into dinp, the
// result is written over dx, since the gradient of q or k has no other contribution.
//
// All pointers are device pointers. Work is queued on `stream`; nothing synchronizes the host. Bad arguments throw
// std::invalid_argument before anything is queued; CUDA failures throw std::runtime_error with a hint (check.h).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace dytrain::cuda {

// x (B, T, H, D) with row stride ld, in place: x = rope(x). cos, sin (T, D/2). D even.
void rope_forward(__nv_bfloat16* x, const float* cos, const float* sin, int B, int T, int H, int D, int64_t ld,
                  cudaStream_t stream);

// dx (B, T, H, D) with row stride ld, in place: dx = rope^T(dx), the rotation by the negative angle.
void rope_backward(__nv_bfloat16* dx, const float* cos, const float* sin, int B, int T, int H, int D, int64_t ld,
                   cudaStream_t stream);

}  // namespace dytrain::cuda
