// Run by CTest under mpirun -np 2 with WILL_FAIL and a 30 s timeout: rank 1 gives up through abort_job while rank 0
// waits in a barrier it can never leave. The test passes only when the whole job ends with a non-zero status in time,
// which is what abort_job promises (a failed rank must not leave its peers hanging until the scheduler's limit).
#include <chrono>
#include <cstdio>
#include <thread>

#include "parallel/mesh.h"
#include "parallel/runtime.h"

int main(int argc, char** argv) {
  dytrain::ProcessRuntime runtime(argc, argv);
  dytrain::Mesh mesh = dytrain::make_mesh(1);
  if (mesh.world_size < 2) {
    std::fprintf(stderr, "abort_helper needs 2 ranks (mpirun -np 2)\n");
    return 2;
  }
  if (mesh.world_rank == 1) {
    // Let rank 0 reach the barrier first, so the abort has to pull it out of a blocked collective.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    dytrain::abort_job(3, "abort_helper: giving up on purpose while rank 0 waits in a barrier");
  }
  mesh.world->barrier();
  return 0;
}
