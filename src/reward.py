"""`reward` stage: sample completions of the chosen prompts (`reward.prompts`: the rl split by default)
from the SFT policy at base.temperature, run them in the sandbox, turn them (and human preference
judgments) into preference pairs, and train the two-head reward model.

    python -m src.reward --params params.yaml --data data/prepared --sft models/sft \
        --feedback data/human_feedback --out-data data/reward --out-model models/reward \
        --metrics metrics/reward.json --plots plots/reward

Outputs: data/reward/samples.jsonl (every sample with its execution result), task_stats.jsonl (the
SFT pass rate per task: the online methods train on tasks it solves sometimes, not always or never),
pairs_{train,val}.jsonl (TRL preference format, `source` = execution | simulated | human).
Nothing here reads a reference solution, so rl prompts (canonical_solution "") work like train ones.
The metrics add best-of-n on the reward model's held-out tasks: the pass rate of its top-scored sample
against a random pick and the oracle (any sample passes).
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Literal

from src.io import UserError, run_cli, write_json, write_jsonl, write_timing
from src.pairs import (PairParams, best_of_n, build_pairs, pair_stats, read_human_feedback,
                       simulate_human_feedback, split_pairs)
from src.params import BaseParams, bounded, parse_section, read_params
from src.prompting import check_chat
from src.reward_model import RewardModelParams
from src.rollouts import sample_and_execute
from src.sandbox import SandboxParams
from src.tasks import read_prompts



@dataclasses.dataclass
class RewardParams(PairParams, RewardModelParams):
    prompts: Literal["rl", "train", "both"]   # the tasks sampled: rl (verifiable, no reference), train or both
    max_tasks: int = bounded(0)          # tasks to sample (0 = all; the first ones, train before rl for both)
    samples_per_task: int = bounded(2)   # also the n of best-of-n
    top_p: float = bounded(0, 1)
    max_new_tokens: int = bounded(1)
    gen_batch_size: int = bounded(1)
    # simulated: a seeded rule-based annotator (never called human); file: only real judgments
    # from the feedback folder; both: real judgments plus simulated ones
    human_feedback: Literal["simulated", "file", "both"]


def task_stats(samples: list[dict]) -> list[dict]:
    by = defaultdict(list)
    for s in samples:
        by[s["task_id"]].append(s["passed"])
    return [{"task_id": t, "n": len(v), "passed": sum(v), "pass_rate": sum(v) / len(v)} for t, v in by.items()]


def held_out_best_of_n(model, tok, samples: list[dict], val_pairs: list[dict], batch_size: int) -> dict:
    """Best-of-n (src.pairs.best_of_n) on the tasks whose pairs went to val, with every sample of each
    task scored by the reward model's mixed score: the score the composite's preference uses."""
    held = {p["task_id"] for p in val_pairs if p.get("task_id") is not None}
    rows = [s for s in samples if s["task_id"] in held]
    scores = model.score_texts([s["prompt"] + s["completion"] for s in rows], tok, batch_size)
    groups: dict[str, list[tuple[float, bool]]] = {}
    for s, score in zip(rows, scores):
        groups.setdefault(s["task_id"], []).append((score, bool(s["passed"])))
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in best_of_n(groups).items()}


def human_pairs(p: RewardParams, samples: list[dict], feedback_dir: str, seed: int) -> list[dict]:
    real = read_human_feedback(feedback_dir) if p.human_feedback in ("file", "both") else []
    if p.human_feedback == "file" and not real:
        raise UserError(f"{feedback_dir}: reward.human_feedback is 'file' but the folder holds no judgments")
    sim = (simulate_human_feedback(samples, p.simulated_noise, p.max_pairs_per_task, seed)
           if p.human_feedback in ("simulated", "both") else [])
    return real + sim


def main(params_path: str, data_dir: str, sft_dir: str, feedback_dir: str, out_data: str, out_model: str,
         metrics_path: str, plots_dir: str, timing_path: str | None = None) -> dict:
    started = time.perf_counter()
    raw = read_params(params_path)
    base = parse_section(BaseParams, raw.get("base"), "base")
    sandbox = parse_section(SandboxParams, raw.get("sandbox"), "sandbox")
    p = parse_section(RewardParams, raw.get("reward"), "reward")

    from src import distributed
    from src.models import load_policy
    from src.reward_model import TwoHeadRewardModel, evaluate_pairs, train_reward_model
    from src.training import checkpointing, dvclive_logger, file_digest, seed_everything, work_dir

    seed_everything(base.seed, base.num_threads)
    tasks = read_prompts(data_dir, p.prompts, "reward.prompts")
    tasks = tasks[:p.max_tasks] if p.max_tasks else tasks
    policy, tok = load_policy(sft_dir)
    check_chat(tok, base, sft_dir)
    policy.to(distributed.device())
    seconds: dict = {}
    samples = sample_and_execute(tasks, policy, tok, p.samples_per_task, base.temperature, p.top_p, p.max_new_tokens,
                                 p.gen_batch_size, sandbox, base.seed, seconds,
                                 chat=base.chat)
    del policy
    stats = task_stats(samples)

    pairs = build_pairs(samples, p.max_pairs_per_task, p.tie_breakers, base.seed) + \
        human_pairs(p, samples, feedback_dir, base.seed)
    train, val = split_pairs(pairs, p.val_frac, base.seed)
    out = Path(out_data)
    if distributed.is_main():
        write_jsonl(out / "samples.jsonl", samples)
        write_jsonl(out / "task_stats.jsonl", stats)
        write_jsonl(out / "pairs_train.jsonl", train)
        write_jsonl(out / "pairs_val.jsonl", val)
    distributed.barrier()

    def split(rows):
        return [r for r in rows if r["source"] == "execution"], [r for r in rows if r["source"] != "execution"]

    exec_train, hf_train = split(train)
    exec_val, hf_val = split(val)
    work = work_dir(out_model)
    inputs = [out / "pairs_train.jsonl", Path(sft_dir) / "model.safetensors"]
    fingerprint = {"seed": base.seed, "threads": base.num_threads, "params": raw["reward"],
                   "inputs": file_digest(*[f for f in inputs if f.exists()])}
    _, resume = checkpointing(work, fingerprint, base.checkpoint_steps, base.resume)
    model, rm_tok = TwoHeadRewardModel.from_params(p, sft_dir, base.seed)
    live, log = dvclive_logger(plots_dir, resume)
    fit = train_reward_model(model, rm_tok, exec_train, hf_train, p, seed=base.seed, log=log,
                             checkpoint_dir=work, checkpoint_steps=base.checkpoint_steps, resume=resume)
    if not distributed.is_main():
        return {}  # the main process evaluates and writes
    live.end()
    model.save(out_model, rm_tok, {"base": dataclasses.asdict(base), "reward": dataclasses.asdict(p)})
    shutil.rmtree(work, ignore_errors=True)  # finished: checkpoints are no longer needed

    rates = [s["pass_rate"] for s in stats]
    metrics = {
        "human_feedback": p.human_feedback,  # says whether the human head saw real or simulated judgments
        "prompts": p.prompts,
        "samples": len(samples),
        "sft_pass@1": round(sum(rates) / len(rates), 4),   # on the sampled prompts, at base.temperature
        "tasks_informative": sum(0 < r < 1 for r in rates),  # kept for the online methods
        "tasks": len(rates),
        "pairs": pair_stats(pairs),
        "val_accuracy": {
            "overall": evaluate_pairs(model, rm_tok, val, "score", p.eval_batch_size),
            "execution": evaluate_pairs(model, rm_tok, exec_val, "preference", p.eval_batch_size),
            "human" if p.human_feedback == "file" else "human_or_simulated":
                evaluate_pairs(model, rm_tok, hf_val, "human", p.eval_batch_size)
                if p.use_human_logits else None,
        },
        "best_of_n": held_out_best_of_n(model, rm_tok, samples, val, p.eval_batch_size),
        "train_steps": fit["steps"],
    }
    write_json(metrics_path, metrics)
    write_timing(timing_path, started, **seconds, train_s=round(fit["seconds"], 3), completions_sampled=len(samples),
                 sandbox_programs=len(samples), optimizer_steps=fit["steps"], pairs=len(pairs))
    print(f"reward: {len(samples)} samples, {len(pairs)} pairs, val accuracy "
          f"{metrics['val_accuracy']['overall']['accuracy']}")
    return metrics


def cli(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default="data/prepared")
    ap.add_argument("--sft", default="models/sft")
    ap.add_argument("--feedback", default="data/human_feedback")
    ap.add_argument("--out-data", default="data/reward")
    ap.add_argument("--out-model", default="models/reward")
    ap.add_argument("--metrics", default="metrics/reward.json")
    ap.add_argument("--plots", default="plots/reward")
    ap.add_argument("--timing", default=None, help="the stage's timing record (JSON)")
    a = ap.parse_args(argv)
    run_cli(lambda: main(a.params, a.data, a.sft, a.feedback, a.out_data, a.out_model, a.metrics, a.plots,
                         a.timing))


if __name__ == "__main__":
    cli()
