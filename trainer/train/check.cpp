#include "trainer/train/check.h"

#include <cmath>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

#include "kernels/cpu/grad_norm.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/config/config.h"
#include "trainer/data/shard.h"
#include "trainer/model/llama.h"
#include "trainer/train/host_memory.h"

namespace dytrain {

std::string check_checkpoint(const CheckOptions& opt) {
  const std::string config_path = (std::filesystem::path(opt.checkpoint_dir) / "config.yaml").string();
  Config cfg = load_config(config_path);
  if (opt.seq > cfg.model.max_seq_len)
    throw std::runtime_error(fmt::format("--seq {} exceeds the checkpoint's model.max_seq_len ({})", opt.seq,
                                         cfg.model.max_seq_len));
  // The checkpoint's config.yaml is input too: its model and this batch must fit the host before anything is built.
  cfg.train.micro_batch = opt.batch;
  cfg.train.seq_len = opt.seq;
  check_host_memory(plan_host_memory(cfg, "cpu", 1, 1), 1, available_host_bytes());
  LlamaModel model(cfg.model);
  load_checkpoint(model.params().data(), nullptr, nullptr, opt.checkpoint_dir, model.table());

  const Shard shard(opt.shard);
  const int64_t need = int64_t(opt.batch) * (int64_t(opt.seq) + 1);
  if (shard.size() < need)
    throw std::runtime_error(fmt::format("{}: {} tokens, need {} for batch {} x seq {}", opt.shard, shard.size(), need,
                                         opt.batch, opt.seq));
  std::vector<uint32_t> ids(need);
  shard.read(0, need, ids.data());
  std::vector<int32_t> tokens(need);
  for (int64_t i = 0; i < need; ++i) {
    if (ids[i] >= uint32_t(cfg.model.vocab_size))
      throw std::runtime_error(fmt::format("{}: token id {} at token index {} (byte offset {}) >= vocab_size {}",
                                           opt.shard, ids[i], i, shard.byte_offset(i), cfg.model.vocab_size));
    tokens[i] = int32_t(ids[i]);
  }

  model.zero_grad();
  const float loss = model.forward(tokens.data(), opt.batch, opt.seq, nullptr);
  model.backward(1.0f);
  const std::vector<float>& g = model.grads();
  const double grad_norm = std::sqrt(cpu::sum_squares(g.data(), int64_t(g.size())));
  // The tensors are finite (load_checkpoint checks), yet the model they make may still overflow: printing nan would
  // pass for a result (and is not JSON).
  if (!std::isfinite(loss) || !std::isfinite(grad_norm))
    throw NonFiniteError(fmt::format("{}: the loss is {} and the gradient norm {} on the first {} x {} tokens of {}: "
                                     "the model in this checkpoint has diverged",
                                     opt.checkpoint_dir, loss, grad_norm, opt.batch, int64_t(opt.seq) + 1, opt.shard));

  std::string alphas;
  for (const ParamSpec& s : model.table().specs()) {
    if (s.group != ParamGroup::dyt_alpha) continue;
    alphas += fmt::format("{}\"{}\":[{:.9g},{:.9g}]", alphas.empty() ? "" : ",", s.name, model.params()[s.offset],
                          g[s.offset]);
  }
  return fmt::format(
      "{{\"loss\":{:.9g},\"grad_norm\":{:.9g},\"batch\":{},\"seq\":{},\"dtype\":\"float32\",\"norm\":\"{}\","
      "\"params\":{},\"alpha_and_grad\":{{{}}}}}",
      loss, grad_norm, opt.batch, opt.seq, to_string(cfg.model.norm), model.table().parameters(), alphas);
}

}  // namespace dytrain
