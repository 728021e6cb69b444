// Fuzz target: the sweep spec reader (trainer/sweep/spec.h). The input is written as configs/sweeps/input.yaml next
// to copies of the repository's presets, so `base: ../train/tiny.yaml` resolves as it does for the shipped specs.
// Every point of an accepted spec has a name that is unique and names one directory under the sweep folder.
#include <set>
#include <string>

#include "tests/fuzz/config_tree.h"
#include "tests/fuzz/fuzz_input.h"
#include "trainer/sweep/spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dytrain;
  (void)fuzz::config_tree();
  const std::string path = fuzz::write_input("configs/sweeps/input.yaml", fuzz::as_text(data, size));
  fuzz::expect_clean([&] {
    const SweepSpec spec = load_sweep_spec(path);
    std::set<std::string> names;
    for (const SweepPoint& p : spec.points) {
      fuzz::fuzz_check(names.insert(p.name).second, "point name " + p.name + " appears twice");
      fuzz::fuzz_check(!p.name.empty() && p.name.find('/') == std::string::npos && p.name != "." && p.name != "..",
                       "point name '" + p.name + "' is not one directory name");
    }
  });
  return 0;
}
