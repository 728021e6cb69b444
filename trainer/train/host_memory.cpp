#include "trainer/train/host_memory.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

#include "trainer/train/distributed_checkpoint.h"

namespace dytrain {
namespace {

constexpr double kGiB = double(1 << 30);
const char* const kModelKeys = "model.dim, model.n_layers or model.vocab_size (or raise parallel.tp)";

// Parameters of one tp rank's share of the model (tp = 1: the whole model), as llama layout.cpp lays them out.
double parameter_count(const ModelConfig& m, int tp) {
  const double C = m.dim, V = double(m.vocab_size) / tp, F = double(m.hidden_dim()) / tp;
  const double q_out = double(m.n_heads) * m.head_dim() / tp, kv_out = double(m.kv_heads()) * m.head_dim() / tp;
  const double site = C * (m.dyt_bias ? 2 : 1) + 1;  // gamma (+ beta) + alpha
  const double layer = C * q_out * 2 + C * kv_out * 2 + 3 * C * F + 2 * site;
  return V * C * (m.tie_embeddings ? 1 : 2) + 1 + m.n_layers * layer + site;
}

// Floats per token of one micro-batch that the CPU model keeps for (and uses in) the backward pass.
struct ActivationFloats {
  double kept;      // per layer inputs, q/k/v, attention probabilities, SwiGLU: x n_layers, plus the final norm
  double logits;    // the vocabulary share of this rank
  double scratch;   // the backward pass's per-token gradients of one layer
};

ActivationFloats activation_floats(const ModelConfig& m, int T, int tp) {
  const double C = m.dim, F = double(m.hidden_dim()) / tp, heads = double(m.n_heads) / tp;
  const double q_out = heads * m.head_dim(), kv_out = double(m.kv_heads()) * m.head_dim() / tp;
  const double layer = 4 * C + 2 + 2 * q_out + 2 * kv_out + heads * T + 3 * F;
  ActivationFloats a;
  a.kept = m.n_layers * layer + 2 * C + 4;
  a.logits = double(m.vocab_size) / tp;
  a.scratch = 2 * C + 3 * q_out + 3 * kv_out + 3 * F + heads * T;
  return a;
}

// The value of `key` in a memory.stat file ("anon 123\n..."), or -1 when absent.
double read_stat(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string name;
  double value = 0;
  while (in >> name >> value)
    if (name == key) return value;
  return -1;
}

double read_number_file(const std::string& path) {
  std::ifstream in(path);
  std::string word;
  if (!(in >> word) || word == "max") return 0;
  try {
    return std::stod(word);
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace

std::vector<HostMemoryPart> plan_host_memory(const Config& cfg, const std::string& device, int dp, int tp) {
  const ModelConfig& m = cfg.model;
  const double local = parameter_count(m, tp);
  const double moment_share = cfg.parallel.zero1 ? double(dp) : 1.0;
  const double tokens = double(cfg.train.micro_batch) * cfg.train.seq_len;
  // Saving streams bounded rounds (distributed_checkpoint.h); the widest round holds one row of every tp rank's block:
  // tp x dim for the row-split linears and the vocabulary, the attention or FFN width for the column splits.
  const double widest_row =
      tp > 1 ? std::max({double(tp) * m.dim, double(m.hidden_dim()), double(m.n_heads) * m.head_dim()}) : 0.0;
  const double staging = checkpoint_staging_bytes(widest_row);
  const double batch = 4 * double(cfg.train.micro_batch) * (cfg.train.seq_len + 1);
  const std::string batch_keys = "train.micro_batch or train.seq_len";
  std::vector<HostMemoryPart> plan;
  if (device == "cuda") {
    plan.push_back({"token batch", batch, batch_keys});
    plan.push_back({"checkpoint staging (parameters and moments copied from the GPU)",
                    staging + 4 * (local + 2 * local / moment_share), kModelKeys});
    return plan;
  }
  const ActivationFloats a = activation_floats(m, cfg.train.seq_len, tp);
  plan.push_back({"parameters", 4 * local, kModelKeys});
  plan.push_back({"gradients", 4 * local, kModelKeys});
  plan.push_back({"AdamW moments", 8 * local / moment_share, std::string(kModelKeys) + ", or set parallel.zero1"});
  plan.push_back({"activations", 4 * tokens * (a.kept + a.scratch) + 3 * batch, batch_keys});
  plan.push_back({"logits", 4 * tokens * a.logits, "train.micro_batch, train.seq_len or model.vocab_size"});
  plan.push_back({"checkpoint staging", staging, kModelKeys});
  return plan;
}

double available_host_bytes() { return available_host_bytes_under(""); }

double available_host_bytes_under(const std::string& root) {
  double available = 0;
  std::ifstream meminfo(root + "/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    if (line.rfind("MemAvailable:", 0) != 0) continue;
    std::istringstream fields(line.substr(13));
    double kib = 0;
    if (fields >> kib) available = kib * 1024;
  }
  // The cgroups of this process (/proc/self/cgroup): v2 "0::/path" (memory.max; memory.stat's anon) and v1
  // "N:memory:/path" (memory.limit_in_bytes; memory.stat's total_rss). A Slurm job or a systemd slice nests them below
  // the root; every cgroup from this one up to its hierarchy's root may set a limit, and the tightest one counts.
  // Only anonymous memory counts as used: the page cache a cgroup is charged for (the shards just scanned, say) is
  // reclaimed under pressure, and counting it would refuse runs that fit.
  struct Hierarchy {
    std::filesystem::path root;
    const char* limit_file;
    const char* used_key;    // in memory.stat
    const char* usage_file;  // the fallback when memory.stat cannot be read (it counts the page cache too)
  };
  std::ifstream self(root + "/proc/self/cgroup");
  while (std::getline(self, line)) {
    std::optional<Hierarchy> h;
    std::string path;
    if (line.rfind("0::", 0) == 0) {
      h = Hierarchy{root + "/sys/fs/cgroup", "memory.max", "anon", "memory.current"}, path = line.substr(3);
    } else if (const size_t at = line.find(":memory:"); at != std::string::npos) {
      h = Hierarchy{root + "/sys/fs/cgroup/memory", "memory.limit_in_bytes", "total_rss", "memory.usage_in_bytes"};
      path = line.substr(at + 8);
    }
    if (!h) continue;
    for (std::filesystem::path dir = h->root / std::filesystem::path(path).relative_path();;
         dir = dir.parent_path()) {
      const double limit = read_number_file((dir / h->limit_file).string());
      if (limit > 0) {
        double used = read_stat((dir / "memory.stat").string(), h->used_key);
        if (used < 0) used = read_number_file((dir / h->usage_file).string());
        const double left = std::max(0.0, limit - used);
        available = available > 0 ? std::min(available, left) : left;
      }
      if (dir == h->root || dir.parent_path() == dir) break;
    }
  }
  return available;
}

void check_host_memory(const std::vector<HostMemoryPart>& plan, int ranks_on_host, double available_bytes) {
  if (available_bytes <= 0 || plan.empty()) return;
  double total = 0;
  for (const HostMemoryPart& p : plan) total += p.bytes;
  const double needed = total * std::max(1, ranks_on_host);
  if (needed <= available_bytes) return;
  const HostMemoryPart& largest =
      *std::max_element(plan.begin(), plan.end(), [](const auto& a, const auto& b) { return a.bytes < b.bytes; });
  std::string parts;
  for (const HostMemoryPart& p : plan)
    parts += fmt::format("{}{} {:.3g} GiB", parts.empty() ? "" : ", ", p.what, p.bytes / kGiB);
  throw std::runtime_error(fmt::format(
      "the run needs about {:.3g} GiB of host memory per rank ({}){}, but {:.3g} GiB are available: the largest part "
      "is the {}; lower {}",
      total / kGiB, parts,
      ranks_on_host > 1 ? fmt::format(", x {} ranks on this host = {:.3g} GiB", ranks_on_host, needed / kGiB) : "",
      available_bytes / kGiB, largest.what, largest.key));
}

}  // namespace dytrain
