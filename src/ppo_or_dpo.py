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
from typing import Any, Literal

from src.io import UserError, read_jsonl, read_split, run_cli, write_json
from src.params import BaseParams, bounded, parse_section, read_params, seed_everything
from src.rewards import CompositeParams
from src.sandbox import SandboxParams

TASK_FIELDS = {"task_id": str, "prompt": str, "canonical_solution": str, "test": str, "entry_point": str}
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
    return [{k: t[k] for k in TASK_FIELDS} for t in tasks]


def load_scorer(rm_dir: str, batch_size: int):
    from src.reward_model import load_reward_model
    model, tok = load_reward_model(rm_dir)
    return lambda texts: model.score_texts(list(texts), tok, batch_size)


def main(params_path: str, data_dir: str, reward_data: str, sft_dir: str, rm_dir: str, out_dir: str,
         metrics_path: str, plots_dir: str) -> dict:
    raw = read_params(params_path)
    base = parse_section(BaseParams, raw.get("base"), "base")
    sandbox = parse_section(SandboxParams, raw.get("sandbox"), "sandbox")
    p = parse_section(AlignParams, raw.get("ppo_or_dpo"), "ppo_or_dpo")
    composite = parse_section(CompositeParams, p.composite, "ppo_or_dpo.composite")
    from src.ppo import PPOParams
    # every method's section is checked, not only the active one's: a typo fails now, not in a later -S run
    ppo_params = parse_section(PPOParams, {**p.ppo, "seed": base.seed}, "ppo_or_dpo.ppo")
    from trl import DPOConfig, GRPOConfig, SFTConfig

    from src.training import check_trl_keys
    trl_sections = {"dpo": (DPOConfig, p.dpo), "grpo": (GRPOConfig, p.grpo), "sft_more": (SFTConfig, p.sft_more)}
    for name, (config_cls, values) in trl_sections.items():  # before any model loads
        check_trl_keys(config_cls, f"ppo_or_dpo.{name}", values)

    import copy

    from datasets import Dataset

    from src import distributed
    from src.models import load_policy, save_policy
    from src.rewards import CompositeReward
    from src.training import (checkpointing, dvclive_callback, dvclive_logger, file_digest, full_state_dict,
                              prompt_completion_rows, trl_config, work_dir)

    seed_everything(base.seed, base.num_threads)
    policy, tok = load_policy(sft_dir)
    work = work_dir(out_dir)
    inputs = [Path(data_dir) / "train.jsonl", *sorted(Path(reward_data).glob("*.jsonl")),
              Path(sft_dir) / "model.safetensors", *sorted(Path(rm_dir).glob("*.safetensors"))]
    fingerprint = {"seed": base.seed, "threads": base.num_threads, "params": raw["ppo_or_dpo"],
                   "sandbox": raw["sandbox"],
                   "inputs": file_digest(*[f for f in inputs if f.exists()])}
    ckpt, resume = checkpointing(work, fingerprint, base.checkpoint_steps, base.resume)
    common = dict(output_dir=work, seed=base.seed, data_seed=base.seed, report_to="none", **ckpt)
    t0, extra, state_dict = time.time(), {}, None

    def reward_fn():
        scorer = load_scorer(rm_dir, p.rm_batch_size) if composite.preference else None
        return CompositeReward(composite, sandbox, scorer)

    if p.method in ("dpo", "sft_more"):
        if p.method == "dpo":
            from trl import DPOTrainer
            pairs = {"train": read_split(Path(reward_data) / "pairs_train.jsonl", PAIR_FIELDS),
                     "val": read_jsonl(Path(reward_data) / "pairs_val.jsonl", PAIR_FIELDS)}
            if p.dpo_pairs == "execution":
                pairs = {s: [r for r in rows if r["source"] == "execution"] for s, rows in pairs.items()}
            if not pairs["train"]:
                raise UserError(f"{reward_data}/pairs_train.jsonl: no {p.dpo_pairs} pairs to train DPO on")
            if p.dpo_rerank:
                score = load_scorer(rm_dir, p.rm_batch_size)
                for rows in pairs.values():
                    c = score([r["prompt"] + r["chosen"] for r in rows])
                    r_ = score([r["prompt"] + r["rejected"] for r in rows])
                    for row, sc, sr in zip(rows, c, r_):
                        if sr > sc:
                            row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
            ds = {s: Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
                  for s, rows in pairs.items()}
            cfg = trl_config(DPOConfig, "ppo_or_dpo.dpo", p.dpo, **common)
            cb, live = dvclive_callback(plots_dir, resume)
            trainer = DPOTrainer(model=policy, args=cfg, processing_class=tok, train_dataset=ds["train"],
                                 eval_dataset=ds["val"] if len(ds["val"]) else None, callbacks=[cb])
        else:
            from trl import SFTTrainer
            train = read_split(Path(data_dir) / "train.jsonl", TASK_FIELDS)
            cfg = trl_config(SFTConfig, "ppo_or_dpo.sft_more", p.sft_more, **common)
            cb, live = dvclive_callback(plots_dir, resume)
            trainer = SFTTrainer(model=policy, args=cfg, processing_class=tok, callbacks=[cb],
                                 train_dataset=Dataset.from_list(prompt_completion_rows(train)))
        tok.padding_side = "right"
        out = trainer.train(resume_from_checkpoint=resume or None)
        extra = {"train_loss": round(out.training_loss, 4), "steps": out.global_step}
        live.end()
        policy, state_dict = trainer.model, full_state_dict(trainer)
    elif p.method == "grpo":
        from trl import GRPOTrainer
        tasks = online_prompts(read_split(Path(data_dir) / "train.jsonl", TASK_FIELDS),
                               Path(reward_data) / "task_stats.jsonl", p)
        reward = reward_fn()
        funcs, w = reward.trl_reward_funcs()
        cfg = trl_config(GRPOConfig, "ppo_or_dpo.grpo", p.grpo, reward_weights=w, **common)
        cb, live = dvclive_callback(plots_dir, resume)
        trainer = GRPOTrainer(model=policy, reward_funcs=funcs, args=cfg, processing_class=tok,
                              train_dataset=Dataset.from_list(tasks), callbacks=[cb])
        out = trainer.train(resume_from_checkpoint=resume or None)
        extra = {"train_loss": round(out.training_loss, 4), "steps": out.global_step, "prompts": len(tasks)}
        live.end()
        policy, state_dict = trainer.model, full_state_dict(trainer)
    else:
        from src.ppo import PolicyWithValueHead, train_ppo
        tasks = online_prompts(read_split(Path(data_dir) / "train.jsonl", TASK_FIELDS),
                               Path(reward_data) / "task_stats.jsonl", p)
        reward = reward_fn()
        live, log = dvclive_logger(plots_dir, resume)

        def log_step(stats: dict, step: int) -> None:
            comps = {f"reward_{k}": sum(v) / len(v) for k, v in reward.last.items() if v}
            log({**stats, **comps}, step)
        ref = copy.deepcopy(policy)
        wrapped = PolicyWithValueHead(policy)
        final = train_ppo(wrapped, ref, tok, tasks, reward, ppo_params, log=log_step,
                          checkpoint_dir=work, checkpoint_steps=base.checkpoint_steps, resume=resume)
        live.end()
        # timings go to stdout only: metrics must be byte-identical across identical runs
        extra = {k: round(v, 4) if isinstance(v, float) else v for k, v in final.items() if "time" not in k}
        print("ppo timings: " + ", ".join(f"{k}={v:.1f}" for k, v in final.items() if "time" in k))
        extra["prompts"] = len(tasks)
        policy = wrapped.model

    if not distributed.is_main():
        return {}  # the main process saves and writes
    save_policy(policy, tok, out_dir, {"base": dataclasses.asdict(base), "ppo_or_dpo": raw["ppo_or_dpo"]},
                state_dict=state_dict)
    if p.method == "ppo":
        wrapped.save_value_head(out_dir)
    shutil.rmtree(work, ignore_errors=True)  # finished: checkpoints are no longer needed
    metrics = {"method": p.method, **extra}
    write_json(metrics_path, metrics)
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
    a = ap.parse_args(argv)
    run_cli(lambda: main(a.params, a.data, a.reward_data, a.sft, a.reward_model, a.out, a.metrics, a.plots))


if __name__ == "__main__":
    cli()
