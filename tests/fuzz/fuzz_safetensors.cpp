// Fuzz target: the safetensors reader (trainer/checkpoint/safetensors.h), as a checkpoint load uses it: the
// validated index, then every tensor read. The index promises offsets inside the file, matching shapes and no
// overlap, so reading every tensor into a buffer of its numel must stay in bounds.
#include <cstdint>
#include <vector>

#include "tests/fuzz/fuzz_input.h"
#include "trainer/checkpoint/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dytrain;
  const std::string path = fuzz::write_input("model.safetensors", fuzz::as_text(data, size));
  fuzz::expect_clean([&] {
    const SafetensorsIndex index = read_safetensors_index(path);
    for (const auto& [name, info] : index.tensors) {
      fuzz::fuzz_check(info.end - info.begin <= size, "tensor " + name + " holds more bytes than the file");
      std::vector<float> out(static_cast<size_t>(info.numel));
      read_tensor(out.data(), index, name);
    }
  });
  return 0;
}
