// trainer_state.yaml is input: every key is checked for presence, type and range, and step against the directory
// name, before the trainer uses any of it; each error names the file and the key.
#include "trainer/checkpoint/trainer_state.h"

#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <string>

#include "tests/common/temp_dir.h"
#include "trainer/checkpoint/checkpoint.h"

namespace dytrain {
namespace {

using testing::TempDir;

// What Trainer::save_checkpoint_now and the engine write at step 40 under dp 2.
YAML::Node valid_state() {
  YAML::Node n;
  n["step"] = 40;
  n["tokens"] = 40960;
  n["config_hash"] = uint64_t(18446744073709551615ull);
  n["dp"] = 2;
  n["train_loader"]["epoch"] = 1;
  n["train_loader"]["cursor"] = 16;
  n["train_loader"]["seed"] = 1337;
  n["train_loader"]["shards"] = 1;
  n["train_loader"]["tokens"] = 100000;
  n["adam_t"] = 40;
  return n;
}

const std::string kDir = "/runs/a/checkpoints/step_00000040";
const std::string kPath = kDir + "/trainer_state.yaml";

// The CheckpointError message for `node` read from kDir; fails the test when nothing is thrown.
std::string error_of(const YAML::Node& node, const std::string& dir = kDir) {
  try {
    parse_trainer_state(node, dir + "/trainer_state.yaml", dir);
  } catch (const CheckpointError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no CheckpointError thrown";
  return "";
}

TEST(TrainerState, AValidStateParses) {
  const TrainerState s = parse_trainer_state(valid_state(), kPath, kDir);
  EXPECT_EQ(s.step, 40);
  EXPECT_EQ(s.tokens, 40960);
  EXPECT_EQ(s.adam_t, 40);
  EXPECT_EQ(s.dp, 2);
  EXPECT_EQ(s.config_hash, 18446744073709551615ull);
  EXPECT_EQ(s.train_loader["cursor"].as<int64_t>(), 16);
  // Checkpoints written before dp was recorded were dp 1; a directory not named step_N (--resume-from a copy) is
  // not compared with step.
  YAML::Node old = valid_state();
  old.remove("dp");
  EXPECT_EQ(parse_trainer_state(old, "/x/best/trainer_state.yaml", "/x/best").dp, 1);
}

TEST(TrainerState, EveryBadKeyIsNamedWithTheFile) {
  struct Case {
    const char* what;
    std::function<void(YAML::Node&)> edit;
    std::string key, phrase;
  };
  const std::vector<Case> cases = {
      {"negative step", [](YAML::Node& n) { n["step"] = -3; n["adam_t"] = -3; }, "'step'", "is -3"},
      {"step beyond int64", [](YAML::Node& n) { n["step"] = "99999999999999999999"; }, "'step'", "not an integer"},
      {"step as a float", [](YAML::Node& n) { n["step"] = "4e1"; }, "'step'", "not an integer"},
      {"step as text", [](YAML::Node& n) { n["step"] = "forty"; }, "'step'", "not an integer"},
      {"step as a list", [](YAML::Node& n) { n["step"] = std::vector<int>{1, 2}; }, "'step'", "not an integer"},
      {"step missing", [](YAML::Node& n) { n.remove("step"); }, "'step'", "is missing"},
      {"negative tokens", [](YAML::Node& n) { n["tokens"] = -1; }, "'tokens'", "is -1"},
      {"adam_t -1", [](YAML::Node& n) { n["adam_t"] = -1; }, "'adam_t'", "is -1, it must be 40"},
      {"adam_t ahead of step", [](YAML::Node& n) { n["adam_t"] = 41; }, "'adam_t'", "is 41"},
      {"adam_t missing", [](YAML::Node& n) { n.remove("adam_t"); }, "'adam_t'", "is missing"},
      {"dp 0", [](YAML::Node& n) { n["dp"] = 0; }, "'dp'", "is 0"},
      {"dp null", [](YAML::Node& n) { n["dp"] = YAML::Node(YAML::NodeType::Null); }, "'dp'", "not an integer"},
      {"config_hash missing", [](YAML::Node& n) { n.remove("config_hash"); }, "'config_hash'", "is missing"},
      {"config_hash negative", [](YAML::Node& n) { n["config_hash"] = -5; }, "'config_hash'", "not an integer"},
      {"loader missing", [](YAML::Node& n) { n.remove("train_loader"); }, "'train_loader'", "is missing"},
      {"loader a number", [](YAML::Node& n) { n["train_loader"] = 3; }, "'train_loader'", "not a map"},
      {"negative cursor", [](YAML::Node& n) { n["train_loader"]["cursor"] = -8; }, "'train_loader.cursor'", "is -8"},
      {"negative epoch", [](YAML::Node& n) { n["train_loader"]["epoch"] = -1; }, "'train_loader.epoch'", "is -1"},
      {"negative seed", [](YAML::Node& n) { n["train_loader"]["seed"] = -1; }, "'train_loader.seed'", "not an integer"},
      {"shards missing", [](YAML::Node& n) { n["train_loader"].remove("shards"); }, "'train_loader.shards'", "missing"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    YAML::Node n = valid_state();
    c.edit(n);
    const std::string msg = error_of(n);
    EXPECT_NE(msg.find(kPath), std::string::npos) << msg;
    EXPECT_NE(msg.find("key " + c.key), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.phrase), std::string::npos) << msg;
  }
  EXPECT_NE(error_of(YAML::Load("[1, 2]")).find("not a map"), std::string::npos);
  EXPECT_NE(error_of(YAML::Node()).find("not a map"), std::string::npos);
}

TEST(TrainerState, StepMustMatchTheDirectoryName) {
  // A checkpoint copied to a higher step_ name would otherwise win every --resume.
  const std::string copied = "/runs/a/checkpoints/step_999999999999999999";
  const std::string msg = error_of(valid_state(), copied);
  EXPECT_NE(msg.find(copied + "/trainer_state.yaml"), std::string::npos) << msg;
  EXPECT_NE(msg.find("key 'step' is 40 but the directory is named step_999999999999999999"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("step_00000040"), std::string::npos) << msg;
  EXPECT_NO_THROW(parse_trainer_state(valid_state(), "/r/step_40/trainer_state.yaml", "/r/step_40"));
}

TEST(TrainerState, ReadNamesAMissingDirectoryOrFileAndBadYaml) {
  TempDir dir;
  try {
    read_trainer_state(dir.file("nowhere"));
    ADD_FAILURE() << "no CheckpointError thrown";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find(dir.file("nowhere") + ": no such checkpoint directory"), std::string::npos);
  }
  try {
    read_trainer_state(dir.path().string());
    ADD_FAILURE() << "no CheckpointError thrown";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find(dir.file("trainer_state.yaml") + ": missing"), std::string::npos);
  }
  dir.write("trainer_state.yaml", "step: [unclosed\n");
  try {
    read_trainer_state(dir.path().string());
    ADD_FAILURE() << "no CheckpointError thrown";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("not valid YAML"), std::string::npos) << e.what();
  }
  YAML::Emitter out;
  out << valid_state();
  dir.write("trainer_state.yaml", out.c_str());
  EXPECT_EQ(read_trainer_state(dir.path().string()).step, 40);
}

}  // namespace
}  // namespace dytrain
