// The LLaMA-DyT parameter layout of one tensor-parallel rank, shared by the CPU model (llama.h) and the CUDA model
// (cuda/llama_cuda.h): the parameter table in Hugging Face order, the offsets of every tensor in the flat buffer,
// this rank's share of the split dimensions, and the deterministic initialisation.
//
// Within a layer the tensors the CUDA model multiplies together are adjacent in the table: q, k, v (one fused qkv
// GEMM) and gate, up (one fused gate/up GEMM). With the 64-element alignment of the table (params.h) they are also
// contiguous in memory when their sizes are multiples of 64; fused_qkv() and fused_gate_up() say whether they are.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "trainer/config/config.h"
#include "trainer/model/params.h"

namespace dytrain {

// Offsets of one norm site's tensors in the flat buffer; -1 when absent (no alpha for RMSNorm, bias optional).
struct NormSiteOffsets {
  int64_t alpha = -1, weight = -1, bias = -1;
};

struct LayerOffsets {
  NormSiteOffsets attn_norm, ffn_norm;
  int64_t wq = -1, wk = -1, wv = -1, wo = -1, w_gate = -1, w_up = -1, w_down = -1;
};

// Called by a model's backward pass with the flat range [begin, end) of parameters whose gradients it has finished,
// so their data-parallel reduction can run behind the rest of the backward pass.
using GradsReady = std::function<void(int64_t begin, int64_t end)>;

// The norm sites in metrics order: layer 0 attn, layer 0 ffn, layer 1 attn, ..., final.
inline int n_norm_sites(const ModelConfig& cfg) { return 2 * cfg.n_layers + 1; }

// The init std of a matrix or the embedding under cfg.init (see ModelConfig::init): spec is the tensor's table entry.
double init_std_of(const ModelConfig& cfg, const ParamSpec& spec);

// The width at which init: scaled gives every fan-in-dim matrix exactly init_std: the official runs' 4096 (LLaMA 7B),
// where trunc_normal(0, 0.02) gives the embedding output (x sqrt(d)) std 1.3 and every matrix a gain of ~1.3.
inline constexpr double kInitReferenceWidth = 4096.0;

struct LlamaLayout {
  // Throws std::invalid_argument when tp does not divide the split dimensions.
  LlamaLayout(const ModelConfig& cfg, int tp_rank, int tp_size);

  // Matrices and the embedding ~ N(0, init_std), DyT gamma 1, beta 0, alpha its alpha0, embed_scale sqrt(dim), into
  // params (table.total()), gaps zero. Every layout draws the whole tensor's stream and keeps its block, so all
  // layouts start from the same numbers.
  void init(float* params, uint64_t seed) const;

  const NormSiteOffsets& site(int s) const;  // metrics order
  // Layer i's tensors (norms and matrices, alignment gaps included) as one flat range [begin, end): complete once the
  // backward pass has gone through layer i. The rest (embedding, final norm, LM head) lies outside every layer range.
  std::pair<int64_t, int64_t> layer_range(int i) const;
  bool fused_qkv() const;                    // wq, wk, wv contiguous
  bool fused_gate_up() const;                // w_gate, w_up contiguous

  ModelConfig cfg;
  int tp_rank = 0, tp_size = 1;
  // This rank's share of the split dimensions: query and kv heads, SwiGLU hidden size, vocabulary rows.
  int heads = 0, kv_heads = 0, hidden = 0;
  int64_t vocab_rows = 0, vocab_begin = 0;
  ParamTable table;
  int64_t embed = -1, embed_scale = -1, lm_head = -1;  // lm_head == embed when tied
  NormSiteOffsets final_norm;
  std::vector<LayerOffsets> layers;

 private:
  void add_norm_site(NormSiteOffsets* site, const std::string& prefix);
};

}  // namespace dytrain
