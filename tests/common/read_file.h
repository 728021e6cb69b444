// The whole content of a file as bytes ("" when it cannot be read), for tests that compare files or search logs.
#pragma once
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace dytrain::testing {

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// True when the build found an MPI launcher (DYTRAIN_MPIEXEC, a compile definition of the CLI tests, is blank
// otherwise).
#ifdef DYTRAIN_MPIEXEC
inline bool have_mpi() { return std::string(DYTRAIN_MPIEXEC).find_first_not_of(' ') != std::string::npos; }
#endif

}  // namespace dytrain::testing
