// `dytrain check CKPT_DIR SHARD`: the loss, global gradient norm and every DyT alpha with its gradient on the first
// batch x (seq + 1) tokens of a shard (batch consecutive windows), printed as JSON. It mirrors
// ../shared/bench/torch_llama_dyt.py's `check` command field for field, so the two implementations can be compared
// on the same checkpoint and tokens.
#pragma once
#include <string>

namespace dytrain {

struct CheckOptions {
  std::string checkpoint_dir;
  std::string shard;
  int batch = 4;
  int seq = 64;
};

// Returns the JSON line; throws naming the file on bad input (CheckpointError for a damaged checkpoint or one holding
// NaN or inf), NonFiniteError when the loss or the gradient norm is not finite.
std::string check_checkpoint(const CheckOptions& opt);

}  // namespace dytrain
