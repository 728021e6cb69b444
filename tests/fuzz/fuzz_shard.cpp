// Fuzz target: the llm.c token shard reader (trainer/data/shard.h) and the loader on top of it
// (trainer/data/loader.h). An opened shard must hold exactly its header's token count; the loader must then hand
// out only in-vocabulary ids or throw naming the file.
#include <cstdint>
#include <vector>

#include "tests/fuzz/fuzz_input.h"
#include "trainer/data/loader.h"
#include "trainer/data/shard.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dytrain;
  const std::string path = fuzz::write_input("shard.bin", fuzz::as_text(data, size));
  fuzz::expect_clean([&] {
    const Shard shard(path);
    fuzz::fuzz_check(kShardHeaderBytes + shard.size() * shard.token_bytes() == int64_t(size),
                     "the shard's token count does not match the file size");
    (void)shard[0];  // the first and last tokens: a count larger than the file would read past its end here
    (void)shard[shard.size() - 1];
  });
  fuzz::expect_clean([&] {
    LoaderOptions opt;
    opt.shards = path;
    opt.batch = 2;
    opt.seq_len = 4;
    opt.vocab_size = 50257;  // GPT-2's: ids of a uint32 shard can be out of range, ids of a uint16 one too
    TokenLoader loader(opt);
    std::vector<int32_t> tokens(size_t(opt.batch) * (opt.seq_len + 1));
    for (int i = 0; i < 3; ++i) {
      loader.next(tokens.data());
      for (const int32_t t : tokens)
        fuzz::fuzz_check(t >= 0 && t < opt.vocab_size, "the loader gave an id out of range");
    }
  });
  return 0;
}
