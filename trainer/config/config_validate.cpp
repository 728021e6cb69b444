// The rules of a config: the derived SwiGLU size and the one validation pass.
//
// Design decisions:
// - Every problem is collected and reported together (one line each, "origin: key: what is wrong and what is
//   allowed"), so a user fixes a config in one round instead of one error per run.
// - Combination checks (n_heads divides dim, ...) run only when the values they combine passed their own checks,
//   so a zero never turns into a division by zero or a second, confusing message.
// - The derived FFN size is computed in 64 bits and checked against int before hidden_dim() narrows it.
#include <climits>
#include <cstdint>
#include <vector>

#include <fmt/format.h>

#include "trainer/config/config_validate.h"

namespace dytrain {
namespace {

// LLaMA's rule (llama/model.py): h = int(2 * 4 * dim / 3), scaled by ffn_dim_multiplier, rounded up to multiple_of.
int64_t derived_hidden_dim(const ModelConfig& m) {
  if (m.ffn_dim > 0) return m.ffn_dim;
  int64_t h = 2 * 4 * static_cast<int64_t>(m.dim) / 3;
  h = static_cast<int64_t>(m.ffn_dim_multiplier * static_cast<double>(h));
  return m.multiple_of * ((h + m.multiple_of - 1) / m.multiple_of);
}

class Checker {
 public:
  explicit Checker(const KeyOrigin& origin_of) : origin_of_(origin_of) {}

  // Records a problem when !ok; returns ok so combination checks can depend on it.
  bool check(bool ok, const std::string& key, const std::string& what) {
    if (!ok) problems_.push_back(fmt::format("{}: {}: {}", origin_of_(key), key, what));
    return ok;
  }
  // A check on two keys: reported under `key`, naming where `other` came from when that is somewhere else, since
  // either value may be the one to change.
  bool check_pair(bool ok, const std::string& key, const std::string& other, const std::string& what) {
    const std::string other_origin = origin_of_(other);
    if (other_origin == origin_of_(key)) return check(ok, key, what);
    return check(ok, key, fmt::format("{} ({} is set at {})", what, other, other_origin));
  }
  template <class T>
  bool positive(const std::string& key, T v) {
    return check(v > 0, key, fmt::format("must be > 0, got {}", v));
  }
  template <class T>
  bool non_negative(const std::string& key, T v) {
    return check(v >= 0, key, fmt::format("must be >= 0, got {}", v));
  }
  bool beta(const std::string& key, double v) {
    return check(v >= 0 && v < 1, key, fmt::format("must be in [0, 1), got {}", v));
  }
  void group(const std::string& name, const GroupConfig& g) {
    if (g.lr) positive("optim." + name + ".lr", *g.lr);
    if (g.beta2) beta("optim." + name + ".beta2", *g.beta2);
  }
  void throw_if_any() const {
    if (!problems_.empty()) throw ConfigError(fmt::format("{}", fmt::join(problems_, "\n")));
  }

 private:
  const KeyOrigin& origin_of_;
  std::vector<std::string> problems_;
};

void check_model(Checker& c, const ModelConfig& m) {
  c.check(m.vocab_size > 0, "model.vocab_size",
          fmt::format("required: the tokenizer's vocabulary size (> 0), got {}", m.vocab_size));
  const bool dim_ok = c.positive("model.dim", m.dim);
  c.positive("model.n_layers", m.n_layers);
  const bool heads_ok = c.positive("model.n_heads", m.n_heads);
  const bool kv_ok = c.non_negative("model.n_kv_heads", m.n_kv_heads);
  const bool ffn_ok = c.non_negative("model.ffn_dim", m.ffn_dim);
  const bool multiple_ok = c.positive("model.multiple_of", m.multiple_of);
  const bool multiplier_ok = c.positive("model.ffn_dim_multiplier", m.ffn_dim_multiplier);
  c.positive("model.max_seq_len", m.max_seq_len);
  c.positive("model.rope_theta", m.rope_theta);
  c.positive("model.alpha_attn", m.alpha_attn);
  c.positive("model.alpha_ffn", m.alpha_ffn);
  c.positive("model.alpha_final", m.alpha_final);
  c.positive("model.rms_eps", m.rms_eps);
  c.positive("model.init_std", m.init_std);
  c.check(m.alpha_init == "fixed" || m.alpha_init == "calibrated", "model.alpha_init",
          fmt::format("must be fixed or calibrated, got '{}'", m.alpha_init));
  c.positive("model.alpha_calib_c", m.alpha_calib_c);

  if (dim_ok && heads_ok &&
      c.check_pair(m.dim % m.n_heads == 0, "model.n_heads", "model.dim",
                   fmt::format("{} does not divide model.dim ({}); head_dim = dim / n_heads must be a whole number",
                               m.n_heads, m.dim)))
    c.check_pair(m.head_dim() % 2 == 0, "model.dim", "model.n_heads",
                 fmt::format("head_dim = dim / model.n_heads = {} / {} = {} must be even for RoPE (rotate_half "
                             "pairs dimension i with i + head_dim/2)", m.dim, m.n_heads, m.head_dim()));
  if (heads_ok && kv_ok)
    c.check_pair(m.n_heads % m.kv_heads() == 0, "model.n_kv_heads", "model.n_heads",
            fmt::format("{} must divide model.n_heads ({}) for grouped-query attention (0 means n_heads)",
                        m.n_kv_heads, m.n_heads));
  if (dim_ok && ffn_ok && multiple_ok && multiplier_ok) {
    const int64_t h = derived_hidden_dim(m);
    c.check(h > 0 && h <= INT_MAX, m.ffn_dim > 0 ? "model.ffn_dim" : "model.ffn_dim_multiplier",
            fmt::format("the SwiGLU hidden size comes out as {}; it must be in [1, {}]", h, INT_MAX));
  }
}

void check_optim(Checker& c, const OptimConfig& o) {
  if (c.positive("optim.lr", o.lr) && c.non_negative("optim.min_lr", o.min_lr))
    c.check_pair(o.min_lr <= o.lr, "optim.min_lr", "optim.lr", fmt::format("must be <= optim.lr ({}), got {}", o.lr, o.min_lr));
  c.beta("optim.beta1", o.beta1);
  c.beta("optim.beta2", o.beta2);
  c.positive("optim.eps", o.eps);
  c.non_negative("optim.weight_decay", o.weight_decay);
  c.check(o.grad_clip >= 0, "optim.grad_clip", fmt::format("must be >= 0 (0 disables clipping), got {}", o.grad_clip));
  c.non_negative("optim.warmup_steps", o.warmup_steps);
  c.group("matrices", o.matrices);
  c.group("embeddings", o.embeddings);
  c.group("dyt_alpha", o.dyt_alpha);
  c.group("dyt_gamma_beta", o.dyt_gamma_beta);
  c.group("embed_scale", o.embed_scale);
}

void check_train(Checker& c, const TrainConfig& t, const ModelConfig& m) {
  c.positive("train.micro_batch", t.micro_batch);
  if (c.positive("train.seq_len", t.seq_len) && m.max_seq_len > 0)
    c.check_pair(t.seq_len <= m.max_seq_len, "train.seq_len", "model.max_seq_len",
            fmt::format("{} exceeds model.max_seq_len ({}); raise max_seq_len or shorten seq_len", t.seq_len,
                        m.max_seq_len));
  c.positive("train.grad_accum", t.grad_accum);
  c.positive("train.max_steps", t.max_steps);
  c.positive("train.log_every", t.log_every);
  c.check(t.val_every >= 0, "train.val_every", fmt::format("must be >= 0 (0 disables validation), got {}", t.val_every));
  c.positive("train.val_batches", t.val_batches);
  c.check(t.ckpt_every >= 0, "train.ckpt_every",
          fmt::format("must be >= 0 (0 checkpoints only at the end), got {}", t.ckpt_every));
  c.check(t.keep_checkpoints >= 1, "train.keep_checkpoints",
          fmt::format("must be >= 1 (the newest checkpoint is always kept), got {}", t.keep_checkpoints));
  c.check(t.device == "cpu" || t.device == "cuda" || t.device == "auto", "train.device",
          fmt::format("must be one of cpu, cuda, auto, got '{}'", t.device));
  c.check(t.peak_tflops >= 0, "train.peak_tflops",
          fmt::format("must be >= 0 (a device's peak in TFLOP/s for MFU; 0: 989 on cuda, none on cpu), got {}",
                      t.peak_tflops));
}

// Tensor parallelism splits heads, kv heads, the SwiGLU hidden size and the vocabulary across tp ranks.
void check_parallel(Checker& c, const ParallelConfig& p, const ModelConfig& m) {
  c.positive("parallel.bucket_mb", p.bucket_mb);
  c.check(p.gpu_comm == "nccl" || p.gpu_comm == "mpi", "parallel.gpu_comm",
          fmt::format("must be nccl or mpi (device buffers staged through host memory), got '{}'", p.gpu_comm));
  if (!c.positive("parallel.tp", p.tp) || p.tp == 1) return;
  auto divides = [&](const char* key, int64_t value) {
    c.check_pair(value > 0 && value % p.tp == 0, "parallel.tp", key,
                 fmt::format("{} must divide {} ({}): tensor parallelism splits it across ranks", p.tp, key, value));
  };
  divides("model.n_heads", m.n_heads);
  divides("model.n_kv_heads", m.kv_heads());
  divides("model.vocab_size", m.vocab_size);
  if (m.dim > 0 && m.multiple_of > 0 && m.ffn_dim_multiplier > 0) divides("model.ffn_dim", m.hidden_dim());
}

}  // namespace

int ModelConfig::hidden_dim() const { return static_cast<int>(derived_hidden_dim(*this)); }

void validate_with_origins(const Config& cfg, const KeyOrigin& origin_of) {
  Checker c(origin_of);
  check_model(c, cfg.model);
  check_optim(c, cfg.optim);
  c.check(!cfg.data.train.empty(), "data.train",
          "required: the training token shards (a file, a glob such as data/x/train_*.bin, or a directory)");
  check_train(c, cfg.train, cfg.model);
  check_parallel(c, cfg.parallel, cfg.model);
  c.throw_if_any();
}

void validate(const Config& cfg, const std::string& source) {
  validate_with_origins(cfg, [&](const std::string&) { return source; });
}

}  // namespace dytrain
