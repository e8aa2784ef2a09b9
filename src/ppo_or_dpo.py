"""`ppo_or_dpo` stage: align the SFT policy. `ppo_or_dpo.method` picks
- dpo: TRL's DPOTrainer on the reward stage's preference pairs (optionally re-ranked by the reward model);
- grpo: TRL's GRPOTrainer on the composite reward (syntax, execution, semantic, preference);
- ppo: the project's PPO (src/ppo.py; TRL no longer has one) on the same composite reward;
- sft_more: the control, more supervised fine-tuning from the SFT checkpoint with the same budget
  of optimizer steps, so a method's gain counts only above it.

    python -m src.ppo_or_dpo --params params.yaml --data data/prepared --reward-data data/reward \
        --sft models/sft --reward-model models/reward --out models/aligned \
        --metrics metrics/ppo_or_dpo.json --plots plots/ppo_or_dpo
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Literal

from src.io import UserError, read_jsonl, read_split, run_cli, timing_keys, write_json, write_timing
from src.params import BaseParams, bounded, parse_section, read_params
from src.rewards import CompositeParams
from src.sandbox import SandboxParams
from src.tasks import TASK_COLUMNS

PAIR_FIELDS = {"prompt": str, "chosen": str, "rejected": str, "source": str}


@dataclasses.dataclass
class AlignParams:
    method: Literal["dpo", "grpo", "ppo", "sft_more"]
    composite: dict[str, Any]        # the composite reward of grpo and ppo: src.rewards.CompositeParams
    filter_prompts: bool             # online methods: only tasks the SFT policy solves sometimes
    max_prompts: int = bounded(0)    # 0 = all (after filtering)
    dpo_pairs: Literal["execution", "all"]   # all = execution + human/simulated pairs
    dpo_rerank: bool                 # re-order each pair by the reward model's score
    rm_batch_size: int = bounded(1)
    dpo: dict[str, Any]              # TRL DPOConfig fields
    grpo: dict[str, Any]             # TRL GRPOConfig fields
    ppo: dict[str, Any]              # src.ppo.PPOParams fields (seed comes from base.seed)
    sft_more: dict[str, Any]         # TRL SFTConfig fields


@dataclasses.dataclass
class MethodContext:
    """What every method gets: the validated params, the input folders, the loaded SFT policy and the
    trainer settings every TRL method shares (output dir, seeds, checkpointing)."""
    p: AlignParams
    base: BaseParams
    sandbox: SandboxParams
    composite: CompositeParams
    ppo: Any                         # src.ppo.PPOParams
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
    """Tasks for GRPO/PPO: those with an SFT pass rate strictly between 0 and 1 when filtering."""
    if p.filter_prompts:
        rate = {r["task_id"]: r["pass_rate"] for r in read_jsonl(stats_path, {"task_id": str, "pass_rate": (int, float)})}
        tasks = [t for t in tasks if 0 < rate.get(t["task_id"], 0) < 1]
    if p.max_prompts:
        tasks = tasks[:p.max_prompts]
    if not tasks:
        raise UserError(f"{stats_path}: no training prompts left after filtering "
                        "(set ppo_or_dpo.filter_prompts: false or sample more in the reward stage)")
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
    if not pairs["train"]:
        raise UserError(f"{ctx.reward_data}/pairs_train.jsonl: no {p.dpo_pairs} pairs to train DPO on")
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
    return run_trainer(trainer, live, ctx)


def sft_more(ctx: MethodContext) -> Aligned:
    """The control: more supervised fine-tuning on the train tasks with TRL's SFTTrainer."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from src.training import dvclive_callback, prompt_completion_rows, trl_config
    train = train_tasks(ctx)
    cfg = trl_config(SFTConfig, "ppo_or_dpo.sft_more", ctx.p.sft_more, **ctx.common)
    cb, live = dvclive_callback(ctx.plots_dir, ctx.resume)
    trainer = SFTTrainer(model=ctx.policy, args=cfg, processing_class=ctx.tok, callbacks=[cb],
                         train_dataset=Dataset.from_list(prompt_completion_rows(train)))
    ctx.tok.padding_side = "right"
    return run_trainer(trainer, live, ctx)


def grpo(ctx: MethodContext) -> Aligned:
    """TRL's GRPOTrainer on the composite reward, one reward function per weighted component."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from src.training import dvclive_callback, trl_config
    tasks = online_prompts(train_tasks(ctx), Path(ctx.reward_data) / "task_stats.jsonl", ctx.p)
    reward = composite_reward(ctx)
    funcs, w = reward.trl_reward_funcs()
    cfg = trl_config(GRPOConfig, "ppo_or_dpo.grpo", ctx.p.grpo, reward_weights=w, **ctx.common)
    cb, live = dvclive_callback(ctx.plots_dir, ctx.resume)
    trainer = GRPOTrainer(model=ctx.policy, reward_funcs=funcs, args=cfg, processing_class=ctx.tok,
                          train_dataset=Dataset.from_list(tasks), callbacks=[cb])
    return run_trainer(trainer, live, ctx, prompts=len(tasks))


def ppo(ctx: MethodContext) -> Aligned:
    """The project's PPO (src/ppo.py) on the composite reward, with a frozen copy as KL reference."""
    import copy

    from src.ppo import PolicyWithValueHead, train_ppo
    from src.training import dvclive_logger
    tasks = online_prompts(train_tasks(ctx), Path(ctx.reward_data) / "task_stats.jsonl", ctx.p)
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


# method name (ppo_or_dpo.method) -> function; a new method is one function and one entry here
METHODS: dict[str, Callable[[MethodContext], Aligned]] = {"dpo": dpo, "grpo": grpo, "ppo": ppo, "sft_more": sft_more}


def validate(raw: dict) -> tuple[BaseParams, SandboxParams, AlignParams, CompositeParams, Any]:
    """Every method's section is checked, not only the active one's: a typo fails now, not in a later
    -S run, and before any model loads."""
    base = parse_section(BaseParams, raw.get("base"), "base")
    sandbox = parse_section(SandboxParams, raw.get("sandbox"), "sandbox")
    p = parse_section(AlignParams, raw.get("ppo_or_dpo"), "ppo_or_dpo")
    composite = parse_section(CompositeParams, p.composite, "ppo_or_dpo.composite")
    if composite.codebleu_weights is None:  # the semantic reward measures CodeBLEU as evaluation does
        composite.codebleu_weights = list((raw.get("evaluate") or {}).get("codebleu_weights") or [])
    if len(composite.codebleu_weights) != 4:
        raise UserError("params key 'ppo_or_dpo.composite.codebleu_weights' (or evaluate.codebleu_weights when "
                        f"it is null): expected 4 weights, got {composite.codebleu_weights}")
    from src.ppo import PPOParams
    ppo_params = parse_section(PPOParams, {**p.ppo, "seed": base.seed}, "ppo_or_dpo.ppo")
    from trl import DPOConfig, GRPOConfig, SFTConfig

    from src.training import check_trl_keys
    trl_sections = {"dpo": (DPOConfig, p.dpo), "grpo": (GRPOConfig, p.grpo), "sft_more": (SFTConfig, p.sft_more)}
    for name, (config_cls, values) in trl_sections.items():
        check_trl_keys(config_cls, f"ppo_or_dpo.{name}", values)
    return base, sandbox, p, composite, ppo_params


def main(params_path: str, data_dir: str, reward_data: str, sft_dir: str, rm_dir: str, out_dir: str,
         metrics_path: str, plots_dir: str, timing_path: str | None = None) -> dict:
    started = time.perf_counter()
    raw = read_params(params_path)
    base, sandbox, p, composite, ppo_params = validate(raw)

    from src import distributed
    from src.models import load_policy, save_policy
    from src.training import checkpointing, file_digest, seed_everything, work_dir

    seed_everything(base.seed, base.num_threads)
    policy, tok = load_policy(sft_dir)
    work = work_dir(out_dir)
    inputs = [Path(data_dir) / "train.jsonl", *sorted(Path(reward_data).glob("*.jsonl")),
              Path(sft_dir) / "model.safetensors", *sorted(Path(rm_dir).glob("*.safetensors"))]
    fingerprint = {"seed": base.seed, "threads": base.num_threads, "params": raw["ppo_or_dpo"],
                   "composite": dataclasses.asdict(composite), "sandbox": raw["sandbox"],  # weights resolved
                   "inputs": file_digest(*[f for f in inputs if f.exists()])}
    ckpt, resume = checkpointing(work, fingerprint, base.checkpoint_steps, base.resume)
    common = dict(output_dir=work, seed=base.seed, data_seed=base.seed, report_to="none", **ckpt)
    t0 = time.time()
    ctx = MethodContext(p=p, base=base, sandbox=sandbox, composite=composite, ppo=ppo_params, data_dir=data_dir,
                        reward_data=reward_data, rm_dir=rm_dir, plots_dir=plots_dir, policy=policy, tok=tok,
                        work=work, resume=resume, common=common)
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
