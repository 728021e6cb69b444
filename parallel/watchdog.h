// The collective watchdog: a rank that waits in a collective for a peer that never answers (a cut link, a vanished
// host, a rank stuck outside MPI) prints one line naming itself and the peers it waits for, and ends itself a grace
// period later if the collective has still not completed, so mpirun takes the job down instead of leaving every
// rank spinning until OpenMPI's own timeouts (8 minutes and more) or the scheduler's limit. The NCCL backend has its
// own timeout; this one guards every host-side collective call.
//
// Why the grace: when a link is cut, mpirun can only end the job quickly while its connection to the lost host is
// idle (OpenMPI's TCP keepalive, which launch/mpirun.sh sets to notice a dead peer in 20 to 40 s, then declares the
// host lost). A rank that exits makes mpirun send "kill" to every host, and a send into a dead link waits for TCP's
// retransmissions (15 minutes) instead. So the line comes at the limit, and the exit, which ends the job when a peer
// is stuck but reachable, only after keepalive had its chance (openmpi_keepalive_grace_s).
//
// The limit: max(timeout, 20 x the slowest step so far); until the first step_done (the trainer reports the training
// steps after the first of a process, without validation or checkpoints) and while a checkpoint is written or a
// validation runs (Relaxed), at least kSlowPhaseFloorS, because those phases include one-off work (first NCCL
// connections, file I/O of the whole model) that a peer may legitimately still be doing.
#pragma once
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace dytrain {

constexpr double kSlowPhaseFloorS = 300.0;

// The grace between the line and the exit: the longest OpenMPI's keepalive takes to declare a silent peer lost
// (time + intvl x probes, from the OMPI_MCA_oob_tcp_keepalive_* variables mpirun gives its ranks, else OpenMPI's
// defaults 300 + 20 x 9) plus 5 s for mpirun to end the job; 30 s when keepalive is off (time <= 0). launch/mpirun.sh
// sets 15 + 5 x 4: 40 s.
double openmpi_keepalive_grace_s();

// The decision, without a clock or a thread: times are seconds on any monotonic clock, passed in, so tests drive it.
class WatchdogState {
 public:
  WatchdogState(double timeout_s, double grace_s) : timeout_s_(timeout_s), grace_s_(grace_s) {}

  // A collective `op` (a string literal) of `group` (kept alive by the caller) starts or ends at `now`.
  void begin(const char* op, const std::string* group, double now);
  void end();
  void step_done(double step_s);
  void set_relaxed(bool relaxed) { relaxed_ = relaxed; }

  // The longest a collective may wait now, in seconds, and why (for the message).
  double limit_s() const;
  std::string limit_reason() const;
  // What to do at `now`: nothing, print `line` (the collective has waited past limit_s(); once per collective), or
  // print `line` and exit (it has waited grace_s more).
  struct Verdict {
    enum { none, warn, exit } action = none;
    std::string line;
  };
  Verdict check(double now);

 private:
  double timeout_s_;
  double grace_s_;
  double slowest_step_s_ = 0.0;
  bool stepped_ = false;
  bool relaxed_ = false;
  const char* op_ = nullptr;  // null: no collective in progress
  const std::string* group_ = nullptr;
  double op_start_ = 0.0;
  bool warned_ = false;  // the line for the collective in progress was printed
};

// The thread around WatchdogState. It writes "<self>: watchdog: ..." lines to stderr and ends the process with
// _Exit(exit_code) after flushing: it never calls MPI (MPI runs FUNNELED, on the main thread only), and mpirun ends
// the rest of the job when a rank exits non-zero.
class Watchdog {
 public:
  // self: "rank R on HOST". grace_s: see openmpi_keepalive_grace_s. poll_s: how often the thread looks (the tests
  // shorten it).
  Watchdog(double timeout_s, double grace_s, std::string self, int exit_code, double poll_s = 1.0);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  void begin(const char* op, const std::string* group);
  void end();
  void step_done(double step_s);

  // While one lives (a checkpoint being written), the limit is at least kSlowPhaseFloorS. A null watchdog is allowed.
  class Relaxed {
   public:
    explicit Relaxed(Watchdog* w);
    ~Relaxed();
    Relaxed(const Relaxed&) = delete;
    Relaxed& operator=(const Relaxed&) = delete;

   private:
    Watchdog* w_;
  };

 private:
  void watch();

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  WatchdogState state_;
  std::string self_;
  int exit_code_;
  double poll_s_;
  std::thread thread_;
};

}  // namespace dytrain
