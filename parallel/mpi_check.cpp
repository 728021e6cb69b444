// The message of DYTRAIN_MPI_CHECK. It must not itself depend on MPI working: MPI_Error_string is a local lookup.
#include "parallel/mpi_check.h"

#include <stdexcept>
#include <string>

#include "parallel/runtime.h"

namespace dytrain {

void throw_mpi_error(int code, const char* statement, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) length = 0;
  throw std::runtime_error(process_label() + ": MPI error " + std::to_string(code) + " (" +
                           std::string(text, length) + ") in " + statement + " at " + file + ":" +
                           std::to_string(line) +
                           ". HINT: a peer rank may have died; look for its message above this one.");
}

}  // namespace dytrain
