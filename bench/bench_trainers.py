"""Optimizer steps/s of each training stage's code path against the raw TRL trainer, on one tiny model
and tiny data built here, measured in the same run (goal: our overhead at most 10%); for PPO, steps/s
and where the time goes (generate / forward / reward / update).

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_trainers [--repeats 2] [--tasks 200]

The model is the scratch Llama-style decoder (src.models: BPE tokenizer, 2 layers x 64) saved once to a
temp folder and loaded fresh for every run; the data are synthetic tasks (src.tasks.synthetic). Trainer
settings come from params.yaml (sft.train, ppo_or_dpo.dpo|grpo|ppo, reward, sandbox), with only the sizes
overridden (batch, lengths, steps). "ours" is what the stage does (src.training.trl_config, the dvclive
callback into a temp folder, checkpointing kwargs, the project's reward functions); "raw" is the TRL
trainer with the same config values and no project code or callbacks. Both disable tqdm and the log
printer alike.

Steps/s: a global torch optimizer-step hook stamps every optimizer step; the rate is (n - 1) / (last -
first), so set-up, dataset tokenization and the first (warm-up) step are excluded and each step's
callbacks/logging are included. Wall time is the headline; the CPU time of this process over the same
interval is also given for the in-process stages (steadier on a shared machine, but blind to the
sandbox workers). Each comparison alternates ours/raw `--repeats` times (order flipped each repeat) and
reports the median, after one untimed short warm-up run; "noise" is the largest relative spread
between repeats of one variant.
"""
from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import dataclasses  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from src.params import BaseParams, parse_section, read_params  # noqa: E402

SEED = 1234
# the tiny sizes (everything else comes from params.yaml)
MODEL = dict(vocab_size=512, n_layer=2, d_model=64, n_head=4, d_ff=256, max_len=512)
STEPS = {"sft": 30, "dpo": 20, "grpo": 10, "reward": 30, "ppo": 10}
WARMUP_STEPS = 4                                    # an untimed run before each comparison
SFT_TINY = dict(per_device_train_batch_size=8, max_length=256)
DPO_TINY = dict(per_device_train_batch_size=8, max_length=256)
GRPO_TINY = dict(max_completion_length=32)          # num_generations 8, batch 16 as in params.yaml
RM_TINY = dict(epochs=1, batch_size=16, max_length=256)
PPO_TINY = dict(batch_size=8, mini_batch_size=4, ppo_epochs=2, max_new_tokens=32)
HARNESS = dict(disable_tqdm=True)                   # same for ours and raw


# ------------------------------------------------------------------------------------- timing

class StepClock:
    """Stamps (wall, cpu) after every torch optimizer step while active."""

    def __init__(self):
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self._h = None

    def __enter__(self):
        def hook(opt, args, kwargs):
            self.wall.append(time.perf_counter())
            self.cpu.append(time.process_time())
        from torch.optim.optimizer import register_optimizer_step_post_hook
        self._h = register_optimizer_step_post_hook(hook)
        return self

    def __exit__(self, *exc):
        self._h.remove()

    @property
    def n(self) -> int:
        return len(self.wall)

    def rate(self, cpu: bool = False) -> float:
        t = self.cpu if cpu else self.wall
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else float("nan")


class Timed:
    """A wrapper recording (start, seconds) of every call; `per_step(clock)` adds up the calls that start
    inside the clock's measured interval, per optimizer step."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []
        self.__name__ = getattr(fn, "__name__", "timed")   # TRL names reward functions by __name__

    def __call__(self, *a, **k):
        t0 = time.perf_counter()
        out = self.fn(*a, **k)
        self.calls.append((t0, time.perf_counter() - t0))
        return out

    def per_step(self, clock: StepClock) -> float:
        if clock.n < 2:
            return float("nan")
        return sum(dt for t0, dt in self.calls if clock.wall[0] <= t0 <= clock.wall[-1]) / (clock.n - 1)


def timed_dvclive(cb) -> Timed:
    """Time the dvclive callback's on_log (its only per-step work)."""
    t = Timed(cb.on_log)
    cb.on_log = t
    return t


def quiet(trainer):
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    return trainer


# ------------------------------------------------------------------------------------- setup

def build_world(tmp: Path, n_tasks: int):
    """Tasks, a saved tiny policy folder, and DPO / reward-model pairs."""
    from src.models import save_policy, scratch_model, train_tokenizer
    from src.tasks.synthetic import generate_splits

    tasks = generate_splits({"train": n_tasks}, SEED)["train"]
    tok = train_tokenizer([t["prompt"] + t["canonical_solution"] for t in tasks], MODEL["vocab_size"], 2)
    model = scratch_model(tok, MODEL["n_layer"], MODEL["d_model"], MODEL["n_head"], MODEL["d_ff"],
                          MODEL["max_len"], SEED)
    policy_dir = tmp / "policy"
    save_policy(model, tok, policy_dir, {"bench": MODEL})

    def corrupt(t: dict, i: int) -> str:
        lines = t["canonical_solution"].rstrip("\n").split("\n")
        if i % 2 == 0 or len(lines) < 2:
            return "    return None\n"
        return "\n".join(lines[:-1]) + "\n    return 0\n"   # last line replaced

    exec_pairs = [{"prompt": t["prompt"], "chosen": t["canonical_solution"], "rejected": corrupt(t, i)}
                  for i, t in enumerate(tasks)]
    # a second pair source for the human head: canonical vs canonical with a stray debug print
    human_pairs = [{"prompt": t["prompt"], "chosen": t["canonical_solution"],
                    "rejected": "    print('debug')\n" + t["canonical_solution"]} for t in tasks]
    return tasks, policy_dir, exec_pairs, human_pairs


def load(policy_dir: Path, ours: bool):
    if ours:
        from src.models import load_policy
        return load_policy(str(policy_dir))
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(policy_dir, dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(policy_dir)


def tmpdir(root: Path, name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=name + "-", dir=root))


def fixed(work: Path, ours: bool, base: BaseParams) -> dict:
    """output_dir/seed/report_to (+ the stage's checkpointing kwargs for ours; 'no' saving for raw)."""
    out = dict(output_dir=str(work), seed=SEED, data_seed=SEED, report_to="none", **HARNESS)
    if ours:
        from src.training import checkpointing
        ckpt, _ = checkpointing(str(work), {"bench": True}, base.checkpoint_steps, False)
        out.update(ckpt)
    else:
        out["save_strategy"] = "no"
    return out


# ------------------------------------------------------------------------------------- stages

def run_sft(ctx, ours: bool) -> dict:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    values = {**ctx["raw"]["sft"]["train"], **SFT_TINY, "max_steps": STEPS["sft"]}
    model, tok = load(ctx["policy"], ours)
    tok.padding_side = "right"
    work = tmpdir(ctx["tmp"], "sft")
    dv = None
    rows = [{"prompt": t["prompt"], "completion": t["canonical_solution"]} for t in ctx["tasks"]]
    if ours:
        from src.training import dvclive_callback, prompt_completion_rows, sft_trainer, trl_config
        cfg = trl_config(SFTConfig, "sft.train", values, **fixed(work, True, ctx["base"]))
        cb, live = dvclive_callback(str(tmpdir(ctx["tmp"], "plots")))
        dv = timed_dvclive(cb)
        trainer = sft_trainer(model=model, args=cfg, processing_class=tok, callbacks=[cb],
                              train_dataset=Dataset.from_list(prompt_completion_rows(ctx["tasks"])))
    else:
        cfg = SFTConfig(**values, **fixed(work, False, ctx["base"]))
        trainer = SFTTrainer(model=model, args=cfg, processing_class=tok, train_dataset=Dataset.from_list(rows))
        live = None
    with StepClock() as clock:
        quiet(trainer).train()
    if live is not None:
        live.end()
    return {"clock": clock, "dvclive_s": dv.per_step(clock) if dv else 0.0}


def run_dpo(ctx, ours: bool) -> dict:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    values = {**ctx["raw"]["ppo_or_dpo"]["dpo"], **DPO_TINY, "max_steps": STEPS["dpo"]}
    model, tok = load(ctx["policy"], ours)
    work = tmpdir(ctx["tmp"], "dpo")
    ds = Dataset.from_list(ctx["exec_pairs"])
    dv = None
    if ours:
        from src.training import dvclive_callback, trl_config
        cfg = trl_config(DPOConfig, "ppo_or_dpo.dpo", values, **fixed(work, True, ctx["base"]))
        cb, live = dvclive_callback(str(tmpdir(ctx["tmp"], "plots")))
        dv = timed_dvclive(cb)
        trainer = DPOTrainer(model=model, args=cfg, processing_class=tok, train_dataset=ds, callbacks=[cb])
    else:
        cfg = DPOConfig(**values, **fixed(work, False, ctx["base"]))
        trainer = DPOTrainer(model=model, args=cfg, processing_class=tok, train_dataset=ds)
        live = None
    tok.padding_side = "right"
    with StepClock() as clock:
        quiet(trainer).train()
    if live is not None:
        live.end()
    return {"clock": clock, "dvclive_s": dv.per_step(clock) if dv else 0.0}


def trivial_funcs(names: list[str]):
    """In-process reward functions of the same shape as ours (one per component, same names)."""
    funcs = []
    for name in names:
        def fn(prompts, completions, **_):
            return [float(len(c) % 7) / 7 for c in completions]
        fn.__name__ = name
        funcs.append(fn)
    return funcs


def run_grpo(ctx, variant: str) -> dict:
    """variant: ours (project config + dvclive + our reward funcs + our rollouts when
    ppo_or_dpo.grpo_rollouts is sampler), raw (trivial funcs, no callbacks, TRL's generate), raw_ourfuncs
    (raw trainer and config with our reward funcs)."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    values = {**ctx["raw"]["ppo_or_dpo"]["grpo"], **GRPO_TINY, "max_steps": STEPS["grpo"],
              "temperature": ctx["raw"]["base"]["temperature"]}   # as src.ppo_or_dpo sets it
    ours = variant == "ours"
    model, tok = load(ctx["policy"], ours)
    work = tmpdir(ctx["tmp"], "grpo")
    keys = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
    ds = Dataset.from_list([{k: t[k] for k in keys} for t in ctx["tasks"]])
    our_funcs, w = ctx["composite"].trl_reward_funcs()
    funcs = our_funcs if variant != "raw" else trivial_funcs([f.__name__ for f in our_funcs])
    dv = None
    timed = [Timed(f) for f in funcs]
    if ours:
        from src.training import dvclive_callback, trl_config
        cfg = trl_config(GRPOConfig, "ppo_or_dpo.grpo", values, reward_weights=w, **fixed(work, True, ctx["base"]))
        cb, live = dvclive_callback(str(tmpdir(ctx["tmp"], "plots")))
        dv = timed_dvclive(cb)
        rollout = None
        if ctx["raw"]["ppo_or_dpo"]["grpo_rollouts"] == "sampler":   # as src.ppo_or_dpo.grpo draws its rollouts
            from src.ppo_or_dpo import sampler_rollout
            rollout = sampler_rollout(tok, values["temperature"], cfg.top_p, cfg.max_completion_length,
                                      ctx["base"].seed)
        trainer = GRPOTrainer(model=model, reward_funcs=timed, args=cfg, processing_class=tok,
                              train_dataset=ds, callbacks=[cb], rollout_func=rollout)
    else:
        cfg = GRPOConfig(**values, reward_weights=w, **fixed(work, False, ctx["base"]))
        trainer = GRPOTrainer(model=model, reward_funcs=timed, args=cfg, processing_class=tok, train_dataset=ds)
        live = None
    with StepClock() as clock:
        quiet(trainer).train()
    if live is not None:
        live.end()
    # reward calls of steps 2..n start after the first stamp: per-step seconds inside the reward funcs
    reward_s = sum(t.per_step(clock) for t in timed)
    return {"clock": clock, "reward_s": reward_s, "dvclive_s": dv.per_step(clock) if dv else 0.0}


def run_reward(ctx, ours: bool) -> dict:
    from src.reward_model import RewardModelParams, TwoHeadRewardModel, train_reward_model

    raw_rm = ctx["raw"]["reward"]
    names = {f.name for f in dataclasses.fields(RewardModelParams)}
    p = parse_section(RewardModelParams, {**{k: v for k, v in raw_rm.items() if k in names}, **RM_TINY}, "reward")
    n = STEPS["reward"] * p.batch_size // 2
    exec_pairs, human_pairs = ctx["exec_pairs"][:n], ctx["human_pairs"][:n]
    if ours:
        from src.training import dvclive_logger
        model, tok = TwoHeadRewardModel.from_backbone(
            str(ctx["policy"]), use_human_logits=p.use_human_logits, human_logits_layer=p.human_logits_layer,
            human_feedback_weight=p.human_feedback_weight, max_length=p.max_length, seed=SEED)
        live, log = dvclive_logger(str(tmpdir(ctx["tmp"], "plots")))
        with StepClock() as clock:
            fit = train_reward_model(model, tok, exec_pairs, human_pairs if p.use_human_logits else [], p,
                                     seed=SEED, log=log)
        live.end()
        return {"clock": clock, "steps": fit["steps"]}
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    model = AutoModelForSequenceClassification.from_pretrained(ctx["policy"], num_labels=1, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(ctx["policy"])
    steps = math.ceil(len(exec_pairs) / p.batch_size)
    steps += math.ceil(len(human_pairs) / p.batch_size) if p.use_human_logits else 0   # as train_reward_model
    cfg = RewardConfig(learning_rate=p.learning_rate, per_device_train_batch_size=p.batch_size,
                       max_length=p.max_length, weight_decay=p.weight_decay, max_grad_norm=p.max_grad_norm,
                       center_rewards_coefficient=p.center_rewards_coefficient, max_steps=steps,
                       lr_scheduler_type="constant", use_cpu=True, bf16=False, gradient_checkpointing=False,
                       **fixed(tmpdir(ctx["tmp"], "rm"), False, ctx["base"]))
    trainer = RewardTrainer(model=model, args=cfg, processing_class=tok,
                            train_dataset=Dataset.from_list(exec_pairs + human_pairs))
    with StepClock() as clock:
        quiet(trainer).train()
    return {"clock": clock, "steps": steps}


def run_ppo(ctx, variant: str) -> dict:
    """variant: trivial (in-process reward, no logging), trivial+dvclive, composite+dvclive (sandbox)."""
    from src.ppo import PolicyWithValueHead, PPOParams, train_ppo

    p = parse_section(PPOParams, {**ctx["raw"]["ppo_or_dpo"]["ppo"], **PPO_TINY, "steps": STEPS["ppo"],
                                  "seed": SEED, "temperature": ctx["raw"]["base"]["temperature"]}, "ppo_or_dpo.ppo")
    policy, tok = load(ctx["policy"], True)
    ref = copy.deepcopy(policy)
    wrapped = PolicyWithValueHead(policy)
    composite = variant.startswith("composite")
    reward = ctx["composite"] if composite else trivial_funcs(["trivial"])[0]
    stamps, per_step = [], []
    live, dv_log = None, None
    if variant.endswith("dvclive"):
        from src.training import dvclive_logger
        live, dv_log = dvclive_logger(str(tmpdir(ctx["tmp"], "plots")))

    def log(stats: dict, step: int) -> None:
        if dv_log is not None:   # as src.ppo_or_dpo's log_step
            comps = {f"reward_{k}": sum(v) / len(v) for k, v in getattr(reward, "last", {}).items() if v}
            dv_log({**stats, **comps}, step)
        per_step.append(stats)
        stamps.append(time.perf_counter())

    with StepClock() as clock:
        final = train_ppo(wrapped, ref, tok, ctx["tasks"], reward, p, log=log)
    if live is not None:
        live.end()
    wall = stamps[-1] - stamps[0]
    steady = per_step[1:]   # step 0 is the warm-up
    split = {k: sum(s[f"time_{k}_s"] for s in steady) / wall for k in ("generate", "forward", "reward", "update")}
    split["other"] = 1 - sum(split.values())
    return {"clock": clock, "ppo_rate": (len(stamps) - 1) / wall, "opt_rate": clock.rate(), "split": split,
            "totals": {k: v for k, v in final.items() if k.startswith("total_")}}


# ------------------------------------------------------------------------------------- driver

def spread(xs: list[float]) -> float:
    return (max(xs) - min(xs)) / statistics.median(xs) if len(xs) > 1 else 0.0


def compare(name: str, fn, variants: list, repeats: int, extract) -> dict:
    """Run the variants alternately `repeats` times (order flipped each repeat); {variant: [values]}.
    First an untimed short run of the last variant: the first trainer of a kind in a process runs
    several % slower (lazy imports and first-call set-up), which would count against whichever ran first."""
    steps, STEPS[name] = STEPS[name], WARMUP_STEPS
    try:
        fn(variants[-1])
    finally:
        STEPS[name] = steps
    out = {v: [] for v in variants}
    for r in range(repeats):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            t0 = time.perf_counter()
            res = fn(v)
            res["setup"] = res["clock"].wall[0] - t0   # load + trainer init + tokenization + first step
            out[v].append(extract(res))
            print(f"  {name} {v!s:>18} repeat {r + 1}: {fmt_extract(out[v][-1])} ({time.perf_counter() - t0:.1f}s)",
                  flush=True)
    return out


def fmt_extract(x) -> str:
    if isinstance(x, dict):
        return ", ".join(f"{k}={v:.3g}" for k, v in x.items() if isinstance(v, float))
    return f"{x:.3g}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--only", default="sft,dpo,grpo,reward,ppo")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    t_start = time.perf_counter()

    from src.rewards import CompositeParams, CompositeReward
    from src.sandbox import SandboxParams, close_pools, resolve_backend

    raw = read_params(a.params)
    base = parse_section(BaseParams, raw.get("base"), "base")
    sandbox = parse_section(SandboxParams, raw.get("sandbox"), "sandbox")
    comp = parse_section(CompositeParams, {**raw["ppo_or_dpo"]["composite"], "semantic": 0.0, "preference": 0.0},
                         "ppo_or_dpo.composite")
    with tempfile.TemporaryDirectory(prefix="bench_trainers-") as td:
        tmp = Path(td)
        tasks, policy_dir, exec_pairs, human_pairs = build_world(tmp, a.tasks)
        ctx = dict(raw=raw, base=base, tmp=tmp, tasks=tasks, policy=policy_dir, exec_pairs=exec_pairs,
                   human_pairs=human_pairs, composite=CompositeReward(comp, sandbox))
        nparams = sum(x.numel() for x in load(policy_dir, False)[0].parameters())
        print(f"tiny model: {MODEL['n_layer']} layers x {MODEL['d_model']}, {nparams / 1e3:.0f}k params, "
              f"vocab {MODEL['vocab_size']}; {len(tasks)} synthetic train tasks; sandbox backend "
              f"{resolve_backend(sandbox)} x{sandbox.workers}; repeats {a.repeats}; set-up "
              f"{time.perf_counter() - t_start:.1f}s", flush=True)
        only = set(a.only.split(","))
        rows, notes = [], []

        def rate_pair(res):
            c = res["clock"]
            return {"wall": c.rate(), "cpu": c.rate(cpu=True), "setup": res["setup"],
                    "dvclive_s": res.get("dvclive_s", 0.0)}

        def add_row(stage, r, ours_key="ours", raw_key="raw", extra=""):
            o = statistics.median(x["wall"] for x in r[ours_key])
            w = statistics.median(x["wall"] for x in r[raw_key])
            oc = statistics.median(x["cpu"] for x in r[ours_key])
            wc = statistics.median(x["cpu"] for x in r[raw_key])
            noise = max(spread([x["wall"] for x in r[k]]) for k in (ours_key, raw_key))
            noise_cpu = max(spread([x["cpu"] for x in r[k]]) for k in (ours_key, raw_key))
            setup = "/".join(f"{statistics.median(x['setup'] for x in r[k]):.1f}" for k in (ours_key, raw_key))
            dv = statistics.median(x["dvclive_s"] for x in r[ours_key])
            if dv:
                extra = f"dvclive {dv * 1e3:.1f} ms/step ({dv * o * 100:.1f}%)" + ("; " + extra if extra else "")
            rows.append((stage, o, w, (w / o - 1) * 100, noise * 100, (wc / oc - 1) * 100, noise_cpu * 100,
                         setup, extra))

        if "sft" in only:
            r = compare("sft", lambda v: run_sft(ctx, v == "ours"), ["ours", "raw"], a.repeats, rate_pair)
            add_row("sft", r)
        if "dpo" in only:
            r = compare("dpo", lambda v: run_dpo(ctx, v == "ours"), ["ours", "raw"], a.repeats, rate_pair)
            add_row("dpo", r)
        if "grpo" in only:
            r = compare("grpo", lambda v: run_grpo(ctx, v), ["ours", "raw", "raw_ourfuncs"], a.repeats,
                        lambda res: {**rate_pair(res), "reward_s": res["reward_s"]})
            med = {v: {k: statistics.median(x[k] for x in xs) for k in ("wall", "reward_s")} for v, xs in r.items()}
            rest = {v: 1 / m["wall"] - m["reward_s"] for v, m in med.items()}
            add_row("grpo (our rewards, sandbox)", r,
                    extra=f"reward {med['ours']['reward_s'] * 1e3:.0f} vs {med['raw']['reward_s'] * 1e3:.1f} ms/step")
            add_row("grpo raw trainer+our rewards", r, ours_key="raw_ourfuncs",
                    extra=f"reward {med['raw_ourfuncs']['reward_s'] * 1e3:.0f} ms/step")
            notes.append("grpo time per step outside the reward functions: "
                         + ", ".join(f"{v} {rest[v] * 1e3:.0f} ms" for v in rest)
                         + f"  -> project wrapping (config + dvclive + truncation) "
                           f"{(rest['ours'] / rest['raw'] - 1) * 100:+.1f}% of the raw trainer's non-reward time")
        if "reward" in only:
            r = compare("reward", lambda v: run_reward(ctx, v == "ours"), ["ours", "raw"], a.repeats, rate_pair)
            add_row("reward model*", r)
            notes.append("* reward model: ours = TwoHeadRewardModel (LlamaModel backbone, two heads, hidden states "
                         "of 2 layers, tokenizes each batch in the step) via train_reward_model; raw = TRL "
                         "RewardTrainer on LlamaForSequenceClassification of the same backbone (one head, "
                         "pre-tokenized dataset). Same pairs, batch, lr, max_length; different heads.")
        ppo = {}
        if "ppo" in only:
            variants = ["trivial", "trivial+dvclive", "composite+dvclive"]
            ppo = compare("ppo", lambda v: run_ppo(ctx, v), variants, a.repeats,
                          lambda res: {"ppo": res["ppo_rate"], "opt": res["opt_rate"], **res["split"]})
        close_pools()

    print(f"\n{'stage':<30} {'ours st/s':>9} {'raw st/s':>8} {'overhead%':>9} {'noise%':>6} "
          f"{'ovh%(cpu)':>9} {'noise%':>6} {'setup s':>9}")
    for stage, o, w, ov, nz, ovc, nzc, setup, extra in rows:
        print(f"{stage:<30} {o:>9.2f} {w:>8.2f} {ov:>+9.1f} {nz:>6.0f} {ovc:>+9.1f} {nzc:>6.0f} {setup:>9}  {extra}")
    for n in notes:
        print(n)
    if ppo:
        print(f"\n{'ppo variant':<20} {'ppo st/s':>8} {'opt st/s':>8} {'noise%':>7}  time split "
              "(generate / forward / reward / update / other)")
        for v, xs in ppo.items():
            med = {k: statistics.median(x[k] for x in xs) for k in xs[0]}
            split = " / ".join(f"{med[k] * 100:.0f}%" for k in ("generate", "forward", "reward", "update", "other"))
            noise = spread([x["ppo"] for x in xs]) * 100
            print(f"{v:<20} {med['ppo']:>8.2f} {med['opt']:>8.2f} {noise:>7.0f}  {split}")
        print(f"(ppo: {PPO_TINY['batch_size']} episodes/step, {PPO_TINY['batch_size'] // PPO_TINY['mini_batch_size']}"
              f" x {PPO_TINY['ppo_epochs']} optimizer steps/step, {STEPS['ppo']} steps; split over steps 2..n, "
              "'other' = the log callback (dvclive) and the KL-controller update)")
    print(f"\noverhead% = raw steps/s / ours steps/s - 1 (extra time per step); noise% = largest spread "
          f"between repeats of one variant (wall; cpu); setup s = ours/raw seconds from the start of a run to its "
          f"first optimizer step (model load, trainer init, tokenization, step 1; ours' first run also pays "
          f"dvclive's one-off import and Live() init). Total {time.perf_counter() - t_start:.0f}s.")


if __name__ == "__main__":
    main()
