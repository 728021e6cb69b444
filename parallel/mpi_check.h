// One check for every MPI call. Communicators carry MPI_ERRORS_RETURN, so a failing call returns its code here and
// becomes an exception naming the rank, host, statement, file, line and MPI's own error string; main() catches it and
// calls abort_job, which takes the whole job down.
#pragma once
#include <mpi.h>

namespace dytrain {

[[noreturn]] void throw_mpi_error(int code, const char* statement, const char* file, int line);

}  // namespace dytrain

#define DYTRAIN_MPI_CHECK(call)                                                  \
  do {                                                                           \
    const int dytrain_mpi_code_ = (call);                                        \
    if (dytrain_mpi_code_ != MPI_SUCCESS) {                                      \
      ::dytrain::throw_mpi_error(dytrain_mpi_code_, #call, __FILE__, __LINE__);  \
    }                                                                            \
  } while (0)
