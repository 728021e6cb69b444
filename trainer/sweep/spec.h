// A sweep spec (configs/sweeps/*.yaml) and its expansion into points. A point is an ordinary training run: the
// spec's base config plus a list of `--set` overrides, in a directory named after its axis values.
//
// Design decisions:
// - The spec never copies the base config: each point is `base + set: + its axis overrides`, applied in that order,
//   so axis values win over `set:` and the resolved config.yaml the trainer writes is the record of what ran.
// - The width rule turns one number into a model shape (depth, heads, kv heads, FFN), so a sweep over width is one
//   axis; `per_width:` gives any of those explicitly when a rule does not fit.
// - alpha_final follows alpha_ffn unless the spec sweeps it: the paper ties the pre-FFN and final DyT ("other").
// - RMSNorm points have no alpha, so the alpha axes collapse for them: one baseline per remaining combination.
// - alpha_calib_c makes a point calibrated (model.alpha_init: calibrated, each site's alpha0 = c / std of its input
//   on the first batch): its alpha_attn / alpha_ffn / alpha_final axes mean nothing and collapse the same way, and
//   so does c on an RMSNorm point (the trainer calibrates DyT sites only), so a grid may cross norm with c.
// - Point names only mention the axes the spec sweeps, in a fixed order, with numbers in their shortest round-trip
//   form: stable across runs of the same spec, readable (w64_aa1_af0.5_b2-0.95_s1, w64_cal0.5_s1).
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace dytrain {

// How model.n_layers / n_heads / n_kv_heads / ffn_dim follow model.dim.
struct WidthRule {
  std::optional<int> n_layers;      // fixed depth; default: the base config's
  std::optional<int> head_dim;      // n_heads = width / head_dim; default: keep the base config's n_heads
  int kv_group = 1;                 // n_kv_heads = n_heads / kv_group (1: plain multi-head attention)
  std::optional<double> ffn_mult;   // ffn_dim = round(ffn_mult * width); default: LLaMA's rule (ffn_dim 0)
};

// Explicit shape for one width; set fields win over the rule.
struct WidthShape {
  std::optional<int> n_layers, n_heads, n_kv_heads, ffn_dim;
};

// Axis values of one point. Unset optionals keep the base config's value and stay out of the name.
struct PointAxes {
  std::optional<int> width;
  std::optional<double> alpha_attn, alpha_ffn, alpha_final, beta2, eps, lr;  // eps: AdamW's
  std::optional<double> alpha_calib_c;  // set: a calibrated point (model.alpha_init: calibrated with this c)
  std::optional<std::string> norm;  // dyt | rmsnorm
  std::optional<long long> seed;
};

struct SweepPoint {
  int index = 0;                        // position in the expansion; the Slurm array task id
  std::string name;                     // directory name under the sweep directory
  PointAxes axes;
  std::vector<std::string> overrides;   // "key.path=value" on the base config, in order
};

struct LaunchSpec {
  std::string mode = "local";           // local | mpirun | slurm
  int np = 1;                           // ranks per point (mpirun, slurm)
  std::string mpirun = "mpirun";        // the launcher command
  std::vector<std::string> mpirun_args; // extra arguments before the program, e.g. --oversubscribe
  // slurm
  int max_parallel = 0;                 // array throttle %K; 0: no throttle
  std::string partition, time;          // #SBATCH --partition / --time when set
  int gpus_per_task = 0;                // #SBATCH --gpus-per-task when > 0
  int cpus_per_task = 0;                // #SBATCH --cpus-per-task when > 0
  std::vector<std::string> sbatch;      // extra #SBATCH lines, verbatim (e.g. "--account=abc")
};

struct DivergenceSpec {
  double margin_nats = 2.0;             // diverged when loss > first logged loss + margin ...
  std::optional<int> after_step;        // ... at a step past this one; default the point's optim.warmup_steps
};

struct SweepSpec {
  std::string path;                     // the spec file
  std::string name;
  std::string base;                     // base config, resolved relative to the spec's folder
  WidthRule width_rule;
  std::map<int, WidthShape> per_width;
  std::vector<std::string> set;         // overrides for every point, before the axis overrides
  std::vector<SweepPoint> points;       // expanded
  LaunchSpec launch;
  DivergenceSpec divergence;
};

// Reads and expands a spec. Throws ConfigError naming the file and key for anything malformed (numbers out of range,
// a name that is no plain folder name, a key given twice), and for two points with the same name. Each point's
// overrides are checked against the base config with load_config, so a bad value (width not divisible by head_dim,
// unknown key in set:) fails here, before any run starts.
SweepSpec load_sweep_spec(const std::string& path);

// The directory name of a point (see the header comment).
std::string point_name(const PointAxes& axes);

// The shortest text that reads back as the same double ("0.5", "1", "0.003").
std::string format_number(double x);

// Why `name` cannot be a folder directly inside the sweep folder (empty, '/', '..', a leading '.', control
// characters, over 255 bytes), or empty when it can. Sweep names and point names must pass: a sweep writes nothing
// outside its folder.
std::string dir_name_problem(const std::string& name);

// Throws ConfigError naming the spec file when the sweep's name or a point's name fails dir_name_problem. The runner
// and the Slurm writer call it before writing anything, for specs that did not come from load_sweep_spec.
void check_sweep_names(const SweepSpec& spec);

}  // namespace dytrain
