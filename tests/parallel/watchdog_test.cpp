// The collective watchdog: the limit and grace rules on explicit times (no clock), then the real thread warning and
// ending a process that waits too long in a collective (death tests with short timeouts), through the watched
// communicator as the trainer uses it.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "parallel/watched_comm.h"
#include "parallel/watchdog.h"

namespace dytrain {
namespace {

const std::string kGroup = "the dp group of world ranks 0 on host-a, 1 on host-b (this is rank 0)";

TEST(WatchdogState, QuietWithoutCollectiveInProgress) {
  WatchdogState s(10.0, 30.0);
  s.step_done(0.1);
  EXPECT_EQ(s.check(1e6).action, WatchdogState::Verdict::none);
  s.begin("all_reduce", &kGroup, 0.0);
  s.end();
  EXPECT_EQ(s.check(1e6).action, WatchdogState::Verdict::none);
}

TEST(WatchdogState, FloorBeforeTheFirstStep) {
  WatchdogState s(10.0, 30.0);
  EXPECT_EQ(s.limit_s(), kSlowPhaseFloorS);
  s.begin("broadcast", &kGroup, 100.0);
  EXPECT_EQ(s.check(100.0 + kSlowPhaseFloorS - 1).action, WatchdogState::Verdict::none);
  EXPECT_EQ(s.check(100.0 + kSlowPhaseFloorS + 1).action, WatchdogState::Verdict::warn);
}

TEST(WatchdogState, WarnsAtTheLimitThenExitsAfterTheGrace) {
  WatchdogState s(10.0, /*grace_s=*/30.0);
  s.step_done(0.05);
  s.step_done(0.1);
  EXPECT_EQ(s.limit_s(), 10.0);
  s.begin("all_reduce", &kGroup, 50.0);
  EXPECT_EQ(s.check(59.5).action, WatchdogState::Verdict::none);
  const WatchdogState::Verdict warn = s.check(60.5);
  ASSERT_EQ(warn.action, WatchdogState::Verdict::warn);
  // The line names the operation, the group with its members' hosts, how long, and what to do.
  EXPECT_NE(warn.line.find("all_reduce in " + kGroup), std::string::npos) << warn.line;
  EXPECT_NE(warn.line.find("has waited 10.5 s"), std::string::npos) << warn.line;
  EXPECT_NE(warn.line.find("parallel.timeout_s = 10"), std::string::npos) << warn.line;
  EXPECT_NE(warn.line.find("ends in 30 s"), std::string::npos) << warn.line;
  EXPECT_NE(warn.line.find("--resume"), std::string::npos) << warn.line;
  EXPECT_EQ(s.check(61.0).action, WatchdogState::Verdict::none);  // one line per collective
  EXPECT_EQ(s.check(89.5).action, WatchdogState::Verdict::none);
  EXPECT_EQ(s.check(90.5).action, WatchdogState::Verdict::exit);
}

TEST(WatchdogState, ACollectiveThatCompletesInTheGraceIsForgiven) {
  WatchdogState s(10.0, 30.0);
  s.step_done(0.1);
  s.begin("all_reduce", &kGroup, 0.0);
  EXPECT_EQ(s.check(11.0).action, WatchdogState::Verdict::warn);
  s.end();
  EXPECT_EQ(s.check(100.0).action, WatchdogState::Verdict::none);
  s.begin("all_reduce", &kGroup, 100.0);  // the next one is judged on its own
  EXPECT_EQ(s.check(105.0).action, WatchdogState::Verdict::none);
  EXPECT_EQ(s.check(111.0).action, WatchdogState::Verdict::warn);
}

TEST(WatchdogState, TwentySlowestStepsWhenLonger) {
  WatchdogState s(10.0, 30.0);
  s.step_done(2.0);
  s.step_done(0.5);  // the slowest step so far counts, not the last
  EXPECT_EQ(s.limit_s(), 40.0);
  s.begin("synchronize", &kGroup, 0.0);
  EXPECT_EQ(s.check(39.0).action, WatchdogState::Verdict::none);
  EXPECT_EQ(s.check(41.0).action, WatchdogState::Verdict::warn);
}

TEST(WatchdogState, FloorWhileRelaxed) {
  WatchdogState s(10.0, 30.0);
  s.step_done(0.1);
  s.set_relaxed(true);
  EXPECT_EQ(s.limit_s(), kSlowPhaseFloorS);
  s.set_relaxed(false);
  EXPECT_EQ(s.limit_s(), 10.0);
}

// The grace follows the keepalive mpirun runs with, so the exit never comes before OpenMPI could notice a lost host.
TEST(WatchdogGrace, FromOpenMpiKeepalive) {
  const char* names[] = {"OMPI_MCA_oob_tcp_keepalive_time", "OMPI_MCA_oob_tcp_keepalive_intvl",
                         "OMPI_MCA_oob_tcp_keepalive_probes"};
  for (const char* n : names) unsetenv(n);
  EXPECT_EQ(openmpi_keepalive_grace_s(), 300 + 20 * 9 + 5);  // OpenMPI's defaults
  setenv(names[0], "15", 1);
  setenv(names[1], "5", 1);
  setenv(names[2], "4", 1);
  EXPECT_EQ(openmpi_keepalive_grace_s(), 15 + 5 * 4 + 5);  // launch/mpirun.sh's
  setenv(names[0], "0", 1);
  EXPECT_EQ(openmpi_keepalive_grace_s(), 30);  // keepalive off: nothing to wait for
  for (const char* n : names) unsetenv(n);
}

// Ends the process from the watchdog thread while the main thread is blocked (here: sleeping in a fake collective).
class BlockingCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 2; }
  void all_reduce(float*, int64_t, ReduceOp) override { block(); }
  void all_reduce(double*, int64_t, ReduceOp) override { block(); }
  void reduce_scatter(float*, const float*, int64_t, ReduceOp) override { block(); }
  void all_gather(float*, const float*, int64_t) override { block(); }
  void broadcast(void*, int64_t, int) override { block(); }
  void barrier() override { block(); }

 private:
  static void block() { std::this_thread::sleep_for(std::chrono::seconds(20)); }
};

TEST(WatchdogDeathTest, EndsARankStuckInACollective) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        Watchdog watchdog(0.2, /*grace_s=*/0.3, "rank 0 on host-a", 1, /*poll_s=*/0.02);
        watchdog.step_done(0.001);
        auto comm = make_watched_communicator(std::make_unique<BlockingCommunicator>(), watchdog, kGroup);
        comm->barrier();
      },
      testing::ExitedWithCode(1),
      "rank 0 on host-a: watchdog: barrier in the dp group of world ranks 0 on host-a, 1 on host-b .* has waited .*\n"
      "rank 0 on host-a: watchdog: barrier in the dp group .* still waits after");
}

// Collectives that return leave the watchdog quiet through many limits; exits 0, or 3 when a call did not reach the
// wrapped communicator.
[[noreturn]] void run_finished_collectives() {
  Watchdog watchdog(0.05, /*grace_s=*/0.05, "rank 0 on host-a", 1, /*poll_s=*/0.01);
  watchdog.step_done(0.001);
  auto comm = make_watched_communicator(make_self_communicator(), watchdog, kGroup);
  float x[2] = {1.0f, 2.0f};
  float y[2] = {};
  comm->all_reduce(x, 2, ReduceOp::sum);
  comm->all_gather(y, x, 2);
  if (y[0] != 1.0f || y[1] != 2.0f) std::_Exit(3);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::_Exit(0);
}

TEST(WatchdogDeathTest, LeavesFinishedCollectivesAlone) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(run_finished_collectives(), testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace dytrain
