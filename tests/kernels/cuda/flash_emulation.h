// The block loops of the flash-attention kernels (kernels/cuda/flash_attention.cu) run on the host in fp32, with
// the kernels' tile constants, tile ranges, masks and softmax steps (kernels/cuda/flash_attention_tiles.h): per
// (b, h, query tile) the forward's walk over key tiles with its online-softmax rescaling; per (b, kv head, key tile)
// the dK, dV walk over the group's query heads and query tiles; per (b, h, query tile) the dQ walk over key tiles.
// Tiles are zero-filled past T as the kernels' loads are; the lane pairs' two half-row partial maxima and sums are
// combined as the kernels' shuffles combine them. What the host cannot mirror is the MMAs' summation order and the
// bf16 rounding of P and dS before their MMAs: here every product is an fp32 dot product in index order and nothing
// is rounded to bf16, so a comparison against the naive attention checks the tiling and masking logic, not bf16
// numerics.
//
// Layouts are the kernels': q, k, v and dq, dk, dv token rows ld apart (column slices of one buffer work), out and
// dout (B, T, Hq, D) dense, lse (B, Hq, T). Outputs are written (=) for rows < T only.
#pragma once
#include <cstdint>

namespace dytrain::test {

void flash_forward_emulated(float* out, float* lse, const float* q, const float* k, const float* v, int64_t ld, int B,
                            int T, int Hq, int Hkv, int D);

void flash_backward_emulated(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse,
                             const float* q, const float* k, const float* v, int64_t ld, int B, int T, int Hq, int Hkv,
                             int D);

}  // namespace dytrain::test
