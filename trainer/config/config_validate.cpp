// The rules of a config: the derived SwiGLU size and the one validation pass.
//
// Design decisions:
// - Every problem is collected and reported together (one line each, "origin: key: what is wrong and what is
//   allowed"), so a user fixes a config in one round instead of one error per run.
// - Combination checks (n_heads divides dim, ...) run only when the values they combine passed their own checks,
//   so a zero never turns into a division by zero or a second, confusing message.
// - The derived FFN size is computed in 64 bits and checked against int before hidden_dim() narrows it.
// - Real numbers are checked in the precision they are used in. The model and AdamW compute in fp32, so a value that
//   is fine as a double can still round to an fp32 that breaks the update: beta2 = 0.99999999 rounds to 1 (the bias
//   correction 1 - beta2^t is then 0 and the update NaN), eps = 1e-50 rounds to 0 (0 / 0 for an unused embedding
//   row), lr or weight_decay = 1e300 round to inf. Each such key must be finite, and its fp32 value must keep the
//   property the update relies on (beta < 1, eps a normal fp32 number, lr * weight_decay <= 1 so that the decoupled
//   decay factor 1 - lr * wd never flips a weight's sign).
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

#include "trainer/config/config_validate.h"

namespace dytrain {
namespace {

// LLaMA's rule (llama/model.py): h = int(2 * 4 * dim / 3), scaled by ffn_dim_multiplier, rounded up to multiple_of.
int64_t derived_hidden_dim(const ModelConfig& m) {
  if (m.ffn_dim > 0) return m.ffn_dim;
  int64_t h = 2 * 4 * static_cast<int64_t>(m.dim) / 3;
  const double scaled = m.ffn_dim_multiplier * static_cast<double>(h);
  if (!(scaled <= double(INT_MAX))) return int64_t(INT_MAX) + 1;  // out of range (or NaN): the range check reports it
  h = static_cast<int64_t>(scaled);
  return m.multiple_of * ((h + m.multiple_of - 1) / m.multiple_of);
}

class Checker {
 public:
  explicit Checker(const KeyOrigin& origin_of) : origin_of_(origin_of) {}

  // NaN and inf pass neither `v > 0` nor a sensible config: every real-valued key must be finite.
  template <class T>
  bool finite(const std::string& key, T v) {
    if constexpr (std::is_floating_point_v<T>)
      return check(std::isfinite(v), key, fmt::format("must be a finite number, got {}", v));
    return true;
  }

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
    return finite(key, v) && check(v > 0, key, fmt::format("must be > 0, got {}", v));
  }
  template <class T>
  bool non_negative(const std::string& key, T v) {
    return finite(key, v) && check(v >= 0, key, fmt::format("must be >= 0, got {}", v));
  }
  // A real number the model or the optimizer uses in fp32: > 0 and a normal fp32 number (neither rounding to 0 or a
  // denormal, which GPUs flush to 0, nor to inf).
  bool fp32_positive(const std::string& key, double v) {
    return positive(key, v) &&
           check(v >= FLT_MIN && v <= FLT_MAX, key,
                 fmt::format("{} is not a normal fp32 number (the precision it is used in); it must lie in [{:g}, {:g}]",
                             v, FLT_MIN, FLT_MAX));
  }
  bool beta(const std::string& key, double v) {
    return finite(key, v) && check(v >= 0 && v < 1, key, fmt::format("must be in [0, 1), got {}", v)) &&
           check(float(v) < 1.0f, key,
                 fmt::format("{} rounds to 1 in fp32, the precision AdamW uses, which makes the update NaN; the largest "
                             "usable value is {:.9g}",
                             v, std::nextafter(1.0f, 0.0f)));
  }
  void group(const std::string& name, const GroupConfig& g, const OptimConfig& o) {
    const std::string lr_key = "optim." + name + ".lr";
    if (g.lr) fp32_positive(lr_key, *g.lr);
    if (g.beta2) beta("optim." + name + ".beta2", *g.beta2);
    if (g.lr && g.weight_decay) decay_factor(*g.lr, lr_key, o.weight_decay);
  }
  // Decoupled weight decay multiplies each weight by 1 - lr * weight_decay every step: that must stay >= 0.
  void decay_factor(double lr, const std::string& lr_key, double weight_decay) {
    if (std::isfinite(lr) && lr > 0 && std::isfinite(weight_decay) && weight_decay > 0)
      check_pair(lr * weight_decay <= 1.0, "optim.weight_decay", lr_key,
                 fmt::format("{} times {} ({}) is {:g}, so the decay factor 1 - lr * weight_decay of AdamW would be "
                             "negative: lower one of them",
                             weight_decay, lr_key, lr, lr * weight_decay));
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
  const bool multiplier_ok = c.fp32_positive("model.ffn_dim_multiplier", m.ffn_dim_multiplier);
  c.positive("model.max_seq_len", m.max_seq_len);
  c.fp32_positive("model.rope_theta", m.rope_theta);
  c.fp32_positive("model.alpha_attn", m.alpha_attn);
  c.fp32_positive("model.alpha_ffn", m.alpha_ffn);
  c.fp32_positive("model.alpha_final", m.alpha_final);
  c.fp32_positive("model.rms_eps", m.rms_eps);
  c.check(m.init == "fixed" || m.init == "scaled" || m.init == "scaled_depth", "model.init",
          fmt::format("must be fixed, scaled or scaled_depth, got '{}'", m.init));
  c.fp32_positive("model.init_std", m.init_std);
  c.check(m.alpha_init == "fixed" || m.alpha_init == "calibrated", "model.alpha_init",
          fmt::format("must be fixed or calibrated, got '{}'", m.alpha_init));
  c.fp32_positive("model.alpha_calib_c", m.alpha_calib_c);
  const bool attention_ok = c.check(m.attention == "materialized" || m.attention == "flash", "model.attention",
                                    fmt::format("must be materialized or flash, got '{}'", m.attention));

  if (dim_ok && heads_ok &&
      c.check_pair(m.dim % m.n_heads == 0, "model.n_heads", "model.dim",
                   fmt::format("{} does not divide model.dim ({}); head_dim = dim / n_heads must be a whole number",
                               m.n_heads, m.dim)))
    c.check_pair(m.head_dim() % 2 == 0, "model.dim", "model.n_heads",
                 fmt::format("head_dim = dim / model.n_heads = {} / {} = {} must be even for RoPE (rotate_half "
                             "pairs dimension i with i + head_dim/2)", m.dim, m.n_heads, m.head_dim()));
  if (attention_ok && m.attention == "flash" && dim_ok && heads_ok && m.dim % m.n_heads == 0)
    c.check_pair(m.head_dim() == 64 || m.head_dim() == 128, "model.attention", "model.dim",
                 fmt::format("flash has kernels for head_dim 64 and 128; dim / model.n_heads = {} / {} = {}: use "
                             "model.attention: materialized", m.dim, m.n_heads, m.head_dim()));
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
  if (c.fp32_positive("optim.lr", o.lr) && c.non_negative("optim.min_lr", o.min_lr))
    c.check_pair(o.min_lr <= o.lr, "optim.min_lr", "optim.lr", fmt::format("must be <= optim.lr ({}), got {}", o.lr, o.min_lr));
  c.beta("optim.beta1", o.beta1);
  c.beta("optim.beta2", o.beta2);
  c.fp32_positive("optim.eps", o.eps);
  c.non_negative("optim.weight_decay", o.weight_decay) &&
      c.check(o.weight_decay <= FLT_MAX, "optim.weight_decay",
              fmt::format("{} overflows fp32, the precision AdamW uses", o.weight_decay));
  c.decay_factor(o.lr, "optim.lr", o.weight_decay);
  c.non_negative("optim.grad_clip", o.grad_clip);
  c.non_negative("optim.warmup_steps", o.warmup_steps);
  c.group("matrices", o.matrices, o);
  c.group("embeddings", o.embeddings, o);
  c.group("dyt_alpha", o.dyt_alpha, o);
  c.group("dyt_gamma_beta", o.dyt_gamma_beta, o);
  c.group("embed_scale", o.embed_scale, o);
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
  c.check(std::isfinite(t.peak_tflops) && t.peak_tflops >= 0, "train.peak_tflops",
          fmt::format("must be >= 0 (a device's peak in TFLOP/s for MFU; 0: 989 on cuda, none on cpu), got {}",
                      t.peak_tflops));
}

// Tensor parallelism splits heads, kv heads, the SwiGLU hidden size and the vocabulary across tp ranks.
void check_parallel(Checker& c, const ParallelConfig& p, const ModelConfig& m) {
  c.positive("parallel.bucket_mb", p.bucket_mb);
  c.check(p.gpu_comm == "nccl" || p.gpu_comm == "mpi", "parallel.gpu_comm",
          fmt::format("must be nccl or mpi (device buffers staged through host memory), got '{}'", p.gpu_comm));
  c.check(p.staged_bf16_sum == "fp32" || p.staged_bf16_sum == "ring", "parallel.staged_bf16_sum",
          fmt::format("must be fp32 (summed in fp32, rounded once) or ring (NCCL's per-hop bf16 rounding emulated), "
                      "got '{}'", p.staged_bf16_sum));
  c.check(p.staged_bf16_sum == "fp32" || p.gpu_comm == "mpi", "parallel.staged_bf16_sum",
          "ring emulates NCCL in the staged backend: it needs parallel.gpu_comm: mpi (NCCL itself rounds per hop)");
  c.check(std::isfinite(p.timeout_s) && p.timeout_s >= 0, "parallel.timeout_s",
          fmt::format("must be >= 0 (seconds a collective may wait for its peers; 0 disables the watchdog), got {}",
                      p.timeout_s));
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
