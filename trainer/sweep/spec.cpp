// Reading a sweep spec and expanding its grid / points list (spec.h). Every error names the spec file, the line and
// the key, and says what is allowed. Numbers are read with parse_number, as the config loader reads them, so a value
// means the same in a spec as in a config ("012" is twelve, ".nan" is no number).
#include "trainer/sweep/spec.h"

#include <climits>
#include <cmath>
#include <filesystem>
#include <set>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "trainer/config/config.h"
#include "trainer/config/parse_number.h"
#include "trainer/config/yaml_keys.h"

namespace dytrain {
namespace {

namespace fs = std::filesystem;

// Axis keys in grid order (outermost first), which is also the order of their parts in a point name.
const char* const kAxes[] = {"width", "norm", "alpha_attn", "alpha_ffn", "alpha_final", "alpha_calib_c", "beta2",
                             "eps",   "lr",   "seed"};

class SpecReader {
 public:
  explicit SpecReader(std::string path) : path_(std::move(path)) {}

  [[noreturn]] void fail(const YAML::Node& at, const std::string& key, const std::string& what) const {
    const std::string where = at.Mark().is_null() ? path_ : fmt::format("{}:{}", path_, at.Mark().line + 1);
    throw ConfigError(fmt::format("{}: {}: {}", where, key, what));
  }

  template <typename T>
  T get(const YAML::Node& n, const std::string& key, const char* expected) const {
    if (!n.IsScalar()) fail(n, key, fmt::format("expected {}", expected));
    try {
      return n.as<T>();
    } catch (const YAML::Exception&) {
      fail(n, key, fmt::format("expected {}, got '{}'", expected, n.Scalar()));
    }
  }

  template <typename Int>
  Int integer(const YAML::Node& n, const std::string& key, Int min, Int max) const {
    Int v{};
    if (!n.IsScalar() || !parse_number(n.Scalar(), &v) || v < min || v > max)
      fail(n, key, fmt::format("expected an integer from {} to {}, got {}", min, max, shown(n)));
    return v;
  }

  int positive_int(const YAML::Node& n, const std::string& key) const { return integer(n, key, 1, INT_MAX); }

  // A finite number > 0 and below `below` (exclusive) when given.
  double positive_number(const YAML::Node& n, const std::string& key, std::optional<double> below = {}) const {
    double v = 0;
    if (!n.IsScalar() || !parse_number(n.Scalar(), &v) || !std::isfinite(v) || !(v > 0) || (below && !(v < *below)))
      fail(n, key, below ? fmt::format("expected a number greater than 0 and less than {}, got {}", *below, shown(n))
                         : fmt::format("expected a finite number greater than 0, got {}", shown(n)));
    return v;
  }

  // A string without control characters: launch strings end up in lines of the Slurm script, where a newline
  // would start a command of its own.
  std::string text(const YAML::Node& n, const std::string& key, const char* expected) const {
    const std::string v = get<std::string>(n, key, expected);
    for (const char c : v)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
        fail(n, key, "control characters (newline, tab, ...) are not allowed here");
    return v;
  }

  static std::string shown(const YAML::Node& n) {
    return n.IsScalar() ? "'" + n.Scalar() + "'" : n.IsMap() ? "a map" : n.IsSequence() ? "a list" : "nothing";
  }

  // A scalar or a list of scalars, as a list.
  std::vector<YAML::Node> values(const YAML::Node& n, const std::string& key) const {
    if (n.IsScalar()) return {n};
    if (!n.IsSequence() || n.size() == 0) fail(n, key, "expected a value or a non-empty list of values");
    return std::vector<YAML::Node>(n.begin(), n.end());
  }

  // Sets one axis of `axes` from a YAML scalar.
  void set_axis(PointAxes* axes, const std::string& key, const YAML::Node& v) const {
    if (key == "width") {
      axes->width = positive_int(v, key);
    } else if (key == "norm") {
      const std::string s = get<std::string>(v, key, "dyt or rmsnorm");
      if (s != "dyt" && s != "rmsnorm") fail(v, key, fmt::format("expected dyt or rmsnorm, got '{}'", s));
      axes->norm = s;
    } else if (key == "seed") {
      axes->seed = integer<long long>(v, key, 0, LLONG_MAX);
    } else {
      // The config's range checks run on every point below (load_config); beta2 < 1 is checked here too so the
      // message carries the spec's line.
      const double x = positive_number(v, key, key == "beta2" ? std::optional<double>(1.0) : std::nullopt);
      if (key == "alpha_attn") axes->alpha_attn = x;
      if (key == "alpha_ffn") axes->alpha_ffn = x;
      if (key == "alpha_final") axes->alpha_final = x;
      if (key == "alpha_calib_c") axes->alpha_calib_c = x;
      if (key == "beta2") axes->beta2 = x;
      if (key == "eps") axes->eps = x;
      if (key == "lr") axes->lr = x;
    }
  }

  void check_keys(const YAML::Node& map, const std::string& what, const std::set<std::string>& allowed) const {
    // The spec itself (what empty) names no key: say which level is wrong rather than print an empty one.
    if (!map.IsMap()) fail(map, what.empty() ? "top level" : what, "expected a map of key: value");
    for (const auto& kv : map) {
      const std::string k = kv.first.Scalar();
      if (!allowed.count(k)) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        fail(kv.first, what.empty() ? k : what + "." + k, fmt::format("unknown key; allowed: {}", list));
      }
    }
  }

  std::string path_;
};

// The most points one spec may expand to: about Slurm's default array limit (MaxArraySize 1001), and 7x the largest
// shipped study. A few lines of YAML (an anchor reused on every axis) must not become a product of billions of
// configs, each loaded and validated in turn (1024 take ~0.5 s, ~5 s under the fuzzers' sanitizers).
constexpr size_t kMaxPoints = 1024;

// The cartesian product of the grid, outermost axis first; its size is checked before anything is expanded.
std::vector<PointAxes> expand_grid(const SpecReader& r, const YAML::Node& grid) {
  std::vector<std::pair<const char*, std::vector<YAML::Node>>> axes;
  size_t total = 1;
  std::string sizes;
  for (const char* axis : kAxes) {
    if (!grid[axis]) continue;
    axes.emplace_back(axis, r.values(grid[axis], std::string("grid.") + axis));
    const size_t n = axes.back().second.size();
    sizes += fmt::format("{}{} {}", sizes.empty() ? "" : " x ", n, axis);
    total = n == 0 || total <= kMaxPoints / n ? total * n : kMaxPoints + 1;
  }
  if (total > kMaxPoints)
    r.fail(grid, "grid",
           fmt::format("{} is more than {} points; split the study into several specs", sizes, kMaxPoints));
  std::vector<PointAxes> out{PointAxes{}};
  for (const auto& [axis, values] : axes) {
    std::vector<PointAxes> next;
    for (const PointAxes& p : out)
      for (const YAML::Node& v : values) {
        PointAxes q = p;
        r.set_axis(&q, axis, v);
        next.push_back(q);
      }
    out = std::move(next);
  }
  return out;
}

std::string set_flag(const std::string& key, const std::string& value) { return key + "=" + value; }

// The model-shape overrides of a width: the rule from the base config's values, then per_width entries.
std::vector<std::string> width_overrides(const SweepSpec& spec, const Config& base, int width) {
  const WidthRule& rule = spec.width_rule;
  const auto explicit_shape = spec.per_width.count(width) ? spec.per_width.at(width) : WidthShape{};
  const int n_layers = explicit_shape.n_layers.value_or(rule.n_layers.value_or(base.model.n_layers));
  int n_heads = base.model.n_heads;
  if (rule.head_dim) {
    if (width % *rule.head_dim != 0)
      throw ConfigError(fmt::format("{}: width_rule.head_dim: {} does not divide width {}; pick another head_dim or "
                                    "give the shape in per_width",
                                    spec.path, *rule.head_dim, width));
    n_heads = width / *rule.head_dim;
  }
  n_heads = explicit_shape.n_heads.value_or(n_heads);
  int n_kv_heads = explicit_shape.n_kv_heads.value_or(n_heads / rule.kv_group);
  if (!explicit_shape.n_kv_heads && n_heads % rule.kv_group != 0)
    throw ConfigError(fmt::format("{}: width_rule.kv_group: {} does not divide the {} heads of width {}", spec.path,
                                  rule.kv_group, n_heads, width));
  if (rule.ffn_mult && !(*rule.ffn_mult * width < INT_MAX))
    throw ConfigError(fmt::format("{}: width_rule.ffn_mult: {} x width {} is too large for model.ffn_dim", spec.path,
                                  *rule.ffn_mult, width));
  int ffn_dim = rule.ffn_mult ? int(std::lround(*rule.ffn_mult * width)) : 0;
  ffn_dim = explicit_shape.ffn_dim.value_or(ffn_dim);
  return {set_flag("model.dim", std::to_string(width)), set_flag("model.n_layers", std::to_string(n_layers)),
          set_flag("model.n_heads", std::to_string(n_heads)), set_flag("model.n_kv_heads", std::to_string(n_kv_heads)),
          set_flag("model.ffn_dim", std::to_string(ffn_dim))};
}

std::vector<std::string> point_overrides(const SweepSpec& spec, const Config& base, const PointAxes& a) {
  std::vector<std::string> o = spec.set;
  if (a.width) {
    const auto w = width_overrides(spec, base, *a.width);
    o.insert(o.end(), w.begin(), w.end());
  }
  if (a.norm) o.push_back(set_flag("model.norm", *a.norm));
  if (a.alpha_attn) o.push_back(set_flag("model.alpha_attn", format_number(*a.alpha_attn)));
  if (a.alpha_ffn) o.push_back(set_flag("model.alpha_ffn", format_number(*a.alpha_ffn)));
  if (a.alpha_final || a.alpha_ffn)
    o.push_back(set_flag("model.alpha_final", format_number(a.alpha_final ? *a.alpha_final : *a.alpha_ffn)));
  if (a.alpha_calib_c) {
    o.push_back(set_flag("model.alpha_init", "calibrated"));
    o.push_back(set_flag("model.alpha_calib_c", format_number(*a.alpha_calib_c)));
  }
  if (a.beta2) o.push_back(set_flag("optim.beta2", format_number(*a.beta2)));
  if (a.eps) o.push_back(set_flag("optim.eps", format_number(*a.eps)));
  if (a.lr) {
    // min_lr keeps its ratio to the peak lr, so every lr of the axis sees the same schedule shape.
    o.push_back(set_flag("optim.lr", format_number(*a.lr)));
    o.push_back(set_flag("optim.min_lr", format_number(*a.lr * base.optim.min_lr / base.optim.lr)));
  }
  if (a.seed) o.push_back(set_flag("train.seed", std::to_string(*a.seed)));
  return o;
}

void read_launch(const SpecReader& r, const YAML::Node& n, LaunchSpec* l) {
  r.check_keys(n, "launch",
               {"mode", "np", "mpirun", "mpirun_args", "max_parallel", "partition", "time", "gpus_per_task",
                "cpus_per_task", "sbatch"});
  if (n["mode"]) {
    l->mode = r.text(n["mode"], "launch.mode", "local, mpirun or slurm");
    if (l->mode != "local" && l->mode != "mpirun" && l->mode != "slurm")
      r.fail(n["mode"], "launch.mode", fmt::format("expected local, mpirun or slurm, got '{}'", l->mode));
  }
  if (n["np"]) l->np = r.positive_int(n["np"], "launch.np");
  if (n["mpirun"]) l->mpirun = r.text(n["mpirun"], "launch.mpirun", "a command");
  if (n["mpirun_args"])
    for (const auto& v : r.values(n["mpirun_args"], "launch.mpirun_args"))
      l->mpirun_args.push_back(r.text(v, "launch.mpirun_args", "a string"));
  if (n["max_parallel"]) l->max_parallel = r.positive_int(n["max_parallel"], "launch.max_parallel");
  if (n["partition"]) l->partition = r.text(n["partition"], "launch.partition", "a partition name");
  if (n["time"]) l->time = r.text(n["time"], "launch.time", "a Slurm time limit like 04:00:00");
  if (n["gpus_per_task"]) l->gpus_per_task = r.positive_int(n["gpus_per_task"], "launch.gpus_per_task");
  if (n["cpus_per_task"]) l->cpus_per_task = r.positive_int(n["cpus_per_task"], "launch.cpus_per_task");
  if (n["sbatch"])
    for (const auto& v : r.values(n["sbatch"], "launch.sbatch"))
      l->sbatch.push_back(r.text(v, "launch.sbatch", "an sbatch option like --account=abc"));
}

void read_width_rule(const SpecReader& r, const YAML::Node& n, WidthRule* w) {
  r.check_keys(n, "width_rule", {"n_layers", "head_dim", "kv_group", "ffn_mult"});
  if (n["n_layers"]) w->n_layers = r.positive_int(n["n_layers"], "width_rule.n_layers");
  if (n["head_dim"]) w->head_dim = r.positive_int(n["head_dim"], "width_rule.head_dim");
  if (n["kv_group"]) w->kv_group = r.positive_int(n["kv_group"], "width_rule.kv_group");
  if (n["ffn_mult"]) w->ffn_mult = r.positive_number(n["ffn_mult"], "width_rule.ffn_mult");
}

void read_per_width(const SpecReader& r, const YAML::Node& n, std::map<int, WidthShape>* out) {
  if (!n.IsMap()) r.fail(n, "per_width", "expected a map width: {n_layers, n_heads, n_kv_heads, ffn_dim}");
  for (const auto& kv : n) {
    const int width = r.positive_int(kv.first, "per_width");
    const std::string key = fmt::format("per_width.{}", width);
    r.check_keys(kv.second, key, {"n_layers", "n_heads", "n_kv_heads", "ffn_dim"});
    WidthShape& s = (*out)[width];
    if (kv.second["n_layers"]) s.n_layers = r.positive_int(kv.second["n_layers"], key + ".n_layers");
    if (kv.second["n_heads"]) s.n_heads = r.positive_int(kv.second["n_heads"], key + ".n_heads");
    if (kv.second["n_kv_heads"]) s.n_kv_heads = r.positive_int(kv.second["n_kv_heads"], key + ".n_kv_heads");
    if (kv.second["ffn_dim"]) s.ffn_dim = r.positive_int(kv.second["ffn_dim"], key + ".ffn_dim");
  }
}

}  // namespace

std::string format_number(double x) { return fmt::format("{}", x); }

std::string dir_name_problem(const std::string& name) {
  if (name.empty()) return "a folder name cannot be empty";
  if (name.size() > 255) return fmt::format("a folder name has at most 255 bytes, this one {}", name.size());
  if (name.find('/') != std::string::npos) return fmt::format("'{}' contains '/': give one plain folder name", name);
  if (name.find("..") != std::string::npos) return fmt::format("'{}' contains '..': give one plain folder name", name);
  if (name[0] == '.') return fmt::format("'{}' starts with '.': give one plain folder name", name);
  for (const char c : name)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      return "control characters (newline, tab, ...) are not allowed in a folder name";
  return "";
}

void check_sweep_names(const SweepSpec& spec) {
  if (const std::string why = dir_name_problem(spec.name); !why.empty())
    throw ConfigError(fmt::format("{}: name: {}", spec.path, why));
  for (const SweepPoint& p : spec.points)
    if (const std::string why = dir_name_problem(p.name); !why.empty())
      throw ConfigError(fmt::format("{}: point '{}': {}", spec.path, p.name, why));
}

std::string point_name(const PointAxes& a) {
  std::vector<std::string> parts;
  if (a.width) parts.push_back(fmt::format("w{}", *a.width));
  if (a.norm) parts.push_back(*a.norm);
  if (a.alpha_attn) parts.push_back("aa" + format_number(*a.alpha_attn));
  if (a.alpha_ffn) parts.push_back("af" + format_number(*a.alpha_ffn));
  if (a.alpha_final) parts.push_back("afin" + format_number(*a.alpha_final));
  if (a.alpha_calib_c) parts.push_back("cal" + format_number(*a.alpha_calib_c));
  if (a.beta2) parts.push_back("b2-" + format_number(*a.beta2));
  if (a.eps) parts.push_back("eps" + format_number(*a.eps));
  if (a.lr) parts.push_back("lr" + format_number(*a.lr));
  if (a.seed) parts.push_back(fmt::format("s{}", *a.seed));
  std::string name;
  for (const auto& p : parts) name += (name.empty() ? "" : "_") + p;
  return name.empty() ? "base" : name;
}

SweepSpec load_sweep_spec(const std::string& path) {
  SpecReader r(path);
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw ConfigError(fmt::format("{}: cannot open the sweep spec (check the path)", path));
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("{}:{}: not valid YAML: {}", path, e.mark.line + 1, e.msg));
  }
  require_unique_keys(root, path);
  r.check_keys(root, "",
               {"name", "base", "width_rule", "per_width", "grid", "points", "set", "launch", "divergence"});
  SweepSpec spec;
  spec.path = path;
  // The name is the sweep's folder under runs/: it must be one plain folder name, or the sweep writes elsewhere.
  if (root["name"]) {
    spec.name = r.get<std::string>(root["name"], "name", "a name");
    if (const std::string why = dir_name_problem(spec.name); !why.empty()) r.fail(root["name"], "name", why);
  } else {
    spec.name = fs::path(path).stem().string();
    if (const std::string why = dir_name_problem(spec.name); !why.empty())
      r.fail(root, "name", fmt::format("missing, and the file name '{}' is no folder name either: {}", spec.name, why));
  }
  if (!root["base"]) r.fail(root, "base", "missing: the base config, relative to the spec (e.g. ../train/tiny.yaml)");
  spec.base = (fs::path(path).parent_path() / r.get<std::string>(root["base"], "base", "a path")).lexically_normal()
                  .string();
  if (root["width_rule"]) read_width_rule(r, root["width_rule"], &spec.width_rule);
  if (root["per_width"]) read_per_width(r, root["per_width"], &spec.per_width);
  if (root["set"]) {
    // Keys are config paths (train.max_steps: 25); load_config below checks them against the schema.
    if (!root["set"].IsMap()) r.fail(root["set"], "set", "expected a map of config.key: value");
    for (const auto& kv : root["set"])
      spec.set.push_back(set_flag(kv.first.Scalar(), r.get<std::string>(kv.second, "set." + kv.first.Scalar(),
                                                                        "a scalar value")));
  }
  if (root["launch"]) read_launch(r, root["launch"], &spec.launch);
  if (root["divergence"]) {
    const YAML::Node d = root["divergence"];
    r.check_keys(d, "divergence", {"margin_nats", "after_step"});
    // A margin <= 0 would mark healthy points diverged (and reruns skip them); nan or inf would turn the watch off.
    if (d["margin_nats"]) spec.divergence.margin_nats = r.positive_number(d["margin_nats"], "divergence.margin_nats");
    if (d["after_step"]) spec.divergence.after_step = r.integer(d["after_step"], "divergence.after_step", 0, INT_MAX);
  }

  std::vector<PointAxes> axes;
  if (root["grid"]) {
    std::set<std::string> allowed(std::begin(kAxes), std::end(kAxes));
    r.check_keys(root["grid"], "grid", allowed);
    axes = expand_grid(r, root["grid"]);
  }
  if (root["points"]) {
    if (!root["points"].IsSequence()) r.fail(root["points"], "points", "expected a list of {axis: value} maps");
    for (const auto& p : root["points"]) {
      r.check_keys(p, "points[]", std::set<std::string>(std::begin(kAxes), std::end(kAxes)));
      PointAxes a;
      for (const auto& kv : p) r.set_axis(&a, kv.first.Scalar(), kv.second);
      axes.push_back(a);
    }
  }
  if (axes.empty()) r.fail(root, "grid", "missing: give a grid: map of axis lists or a points: list");
  if (axes.size() > kMaxPoints)
    r.fail(root, "points",
           fmt::format("grid and points give {} points, more than {}; split the study into several specs", axes.size(),
                       kMaxPoints));

  Config base;
  try {
    base = load_config(spec.base, spec.set);
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("{}: base config with set: overrides: {}", path, e.what()));
  }
  std::set<std::string> seen;
  for (PointAxes a : axes) {
    // RMSNorm has no alpha; a calibrated point chooses its own (spec.h).
    const bool collapsed = a.norm == "rmsnorm" || a.alpha_calib_c;
    if (collapsed) a.alpha_attn = a.alpha_ffn = a.alpha_final = std::nullopt;
    if (a.norm == "rmsnorm") a.alpha_calib_c = std::nullopt;
    SweepPoint p;
    p.name = point_name(a);
    if (const std::string why = dir_name_problem(p.name); !why.empty())
      throw ConfigError(fmt::format("{}: point '{}': {}", path, p.name, why));
    if (!seen.insert(p.name).second) {
      if (collapsed) continue;  // the collapsed alpha axes of a baseline or a calibrated point
      throw ConfigError(
          fmt::format("{}: point {} appears twice; remove the duplicate from grid / points", path, p.name));
    }
    p.index = int(spec.points.size());
    p.axes = a;
    p.overrides = point_overrides(spec, base, a);
    try {
      load_config(spec.base, p.overrides);
    } catch (const ConfigError& e) {
      throw ConfigError(fmt::format("{}: point {}: {}", path, p.name, e.what()));
    }
    spec.points.push_back(std::move(p));
  }
  return spec;
}

}  // namespace dytrain
