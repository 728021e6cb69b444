#include "trainer/sweep/plots.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

extern char** environ;

namespace dytrain {
namespace {

namespace fs = std::filesystem;

// posix_spawnp and wait; stdout and stderr silenced when `quiet`. -1 when the program cannot start.
int run_and_wait(const std::vector<std::string>& argv, bool quiet) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (quiet) {
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1;
  int st = 0;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

std::string script_path() {
  const char* dir = std::getenv("DYTRAIN_TOOLS_DIR");
  return (fs::path(dir && *dir ? dir : DYTRAIN_SOURCE_DIR "/tools") / "dytrain_plots.py").string();
}

}  // namespace

std::optional<std::string> matplotlib_python() {
  static const std::optional<std::string> found = [] () -> std::optional<std::string> {
    std::vector<std::string> candidates;
    if (const char* p = std::getenv("DYTRAIN_PYTHON"); p && *p) candidates.push_back(p);
    candidates.push_back("/usr/bin/python3");
    candidates.push_back("python3");
    for (const auto& py : candidates)
      if (run_and_wait({py, "-c", "import matplotlib"}, true) == 0) return py;
    return std::nullopt;
  }();
  return found;
}

int run_plot_script(const std::vector<std::string>& args, std::string* why) {
  const auto py = matplotlib_python();
  if (!py) {
    *why = "no python3 with matplotlib found (install the Debian package python3-matplotlib, or point "
           "DYTRAIN_PYTHON at an interpreter that has it)";
    return -1;
  }
  const std::string script = script_path();
  if (!fs::is_regular_file(script)) {
    *why = fmt::format("{} not found (set DYTRAIN_TOOLS_DIR to the folder holding dytrain_plots.py)", script);
    return -1;
  }
  std::vector<std::string> argv = {*py, script};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_and_wait(argv, false);
}

}  // namespace dytrain
