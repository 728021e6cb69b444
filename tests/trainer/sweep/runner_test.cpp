// The runner on real sweeps of a tiny model (the dytrain binary as child): points run and are skipped when the sweep
// runs again; a point with a huge lr is marked diverged and the sweep goes on; the metrics watch stops a running
// child; the report's table values equal the values computed here straight from each run's metrics.jsonl.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "tests/trainer/sweep/sweep_test_util.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/sweep/report.h"
#include "trainer/sweep/runner.h"
#include "trainer/sweep/slurm.h"
#include "trainer/sweep/status.h"

namespace dytrain {
namespace {

namespace fs = std::filesystem;

std::string read_all(std::FILE* f) {
  std::rewind(f);
  std::string s;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) s.append(buf, n);
  return s;
}

// Every path under `root`, relative to it.
std::set<std::string> tree(const fs::path& root) {
  std::set<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root)) out.insert(fs::relative(e.path(), root).string());
  return out;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

class RunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // One thread per child: the suite runs beside other test binaries on a 2-core CI machine.
    setenv("OMP_NUM_THREADS", "1", 1);
    testing::write_text(dir_.file("base.yaml"), testing::tiny_base_yaml());
    opt_.sweep_dir = dir_.file("sweep");
    opt_.exe = DYTRAIN_EXE;
    opt_.poll_s = 0.05;
  }
  void TearDown() override {
    if (opt_.out != stdout) std::fclose(opt_.out);
  }

  SweepSpec spec(const std::string& body) {
    testing::write_text(dir_.file("spec.yaml"), "name: t\nbase: base.yaml\n" + body);
    return load_sweep_spec(dir_.file("spec.yaml"));
  }

  // Runs the sweep with progress captured; returns (exit code, progress text).
  std::pair<int, std::string> run(const SweepSpec& s) {
    if (opt_.out != stdout) std::fclose(opt_.out);
    opt_.out = std::tmpfile();
    const int rc = run_sweep(s, opt_);
    return {rc, read_all(opt_.out)};
  }

  std::string status(const std::string& point) {
    const auto s = read_point_status(opt_.sweep_dir + "/" + point);
    return s ? s->status : "none";
  }

  testing::TempDir dir_;
  RunnerOptions opt_;
};

TEST_F(RunnerTest, RunsPointsSkipsThemOnRerunAndReportMatchesMetrics) {
  const SweepSpec s = spec("grid: {alpha_attn: [0.5, 2], alpha_ffn: [0.25, 1]}\n");
  auto [rc, text] = run(s);
  ASSERT_EQ(rc, 0) << text;
  std::map<std::string, fs::file_time_type> mtimes;
  for (const auto& p : s.points) {
    EXPECT_EQ(status(p.name), "done") << p.name;
    EXPECT_EQ(latest_checkpoint_step(opt_.sweep_dir + "/" + p.name), 12);
    mtimes[p.name] = fs::last_write_time(opt_.sweep_dir + "/" + p.name + "/metrics.jsonl");
  }
  EXPECT_NE(text.find("[4/4]"), std::string::npos) << text;

  std::tie(rc, text) = run(s);
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(count(text, "skipped"), 4u) << text;
  for (const auto& p : s.points)
    EXPECT_EQ(fs::last_write_time(opt_.sweep_dir + "/" + p.name + "/metrics.jsonl"), mtimes[p.name]) << p.name;

  ReportOptions ro;
  ro.sweep_dir = opt_.sweep_dir;
  ro.plots = false;
  ro.out = std::tmpfile();
  ASSERT_EQ(sweep_report(ro), 0);
  std::fclose(ro.out);
  std::ifstream md_file(opt_.sweep_dir + "/report/report.md");
  std::stringstream md;
  md << md_file.rdbuf();

  // Independently of the report code: parse each metrics.jsonl here and take the mean of the last 5 losses and
  // the last val_loss, then find those numbers in points.csv (full precision) and in report.md (4 decimals).
  std::ifstream csv(opt_.sweep_dir + "/report/points.csv");
  std::string header, row;
  std::getline(csv, header);
  int rows = 0;
  while (std::getline(csv, row)) {
    std::vector<std::string> f;
    std::stringstream ss(row);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    ASSERT_EQ(f.size(), 17u) << row;
    std::vector<double> losses;
    double val = 0;
    std::ifstream m(opt_.sweep_dir + "/" + f[0] + "/metrics.jsonl");
    for (std::string line; std::getline(m, line);) {
      const YAML::Node n = YAML::Load(line);
      losses.push_back(n["loss"].as<double>());
      if (n["val_loss"]) val = n["val_loss"].as<double>();
    }
    ASSERT_EQ(losses.size(), 7u);  // steps 1, 2, 4, ..., 12 (log_every 2 and the first step)
    const double train = (losses[2] + losses[3] + losses[4] + losses[5] + losses[6]) / 5;
    // Same doubles summed in the same order; the CSV prints 17 significant digits, which round-trip.
    EXPECT_DOUBLE_EQ(std::stod(f[14]), train) << f[0];
    EXPECT_DOUBLE_EQ(std::stod(f[15]), val) << f[0];
    EXPECT_NE(md.str().find(fmt::format("{:.4f} / {:.4f}", train, val)), std::string::npos) << f[0];
    ++rows;
  }
  EXPECT_EQ(rows, 4);
}

TEST_F(RunnerTest, HugeLrDivergesAndTheSweepGoesOn) {
  const SweepSpec s = spec("set: {optim.grad_clip: 0, train.max_steps: 40}\ngrid: {lr: [10, 0.003]}\n");
  const auto [rc, text] = run(s);
  EXPECT_EQ(rc, 0) << text;
  EXPECT_EQ(status("lr10"), "diverged") << text;
  EXPECT_EQ(status("lr0.003"), "done") << text;
}

// A rerun whose only checkpoint has a damaged trainer_state.yaml must resume (and let the trainer say why nothing
// loads), never restart from scratch: that deleted the point's metrics.jsonl, then failed on the checkpoints.
TEST_F(RunnerTest, ADamagedCheckpointIsNeverRestartedOverItsMetrics) {
  const SweepSpec s = spec("set: {train.max_steps: 4, train.keep_checkpoints: 1}\ngrid: {seed: 3}\n");
  ASSERT_EQ(run(s).first, 0);
  const fs::path point = fs::path(opt_.sweep_dir) / "s3";
  std::ofstream(point / "checkpoints" / "step_00000004" / "trainer_state.yaml", std::ios::app) << "extra: [";
  write_point_status(point.string(), PointStatus{"interrupted", 4, 1.0, "test"});
  std::ifstream in(point / "metrics.jsonl");
  const std::string metrics((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(metrics.empty());
  const SweepSpec longer = spec("set: {train.max_steps: 8, train.keep_checkpoints: 1}\ngrid: {seed: 3}\n");
  run(longer);
  std::ifstream again(point / "metrics.jsonl");
  EXPECT_EQ(std::string((std::istreambuf_iterator<char>(again)), std::istreambuf_iterator<char>()), metrics);
  std::ifstream console(point / "console.log");
  const std::string log((std::istreambuf_iterator<char>(console)), std::istreambuf_iterator<char>());
  EXPECT_NE(log.find("does not load"), std::string::npos) << log;
}

TEST_F(RunnerTest, WatchStopsARunningChild) {
  // A negative margin makes every post-warmup line count as diverged: the runner must stop a child that would
  // otherwise train 5000 steps. A spec cannot say that (margins are > 0), so the loaded spec is changed here.
  SweepSpec s =
      spec("divergence: {after_step: 2}\nset: {train.max_steps: 5000, train.log_every: 1}\ngrid: {seed: 3}\n");
  s.divergence.margin_nats = -100;
  const auto [rc, text] = run(s);
  EXPECT_EQ(rc, 0) << text;
  const auto st = read_point_status(opt_.sweep_dir + "/s3");
  ASSERT_TRUE(st);
  EXPECT_EQ(st->status, "diverged");
  EXPECT_NE(st->reason.find("exceeds the first logged loss"), std::string::npos) << st->reason;
  EXPECT_EQ(st->exit_code, 4);  // SIGTERM: the trainer checkpoints and exits "interrupted"
  std::ifstream m(opt_.sweep_dir + "/s3/metrics.jsonl");
  int lines = 0;
  for (std::string l; std::getline(m, l);) ++lines;
  EXPECT_LT(lines, 5000);

  const auto again = run(s);
  EXPECT_EQ(count(again.second, "skipped"), 1u) << again.second;
}

TEST_F(RunnerTest, MpirunCommandAndSlurmScript) {
  const SweepSpec s = spec(
      "launch: {mode: slurm, np: 2, mpirun_args: [--oversubscribe], max_parallel: 3, time: '02:00:00'}\n"
      "grid: {alpha_attn: [0.5, 1, 2]}\n");
  const auto argv = point_command(s, s.points[1], opt_, "mpirun", true);
  ASSERT_GE(argv.size(), 8u);
  EXPECT_EQ(std::vector<std::string>(argv.begin(), argv.begin() + 6),
            (std::vector<std::string>{"mpirun", "-np", "2", "--oversubscribe", fs::absolute(DYTRAIN_EXE).string(),
                                      "train"}));
  EXPECT_EQ(argv.back(), "--resume");
  EXPECT_NE(std::find(argv.begin(), argv.end(), "model.alpha_attn=1"), argv.end());

  const std::string script = slurm_script_text(s, opt_, "/work/here");
  EXPECT_NE(script.find("#SBATCH --array=0-2%3\n"), std::string::npos) << script;
  EXPECT_NE(script.find("#SBATCH --ntasks=2\n"), std::string::npos);
  EXPECT_NE(script.find("#SBATCH --time=02:00:00\n"), std::string::npos);
  EXPECT_NE(script.find("cd /work/here\n"), std::string::npos) << script;
  EXPECT_NE(script.find("--point \"$SLURM_ARRAY_TASK_ID\" --mode mpirun"), std::string::npos) << script;
  // A quote in a path stays part of the path instead of ending the shell word.
  const std::string quoted = slurm_script_text(s, opt_, "/work/it's here");
  EXPECT_NE(quoted.find("cd '/work/it'\\''s here'\n"), std::string::npos) << quoted;
}

TEST_F(RunnerTest, HostileNamesWriteNothingOutsideTheSweepDirectory) {
  // Specs that did not come through load_sweep_spec (which rejects these names) must not escape either: the runner
  // and the Slurm writer check every name before they write anything.
  const SweepSpec good = spec("set: {train.max_steps: 2}\ngrid: {seed: 1}\n");
  fs::create_directories(dir_.file("cwd/runs"));
  const fs::path old_cwd = fs::current_path();
  fs::current_path(dir_.file("cwd"));  // runs/<name> is relative to the working directory
  const auto before = tree(dir_.path());
  for (const std::string& name : {std::string("../escape"), std::string("../../escape"), std::string("a/../../b"),
                                  dir_.file("absolute"), std::string(".."), std::string("."), std::string("")}) {
    SweepSpec by_name = good;  // the default sweep folder runs/<name>
    by_name.name = name;
    RunnerOptions o = opt_;
    o.sweep_dir.clear();
    EXPECT_THROW(run_sweep(by_name, o), ConfigError) << name;
    EXPECT_THROW(write_slurm_script(by_name, o), ConfigError) << name;
    SweepSpec by_point = good;  // a point folder inside an explicit --dir, deep enough that escapes stay in dir_
    by_point.points[0].name = name;
    o.sweep_dir = dir_.file("cwd/runs/t");
    EXPECT_THROW(run_sweep(by_point, o), ConfigError) << name;
    EXPECT_THROW(write_slurm_script(by_point, o), ConfigError) << name;
  }
  fs::current_path(old_cwd);
  EXPECT_EQ(tree(dir_.path()), before);
}

TEST_F(RunnerTest, StatusFileWithAKeyTwiceIsAnError) {
  // `status: done` then `status: failed`: one reader would skip the point, another rerun it.
  testing::write_text(dir_.file("p/status.yaml"), "status: done\nexit_code: 0\nstatus: failed\n");
  try {
    read_point_status(dir_.file("p"));
    ADD_FAILURE() << "a status.yaml with a key twice must not be read";
  } catch (const std::runtime_error& e) {
    const std::string expected = dir_.file("p/status.yaml") + ":3: key 'status' is given twice (first at line 1)";
    EXPECT_NE(std::string(e.what()).find(expected), std::string::npos)
        << e.what();
  }
}

// Whether a point is done is read from its newest *sound* checkpoint, as --resume picks it: a copied folder with a
// huge step, or one whose trainer_state.yaml disagrees with its name, must not mark the point finished.
TEST(SweepStatus, OnlyASoundCheckpointGivesTheLatestStep) {
  testing::TempDir run;
  const auto make = [&](const std::string& name, int step) {
    const fs::path d = run.path() / "checkpoints" / name;
    fs::create_directories(d);
    for (const char* f : kCheckpointFiles) std::ofstream(d / f) << "x";
    std::ofstream(d / "trainer_state.yaml")
        << fmt::format("step: {0}\ntokens: {1}\nadam_t: {0}\ndp: 1\nconfig_hash: 7\n"
                       "train_loader: {{epoch: 0, cursor: {0}, seed: 1, shards: 1, tokens: 5000}}\n",
                       step, step * 64);
  };
  EXPECT_EQ(latest_checkpoint_step(run.path().string()), std::nullopt);
  make("step_00000040", 40);
  EXPECT_EQ(latest_checkpoint_step(run.path().string()), 40);
  make("step_999999999999999999", 40);    // a copy: its state says 40
  make("step_99999999999999999999", 40);  // beyond int64: not a step name at all
  make("step_00000900", 900);
  std::ofstream(run.path() / "checkpoints" / "step_00000900" / "trainer_state.yaml") << "step: [";  // damaged
  EXPECT_EQ(latest_checkpoint_step(run.path().string()), 40);
}

}  // namespace
}  // namespace dytrain
