// The Hugging Face style config.json written beside model.safetensors, so that PyTorch tools (the reference in
// ../shared/bench/torch_llama_dyt.py, transformers' LlamaConfig) can rebuild the model. The standard LLaMA keys come
// first, then the DyT fields dytrain adds: norm, dyt_alpha_attn, dyt_alpha_ffn, dyt_alpha_final, dyt_bias,
// embed_scale. Floats are printed in their shortest round-trip form, so 1e-05 and 0.8 read back bit-exact.
#pragma once
#include <string>

#include "trainer/config/config.h"

namespace dytrain {

// The config.json text (one key per line). Throws std::invalid_argument for a non-finite float, which JSON cannot hold.
std::string hf_config_json(const ModelConfig& m);

}  // namespace dytrain
