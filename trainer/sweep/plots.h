// PNG plots through tools/dytrain_plots.py (python3 + matplotlib), so dytrain links no plotting library.
//
// Design decisions:
// - The interpreter must import matplotlib: $DYTRAIN_PYTHON if set, else /usr/bin/python3 (where Debian's
//   python3-matplotlib lives), else python3 on PATH (often a pyenv interpreter without it). Each candidate is
//   probed with `-c "import matplotlib"` once per process.
// - The script is found at $DYTRAIN_TOOLS_DIR/dytrain_plots.py, else in the source tree this binary was built
//   from (tools/), so an installed or relocated binary can be pointed at it.
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace dytrain {

// The first interpreter that imports matplotlib, or nullopt.
std::optional<std::string> matplotlib_python();

// Runs `python tools/dytrain_plots.py args...`; returns its exit status, or -1 (with `*why` filled) when no
// interpreter with matplotlib or no script was found.
int run_plot_script(const std::vector<std::string>& args, std::string* why);

}  // namespace dytrain
