// Fuzz target: a checkpoint's trainer_state.yaml as a resume reads it: read_trainer_state (every key present, typed
// and in range, step equal to the folder's step_N), then the loader position goes to TokenLoader::restore over a
// fixed small shard. A state both accept must leave the loader able to produce a batch of in-range ids.
#include <cstdint>
#include <filesystem>
#include <vector>

#include "tests/fuzz/fuzz_input.h"
#include "trainer/checkpoint/trainer_state.h"
#include "trainer/data/loader.h"
#include "trainer/data/shard.h"

namespace {

// 1000 byte-level tokens: 124 windows of seq_len 8, 62 batches of 2 per epoch.
dytrain::LoaderOptions loader_options() {
  static const std::string shard = [] {
    std::vector<uint32_t> tokens(1000);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = uint32_t(i * 7 % 256);
    const std::string path = dytrain::fuzz::scratch_dir() + "/train_000000.bin";
    dytrain::write_shard(path, tokens, 2);
    return path;
  }();
  dytrain::LoaderOptions opt;
  opt.shards = shard;
  opt.batch = 2;
  opt.seq_len = 8;
  opt.vocab_size = 256;
  opt.seed = 1;
  return opt;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dytrain;
  const LoaderOptions opt = loader_options();
  const std::string path = fuzz::write_input("step_00000010/trainer_state.yaml", fuzz::as_text(data, size));
  fuzz::expect_clean([&] {
    const TrainerState state = read_trainer_state(std::filesystem::path(path).parent_path().string());
    TokenLoader loader(opt);
    loader.restore(state.train_loader);
    std::vector<int32_t> tokens(size_t(opt.batch) * (opt.seq_len + 1));
    loader.next(tokens.data());
    for (const int32_t t : tokens) fuzz::fuzz_check(t >= 0 && t < opt.vocab_size, "a restored loader gave a bad id");
  });
  return 0;
}
