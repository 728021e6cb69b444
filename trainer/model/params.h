// The parameter table: every trainable tensor of the model, by its Hugging Face LLaMA name, laid out in one
// contiguous fp32 buffer. One buffer makes AdamW one loop, the grad norm one reduction, a data-parallel
// all-reduce one call, and a checkpoint a walk over the table.
//
// Each tensor starts at a multiple of kParamAlignElems elements (256 bytes of fp32, 128 of the bf16 copy the GPU keeps),
// so the GPU's 16-byte vector loads and cuBLASLt's fastest kernels, which want aligned operands, read any tensor of the
// flat buffers in place. The gaps hold zeros with zero gradients, which AdamW keeps at zero; total() counts them,
// parameters() does not.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dytrain {

// Optimizer parameter groups; each has its own weight-decay switch and optional lr / beta2 (OptimConfig).
enum class ParamGroup { matrices, embeddings, dyt_alpha, dyt_gamma_beta, embed_scale };
const char* to_string(ParamGroup g);

// How tensor parallelism splits a 2-D tensor across tp ranks (Megatron-LM): not at all (replicated: norms, scalars),
// by rows (dim 0: column-parallel linears' output features, vocabulary rows) or by columns (dim 1: row-parallel
// linears' input features). Rank r holds the r-th of tp equal blocks.
enum class TpSplit { replicated, rows, cols };

struct ParamSpec {
  std::string name;                 // HF name, e.g. model.layers.3.self_attn.q_proj.weight
  std::vector<int64_t> shape;       // this rank's block; linear weights (out_features, in_features); scalars [1]
  std::vector<int64_t> full_shape;  // the whole tensor, as checkpoints store it
  ParamGroup group;
  TpSplit split = TpSplit::replicated;
  int64_t offset = 0;               // first element in the flat buffer
  int64_t numel = 0;                // elements of this rank's block
};

constexpr int64_t kParamAlignElems = 64;

class ParamTable {
 public:
  // Appends a tensor given its full shape; with tp > 1 and a split, this rank holds 1/tp of it. Returns its offset.
  // Names must be unique; a split dimension must be divisible by tp.
  int64_t add(const std::string& name, std::vector<int64_t> full_shape, ParamGroup group,
              TpSplit split = TpSplit::replicated, int tp = 1);

  const std::vector<ParamSpec>& specs() const { return specs_; }
  const ParamSpec& at(const std::string& name) const;  // throws std::out_of_range naming the tensor
  const ParamSpec* find(const std::string& name) const;  // nullptr when absent
  int64_t total() const { return total_; }  // elements of the flat buffer, alignment gaps included
  int64_t parameters() const;               // elements of the tensors

 private:
  std::vector<ParamSpec> specs_;
  int64_t total_ = 0;
};

// Copies tp rank `rank`'s block of the whole tensor `full` (full_shape) into `local` (shape).
void take_tp_block(float* local, const float* full, const ParamSpec& s, int rank);
// The inverse: writes `local` into its place in `full`.
void put_tp_block(float* full, const float* local, const ParamSpec& s, int rank);

}  // namespace dytrain
