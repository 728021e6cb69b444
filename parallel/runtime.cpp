// MPI is initialized with MPI_THREAD_FUNNELED: OpenMP threads do the math, only the main thread communicates.
// MPI_COMM_WORLD gets MPI_ERRORS_RETURN so a failing MPI call becomes an exception (DYTRAIN_MPI_CHECK) that main()
// turns into abort_job, with rank, host and dytrain's context in the message, instead of MPI's default abort from
// inside the library.
#include "parallel/runtime.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#if DYTRAIN_HAVE_MPI
#include <mpi.h>

#include "parallel/mpi_check.h"
#endif

namespace dytrain {
namespace {

int world_rank() {
#if DYTRAIN_HAVE_MPI
  if (mpi_active()) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return rank;
  }
#endif
  return 0;
}

}  // namespace

bool mpi_active() {
#if DYTRAIN_HAVE_MPI
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
#else
  return false;
#endif
}

bool launched_by_mpi() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK");
}

ProcessRuntime::ProcessRuntime(int& argc, char**& argv) {
  if (!launched_by_mpi()) return;
#if DYTRAIN_HAVE_MPI
  int provided = 0;
  DYTRAIN_MPI_CHECK(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided));
  uses_mpi_ = true;
  DYTRAIN_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  if (provided < MPI_THREAD_FUNNELED) {
    abort_job(1, "the MPI library provides thread level " + std::to_string(provided) +
                     ", dytrain needs MPI_THREAD_FUNNELED; rebuild against a thread-capable MPI");
  }
#else
  std::fprintf(stderr,
               "dytrain: started by an MPI launcher but built without MPI (DYTRAIN_WITH_MPI=OFF or MPI not found); "
               "every rank runs alone. Rebuild with MPI for multi-process training.\n");
#endif
}

ProcessRuntime::~ProcessRuntime() {
#if DYTRAIN_HAVE_MPI
  if (uses_mpi_ && mpi_active()) MPI_Finalize();
#endif
}

bool is_root() { return world_rank() == 0; }

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "unknown-host";
  return name;
}

std::string process_label() { return "rank " + std::to_string(world_rank()) + " on " + host_name(); }

void abort_job(int exit_code, const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", process_label().c_str(), message.c_str());
  std::fflush(stderr);
#if DYTRAIN_HAVE_MPI
  if (mpi_active()) {
    MPI_Abort(MPI_COMM_WORLD, exit_code);
    // MPI_Abort does not return under OpenMPI; _Exit keeps the promise of [[noreturn]] for an MPI that would.
    std::_Exit(exit_code);
  }
#endif
  std::exit(exit_code);
}

}  // namespace dytrain
