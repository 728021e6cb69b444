// Training throughput on one GPU: full steps (forward, backward, grad norm, AdamW) of the CUDA engine on random
// tokens, reported as tokens/s, MFU against the H100's 989 TFLOP/s dense bf16 peak, and the memory planned up front.
//
//   build/bench/dytrain_bench_train [CONFIG.yaml ...] [--steps N] [--warmup N] [--set key=value ...]
//   (default: configs/bench/d768.yaml configs/bench/d1024.yaml configs/bench/d2048.yaml; --set overrides a config key
//   in every config, as the trainer's --set does: --set model.attention=flash measures the flash kernels)
//
// FLOPs per token as in trainer/train/flops.h (the count of ../shared/bench/torch_llama_dyt.py). Each step waits
// for its loss and grad norm (as training does), so wall time per step is the time the GPU needs for it.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "parallel/mesh.h"
#include "trainer/config/config.h"
#include "trainer/train/distributed_checkpoint.h"
#include "trainer/train/engine.h"
#include "trainer/train/flops.h"

namespace {

using namespace dytrain;

// torch.compile on the project's H100 (issue 5), for the configs/bench shapes.
const std::map<int, double> kTorchCompileTokS = {{768, 483.6e3}, {1024, 178.5e3}, {2048, 88.3e3}};

int bench(const std::string& path, const std::vector<std::string>& overrides, int warmup, int steps) {
  const Config cfg = load_config(path, overrides);
  Mesh mesh = make_mesh(1);
  auto engine = make_engine("cuda", cfg, mesh);
  engine->init(cfg.train.seed);
  const int B = cfg.train.micro_batch, T = cfg.train.seq_len;
  std::vector<int32_t> tokens(int64_t(B) * (T + 1));
  std::mt19937 gen(1234);
  std::uniform_int_distribution<int32_t> dist(0, cfg.model.vocab_size - 1);
  for (int32_t& t : tokens) t = dist(gen);

  float loss = 0.0f;
  auto step = [&] {
    engine->zero_grad();
    loss = engine->forward(tokens.data(), B, T, nullptr);
    engine->backward(1.0f);
    engine->update(1.0);
  };
  for (int i = 0; i < warmup; ++i) step();
  std::vector<double> ms;
  for (int i = 0; i < steps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  const double step_ms = ms[ms.size() / 2];
  const double tok_s = double(B) * T / (step_ms * 1e-3);
  const int64_t parameters = whole_table(engine->table()).parameters();
  const double mfu = tok_s * training_flops_per_token(cfg.model, parameters, T) / kH100PeakBf16Flops;
  size_t planned = 0;
  for (const auto& [category, bytes] : engine->memory()) planned += bytes;
  size_t free_bytes = 0, total_bytes = 0;
  cudaMemGetInfo(&free_bytes, &total_bytes);
  const auto ref = kTorchCompileTokS.find(cfg.model.dim);
  std::printf("%-24s %-12s %6.0fM params  %6.1f ms/step  %8.1fK tok/s  MFU %5.1f%%  planned %6.2f GiB (device in "
              "use %6.2f GiB)  loss %.3f",
              path.c_str(), cfg.model.attention.c_str(), parameters / 1e6, step_ms, tok_s / 1e3, 100.0 * mfu,
              planned / double(1 << 30), (total_bytes - free_bytes) / double(1 << 30), loss);
  if (ref != kTorchCompileTokS.end())
    std::printf("  | torch.compile %.1fK tok/s (x%.2f)", ref->second / 1e3, tok_s / ref->second);
  std::printf("\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> configs, overrides;
  int warmup = 3, steps = 10;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--steps" || a == "--warmup") && i + 1 < argc) {
      (a == "--steps" ? steps : warmup) = std::atoi(argv[++i]);
    } else if (a == "--set" && i + 1 < argc) {
      overrides.push_back(argv[++i]);
    } else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "usage: %s [CONFIG.yaml ...] [--steps N] [--warmup N] [--set key=value ...]\n", argv[0]);
      return 2;
    } else {
      configs.push_back(a);
    }
  }
  if (configs.empty()) configs = {"configs/bench/d768.yaml", "configs/bench/d1024.yaml", "configs/bench/d2048.yaml"};
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("no CUDA device: nothing to measure\n");
    return 0;
  }
  std::printf("training throughput, one GPU, median of %d steps after %d warm-up steps; MFU vs 989 TFLOP/s\n", steps,
              warmup);
  try {
    for (const std::string& c : configs) bench(c, overrides, warmup, std::max(1, steps));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
