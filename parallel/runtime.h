// The process runtime: MPI's lifetime and the job-wide failure path. MPI is initialized only when a launcher
// (mpirun, srun) started the process, so a plain `./dytrain` run never touches MPI, and one helper turns any fatal
// error on any rank into the end of the whole job within seconds: a rank that dies while its peers wait in a
// collective would otherwise hang the job until the scheduler's time limit.
#pragma once
#include <cstdint>
#include <string>

namespace dytrain {

class Communicator;

// Create first thing in main(); it finalizes MPI when it goes out of scope, so every communicator must be destroyed
// before it (declare the runtime before the mesh). Not copyable; one per process.
class ProcessRuntime {
 public:
  ProcessRuntime(int& argc, char**& argv);
  ~ProcessRuntime();
  ProcessRuntime(const ProcessRuntime&) = delete;
  ProcessRuntime& operator=(const ProcessRuntime&) = delete;

  // True when this process initialized MPI (it was started by mpirun or srun and MPI was built in).
  bool uses_mpi() const { return uses_mpi_; }

 private:
  bool uses_mpi_ = false;
};

// True when the environment says a launcher started this process (OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK).
bool launched_by_mpi();

// True between MPI_Init and MPI_Finalize; always false in a build without MPI.
bool mpi_active();

// Rank 0 of MPI_COMM_WORLD, or the only process when MPI is not running: the one that logs and writes files.
bool is_root();

std::string host_name();

// "rank R on HOST" for error messages (rank 0 when MPI is not running).
std::string process_label();

// Logs "rank R on HOST: message" to stderr and ends the job: under MPI through MPI_Abort(MPI_COMM_WORLD, exit_code),
// which takes every rank down, otherwise through exit(exit_code). Meant for main()'s catch block.
[[noreturn]] void abort_job(int exit_code, const std::string& message);

// Throws on every rank when `value` (e.g. a hash of the resolved config) is not the same on all ranks of world, naming
// the lowest differing rank, its value and rank 0's. Every rank must call it (it is a collective).
void check_same_on_all_ranks(Communicator& world, uint64_t value, const std::string& what);

}  // namespace dytrain
