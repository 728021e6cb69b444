// The typed configuration of a run. Every field has a default and a doc line; config.cpp reads it from YAML
// (with `include:` files and `--set key.path=value` overrides), validates it once and writes the resolved YAML.
// The YAML keys are the field names below, grouped by section: model.dim, optim.lr, train.micro_batch, ...
#pragma once
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace dytrain {

// A configuration error: names the file and key, says what is allowed.
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class NormKind { dyt, rmsnorm };
enum class ScheduleKind { cosine, linear, constant };

struct ModelConfig {
  int vocab_size = 0;             // token ids are in [0, vocab_size); required
  int dim = 256;                  // hidden size (HF hidden_size)
  int n_layers = 4;               // transformer blocks
  int n_heads = 4;                // query heads; head_dim = dim / n_heads
  int n_kv_heads = 0;             // key/value heads for grouped-query attention; 0 means n_heads
  int ffn_dim = 0;                // SwiGLU hidden size; 0 derives it by LLaMA's rule from multiple_of
  int multiple_of = 256;          // LLaMA rule: ffn_dim = multiple_of * ceil((8 dim / 3 * ffn_dim_multiplier) / multiple_of)
  double ffn_dim_multiplier = 1.0;
  int max_seq_len = 1024;         // longest sequence (HF max_position_embeddings)
  double rope_theta = 10000.0;
  NormKind norm = NormKind::dyt;  // dyt | rmsnorm (the baseline)
  double alpha_attn = 1.0;        // alpha0 of the pre-attention DyT of every layer
  double alpha_ffn = 1.0;         // alpha0 of the pre-FFN DyT of every layer
  double alpha_final = 1.0;       // alpha0 of the final DyT
  std::string alpha_init = "fixed";  // fixed: the alpha_* above | calibrated: each site's alpha0 = alpha_calib_c /
                                     // std of its input, measured on the first batch at init (beyond the paper);
                                     // no effect with norm: rmsnorm
  double alpha_calib_c = 1.0;     // the c of alpha_init: calibrated
  bool dyt_bias = false;          // DyT with beta; the paper's LLaMA DyT has none
  double rms_eps = 1e-5;          // RMSNorm epsilon (norm: rmsnorm only)
  bool embed_scale = true;        // learnable scalar after the embedding, init sqrt(dim)
  bool tie_embeddings = false;    // LM head shares the embedding table
  // How init_std applies to the matrices and the embedding:
  //   fixed: N(0, init_std) for all (the official LLaMA-DyT code: 0.02 at width 4096+; the 7B preset pins it)
  //   scaled: std = init_std * sqrt(4096 / fan_in), the official signal scale at any width (fan_in: the input size
  //     of a matrix, dim for the embedding)
  //   scaled_depth: scaled, and o_proj, down_proj further / sqrt(2 n_layers)
  // The default by measurement (docs/results/2026-12-06-init-choice-cpu): with the paper's optimizer, fixed 0.02
  // stalls DyT at the unigram loss at the widths measured (64-256); scaled_depth trains it, the best rule tried.
  std::string init = "scaled_depth";
  double init_std = 0.02;         // the std of fixed, or the std at fan_in 4096 of scaled
  std::string attention = "materialized";  // the CUDA engine's attention kernels (the CPU engine has one fp32 path):
                                  //   materialized: scores through cuBLASLt, 128 query tokens at a time, the reference
                                  //     (kernels/cuda/attention.cuh)
                                  //   flash: fused 64 x 64 tiles, no score matrix in memory, deterministic backward;
                                  //     head_dim 64 or 128 (kernels/cuda/flash_attention.cuh)

  int head_dim() const { return dim / n_heads; }
  int kv_heads() const { return n_kv_heads > 0 ? n_kv_heads : n_heads; }
  int hidden_dim() const;         // ffn_dim, or derived by the multiple_of rule
};

// Optimizer settings a parameter group may override. Groups: matrices (attention and FFN weights, LM head),
// embeddings (token table), dyt_alpha, dyt_gamma_beta (DyT gamma and beta, RMSNorm weight), embed_scale.
struct GroupConfig {
  bool weight_decay = false;      // apply optim.weight_decay to this group
  std::optional<double> lr;       // peak lr of this group (schedule and min_lr scale with it); default optim.lr
  std::optional<double> beta2;    // AdamW beta2 of this group; default optim.beta2
};

struct OptimConfig {
  double lr = 3e-4;               // peak learning rate, reached at the end of warmup
  double min_lr = 3e-5;           // final learning rate of the cosine / linear decay
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;      // decoupled, applied to groups with weight_decay: true
  double grad_clip = 1.0;         // global L2 norm clip; 0 disables
  ScheduleKind schedule = ScheduleKind::cosine;
  int warmup_steps = 100;         // linear warmup from lr / warmup_steps to lr
  GroupConfig matrices{true, {}, {}};
  GroupConfig embeddings{true, {}, {}};
  GroupConfig dyt_alpha{false, {}, {}};
  GroupConfig dyt_gamma_beta{false, {}, {}};
  GroupConfig embed_scale{false, {}, {}};
};

struct DataConfig {
  std::string train;              // llm.c token shards: a file, a glob (data/x/train_*.bin) or a directory
  std::string val;                // validation shards, same forms; empty disables validation
};

struct TrainConfig {
  int micro_batch = 8;            // sequences per micro-batch on each data-parallel rank
  int seq_len = 256;              // tokens per sequence (<= model.max_seq_len)
  int grad_accum = 1;             // micro-batches per optimizer step
  int max_steps = 1000;           // optimizer steps of the whole run
  int log_every = 10;             // console and metrics.jsonl line every N steps (and the first and last step)
  int val_every = 100;            // validation loss every N steps and at the end; 0 disables
  int val_batches = 8;            // micro-batches per validation
  int ckpt_every = 0;             // checkpoint every N steps; 0 means only at the end
  int keep_checkpoints = 2;       // newest checkpoints kept; older ones are removed
  uint64_t seed = 1337;           // init and data order
  std::string device = "auto";    // cpu | cuda | auto (cuda when a GPU is present)
  double peak_tflops = 0.0;       // one device's peak, for MFU; 0: an H100's 989 (dense bf16) on cuda, no MFU on cpu
};

// The process layout. The world (the ranks mpirun starts) is dp x tp; dp = world / tp.
struct ParallelConfig {
  int tp = 1;                     // tensor-parallel ranks per model replica (contiguous ranks, one node)
  bool zero1 = false;             // shard the AdamW moments across data-parallel ranks (ZeRO stage 1)
  int bucket_mb = 25;             // data-parallel gradient all-reduce bucket size, MiB
  std::string gpu_comm = "nccl";  // device collectives: nccl | mpi (staged through host memory; ranks may share a GPU)
  std::string staged_bf16_sum = "fp32";  // gpu_comm mpi's bf16 tp sums: fp32 (rounded once) | ring (NCCL's per-hop
                                         // rounding emulated, to see a multi-GPU run's numerics on one GPU)
  double timeout_s = 15.0;        // a collective waiting longer for its peers warns, and ends the job after OpenMPI's
                                  // keepalive grace (40 s under launch/mpirun.sh); limit: max(this, 20 x the slowest
                                  // training step), 300 s at start-up, in validation and in checkpoints; 0 disables
                                  // (parallel/watchdog.h)
};

struct Config {
  ModelConfig model;
  OptimConfig optim;
  DataConfig data;
  TrainConfig train;
  ParallelConfig parallel;
};

// The YAML spellings of the enums ("dyt", "rmsnorm"; "cosine", "linear", "constant"), also used in config.json.
const char* to_string(NormKind kind);
const char* to_string(ScheduleKind kind);
// Inverse of to_string; throws ConfigError listing the allowed names.
NormKind parse_norm_kind(const std::string& name);
ScheduleKind parse_schedule_kind(const std::string& name);

// Reads a config file, applies `key.path=value` overrides in order, validates. Throws ConfigError.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

// Validates every field and the combinations (n_heads divides dim, seq_len <= max_seq_len, ...). Throws ConfigError
// naming the key. `source` names the file in messages.
void validate(const Config& cfg, const std::string& source);

// The resolved config as YAML, every key present: saved in the run directory and loadable again.
std::string to_yaml(const Config& cfg);

// A stable hash of the resolved config (FNV-1a of to_yaml), to check all ranks run the same config.
uint64_t config_hash(const Config& cfg);

}  // namespace dytrain
