"""Pieces every model stage shares: seeding, TRL-config building from a params sub-mapping (unknown keys
fail naming the key), dvclive logging that never rewrites dvc.yaml, the prompt/completion dataset
built from task rows, and the checkpoints of the hand-written loops (PPO, the reward model)."""
from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path
from typing import Any

from src.io import UserError, is_timing_key
from src.prompting import policy_rows


def seed_everything(seed: int, num_threads: int) -> None:
    """The one seed of a model stage, called once before any model is built or data is shuffled:
    python's random, PYTHONHASHSEED (for subprocesses), numpy and torch, in that order; and torch's
    CPU thread count."""
    import random

    import numpy as np
    import torch
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(num_threads)


def check_trl_keys(config_cls, section: str, values: dict[str, Any]) -> None:
    """An unknown key of a TRL/transformers config section fails naming `section.key`."""
    known = {f.name for f in dataclasses.fields(config_cls)}
    for key in values:
        if key not in known:
            raise UserError(f"params key '{section}.{key}' is not a {config_cls.__name__} option")


def trl_config(config_cls, section: str, values: dict[str, Any], **fixed):
    """Build a TRL/transformers config dataclass from params (keys checked by check_trl_keys)."""
    check_trl_keys(config_cls, section, values)
    try:
        return config_cls(**values, **fixed)
    except (TypeError, ValueError) as e:
        raise UserError(f"params section '{section}': {e}") from None


def sft_trainer(**kwargs):
    """TRL's SFTTrainer built from kwargs. With `train_sampling_strategy: batch_rebalance` (each optimizer
    step's batch drawn at random, then split across the accumulated micro-batches by length) the batches
    follow the config's data_seed: transformers builds that sampler with a fixed seed of its own, so
    base.seed would not move the data order."""
    from transformers.trainer_pt_utils import BatchRebalanceSampler
    from trl import SFTTrainer

    class Trainer(SFTTrainer):
        def _get_train_sampler(self, train_dataset=None):
            sampler = super()._get_train_sampler(train_dataset)
            if isinstance(sampler, BatchRebalanceSampler):
                sampler.seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return sampler

    return Trainer(**kwargs)


class _NoLive:
    """What processes other than the main one get instead of a dvclive.Live: they log nothing."""

    def end(self) -> None:
        pass


def dvclive_callback(plots_dir: str, resume: bool = False, global_step: bool = False,
                     resume_step: int | None = None):
    """A transformers callback logging to `plots_dir`; dvc.yaml owns the plot declarations.
    A resumed run keeps the curves logged before the interruption. Wall-clock keys (train_runtime,
    *_per_second, step_time) are dropped: the plot data is committed and must not change between
    identical runs; the stage's timing record keeps them.

    The `step` column counts log calls, unless `global_step`: then it is the optimizer step, so train
    and eval curves share one axis; a run resumed from the checkpoint at `resume_step` first drops the
    rows a killed run logged after it, which it logs again."""
    from dvclive import Live
    from transformers import TrainerCallback
    from transformers.integrations import DVCLiveCallback

    from src import distributed
    if not distributed.is_main():
        return TrainerCallback(), _NoLive()

    class Callback(DVCLiveCallback):
        def on_log(self, args, state, control, model=None, logs=None, **kwargs):
            logs = {k: v for k, v in (logs or {}).items() if not is_timing_key(k)}
            if global_step:
                self.live.step = state.global_step
            super().on_log(args, state, control, model=model, logs=logs, **kwargs)

    if global_step and resume and resume_step is not None:
        drop_rows_after(Path(plots_dir) / "plots" / "metrics", resume_step)
    live = Live(dir=plots_dir, dvcyaml=False, save_dvc_exp=False, report=None, resume=resume)
    return Callback(live=live, log_model=False), live


def drop_rows_after(folder, step: int) -> None:
    """Remove the rows with a step above `step` from every dvclive TSV under folder."""
    for tsv in Path(folder).rglob("*.tsv"):
        header, *rows = tsv.read_text().splitlines(keepends=True)
        kept = [r for r in rows if int(float(r.split("\t", 1)[0])) <= step]
        if len(kept) < len(rows):
            tsv.write_text(header + "".join(kept))


def full_state_dict(trainer) -> dict | None:
    """Under FSDP or DeepSpeed the full weights, gathered (every process must call this); else None
    (the main process saves the model it holds)."""
    if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
        return trainer.accelerator.get_state_dict(trainer.model_wrapped)
    return None


def prompt_completion_rows(tasks: list[dict], tokenizer=None, chat: str | None = None) -> list[dict]:
    """TRL's prompt-completion format from tasks (prompt -> canonical body), as the policy is asked
    (base.chat: src.prompting.policy_rows)."""
    return policy_rows([{"prompt": t["prompt"], "completion": t["canonical_solution"]} for t in tasks],
                       ("completion",), tokenizer, chat)


def dvclive_logger(plots_dir: str, resume: bool = False):
    """(live, log) for hand-written loops: log(record) logs every number in record as one step, but
    wall-clock ones (time_*_s: see dvclive_callback)."""
    from dvclive import Live

    from src import distributed
    if not distributed.is_main():
        return _NoLive(), lambda record, step=None: None
    live = Live(dir=plots_dir, dvcyaml=False, save_dvc_exp=False, report=None, resume=resume)

    def log(record: dict, step: int | None = None) -> None:
        if step is not None:
            live.step = step
        for k, v in record.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not is_timing_key(k):
                live.log_metric(k, v)
        live.next_step()
    return live, log


def work_dir(out_dir) -> str:
    """A stage's checkpoint folder, `<out>.work`: beside its output, so DVC never tracks it."""
    from pathlib import Path
    out = Path(out_dir)
    return str(out.with_name(out.name + ".work"))


def checkpointing(work_dir: str, fingerprint: dict, every: int, resume: bool) -> tuple[dict, bool]:
    """Trainer kwargs that checkpoint every `every` steps into work_dir, and whether to resume.

    A run resumes only from checkpoints made with the same params and data (the fingerprint), so a
    changed experiment never continues a stale run; otherwise the folder starts empty.
    """
    import json
    import shutil
    from pathlib import Path

    from src import distributed

    work = Path(work_dir)
    stamp = work / "fingerprint.json"
    text = json.dumps(fingerprint, sort_keys=True, default=str)
    has_ckpt = None
    if distributed.is_main():  # one process decides and cleans; the others follow its decision
        same = stamp.exists() and stamp.read_text() == text
        has_ckpt = same and any(work.glob("checkpoint-*"))
        if not (resume and has_ckpt):
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            stamp.write_text(text)
    has_ckpt = distributed.broadcast(has_ckpt)
    kwargs = {"save_strategy": "steps", "save_steps": every, "save_total_limit": 1} if every else {"save_strategy": "no"}
    return kwargs, resume and has_ckpt


def file_digest(*paths) -> str:
    """sha256 over files (for checkpoint fingerprints)."""
    import hashlib
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- loop checkpoints (PPO and the reward model)
# One file per work folder, replaced at each save; named to match `checkpointing`'s `checkpoint-*`.
CHECKPOINT_FILE = "checkpoint-last.pt"

def rng_states() -> dict:
    """The global RNG states: python, numpy, torch (and CUDA when present), in a form torch.load
    reads with weights_only=True."""
    import torch

    states = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np
        name, keys, pos, has_gauss, cached = np.random.get_state()
        states["numpy"] = [name, keys.tolist(), pos, has_gauss, cached]
    except ImportError:
        pass
    return states


def set_rng_states(states: dict) -> None:
    import torch

    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if "numpy" in states:
        import numpy as np
        name, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_checkpoint(folder, state: dict) -> None:
    """torch.save `state` to folder/CHECKPOINT_FILE atomically: a killed save leaves the previous file."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{CHECKPOINT_FILE}.tmp"  # not `checkpoint-*`: never taken for a checkpoint
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / CHECKPOINT_FILE)


def load_checkpoint(folder) -> dict | None:
    """The state saved in `folder`, or None when it holds none (tensors on the CPU)."""
    import torch

    path = Path(folder) / CHECKPOINT_FILE
    return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None


def start_checkpointing(checkpoint_dir, checkpoint_steps: int, resume: bool, params: dict,
                        free_keys: tuple[str, ...] = ()) -> dict | None:
    """Check the checkpoint arguments; return the checkpoint to resume from, or None. Not resuming
    removes a stale checkpoint, so it is never resumed later. A checkpoint made with other params
    (`free_keys` aside, e.g. the run length) is an error, not a silent mix of two runs."""
    if (checkpoint_steps or resume) and checkpoint_dir is None:
        raise ValueError("checkpoint_steps and resume need a checkpoint_dir")
    if checkpoint_dir is None:
        return None
    if not resume:
        (Path(checkpoint_dir) / CHECKPOINT_FILE).unlink(missing_ok=True)
        return None
    ckpt = load_checkpoint(checkpoint_dir)
    if ckpt is not None:
        saved = {k: v for k, v in ckpt["params"].items() if k not in free_keys}
        if saved != {k: v for k, v in params.items() if k not in free_keys}:
            raise ValueError(f"{Path(checkpoint_dir) / CHECKPOINT_FILE} was made with other params: "
                             f"{saved} != {params}")
    return ckpt
