"""`ppo_or_dpo` stage: align the SFT policy. `ppo_or_dpo.method` picks
- dpo: TRL's DPOTrainer on the reward stage's preference pairs (optionally re-ranked by the reward model);
- grpo: TRL's GRPOTrainer on the composite reward (syntax, execution, semantic, preference);
- ppo: the project's PPO (src/ppo.py; TRL no longer has one) on the same composite reward;
- rft: rejection-sampling fine-tuning (expert iteration): SFT on the policy's own distinct passing
  programs, for a number of rounds;
- online_dpo: TRL's DPOTrainer on fresh pass-vs-fail pairs of the policy's own samples, per round;
- sft_more: the control, more supervised fine-tuning from the SFT checkpoint with the same budget
  of optimizer steps, so a method's gain counts only above it.
The online methods (grpo, ppo, rft, online_dpo) sample the prompts `ppo_or_dpo.prompts` names at
base.temperature.

    python -m src.ppo_or_dpo --params params.yaml --data data/prepared --reward-data data/reward \
        --sft models/sft --reward-model models/reward --out models/aligned \
        --metrics metrics/ppo_or_dpo.json --plots plots/ppo_or_dpo
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Literal

from src.io import UserError, read_jsonl, read_split, run_cli, timing_keys, write_json, write_timing
from src.params import BaseParams, bounded, parse_section, read_params
from src.prompting import check_chat, policy_rows
from src.rewards import CompositeParams
from src.rollouts import SAMPLE_FIELDS, keep_passing, pass_fail_pairs, pass_rate, sample_and_execute
from src.sandbox import SandboxParams
from src.tasks import TASK_COLUMNS, read_prompts

PAIR_FIELDS = {"prompt": str, "chosen": str, "rejected": str, "source": str}
SAMPLING_METHODS = ("grpo", "ppo", "rft", "online_dpo")
# keys ppo_or_dpo fills in from base (one value for every stage); setting them by hand is an error
INJECTED = {"grpo": {"temperature": "base.temperature"},
            "ppo": {"temperature": "base.temperature", "seed": "base.seed"}}


@dataclasses.dataclass
class AlignParams:
    method: Literal["dpo", "grpo", "ppo", "sft_more", "rft", "online_dpo"]
    prompts: Literal["rl", "train", "both"]   # the online methods' prompts: data/prepared/<split>.jsonl
    composite: dict[str, Any]        # the composite reward of grpo and ppo: src.rewards.CompositeParams
    filter_prompts: bool             # online methods: only tasks the SFT policy solves sometimes
    grpo_rollouts: Literal["sampler", "trl"]   # sampler: src.generation's loop, cut at the body's end; trl: TRL's generate
    max_prompts: int = bounded(0)    # 0 = all (after filtering)
    sampling: dict[str, Any]         # rft/online_dpo rollouts: SamplingParams
    dpo_pairs: Literal["execution", "all"]   # all = execution + human/simulated pairs
    dpo_require_pass: bool           # keep only pairs whose chosen program passed its tests
    dpo_rerank: bool                 # re-order each pair by the reward model's score
    rm_batch_size: int = bounded(1)
    dpo: dict[str, Any]              # TRL DPOConfig fields
    grpo: dict[str, Any]             # TRL GRPOConfig fields (temperature comes from base.temperature)
    ppo: dict[str, Any]              # src.ppo.PPOParams fields (seed, temperature come from base)
    rft: dict[str, Any]              # RFTParams
    online_dpo: dict[str, Any]       # OnlineDPOParams
    sft_more: dict[str, Any]         # TRL SFTConfig fields


@dataclasses.dataclass
class SamplingParams:
    """How rft and online_dpo sample the policy (at base.temperature) in the rounds they sample."""
    reuse_reward_samples: bool       # round 1 takes the reward stage's samples of the SFT policy where it has them
    top_p: float = bounded(0, 1)
    max_new_tokens: int = bounded(1)
    batch_size: int = bounded(1)     # sequences per generate call


@dataclasses.dataclass
class RFTParams:
    rounds: int = bounded(1)             # sample -> keep passing -> SFT, repeated
    samples_per_prompt: int = bounded(1)
    keep_per_task: int = bounded(0)      # distinct passing programs kept per task (0 = all)
    mix_train: bool                      # also train on the labelled train split each round
    sft: dict[str, Any]                  # TRL SFTConfig fields; max_steps counts per round


@dataclasses.dataclass
class OnlineDPOParams:
    rounds: int = bounded(1)             # sample -> pair pass against fail -> DPO, repeated
    samples_per_prompt: int = bounded(2)
    pairs_per_task: int = bounded(0)     # 0 = every (pass, fail) pair of distinct bodies
    dpo: dict[str, Any]                  # TRL DPOConfig fields; max_steps counts per round


@dataclasses.dataclass
class MethodContext:
    """What every method gets: the validated params, the input folders, the loaded SFT policy and the
    trainer settings every TRL method shares (output dir, seeds, checkpointing)."""
    p: AlignParams
    base: BaseParams
    sandbox: SandboxParams
    composite: CompositeParams
    ppo: Any                         # src.ppo.PPOParams
    sampling: SamplingParams
    rft: RFTParams
    online_dpo: OnlineDPOParams
    data_dir: str
    reward_data: str
    rm_dir: str
    plots_dir: str
    policy: Any
    tok: Any
    work: str                        # checkpoint folder
    resume: bool                     # continue from the last checkpoint in work
    common: dict[str, Any]           # fixed TRL config fields: output_dir, seeds, checkpointing


@dataclasses.dataclass
class Aligned:
    """What a method returns: the policy to save and the metrics it adds."""
    policy: Any
    extra: dict[str, Any]
    state_dict: dict | None = None   # full weights gathered under FSDP/DeepSpeed, else None
    save_more: Callable[[str], None] | None = None   # writes extra files into the saved model folder
    timing: dict[str, Any] = dataclasses.field(default_factory=dict)   # wall times and work: the timing record


def online_prompts(tasks: list[dict], stats_path: Path, p: AlignParams) -> list[dict]:
    """Tasks for the online methods: those with an SFT pass rate strictly between 0 and 1 when filtering."""
    if p.filter_prompts:
        rate = {r["task_id"]: r["pass_rate"] for r in read_jsonl(stats_path, {"task_id": str, "pass_rate": (int, float)})}
        tasks = [t for t in tasks if 0 < rate.get(t["task_id"], 0) < 1]
    if p.max_prompts:
        tasks = tasks[:p.max_prompts]
    if not tasks:
        raise UserError(f"{stats_path}: no training prompts left after filtering (set ppo_or_dpo.filter_prompts: "
                        "false, or have the reward stage sample more of the ppo_or_dpo.prompts tasks)")
    return [{k: t[k] for k in TASK_COLUMNS} for t in tasks]


def load_scorer(rm_dir: str, batch_size: int):
    from src.reward_model import load_reward_model
    model, tok = load_reward_model(rm_dir)
    return lambda texts: model.score_texts(list(texts), tok, batch_size)


def composite_reward(ctx: MethodContext):
    """The online methods' reward; the reward model is loaded only when preference has a weight."""
    from src import distributed
    from src.rewards import CompositeReward
    scorer = load_scorer(ctx.rm_dir, ctx.p.rm_batch_size) if ctx.composite.preference else None
    return CompositeReward(ctx.composite, ctx.sandbox, scorer, device=str(distributed.device()))


def train_tasks(ctx: MethodContext) -> list[dict]:
    return read_split(Path(ctx.data_dir) / "train.jsonl", TASK_COLUMNS)


def method_prompts(ctx: MethodContext, filtered: bool = True) -> list[dict]:
    """The online methods' tasks: the split(s) ppo_or_dpo.prompts names (rl rows carry no reference),
    filtered by the reward stage's pass rates (online_prompts) unless `filtered` is False."""
    tasks = read_prompts(ctx.data_dir, ctx.p.prompts, "ppo_or_dpo.prompts")
    p = ctx.p if filtered else dataclasses.replace(ctx.p, filter_prompts=False)
    return online_prompts(tasks, Path(ctx.reward_data) / "task_stats.jsonl", p)


def run_trainer(trainer, live, ctx: MethodContext, **extra) -> Aligned:
    """Train a TRL trainer (resuming when asked) and collect its loss, steps and weights."""
    from src.training import full_state_dict
    out = trainer.train(resume_from_checkpoint=ctx.resume or None)
    live.end()
    tokens = [r["num_tokens"] for r in trainer.state.log_history if "num_tokens" in r]   # as TRL counts them
    timing = {"optimizer_steps": out.global_step, "tokens": tokens[-1] if tokens else None,
              **timing_keys(out.metrics)}
    return Aligned(trainer.model, {"train_loss": round(out.training_loss, 4), "steps": out.global_step, **extra},
                   full_state_dict(trainer), timing=timing)


def chosen_passed(pairs: list[dict], samples: list[dict]) -> list[dict]:
    """The pairs whose chosen program is a sample that passed its tests (the reward stage's executed
    samples). A failing "chosen" teaches a wrong program, through DPO's SFT term above all; a chosen
    side never executed (e.g. a human judgment on other code) is not known to pass and is dropped too."""
    passed = {(r["prompt"], r["completion"]) for r in samples if r["passed"]}
    return [r for r in pairs if (r["prompt"], r["chosen"]) in passed]


def dpo(ctx: MethodContext) -> Aligned:
    """TRL's DPOTrainer on the reward stage's pairs, optionally re-ordered by the reward model."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from src.training import dvclive_callback, trl_config
    p, reward_data = ctx.p, Path(ctx.reward_data)
    pairs = {"train": read_split(reward_data / "pairs_train.jsonl", PAIR_FIELDS),
             "val": read_jsonl(reward_data / "pairs_val.jsonl", PAIR_FIELDS)}
    if p.dpo_pairs == "execution":
        pairs = {s: [r for r in rows if r["source"] == "execution"] for s, rows in pairs.items()}
    dropped = 0
    if p.dpo_require_pass:
        samples = read_jsonl(reward_data / "samples.jsonl", SAMPLE_FIELDS)
        kept = {s: chosen_passed(rows, samples) for s, rows in pairs.items()}
        dropped = sum(len(pairs[s]) - len(kept[s]) for s in pairs)
        pairs = kept
    if not pairs["train"]:
        raise UserError(f"{ctx.reward_data}/pairs_train.jsonl: no {p.dpo_pairs} pairs to train DPO on"
                        + (" whose chosen program passed (ppo_or_dpo.dpo_require_pass)" if p.dpo_require_pass else ""))
    if p.dpo_rerank:
        score = load_scorer(ctx.rm_dir, p.rm_batch_size)
        for rows in pairs.values():
            c = score([r["prompt"] + r["chosen"] for r in rows])
            r_ = score([r["prompt"] + r["rejected"] for r in rows])
            for row, sc, sr in zip(rows, c, r_):
                if sr > sc:
                    row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
    ds = {s: Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
          for s, rows in pairs.items()}
    cfg = trl_config(DPOConfig, "ppo_or_dpo.dpo", p.dpo, **ctx.common)
    cb, live = dvclive_callback(ctx.plots_dir, ctx.resume)
    trainer = DPOTrainer(model=ctx.policy, args=cfg, processing_class=ctx.tok, train_dataset=ds["train"],
                         eval_dataset=ds["val"] if len(ds["val"]) else None, callbacks=[cb])
    ctx.tok.padding_side = "right"
    return run_trainer(trainer, live, ctx, pairs=len(pairs["train"]), pairs_dropped_failing_chosen=dropped)


def sft_more(ctx: MethodContext) -> Aligned:
    """The control: more supervised fine-tuning on the train tasks with TRL's SFTTrainer."""
    from datasets import Dataset
    from trl import SFTConfig

    from src.training import dvclive_callback, prompt_completion_rows, sft_trainer, trl_config
    train = train_tasks(ctx)
    cfg = trl_config(SFTConfig, "ppo_or_dpo.sft_more", ctx.p.sft_more, **ctx.common)
    cb, live = dvclive_callback(ctx.plots_dir, ctx.resume)
    trainer = sft_trainer(model=ctx.policy, args=cfg, processing_class=ctx.tok, callbacks=[cb],
                          train_dataset=Dataset.from_list(prompt_completion_rows(train, ctx.tok, ctx.base.chat)))
    ctx.tok.padding_side = "right"
    return run_trainer(trainer, live, ctx)


def grpo(ctx: MethodContext) -> Aligned:
    """TRL's GRPOTrainer on the composite reward, one reward function per weighted component."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from src.training import dvclive_callback, trl_config
    tasks = method_prompts(ctx)
    reward = composite_reward(ctx)
    funcs, w = reward.trl_reward_funcs()
    cfg = trl_config(GRPOConfig, "ppo_or_dpo.grpo", ctx.p.grpo, temperature=ctx.base.temperature, reward_weights=w,
                     **ctx.common)
    cb, live = dvclive_callback(ctx.plots_dir, ctx.resume)
    rollout = (sampler_rollout(ctx.tok, ctx.base.temperature, cfg.top_p, cfg.max_completion_length, ctx.base.seed)
               if ctx.p.grpo_rollouts == "sampler" else None)
    trainer = GRPOTrainer(model=ctx.policy, reward_funcs=funcs, args=cfg, processing_class=ctx.tok,
                          train_dataset=Dataset.from_list(tasks), callbacks=[cb], rollout_func=rollout)
    return run_trainer(trainer, live, ctx, prompts=len(tasks))


def sampler_rollout(tok, temperature: float, top_p: float, max_new_tokens: int, seed: int):
    """A GRPOTrainer `rollout_func` drawing from src.generation's decoding loop: each distinct prompt of
    the batch computed once for its samples, rows leaving the batch at EOS or at the body's end (the
    token that opens the first top-level line, kept as PPO keeps it), instead of TRL's `generate`
    running every row to EOS. Seeded by the optimizer step (and process), so a resumed run draws what
    an uninterrupted one would."""
    import torch

    from src import distributed
    from src.generation import BodyRule, _TOP_LEVEL, decode_batch, stop_table

    def rollout(prompts: list[str], trainer) -> dict:
        model = trainer.accelerator.unwrap_model(trainer.model)
        distinct = list(dict.fromkeys(prompts))
        order = sorted(range(len(prompts)), key=lambda i: distinct.index(prompts[i]))  # a prompt's rows adjacent
        counts = [prompts.count(q) for q in distinct]
        tok.padding_side = "left"
        enc = tok(distinct, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        table = stop_table(tok, model.config.vocab_size)
        rule = BodyRule(table, len(prompts)) if table is not None else None
        eos = tok.eos_token_id
        torch.manual_seed(seed + 1_000_003 * trainer.state.global_step + distributed.rank())
        training = model.training
        model.eval()
        with torch.no_grad():
            new = decode_batch(model, enc.input_ids, enc.attention_mask, max_new_tokens, temperature, top_p,
                               list(eos) if isinstance(eos, (list, tuple)) else [eos], rule=rule,
                               text_rule=None if table is not None else
                               (lambda ids: bool(_TOP_LEVEL.search(tok.decode(ids, skip_special_tokens=True)))),
                               repeats=counts)
        model.train(training)
        ids = {q: tok(q, add_special_tokens=False).input_ids for q in distinct}
        completion_ids: list[list[int]] = [[] for _ in prompts]
        for row, i in zip(new, order):
            completion_ids[i] = row
        return {"prompt_ids": [ids[q] for q in prompts], "completion_ids": completion_ids, "logprobs": None}
    return rollout


def ppo(ctx: MethodContext) -> Aligned:
    """The project's PPO (src/ppo.py) on the composite reward, with a frozen copy as KL reference."""
    from src.ppo import PolicyWithValueHead, train_ppo
    from src.training import dvclive_logger
    tasks = method_prompts(ctx)
    reward = composite_reward(ctx)
    live, log = dvclive_logger(ctx.plots_dir, ctx.resume)

    def log_step(stats: dict, step: int) -> None:
        comps = {f"reward_{k}": sum(v) / len(v) for k, v in reward.last.items() if v}
        log({**stats, **comps}, step)
    ref = copy.deepcopy(ctx.policy)
    wrapped = PolicyWithValueHead(ctx.policy)
    final = train_ppo(wrapped, ref, ctx.tok, tasks, reward, ctx.ppo, log=log_step,
                      checkpoint_dir=ctx.work, checkpoint_steps=ctx.base.checkpoint_steps, resume=ctx.resume)
    live.end()
    # timings go to the timing record only: metrics must be byte-identical across identical runs
    extra = {k: round(v, 4) if isinstance(v, float) else v for k, v in final.items() if "time" not in k}
    print("ppo timings: " + ", ".join(f"{k}={v:.1f}" for k, v in final.items() if "time" in k))
    extra["prompts"] = len(tasks)
    timing = {"rollouts": ctx.ppo.steps, "completions_sampled": ctx.ppo.steps * ctx.ppo.batch_size,
              **timing_keys(final)}
    return Aligned(wrapped.model, extra, save_more=wrapped.save_value_head, timing=timing)


# ---------------------------------------------------------------- the iterative methods (rft, online_dpo)
ROUND_SEED_STRIDE = 1_000_003   # rounds' generate seeds (seed + batch index) never meet


def round_samples(ctx: MethodContext, tasks: list[dict], n: int, r: int, seconds: dict) -> tuple[list[dict], int]:
    """Round r's (0-based) executed samples of the current policy on `tasks`, n per task. Round 0 takes
    the reward stage's samples of the SFT policy (drawn at base.temperature) for the tasks it sampled
    when ppo_or_dpo.sampling.reuse_reward_samples; every other task is sampled here, with a per-round
    seed. Returns (samples, how many were sampled here)."""
    from src import distributed
    s = ctx.sampling
    reused, todo = [], tasks
    if r == 0 and s.reuse_reward_samples:
        wanted = {(t["task_id"], t["prompt"]) for t in tasks}
        reused = [x for x in read_jsonl(Path(ctx.reward_data) / "samples.jsonl", SAMPLE_FIELDS)
                  if (x["task_id"], x["prompt"]) in wanted]
        have = {x["task_id"] for x in reused}
        todo = [t for t in tasks if t["task_id"] not in have]
    fresh: list[dict] = []
    if todo:
        ctx.policy.to(distributed.device())
        part: dict = {}
        fresh = sample_and_execute(todo, ctx.policy, ctx.tok, n, ctx.base.temperature, s.top_p, s.max_new_tokens,
                                   s.batch_size, ctx.sandbox, ctx.base.seed + r * ROUND_SEED_STRIDE, part,
                                   chat=ctx.base.chat)
        for k, v in part.items():
            seconds[k] = round(seconds.get(k, 0.0) + v, 3)
    return reused + fresh, len(fresh)


def train_rounds(ctx: MethodContext, tasks: list[dict], rounds: int, samples_per_prompt: int,
                 build: Callable[[list[dict], dict], tuple[Any, Any, dict]]) -> Aligned:
    """The loop rft and online_dpo share: per round, sample and execute (round_samples), turn the
    samples into a trainer (`build(samples, info)` -> (trainer, live, round metrics)) and train the
    policy in place. Round 1 writes TRL checkpoints into the work folder as a one-round method does;
    a finished round saves the policy there (checkpoint-round<r>.pt), so a resumed run goes on after
    the last finished round, and into a round's own TRL checkpoints (work/round<r>)."""
    import torch

    from src import distributed
    from src.training import full_state_dict
    work = Path(ctx.work)
    per_round: list[dict] = []
    seconds: dict = {}
    start = 0
    if ctx.resume:  # the last finished round's policy and metrics
        done = sorted(work.glob("checkpoint-round*.pt"), key=lambda f: int(f.stem.removeprefix("checkpoint-round")))
        if done:
            state = torch.load(done[-1], map_location="cpu", weights_only=True)
            ctx.policy.load_state_dict(state["policy"])
            per_round, start = state["rounds"], len(state["rounds"])
    trainer = None
    for r in range(start, rounds):
        samples, fresh = round_samples(ctx, tasks, samples_per_prompt, r, seconds)
        info = {"round": r + 1, "prompts": len(tasks), "completions": len(samples), "completions_sampled": fresh,
                "pass_rate": pass_rate(samples)}
        out_dir = work if r == 0 else work / f"round{r + 1}"
        trainer, live, extra = build(samples, {**info, "output_dir": str(out_dir),
                                               "resume": ctx.resume if r == start else False, "first": r == 0})
        resume = ctx.resume and r == start and any(out_dir.glob("checkpoint-*/trainer_state.json"))
        out = trainer.train(resume_from_checkpoint=True if resume else None)
        live.end()
        per_round.append({**info, **extra, "steps": out.global_step, "train_loss": round(out.training_loss, 4)})
        for k, v in timing_keys(out.metrics).items():
            if not k.endswith("_per_second"):  # runtimes add up over rounds; rates do not
                seconds[k] = round(seconds.get(k, 0.0) + v, 4)
        if r + 1 < rounds and distributed.is_main():
            torch.save({"policy": ctx.policy.state_dict(), "rounds": per_round}, work / f"checkpoint-round{r + 1}.pt")
        distributed.barrier()
    totals = {"completions_sampled": sum(x["completions_sampled"] for x in per_round),
              "optimizer_steps": sum(x["steps"] for x in per_round)}
    extra = {"prompts": len(tasks), "steps": totals["optimizer_steps"],
             "train_loss": per_round[-1]["train_loss"], "rounds": per_round}
    timing = {**totals, "sandbox_programs": totals["completions_sampled"], **seconds}
    return Aligned(ctx.policy, extra, full_state_dict(trainer) if trainer is not None else None, timing=timing)


def rft_rows(samples: list[dict], train: list[dict], q: RFTParams, seed: int, tok=None,
             chat: str | None = None) -> tuple[list[dict], list[dict]]:
    """One rft round's data: (the kept samples, the SFT rows). The rows are the kept passing programs
    (keep_passing) as prompt -> body, then the labelled train tasks' references when q.mix_train; in
    chat form (base.prompt_format) as src.prompting.policy_rows says."""
    from src.training import prompt_completion_rows
    kept = keep_passing(samples, q.keep_per_task, seed)
    rows = [{"prompt": k["prompt"], "completion": k["completion"]} for k in kept]
    return kept, policy_rows(rows, ("completion",), tok, chat) + \
        (prompt_completion_rows(train, tok, chat) if q.mix_train else [])


def rft(ctx: MethodContext) -> Aligned:
    """Rejection-sampling fine-tuning (expert iteration): each round samples the policy, keeps its
    distinct passing programs (at most keep_per_task per task) and trains on them with TRL's SFTTrainer
    (completion-only loss), plus the labelled train split when mix_train."""
    from datasets import Dataset
    from trl import SFTConfig

    from src.training import dvclive_callback, sft_trainer, trl_config
    q = ctx.rft
    train = train_tasks(ctx) if q.mix_train else []

    def build(samples: list[dict], info: dict):
        kept, rows = rft_rows(samples, train, q, ctx.base.seed + info["round"], ctx.tok, ctx.base.chat)
        if not rows:
            raise UserError(f"rft round {info['round']}: no passing program to train on (sample more with "
                            "ppo_or_dpo.rft.samples_per_prompt, or set ppo_or_dpo.rft.mix_train: true)")
        cfg = trl_config(SFTConfig, "ppo_or_dpo.rft.sft", q.sft, **{**ctx.common, "output_dir": info["output_dir"]})
        cb, live = dvclive_callback(ctx.plots_dir, info["resume"] or not info["first"])
        trainer = sft_trainer(model=ctx.policy, args=cfg, processing_class=ctx.tok, callbacks=[cb],
                              train_dataset=Dataset.from_list(rows))
        ctx.tok.padding_side = "right"
        return trainer, live, {"programs_kept": len(kept), "tasks_kept": len({k["task_id"] for k in kept}),
                               "train_rows": len(rows)}
    # every prompt, not only those the SFT policy solves sometimes: a task it always solves still gives
    # a program of its own to imitate (expert iteration keeps all of them)
    return train_rounds(ctx, method_prompts(ctx, filtered=False), q.rounds, q.samples_per_prompt, build)


def online_dpo(ctx: MethodContext) -> Aligned:
    """Online (iterative) DPO: each round samples the policy, pairs a passing program (chosen) with a
    failing one (rejected) of the same task, and trains TRL's DPOTrainer on the pairs, against the
    policy as it was at the round's start (the SFT policy in round 1)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from src.training import dvclive_callback, trl_config
    q = ctx.online_dpo

    def build(samples: list[dict], info: dict):
        pairs = pass_fail_pairs(samples, q.pairs_per_task, ctx.base.seed + info["round"])
        if not pairs:
            raise UserError(f"online_dpo round {info['round']}: no task has both a passing and a failing sample "
                            "(sample more with ppo_or_dpo.online_dpo.samples_per_prompt, or use other prompts)")
        cfg = trl_config(DPOConfig, "ppo_or_dpo.online_dpo.dpo", q.dpo,
                         **{**ctx.common, "output_dir": info["output_dir"]})
        cb, live = dvclive_callback(ctx.plots_dir, info["resume"] or not info["first"])
        # a PEFT policy's reference is its base with the adapter off (TRL's own way); else a frozen copy
        ref = None if hasattr(ctx.policy, "peft_config") else copy.deepcopy(ctx.policy)
        rows = policy_rows(pairs, ("chosen", "rejected"), ctx.tok, ctx.base.chat)
        trainer = DPOTrainer(model=ctx.policy, ref_model=ref, args=cfg, processing_class=ctx.tok,
                             train_dataset=Dataset.from_list(rows), callbacks=[cb])
        ctx.tok.padding_side = "right"
        return trainer, live, {"pairs": len(pairs), "tasks_paired": len({x["task_id"] for x in pairs})}
    return train_rounds(ctx, method_prompts(ctx), q.rounds, q.samples_per_prompt, build)


# the methods that can ask a policy through its chat template (base.prompt_format: chat): they train on
# prompt -> answer rows (src.prompting.policy_rows); the others score bodies in completion form
CHAT_METHODS = ("rft", "online_dpo", "sft_more")
# method name (ppo_or_dpo.method) -> function; a new method is one function and one entry here
METHODS: dict[str, Callable[[MethodContext], Aligned]] = {"dpo": dpo, "grpo": grpo, "ppo": ppo, "sft_more": sft_more,
                                                          "rft": rft, "online_dpo": online_dpo}


@dataclasses.dataclass
class Validated:
    """Every params section the stage reads, checked."""
    base: BaseParams
    sandbox: SandboxParams
    p: AlignParams
    composite: CompositeParams
    ppo: Any                         # src.ppo.PPOParams
    sampling: SamplingParams
    rft: RFTParams
    online_dpo: OnlineDPOParams


def validate(raw: dict) -> Validated:
    """Every method's section is checked, not only the active one's: a typo fails now, not in a later
    -S run, and before any model loads."""
    base = parse_section(BaseParams, raw.get("base"), "base")
    sandbox = parse_section(SandboxParams, raw.get("sandbox"), "sandbox")
    p = parse_section(AlignParams, raw.get("ppo_or_dpo"), "ppo_or_dpo")
    for section, keys in INJECTED.items():
        for key, source in keys.items():
            if key in getattr(p, section):
                raise UserError(f"params key 'ppo_or_dpo.{section}.{key}' is not set here: every stage uses "
                                f"{source} (remove the key; change {source} instead)")
    if p.grpo_rollouts == "sampler" and p.grpo.get("mask_truncated_completions"):
        raise UserError("params key 'ppo_or_dpo.grpo.mask_truncated_completions': the sampler's rollouts end at "
                        "the body without EOS, which TRL would mask as truncated (set grpo_rollouts: trl, or "
                        "leave the key out)")
    if p.method in SAMPLING_METHODS and base.temperature == 0:
        raise UserError(f"params key 'base.temperature': {p.method} samples its rollouts and needs a "
                        "temperature above 0")
    if base.chat is not None and p.method not in CHAT_METHODS:
        raise UserError(f"params key 'base.prompt_format': chat works with {', '.join(CHAT_METHODS)}; "
                        f"{p.method} asks the policy in completion form (its pairs and rollouts are bodies)")
    composite = parse_section(CompositeParams, p.composite, "ppo_or_dpo.composite")
    if composite.codebleu_weights is None:  # the semantic reward measures CodeBLEU as evaluation does
        composite.codebleu_weights = list((raw.get("evaluate") or {}).get("codebleu_weights") or [])
    if len(composite.codebleu_weights) != 4:
        raise UserError("params key 'ppo_or_dpo.composite.codebleu_weights' (or evaluate.codebleu_weights when "
                        f"it is null): expected 4 weights, got {composite.codebleu_weights}")
    from src.ppo import PPOParams
    # a greedy base.temperature (0) is refused above for ppo; the other methods never read PPO's
    ppo_params = parse_section(PPOParams, {**p.ppo, "seed": base.seed, "temperature": base.temperature or 1.0},
                               "ppo_or_dpo.ppo")
    sampling = parse_section(SamplingParams, p.sampling, "ppo_or_dpo.sampling")
    rft_params = parse_section(RFTParams, p.rft, "ppo_or_dpo.rft")
    online = parse_section(OnlineDPOParams, p.online_dpo, "ppo_or_dpo.online_dpo")
    from trl import DPOConfig, GRPOConfig, SFTConfig

    from src.training import check_trl_keys
    trl_sections = {"dpo": (DPOConfig, p.dpo), "grpo": (GRPOConfig, p.grpo), "sft_more": (SFTConfig, p.sft_more),
                    "rft.sft": (SFTConfig, rft_params.sft), "online_dpo.dpo": (DPOConfig, online.dpo)}
    for name, (config_cls, values) in trl_sections.items():
        check_trl_keys(config_cls, f"ppo_or_dpo.{name}", values)
    return Validated(base, sandbox, p, composite, ppo_params, sampling, rft_params, online)


def main(params_path: str, data_dir: str, reward_data: str, sft_dir: str, rm_dir: str, out_dir: str,
         metrics_path: str, plots_dir: str, timing_path: str | None = None) -> dict:
    started = time.perf_counter()
    raw = read_params(params_path)
    v = validate(raw)
    base, p = v.base, v.p

    from src import distributed
    from src.models import load_policy, save_policy
    from src.training import checkpointing, file_digest, seed_everything, work_dir

    seed_everything(base.seed, base.num_threads)
    policy, tok = load_policy(sft_dir)
    check_chat(tok, base, sft_dir)
    work = work_dir(out_dir)
    inputs = [Path(data_dir) / "train.jsonl", Path(data_dir) / "rl.jsonl", *sorted(Path(reward_data).glob("*.jsonl")),
              Path(sft_dir) / "model.safetensors", *sorted(Path(rm_dir).glob("*.safetensors"))]
    fingerprint = {"seed": base.seed, "threads": base.num_threads, "params": raw["ppo_or_dpo"],
                   "temperature": base.temperature, "chat": base.chat, "composite": dataclasses.asdict(v.composite),  # weights resolved
                   "sandbox": raw["sandbox"],
                   "inputs": file_digest(*[f for f in inputs if f.exists()])}
    ckpt, resume = checkpointing(work, fingerprint, base.checkpoint_steps, base.resume)
    common = dict(output_dir=work, seed=base.seed, data_seed=base.seed, report_to="none", **ckpt)
    t0 = time.time()
    ctx = MethodContext(p=p, base=base, sandbox=v.sandbox, composite=v.composite, ppo=v.ppo, sampling=v.sampling,
                        rft=v.rft, online_dpo=v.online_dpo, data_dir=data_dir, reward_data=reward_data,
                        rm_dir=rm_dir, plots_dir=plots_dir, policy=policy, tok=tok, work=work, resume=resume,
                        common=common)
    done = METHODS[p.method](ctx)

    if not distributed.is_main():
        return {}  # the main process saves and writes
    save_policy(done.policy, tok, out_dir, {"base": dataclasses.asdict(base), "ppo_or_dpo": raw["ppo_or_dpo"]},
                state_dict=done.state_dict)
    if done.save_more is not None:
        done.save_more(out_dir)
    shutil.rmtree(work, ignore_errors=True)  # finished: checkpoints are no longer needed
    metrics = {"method": p.method, **done.extra}
    write_json(metrics_path, metrics)
    write_timing(timing_path, started, method=p.method, train_s=round(time.time() - t0, 3),
                 prompts=done.extra.get("prompts"), **done.timing)
    print(f"ppo_or_dpo: {metrics} in {time.time() - t0:.0f}s")
    return metrics


def cli(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default="data/prepared")
    ap.add_argument("--reward-data", default="data/reward")
    ap.add_argument("--sft", default="models/sft")
    ap.add_argument("--reward-model", default="models/reward")
    ap.add_argument("--out", default="models/aligned")
    ap.add_argument("--metrics", default="metrics/ppo_or_dpo.json")
    ap.add_argument("--plots", default="plots/ppo_or_dpo")
    ap.add_argument("--timing", default=None, help="the stage's timing record (JSON)")
    a = ap.parse_args(argv)
    run_cli(lambda: main(a.params, a.data, a.reward_data, a.sft, a.reward_model, a.out, a.metrics, a.plots,
                         a.timing))


if __name__ == "__main__":
    cli()
