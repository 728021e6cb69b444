// Test-only failure injection, so the tests can check on CPU, through the real training loop under mpirun, that a
// failure on one rank ends the whole job in seconds. Off unless the environment sets
//
//   DYTRAIN_TEST_THROW_AT=backward:rank<R>:step<S>     e.g. backward:rank1:step3
//
// which makes world rank R throw std::runtime_error in step S's last backward pass, right after the first layer's
// gradient average has been started (the overlapped dp hooks of grad_sync.h): its dp peers are then inside, or on
// their way into, collectives this rank will never join. The variable is read once, when the engine is built; a
// malformed value is an error (std::invalid_argument), not silently ignored.
//
// To stand in on CPU for what makes a GPU job slow to die, the engine that fired also waits in its teardown as an NCCL
// communicator with unmatched collectives does (ncclCommFinalize polls for its peers up to the NCCL timeout, 10
// minutes): a job whose failing rank unwinds its engine before ending the job takes that long; one that ends the job
// first (trainer.cpp) never gets there.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace dytrain {

struct FaultSpec {
  std::string point;  // "backward"
  int rank = 0;       // world rank
  int64_t step = 0;   // 1-based optimizer step
};

// Parses a DYTRAIN_TEST_THROW_AT value; nullopt for empty. Throws std::invalid_argument naming the variable.
std::optional<FaultSpec> parse_fault_spec(const std::string& value);

class InjectedFault {
 public:
  InjectedFault(int world_rank, int world_size);  // reads DYTRAIN_TEST_THROW_AT
  ~InjectedFault();  // waits kTeardownWaitS if the fault fired and the rank has peers (see above)
  InjectedFault(const InjectedFault&) = delete;
  InjectedFault& operator=(const InjectedFault&) = delete;

  // Throws when `point` of `step` is the configured one on this rank.
  void at(const char* point, int64_t step);

  static constexpr double kTeardownWaitS = 600.0;  // NCCL's default timeout (parallel/nccl_comm.h)

 private:
  std::optional<FaultSpec> spec_;
  int world_rank_, world_size_;
  bool fired_ = false;
};

}  // namespace dytrain
