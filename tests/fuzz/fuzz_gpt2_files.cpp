// Fuzz target: GPT-2's tokenizer files (trainer/tokenizer/gpt2_files.h) and the tokenizer built from them
// (gpt2_bpe.h). Input: encoder.json, a NUL byte, vocab.bpe (no NUL: all of it is encoder.json and vocab.bpe is
// empty). Files the reader accepts must give a tokenizer for which decode(encode(text)) == text on every byte
// string, as its header promises.
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_input.h"
#include "trainer/tokenizer/gpt2_bpe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dytrain;
  const std::string_view input = fuzz::as_text(data, size);
  const size_t nul = input.find('\0');
  fuzz::write_input("gpt2/encoder.json", input.substr(0, nul));
  fuzz::write_input("gpt2/vocab.bpe", nul == std::string_view::npos ? std::string_view() : input.substr(nul + 1));
  fuzz::expect_clean([&] {
    const Gpt2Bpe tok(fuzz::scratch_dir() + "/gpt2");
    static constexpr char kText[] = "abc a\n\xff\xc4\xa0 <|endoftext|>  aaa bcab\t\x00z";  // NUL and bad UTF-8 too
    const std::string text(kText, sizeof(kText) - 1);
    const std::vector<uint32_t> ids = tok.encode(text);
    for (const uint32_t id : ids) fuzz::fuzz_check(id < uint32_t(tok.vocab_size()), "encode gave an id out of range");
    fuzz::fuzz_check(tok.decode(ids) == text, "decode(encode(text)) != text");
  });
  return 0;
}
