// The SwiGLU gate of LLaMA's FFN on the GPU: h = silu(gate) * up, silu(g) = g * sigmoid(g), with fp32 math on bf16
// activations. gate and up are the two halves of one fused gate/up GEMM's output rows, so the kernels read them
// there instead of taking two tensors. The CPU op (kernels/cpu/swiglu.h) is the reference these are tested against.
//
// All pointers are device pointers. Unlike the CPU op's backward, which accumulates, dgate_up is written (=): it is
// the input gradient of the gate/up GEMM and nothing else feeds it. Work is queued on `stream`; nothing synchronizes
// the host. Bad arguments (shapes, null or overlapping tensors) throw std::invalid_argument before anything is queued;
// CUDA failures throw std::runtime_error with a hint (check.h).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace dytrain::cuda {

// h (N, F) = silu(gate) * up, where gate_up (N, 2F) holds gate in columns [0, F) and up in [F, 2F).
// h may not overlap gate_up.
void swiglu_forward(__nv_bfloat16* h, const __nv_bfloat16* gate_up, int64_t N, int F, cudaStream_t stream);

// dgate_up (N, 2F) written, both halves: dgate = dh * up * s * (1 + gate * (1 - s)), s = sigmoid(gate), and
// dup = dh * silu(gate). dh (N, F); gate_up (N, 2F) is the forward's input. dgate_up may overlap neither.
void swiglu_backward(__nv_bfloat16* dgate_up, const __nv_bfloat16* dh, const __nv_bfloat16* gate_up, int64_t N, int F,
                     cudaStream_t stream);

}  // namespace dytrain::cuda
