// Reading and writing the typed config (config.h); the checks live in config_validate.cpp.
//
// Design decisions:
// - One field table (fields_of) names every key, its type and its member. The file reader, the --set overrides,
//   the unknown-key suggestions and to_yaml all walk it, so reader and writer cannot drift apart.
// - Files are applied to the Config one after another in include order instead of being merged as YAML trees.
//   Every leaf of the schema is a scalar, so this is exactly a deep merge by key, and each value remembers the
//   file:line (or "--set") that set it: validation errors point at the line that holds the bad value.
// - Numbers are parsed with parse_number (std::from_chars: locale-independent, the whole text must match) and
//   written in fmt's shortest round-trip form, so to_yaml -> load_config reproduces every double bit for bit.
// - A key given twice in one map is an error (require_unique_keys): yaml-cpp keeps both pairs, and which one wins
//   would depend on the reader.
// - to_yaml is written by hand rather than by yaml-cpp's emitter, so its text, and config_hash with it, does not
//   change with the yaml-cpp version of the host (0.7 on Debian, 0.8 on the GPU hosts).
#include "trainer/config/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <variant>

#include <fmt/format.h>

#include "trainer/config/config_validate.h"
#include "trainer/config/parse_number.h"
#include "trainer/config/yaml_keys.h"

namespace dytrain {
namespace {

namespace fs = std::filesystem;

using FieldRef = std::variant<int*, uint64_t*, double*, bool*, std::string*, NormKind*, ScheduleKind*,
                              std::optional<double>*>;
struct Field {
  std::string key;  // full path, e.g. "optim.dyt_alpha.lr"
  FieldRef ref;
};

void add_group(std::vector<Field>& out, const std::string& name, GroupConfig& g) {
  out.push_back({"optim." + name + ".weight_decay", &g.weight_decay});
  out.push_back({"optim." + name + ".lr", &g.lr});
  out.push_back({"optim." + name + ".beta2", &g.beta2});
}

// Every key of the schema in the order to_yaml writes them (the struct order of config.h).
std::vector<Field> fields_of(Config& c) {
  ModelConfig& m = c.model;
  OptimConfig& o = c.optim;
  TrainConfig& t = c.train;
  std::vector<Field> f = {
      {"model.vocab_size", &m.vocab_size},   {"model.dim", &m.dim},
      {"model.n_layers", &m.n_layers},       {"model.n_heads", &m.n_heads},
      {"model.n_kv_heads", &m.n_kv_heads},   {"model.ffn_dim", &m.ffn_dim},
      {"model.multiple_of", &m.multiple_of}, {"model.ffn_dim_multiplier", &m.ffn_dim_multiplier},
      {"model.max_seq_len", &m.max_seq_len}, {"model.rope_theta", &m.rope_theta},
      {"model.norm", &m.norm},               {"model.alpha_attn", &m.alpha_attn},
      {"model.alpha_ffn", &m.alpha_ffn},     {"model.alpha_final", &m.alpha_final},
      {"model.dyt_bias", &m.dyt_bias},       {"model.rms_eps", &m.rms_eps},
      {"model.embed_scale", &m.embed_scale}, {"model.tie_embeddings", &m.tie_embeddings},
      {"model.init", &m.init},               {"model.init_std", &m.init_std},
      {"model.alpha_init", &m.alpha_init},
      {"model.alpha_calib_c", &m.alpha_calib_c},
      {"model.attention", &m.attention},
      {"optim.lr", &o.lr},                   {"optim.min_lr", &o.min_lr},
      {"optim.beta1", &o.beta1},             {"optim.beta2", &o.beta2},
      {"optim.eps", &o.eps},                 {"optim.weight_decay", &o.weight_decay},
      {"optim.grad_clip", &o.grad_clip},     {"optim.schedule", &o.schedule},
      {"optim.warmup_steps", &o.warmup_steps},
  };
  add_group(f, "matrices", o.matrices);
  add_group(f, "embeddings", o.embeddings);
  add_group(f, "dyt_alpha", o.dyt_alpha);
  add_group(f, "dyt_gamma_beta", o.dyt_gamma_beta);
  add_group(f, "embed_scale", o.embed_scale);
  const std::vector<Field> rest = {
      {"data.train", &c.data.train},          {"data.val", &c.data.val},
      {"train.micro_batch", &t.micro_batch},  {"train.seq_len", &t.seq_len},
      {"train.grad_accum", &t.grad_accum},    {"train.max_steps", &t.max_steps},
      {"train.log_every", &t.log_every},      {"train.val_every", &t.val_every},
      {"train.val_batches", &t.val_batches},  {"train.ckpt_every", &t.ckpt_every},
      {"train.keep_checkpoints", &t.keep_checkpoints}, {"train.seed", &t.seed},
      {"train.device", &t.device},            {"train.peak_tflops", &t.peak_tflops},
      {"parallel.tp", &c.parallel.tp},        {"parallel.zero1", &c.parallel.zero1},
      {"parallel.bucket_mb", &c.parallel.bucket_mb}, {"parallel.gpu_comm", &c.parallel.gpu_comm},
      {"parallel.staged_bf16_sum", &c.parallel.staged_bf16_sum},
      {"parallel.timeout_s", &c.parallel.timeout_s},
  };
  f.insert(f.end(), rest.begin(), rest.end());
  return f;
}

const std::vector<std::string>& known_keys() {
  static const std::vector<std::string> keys = [] {
    Config c;
    std::vector<std::string> k;
    for (const Field& f : fields_of(c)) k.push_back(f.key);
    return k;
  }();
  return keys;
}

// "model", "optim", "optim.matrices", ...: the paths that hold keys rather than values.
bool is_section(const std::string& path) {
  for (const std::string& k : known_keys())
    if (k.size() > path.size() && k.compare(0, path.size(), path) == 0 && k[path.size()] == '.') return true;
  return false;
}

// The keys directly under a section, for "what is allowed" in unknown-key messages.
std::string keys_under(const std::string& section) {
  std::vector<std::string> names;
  for (const std::string& k : known_keys()) {
    if (section.empty() || (k.size() > section.size() && k.compare(0, section.size() + 1, section + ".") == 0)) {
      const std::string rest = section.empty() ? k : k.substr(section.size() + 1);
      const std::string name = rest.substr(0, rest.find('.'));
      if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    }
  }
  if (section.empty()) names.insert(names.begin(), "include");
  return fmt::format("{}", fmt::join(names, ", "));
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// A key with the same last name in another section ("model.lr" -> "optim.lr") is the likeliest intent; otherwise the
// key or section with the smallest edit distance over the full path.
std::string closest_key(const std::string& path) {
  const std::string leaf = path.substr(path.rfind('.') + 1);
  std::vector<std::string> candidates = known_keys();
  for (const std::string& k : known_keys())
    for (size_t dot = k.find('.'); dot != std::string::npos; dot = k.find('.', dot + 1)) candidates.push_back(k.substr(0, dot));
  for (const std::string& k : candidates)
    if (k.substr(k.rfind('.') + 1) == leaf) return k;
  std::string best;
  size_t best_d = SIZE_MAX;
  for (const std::string& k : candidates) {
    const size_t d = edit_distance(path, k);
    if (d < best_d) best_d = d, best = k;
  }
  return best;
}

// A value as it arrives from a file or --set, before the schema gives it a type.
struct RawValue {
  enum Kind { null, scalar, map, list } kind;
  std::string text;
};

RawValue raw_of(const YAML::Node& n) {
  if (n.IsScalar()) return {RawValue::scalar, n.Scalar()};
  if (n.IsMap()) return {RawValue::map, {}};
  if (n.IsSequence()) return {RawValue::list, {}};
  return {RawValue::null, {}};
}

std::string describe(const RawValue& v) {
  switch (v.kind) {
    case RawValue::null: return "nothing (null)";
    case RawValue::map: return "a map";
    case RawValue::list: return "a list";
    case RawValue::scalar: break;
  }
  return "'" + v.text + "'";
}

[[noreturn]] void fail(const std::string& where, const std::string& key, const std::string& what) {
  throw ConfigError(fmt::format("{}: {}: {}", where, key, what));
}

// Parses `v` into the field; the messages say which type the key takes.
struct Assign {
  const RawValue& v;
  const std::string& key;
  const std::string& where;

  const std::string& scalar_or_fail(const char* expected) const {
    if (v.kind != RawValue::scalar) fail(where, key, fmt::format("expected {}, got {}", expected, describe(v)));
    return v.text;
  }
  void operator()(int* out) const {
    const char* expected = "an integer";
    if (!parse_number(scalar_or_fail(expected), out)) fail(where, key, fmt::format("expected {}, got {}", expected, describe(v)));
  }
  void operator()(uint64_t* out) const {
    const char* expected = "a non-negative integer";
    if (!parse_number(scalar_or_fail(expected), out)) fail(where, key, fmt::format("expected {}, got {}", expected, describe(v)));
  }
  void operator()(double* out) const {
    const char* expected = "a finite number";
    if (!parse_number(scalar_or_fail(expected), out) || !std::isfinite(*out))
      fail(where, key, fmt::format("expected {}, got {}", expected, describe(v)));
  }
  void operator()(std::optional<double>* out) const {
    if (v.kind == RawValue::null) {
      out->reset();  // null restores the default: the group follows the optimizer-wide value
      return;
    }
    double x = 0;
    (*this)(&x);
    *out = x;
  }
  void operator()(bool* out) const {
    const std::string& t = scalar_or_fail("true or false");
    if (t == "true" || t == "True" || t == "TRUE") *out = true;
    else if (t == "false" || t == "False" || t == "FALSE") *out = false;
    else fail(where, key, fmt::format("expected true or false, got {}", describe(v)));
  }
  void operator()(std::string* out) const {
    if (v.kind == RawValue::null) out->clear();
    else *out = scalar_or_fail("a string");
  }
  void operator()(NormKind* out) const {
    try {
      *out = parse_norm_kind(scalar_or_fail("one of dyt, rmsnorm"));
    } catch (const ConfigError& e) {
      fail(where, key, e.what());
    }
  }
  void operator()(ScheduleKind* out) const {
    try {
      *out = parse_schedule_kind(scalar_or_fail("one of cosine, linear, constant"));
    } catch (const ConfigError& e) {
      fail(where, key, e.what());
    }
  }
};

// Applies files and overrides to one Config, remembering where each key was last set.
class Loader {
 public:
  Config cfg;
  std::map<std::string, std::string> origin;  // key -> "file:line" or "--set"

  void apply_file(const fs::path& path, const std::string& included_from) {
    if (!fs::is_regular_file(path)) {
      if (included_from.empty())
        throw ConfigError(fmt::format("config file '{}' not found (or not a regular file)", path.string()));
      throw ConfigError(fmt::format("{}: include '{}': file not found (include paths are relative to the including "
                                    "file's folder)", included_from, path.string()));
    }
    const fs::path canonical = fs::weakly_canonical(path);
    chain_.push_back({canonical, path.string()});
    for (size_t i = 0; i + 1 < chain_.size(); ++i) {
      if (chain_[i].first != canonical) continue;
      std::vector<std::string> names;
      for (size_t j = i; j < chain_.size(); ++j) names.push_back(chain_[j].second);
      throw ConfigError(fmt::format("{}: include cycle: {}", included_from, fmt::join(names, " -> ")));
    }
    const YAML::Node root = parse_file(path);
    if (root.IsMap()) {
      apply_includes(root, path);
      apply_map(root, "", path.string());
    } else if (!root.IsNull()) {
      throw ConfigError(fmt::format("{}: expected a map with the sections {} at the top level", path.string(),
                                    keys_under("")));
    }
    chain_.pop_back();
  }

  void apply_override(const std::string& text) {
    const size_t eq = text.find('=');
    const std::string key = trim(text.substr(0, std::min(eq, text.size())));
    if (eq == std::string::npos || key.empty())
      throw ConfigError(fmt::format("--set '{}': expected key.path=value, e.g. model.dim=512", text));
    const std::string value = trim(text.substr(eq + 1));
    Field* field = find_field(key);
    if (field == nullptr) {
      if (key == "include") fail("--set", key, "include is only allowed at the top level of a config file");
      if (is_section(key)) fail("--set", key, fmt::format("is a section; set one of its keys: {}", keys_under(key)));
      // Report the first unknown part, as a file would: "optim.dyt_alpah.lr" -> "optim.dyt_alpah".
      size_t end = key.find('.');
      while (end != std::string::npos && is_section(key.substr(0, end))) end = key.find('.', end + 1);
      unknown_key("--set", key.substr(0, end));
    }
    std::visit(Assign{override_value(value, std::holds_alternative<std::string*>(field->ref)), key, "--set"},
               field->ref);
    origin[key] = "--set";
  }

 private:
  std::vector<Field> fields_ = fields_of(cfg);
  std::vector<std::pair<fs::path, std::string>> chain_;  // files being applied: canonical path, display path

  static std::string trim(const std::string& s) {
    const size_t b = s.find_first_not_of(" \t");
    if (b == std::string::npos) return {};
    return s.substr(b, s.find_last_not_of(" \t") - b + 1);
  }

  // The value of --set parsed as a YAML scalar. Strings fall back to the raw text when it is not one, so that
  // globs such as data.train=*.bin (an alias in YAML) need no quoting on the command line.
  static RawValue override_value(const std::string& value, bool is_string) {
    try {
      const RawValue v = raw_of(YAML::Load(value));
      if (!is_string || v.kind == RawValue::scalar || v.kind == RawValue::null) return v;
    } catch (const YAML::Exception&) {
      // not YAML at all: the raw text, which a typed field then rejects with its expected type
    }
    return {RawValue::scalar, value};
  }

  static YAML::Node parse_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) throw ConfigError(fmt::format("{}: cannot read the file", path.string()));
    YAML::Node root;
    try {
      root = YAML::Load(text.str());
    } catch (const YAML::Exception& e) {
      throw ConfigError(fmt::format("{}:{}:{}: YAML syntax error: {}", path.string(), e.mark.line + 1,
                                    e.mark.column + 1, e.msg));
    }
    require_unique_keys(root, path.string());
    return root;
  }

  static std::string where(const fs::path& file, const YAML::Node& node) {
    return fmt::format("{}:{}", file.string(), node.Mark().line + 1);
  }

  void apply_includes(const YAML::Node& root, const fs::path& path) {
    for (const auto& kv : root) {
      if (kv.first.Scalar() != "include") continue;
      const std::string at = where(path, kv.first);
      std::vector<YAML::Node> items;
      if (kv.second.IsScalar()) {
        items.push_back(kv.second);
      } else if (kv.second.IsSequence()) {
        for (const auto& item : kv.second) items.push_back(item);
      } else {
        fail(at, "include", fmt::format("expected a path or a list of paths, got {}", describe(raw_of(kv.second))));
      }
      for (const YAML::Node& item : items) {
        if (!item.IsScalar()) fail(at, "include", fmt::format("expected a path, got {}", describe(raw_of(item))));
        apply_file((path.parent_path() / item.Scalar()).lexically_normal(), at);
      }
    }
  }

  void apply_map(const YAML::Node& map, const std::string& prefix, const std::string& file) {
    for (const auto& kv : map) {
      if (!kv.first.IsScalar()) fail(where(file, kv.first), prefix.empty() ? "(top level)" : prefix, "keys must be names");
      const std::string& name = kv.first.Scalar();
      const std::string key = prefix.empty() ? name : prefix + "." + name;
      const std::string at = where(file, kv.first);
      if (prefix.empty() && name == "include") continue;  // applied before this file's own keys
      if (Field* field = find_field(key)) {
        std::visit(Assign{raw_of(kv.second), key, at}, field->ref);
        origin[key] = at;
      } else if (is_section(key)) {
        if (kv.second.IsMap()) apply_map(kv.second, key, file);
        else if (!kv.second.IsNull())
          fail(at, key, fmt::format("expected a map of keys ({}), got {}", keys_under(key), describe(raw_of(kv.second))));
      } else {
        unknown_key(at, key);
      }
    }
  }

  Field* find_field(const std::string& key) {
    for (Field& f : fields_)
      if (f.key == key) return &f;
    return nullptr;
  }

  [[noreturn]] static void unknown_key(const std::string& at, const std::string& key) {
    const size_t dot = key.rfind('.');
    const std::string parent = dot == std::string::npos ? "" : key.substr(0, dot);
    const std::string allowed = is_section(parent) || parent.empty()
                                    ? fmt::format(" Keys of {}: {}.", parent.empty() ? "the top level" : parent,
                                                  keys_under(parent))
                                    : "";
    throw ConfigError(fmt::format("{}: unknown key '{}'; did you mean '{}'?{}", at, key, closest_key(key), allowed));
  }
};

// YAML scalar text that reads back to exactly this double: fmt's shortest round-trip digits, with ".0" added to
// whole numbers so the file shows the key takes a real number.
std::string format_double(double x) {
  std::string s = fmt::format("{}", x);
  if (s.find_first_not_of("-0123456789") == std::string::npos) s += ".0";
  return s;
}

// A YAML double-quoted string: safe for globs ('*' starts an alias), ':' and '#'.
std::string quote(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += c;
    else if (static_cast<unsigned char>(c) < 0x20) out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    else out += c;
  }
  return out + "\"";
}

struct Format {
  std::string operator()(const int* v) const { return std::to_string(*v); }
  std::string operator()(const uint64_t* v) const { return std::to_string(*v); }
  std::string operator()(const double* v) const { return format_double(*v); }
  std::string operator()(const std::optional<double>* v) const { return format_double(v->value()); }
  std::string operator()(const bool* v) const { return *v ? "true" : "false"; }
  std::string operator()(const std::string* v) const { return quote(*v); }
  std::string operator()(const NormKind* v) const { return to_string(*v); }
  std::string operator()(const ScheduleKind* v) const { return to_string(*v); }
};

}  // namespace

const char* to_string(NormKind kind) { return kind == NormKind::dyt ? "dyt" : "rmsnorm"; }

const char* to_string(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::cosine: return "cosine";
    case ScheduleKind::linear: return "linear";
    case ScheduleKind::constant: return "constant";
  }
  return "cosine";
}

NormKind parse_norm_kind(const std::string& name) {
  for (const NormKind k : {NormKind::dyt, NormKind::rmsnorm})
    if (name == to_string(k)) return k;
  throw ConfigError(fmt::format("expected one of dyt, rmsnorm, got '{}'", name));
}

ScheduleKind parse_schedule_kind(const std::string& name) {
  for (const ScheduleKind k : {ScheduleKind::cosine, ScheduleKind::linear, ScheduleKind::constant})
    if (name == to_string(k)) return k;
  throw ConfigError(fmt::format("expected one of cosine, linear, constant, got '{}'", name));
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  Loader loader;
  loader.apply_file(path, "");
  for (const std::string& o : overrides) loader.apply_override(o);
  // Keys never set are defaults; their problems are reported against the top-level file.
  validate_with_origins(loader.cfg, [&](const std::string& key) {
    const auto it = loader.origin.find(key);
    return it != loader.origin.end() ? it->second : path;
  });
  return loader.cfg;
}

std::string to_yaml(const Config& cfg) {
  Config copy = cfg;
  std::string out;
  std::vector<std::string> open;  // the sections of the previous key, to write each section header once
  for (const Field& f : fields_of(copy)) {
    if (const auto* opt = std::get_if<std::optional<double>*>(&f.ref); opt && !(*opt)->has_value()) continue;
    std::vector<std::string> parts;
    for (size_t b = 0, e = 0; e != std::string::npos; b = e + 1) {
      e = f.key.find('.', b);
      parts.push_back(f.key.substr(b, e == std::string::npos ? e : e - b));
    }
    const std::string leaf = parts.back();
    parts.pop_back();
    size_t same = 0;
    while (same < open.size() && same < parts.size() && open[same] == parts[same]) ++same;
    for (size_t d = same; d < parts.size(); ++d) out += std::string(2 * d, ' ') + parts[d] + ":\n";
    open = parts;
    out += std::string(2 * parts.size(), ' ') + leaf + ": " + std::visit(Format{}, f.ref) + "\n";
  }
  return out;
}

uint64_t config_hash(const Config& cfg) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a 64 offset basis and prime
  for (const char c : to_yaml(cfg)) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

}  // namespace dytrain
