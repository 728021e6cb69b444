// Token embedding followed by the learnable scalar LLaMA-DyT needs (init sqrt(dim), see ARCHITECTURE.md):
//   out = scale * table[token].
#pragma once
#include <cstdint>

namespace dytrain::cpu {

// out (N, C) = scale * table[tokens[n]]; table (V, C); tokens (N), each in [0, V): not checked here (no V is
// passed), so the caller validates token ids where they enter.
void embedding_forward(float* out, const int32_t* tokens, const float* table, float scale, int64_t N, int C);

// dtable (V, C) += scale * dout scattered by token; dscale (1) += sum(dout * table[tokens]) or nullptr to skip.
// Deterministic: rows are accumulated in token order, with no atomics.
void embedding_backward(float* dtable, float* dscale, const float* dout, const int32_t* tokens, const float* table,
                        float scale, int64_t N, int C);

}  // namespace dytrain::cpu
