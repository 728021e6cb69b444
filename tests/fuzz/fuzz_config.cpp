// Fuzz target: the config loader (trainer/config/config.h), a file plus one --set override. Input: the first line
// is the override text (an empty first line means none), the rest is the file, written as configs/train/input.yaml
// next to copies of the repository's presets so includes resolve. A config the loader accepts must survive its own
// round trip: to_yaml -> load_config gives the same resolved text (a resume rereads config.yaml that way).
#include <string>
#include <vector>

#include "tests/fuzz/config_tree.h"
#include "tests/fuzz/fuzz_input.h"
#include "trainer/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dytrain;
  const std::string_view input = fuzz::as_text(data, size);
  const size_t eol = input.find('\n');
  const std::string override_text(input.substr(0, eol));
  const std::string_view file = eol == std::string_view::npos ? std::string_view() : input.substr(eol + 1);
  const std::string path = fuzz::write_input("configs/train/input.yaml", file);
  (void)fuzz::config_tree();
  fuzz::expect_clean([&] {
    std::vector<std::string> overrides;
    if (!override_text.empty()) overrides.push_back(override_text);
    const Config cfg = load_config(path, overrides);
    const std::string resolved = to_yaml(cfg);
    const std::string again_path = fuzz::write_input("resolved/config.yaml", resolved);
    std::string again;
    try {
      again = to_yaml(load_config(again_path));
    } catch (const std::exception& e) {
      fuzz::finding(std::string("the resolved config does not load again: ") + e.what() + "\n" + resolved);
    }
    fuzz::fuzz_check(again == resolved, "to_yaml -> load_config changed the config:\n" + resolved + "---\n" + again);
    (void)config_hash(cfg);
  });
  return 0;
}
