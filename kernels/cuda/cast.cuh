// fp32 -> bf16 conversion on the GPU: the bf16 copies of the fp32 master weights that the GEMMs read, refreshed after
// each optimizer step. Round to nearest even (IEEE), so a copy is the same bits the host's rounding would give; NaN
// stays NaN and values past the bf16 range become infinities, as IEEE rounding says.
//
// All pointers are device pointers. Work is queued on `stream`; nothing synchronizes the host. Bad arguments throw
// std::invalid_argument before anything is queued; CUDA failures throw std::runtime_error with a hint (check.h).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace dytrain::cuda {

// out (n) = bf16(in (n)), round to nearest even. in and out must not overlap.
void f32_to_bf16(__nv_bfloat16* out, const float* in, int64_t n, cudaStream_t stream);

}  // namespace dytrain::cuda
