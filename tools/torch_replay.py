#!/usr/bin/python3
"""Replays a dytrain training run in PyTorch, step by step: an independent check of the whole training loop (loader,
model, backward, clip, AdamW with dytrain's parameter groups, lr schedule), not a CI dependency.

  /usr/bin/python3 tools/torch_replay.py CONFIG.yaml [--steps 100] [--set key=value ...] [--work DIR]
      [--dytrain build/dytrain] [--oracle ../shared/bench/torch_llama_dyt.py] [--double] [--threads 1]
      [--tolerance 1e-5] [--strict-steps 10]

1. dytrain writes the initial weights: one step of CONFIG at lr 1e-30 in every group, which moves no fp32 weight (a
   zero-initialized DyT beta becomes ~1e-30, which changes no loss digit). dytrain has no step-0 checkpoint.
2. dytrain trains CONFIG for --steps steps (train.max_steps = steps, so the schedule spans them), logging every step.
3. PyTorch (the oracle's model, ../shared/bench/torch_llama_dyt.py) starts from those weights and takes the same
   steps with torch.optim.AdamW on the same batches: dytrain's loader is re-implemented below (splitmix64-seeded
   Fisher-Yates over windows of T + 1 tokens every T tokens), its groups and schedule read from the run's resolved
   config.yaml.
4. Side by side: loss, grad norm, lr, the std of the final DyT site's input (the top of the residual stream) and the
   mean saturation over the DyT sites. Exit status 1 when the loss of any of the first --strict-steps steps differs
   by more than --tolerance (relative).

Expected agreement (fp32 on CPU, the tiny recipe, measured): ~1e-7 relative for the first 50-150 steps; after that
the two drift apart chaotically (rounding differences amplified by training): 1e-3 by step 300 with the former
quick-start optimizer (eps 1e-2, lr 0.1, fixed init), 3% with eps 1e-8 at lr 3e-3 and the fixed init, where every
site saturates. A real difference (a wrong gradient, a group decayed that should not be, a schedule off by one step)
shows at steps 1-3.
Runs on one process (dp = tp = 1) on the CPU; dytrain's CPU build is fp32 throughout, like the replay.
Needs Debian's PyTorch and PyYAML: apt-get install python3-torch python3-yaml; run with /usr/bin/python3.
"""
import argparse
import glob
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys

import torch
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GROUPS = ("matrices", "embeddings", "dyt_alpha", "dyt_gamma_beta", "embed_scale")
M64 = (1 << 64) - 1


def fail(msg):
    sys.exit(f"torch_replay: {msg}")


def load_oracle(path):
    if not os.path.isfile(path):
        fail(f"the PyTorch oracle '{path}' does not exist: pass --oracle PATH (torch_llama_dyt.py)")
    spec = importlib.util.spec_from_file_location("torch_llama_dyt", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------------------------
# dytrain's training loader (trainer/data/loader.cpp), re-implemented for one rank.

def splitmix64(state):
    """state: a one-element list holding the uint64 state, advanced in place; returns the next output."""
    state[0] = (state[0] + 0x9E3779B97F4A7C15) & M64
    z = state[0]
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


class Loader:
    def __init__(self, oracle, pattern, batch, seq_len, seed):
        paths = sorted(glob.glob(pattern))
        if not paths:
            fail(f"no token shards match data.train '{pattern}' (run from the directory dytrain ran in)")
        self.shards = [oracle.read_llmc_shard(p) for p in paths]
        self.batch, self.seq_len, self.seed = batch, seq_len, seed
        # Shard s holds windows [first[s], first[s + 1]): one every T tokens, each T + 1 long.
        self.first = [0]
        for shard in self.shards:
            n = shard.numel()
            self.first.append(self.first[-1] + ((n - 1) // seq_len if n > seq_len else 0))
        self.epoch, self.cursor = 0, 0
        self.build_order()

    def build_order(self):
        order = list(range(self.first[-1]))
        a, b = [self.seed & M64], [(self.epoch ^ 0xD1B54A32D192ED03) & M64]
        state = [splitmix64(a) ^ splitmix64(b)]
        for i in range(len(order) - 1, 0, -1):
            j = (splitmix64(state) * (i + 1)) >> 64  # Lemire's multiply-shift
            order[i], order[j] = order[j], order[i]
        self.order = order

    def next(self):
        rows = []
        for b in range(self.batch):
            w = self.order[self.cursor + b]
            s = max(i for i in range(len(self.shards)) if self.first[i] <= w)
            start = (w - self.first[s]) * self.seq_len
            rows.append(self.shards[s][start:start + self.seq_len + 1])
        self.cursor += self.batch
        if self.cursor + self.batch > self.first[-1]:  # the next batch would run past the epoch: a new order
            self.epoch, self.cursor = self.epoch + 1, 0
            self.build_order()
        return torch.stack(rows).long()


# ---------------------------------------------------------------------------------------------------------------
# dytrain's schedule (trainer/optim/schedule.cpp) and parameter groups (trainer/model/layout.cpp).

def lr_factor(optim, step, max_steps):
    """The multiplier of every group's peak lr at 0-based step `step`."""
    warmup = int(optim["warmup_steps"])
    if step < warmup:
        return (step + 1) / warmup
    if optim["schedule"] == "constant":
        return 1.0
    floor = float(optim["min_lr"]) / float(optim["lr"])
    decay = max_steps - warmup
    p = min(max((step - warmup) / (decay - 1), 0.0), 1.0) if decay > 1 else 1.0
    shape = 0.5 * (1.0 + math.cos(math.pi * p)) if optim["schedule"] == "cosine" else 1.0 - p
    return floor + (1.0 - floor) * shape


def group_of(name):
    if name.endswith("_proj.weight") or name == "lm_head.weight":
        return "matrices"
    if name == "model.embed_tokens.weight":
        return "embeddings"
    if name.endswith(".alpha"):
        return "dyt_alpha"
    if name == "model.embed_scale":
        return "embed_scale"
    return "dyt_gamma_beta"  # DyT weight and bias, RMSNorm weight


def make_optimizer(oracle, model, optim):
    members = {}
    for name, p in oracle.params_named(model):
        members.setdefault(group_of(name), []).append(p)
    groups = []
    for g, params in members.items():
        own = optim.get(g) or {}
        peak = float(own["lr"]) if own.get("lr") is not None else float(optim["lr"])
        beta2 = float(own["beta2"]) if own.get("beta2") is not None else float(optim["beta2"])
        decay = float(optim["weight_decay"]) if own.get("weight_decay") else 0.0
        groups.append(dict(params=params, peak_lr=peak, lr=peak, betas=(float(optim["beta1"]), beta2),
                           weight_decay=decay))
    return torch.optim.AdamW(groups, eps=float(optim["eps"]))


# ---------------------------------------------------------------------------------------------------------------

def dyt_sites(model):
    """The norm modules in dytrain's metrics order: per layer attn then ffn, then the final one."""
    sites = []
    for block in model.model.layers:
        sites += [block.input_layernorm, block.post_attention_layernorm]
    return sites + [model.model.norm]


def replay(oracle, run_dir, init_dir, steps, dtype, out_path):
    """Trains the oracle model like dytrain trained run_dir; writes one JSON line per step to out_path."""
    with open(os.path.join(run_dir, "config.yaml")) as f:
        cfg = yaml.safe_load(f)
    optim, train, mcfg = cfg["optim"], cfg["train"], cfg["model"]
    model = oracle.from_pretrained(init_dir, dtype)
    inferred = (model.cfg.norm, model.cfg.embed_scale, model.cfg.tie, model.cfg.dyt_bias)
    wanted = (mcfg["norm"], bool(mcfg["embed_scale"]), bool(mcfg["tie_embeddings"]), bool(mcfg["dyt_bias"]))
    if inferred != wanted:
        fail(f"the oracle read (norm, embed_scale, tie, dyt_bias) = {inferred} from {init_dir}, the config says {wanted}")

    loader = Loader(oracle, cfg["data"]["train"], int(train["micro_batch"]), int(train["seq_len"]), int(train["seed"]))
    accum, clip, max_steps = int(train["grad_accum"]), float(optim["grad_clip"]), int(train["max_steps"])
    opt = make_optimizer(oracle, model, optim)
    params = [p for _, p in oracle.params_named(model)]
    sites = dyt_sites(model)
    moments = {}  # site index -> [sum, sum of squares, saturated count, count] of its input this step

    def record(index):
        def hook(module, inputs):
            x = inputs[0].detach().double()
            m = moments.setdefault(index, [0.0, 0.0, 0.0, 0])
            m[0] += float(x.sum())
            m[1] += float((x * x).sum())
            m[3] += x.numel()
            if hasattr(module, "alpha"):  # saturated: |alpha x| > 2, as kernels/cpu/dyt.cpp counts it
                m[2] += float(((module.alpha.detach().double() * x).abs() > 2.0).sum())
        return hook

    for i, site in enumerate(sites):
        site.register_forward_pre_hook(record(i))

    with open(out_path, "w") as out:
        for step in range(1, steps + 1):
            moments.clear()
            opt.zero_grad(set_to_none=True)
            loss = 0.0
            for _ in range(accum):
                tokens = loader.next()
                micro = model(tokens[:, :-1], tokens[:, 1:])
                (micro / accum).backward()
                loss += float(micro) / accum
            grad_norm = math.sqrt(sum(float(p.grad.double().square().sum()) for p in params if p.grad is not None))
            if not math.isfinite(loss) or not math.isfinite(grad_norm):
                print(f"torch_replay: step {step}: loss {loss}, grad norm {grad_norm}: stopping", file=sys.stderr)
                break
            if clip > 0 and grad_norm > clip:  # trainer/optim/adamw.cpp: scale clip / (norm + 1e-6), in fp32
                scale = float(torch.tensor(clip / (grad_norm + 1e-6), dtype=torch.float32))
                for p in params:
                    if p.grad is not None:
                        p.grad.mul_(scale)
            factor = lr_factor(optim, step - 1, max_steps)
            for g in opt.param_groups:
                g["lr"] = g["peak_lr"] * factor
            opt.step()
            stats = []
            for i in range(len(sites)):
                s, sq, sat, n = moments[i]
                mean = s / n
                stats.append(dict(act_std=math.sqrt(max(0.0, sq / n - mean * mean)), sat=sat / n))
            out.write(json.dumps(dict(step=step, loss=loss, grad_norm=grad_norm, lr=float(optim["lr"]) * factor,
                                      sites=stats)) + "\n")
            out.flush()


def read_jsonl(path):
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {r["step"]: r for r in rows if "loss" in r and "grad_norm" in r}


def compare(dytrain_path, torch_path, tolerance, strict_steps):
    """Prints the side-by-side; returns False when an early step differs beyond tolerance."""
    dt, pt = read_jsonl(dytrain_path), read_jsonl(torch_path)
    common = sorted(set(dt) & set(pt))
    if not common:
        fail(f"no common steps in {dytrain_path} and {torch_path}")
    shown = sorted({s for s in common if s <= 5 or s % 10 == 0} | {common[-1]})
    print(f"{'step':>5} {'loss dytrain':>13} {'loss torch':>13} {'rel':>8} | {'grad dytrain':>12} {'grad torch':>12}"
          f" | {'top std dt':>10} {'top std pt':>10} | {'sat dt':>6} {'sat pt':>6}")
    mean_sat = lambda r: sum(x["sat"] for x in r["sites"]) / len(r["sites"])
    for s in shown:
        d, p = dt[s], pt[s]
        rel = abs(d["loss"] - p["loss"]) / abs(d["loss"])
        print(f"{s:5d} {d['loss']:13.6f} {p['loss']:13.6f} {rel:8.1e} | {d['grad_norm']:12.5g} {p['grad_norm']:12.5g}"
              f" | {d['sites'][-1]['act_std']:10.4g} {p['sites'][-1]['act_std']:10.4g}"
              f" | {mean_sat(d):6.3f} {mean_sat(p):6.3f}")
    worst = lambda steps: max(abs(dt[s]["loss"] - pt[s]["loss"]) / abs(dt[s]["loss"]) for s in steps)
    for hi in sorted({strict_steps, 50, 100, 150, 200, 300, common[-1]}):
        steps = [s for s in common if s <= hi]
        if steps and steps[-1] == hi:
            print(f"steps 1-{hi}: largest relative loss difference {worst(steps):.1e}")
    early = [s for s in common if s <= strict_steps]
    if worst(early) <= tolerance:
        print(f"agree: the losses of steps 1-{early[-1]} are within {tolerance:g} relative")
        return True
    print(f"DIFFER: a loss of steps 1-{early[-1]} is off by {worst(early):.1e} > {tolerance:g}: a real difference")
    return False


def run_dytrain(exe, config, run_dir, overrides):
    if os.path.exists(run_dir):
        shutil.rmtree(run_dir)
    cmd = [exe, "train", config, "--run-dir", run_dir]
    for kv in overrides:
        cmd += ["--set", kv]
    log = run_dir + ".log"
    with open(log, "w") as f:
        if subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode != 0:
            fail(f"dytrain failed, see {log}: {' '.join(cmd)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--work", default="runs/torch_replay", help="where both runs go (replaced)")
    ap.add_argument("--dytrain", default=os.path.join(REPO, "build", "dytrain"))
    ap.add_argument("--oracle", default=os.path.join(os.path.dirname(REPO), "shared", "bench", "torch_llama_dyt.py"))
    ap.add_argument("--double", action="store_true", help="replay in float64 (dytrain stays fp32)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tolerance", type=float, default=1e-5)
    ap.add_argument("--strict-steps", type=int, default=10)
    args = ap.parse_args()
    if not os.access(args.dytrain, os.X_OK):
        fail(f"no dytrain binary at '{args.dytrain}': build it (launch/build.sh) or pass --dytrain PATH")
    oracle = load_oracle(args.oracle)
    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)

    one_process = ["train.device=cpu", "parallel.tp=1"]
    init_dir = os.path.join(args.work, "init")
    frozen = [f"optim.{g}.lr=1e-30" for g in GROUPS] + ["optim.lr=1e-30", "optim.min_lr=0"]
    print(f"== dytrain: initial weights ({init_dir})", flush=True)
    run_dytrain(args.dytrain, args.config, init_dir,
                args.overrides + one_process + frozen + ["train.max_steps=1", "train.val_every=0"])
    run_dir = os.path.join(args.work, "dytrain")
    print(f"== dytrain: {args.steps} steps ({run_dir})", flush=True)
    run_dytrain(args.dytrain, args.config, run_dir,
                args.overrides + one_process + [f"train.max_steps={args.steps}", "train.log_every=1",
                                                "train.val_every=0", "train.ckpt_every=0"])
    torch_path = os.path.join(args.work, "torch.jsonl")
    print(f"== PyTorch: {args.steps} steps ({torch_path})", flush=True)
    replay(oracle, run_dir, os.path.join(init_dir, "checkpoints", "step_00000001"), args.steps,
           torch.float64 if args.double else torch.float32, torch_path)
    ok = compare(os.path.join(run_dir, "metrics.jsonl"), torch_path, args.tolerance, args.strict_steps)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
