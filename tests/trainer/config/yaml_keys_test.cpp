// Duplicate keys: yaml-cpp loads `{a: 1, a: 2}` silently (both pairs kept, node["a"] is the first, iteration applies
// the last). duplicate_key_error finds them in any map, names the file, both lines and the key path, and does not
// mistake a map reached twice through an alias for a duplicate. The config loader rejects them in a file and in an
// included base.
#include <yaml-cpp/yaml.h>

#include "tests/trainer/config/config_test_util.h"
#include "trainer/config/yaml_keys.h"

namespace dytrain {
namespace {

using testing::expect_config_error;
using testing::kValidYaml;
using testing::TempDir;

std::string dup(const std::string& text) { return duplicate_key_error(YAML::Load(text), "f.yaml"); }

TEST(YamlKeys, YamlCppKeepsBothPairs) {
  // The premise: without the check, readers disagree on the value.
  const YAML::Node n = YAML::Load("{a: 1, a: 2}");
  EXPECT_EQ(n.size(), 2u);
  EXPECT_EQ(n["a"].as<int>(), 1);
}

TEST(YamlKeys, NamesFileBothLinesAndThePath) {
  EXPECT_EQ(dup("model:\n  dim: 8\n  n_layers: 2\n  dim: 16\n"),
            "f.yaml:4: key 'model.dim' is given twice (first at line 2); a YAML map takes each key once: keep the one "
            "you mean");
  EXPECT_NE(dup("a: 1\nb: 2\na: 3\n").find("f.yaml:3: key 'a' is given twice (first at line 1)"), std::string::npos);
  EXPECT_NE(dup("{a: 1, a: 2}").find("key 'a' is given twice"), std::string::npos);
  EXPECT_NE(dup("a: 1\n'a': 2\n").find("key 'a'"), std::string::npos);  // quoting does not make another key
  EXPECT_NE(dup("points:\n  - {x: 1}\n  - {x: 1, y: 2, x: 3}\n").find("f.yaml:3: key 'points[1].x'"),
            std::string::npos);
  EXPECT_NE(dup("a:\n  b:\n    - c: {d: 1, d: 2}\n").find("key 'a.b[0].c.d'"), std::string::npos);
  EXPECT_NE(dup("? [1, 2]\n: x\n? [1, 2]\n: y\n").find("key '[1, 2]'"), std::string::npos);
}

TEST(YamlKeys, UniqueKeysPass) {
  EXPECT_EQ(dup(kValidYaml), "");
  EXPECT_EQ(dup("a: {x: 1}\nb: {x: 1}\nc: [{x: 1}, {x: 2}]\n"), "");  // the same key in different maps
  EXPECT_EQ(dup("a: &m {x: 1, y: 2}\nb: *m\nc: [*m, *m]\n"), "");   // one map reached three times
  EXPECT_EQ(dup(""), "");
  EXPECT_EQ(dup("just a scalar"), "");
}

TEST(YamlKeys, AliasesAreWalkedOnce) {
  // "Billion laughs": 9 levels of 10 aliases reach the innermost list 10^9 times; each list is checked once.
  std::string text = "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 10; ++i) {
    const std::string prev = "*l" + std::to_string(i - 1);
    text += "l" + std::to_string(i) + ": &l" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) text += prev + (j < 9 ? ", " : "]\n");
  }
  EXPECT_EQ(dup(text), "");
  EXPECT_NE(dup(text + "l3: again\n").find("key 'l3' is given twice (first at line 4)"), std::string::npos);
}

TEST(YamlKeys, ConfigFileWithAKeyTwiceIsRejected) {
  TempDir dir;
  const std::string path = dir.write("c.yaml", std::string(kValidYaml) + "optim:\n  lr: 0.1\n  lr: 0.2\n");
  expect_config_error([&] { load_config(path); },
                      {path + ":13: key 'optim.lr' is given twice (first at line 12)"});
  // A section given twice is a duplicate too, even when its keys differ.
  const std::string twice = dir.write("t.yaml", std::string(kValidYaml) + "model:\n  dim: 64\n");
  expect_config_error([&] { load_config(twice); }, {twice + ":11: key 'model' is given twice (first at line 1)"});
}

TEST(YamlKeys, IncludedBaseWithAKeyTwiceIsRejected) {
  TempDir dir;
  const std::string base =
      dir.write("base.yaml", std::string(kValidYaml) + "optim: {lr: 0.1, warmup_steps: 2, lr: 1}\n");
  const std::string top = dir.write("top.yaml", "include: base.yaml\noptim: {min_lr: 0}\n");
  expect_config_error([&] { load_config(top); }, {"base.yaml:11: key 'optim.lr' is given twice (first at line 11)"});
  // Two include keys would apply both lists: one key with a list of files is the way to say that.
  dir.write("other.yaml", "train: {seq_len: 16}\n");
  const std::string two = dir.write("two.yaml", "include: base.yaml\ninclude: other.yaml\n");
  expect_config_error([&] { load_config(two); }, {two + ":2: key 'include' is given twice (first at line 1)"});
}

TEST(YamlKeys, OverridingABaseKeyIsNoDuplicate) {
  TempDir dir;
  dir.write("base.yaml", std::string(kValidYaml) + "optim: {lr: 0.1}\n");
  const std::string top = dir.write("top.yaml", "include: base.yaml\noptim: {lr: 0.05}\n");
  EXPECT_EQ(load_config(top, {"optim.lr=0.01", "optim.lr=0.02"}).optim.lr, 0.02);  // later --set wins, as documented
  EXPECT_EQ(load_config(top).optim.lr, 0.05);
}

}  // namespace
}  // namespace dytrain
