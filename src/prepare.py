"""`prepare` stage: build the train/val/test/rl task files and check every canonical solution.

    python -m src.prepare --params params.yaml --out data/prepared --metrics metrics/prepare.json

Sources (`prepare.source`): `synthetic` (the seeded compositional generator in src/tasks/synthetic.py),
`humaneval` (all 164 problems, evaluation only: everything goes to test), `mbpp` (a local upstream
JSONL file or a hub id in `prepare.path`, with MBPP's own split; the few-shot prompt tasks 1-10 join
train) and `jsonl` (any human-eval-format file in `prepare.path`, split by `prepare.split_fracs`).
Every canonical solution runs against its own tests in the sandbox: a synthetic or jsonl failure
stops the stage (listing the task ids); HumanEval/MBPP failures are dropped and reported.

The `rl` split holds verifiable prompts (tests, no reference) for the reward stage and the online
methods: `prepare.n_rl` fresh generator tasks (synthetic) or a `prepare.rl_frac` share of the training
tasks (mbpp, jsonl; none for humaneval). rl.jsonl carries canonical_solution "" so no training stage
can see a reference; the checked references go to rl_references.jsonl, for analysis only.
"""
from __future__ import annotations

import argparse
import dataclasses
import random
import time
from collections import Counter
from pathlib import Path
from typing import Literal, Optional

from src.io import UserError, run_cli, write_json, write_jsonl, write_timing
from src.params import BaseParams, bounded, parse_section, read_params
from src.tasks import TASK_FIELDS
from src.tasks import synthetic

SPLITS = ("train", "val", "test", "rl")
OUT_FIELDS = TASK_FIELDS + ("combo", "heldout")


@dataclasses.dataclass
class PrepareParams:
    source: Literal["synthetic", "humaneval", "mbpp", "jsonl"]
    path: Optional[str]                # mbpp: upstream .jsonl or hub id; jsonl: a human-eval-format file
    # synthetic: tasks per split; other sources: at most this many per split (a seeded subsample)
    n_train: int = bounded(0)
    n_val: int = bounded(0)
    n_test: int = bounded(0)
    n_rl: int = bounded(0)             # the rl split: verifiable prompts whose references no stage sees
    rl_heldout_combos: bool            # synthetic: rl may hold the held-out combinations/family (train never does)
    rl_frac: float = bounded(0.0, 1.0)  # mbpp/jsonl: share of the training tasks moved to rl (tests only)
    families: list[str]                # synthetic families; [] = all
    difficulty_weights: list[float]    # relative weights of levels 1, 2, 3
    heldout_combo_frac: float = bounded(0.0, 0.9)   # share of level-2/3 op combinations never in train
    heldout_family: Optional[str]      # a synthetic family kept out of train entirely
    # synthetic: the cases of each task's test (they set how fine-grained the execution reward is)
    random_inputs: int = bounded(1, 7)  # random inputs per task, besides its edge inputs
    max_asserts: int = bounded(1, 64)   # asserts kept per test, the docstring example first
    min_asserts: int = bounded(1, 64)   # a task with fewer distinct cases is redrawn
    split_fracs: list[float]           # jsonl: train/val/test shares, summing to 1
    # replaces the test split: `humaneval` trains on the source (e.g. mbpp) and evaluates on HumanEval
    test_source: Optional[Literal["humaneval"]]


def validate(p: PrepareParams) -> None:
    """Checks the types alone cannot express; each error names its key."""
    if p.min_asserts > p.max_asserts:
        raise UserError(f"params key 'prepare.min_asserts': {p.min_asserts} is more than prepare.max_asserts "
                        f"({p.max_asserts})")
    try:
        synthetic.check_arguments(p.families, p.heldout_family, p.difficulty_weights)
    except synthetic.BadArgument as e:
        raise UserError(f"params key 'prepare.{e.arg}': {e}") from None
    f = p.split_fracs
    if len(f) != 3 or min(f) < 0 or abs(sum(f) - 1) > 1e-6:
        raise UserError(f"params key 'prepare.split_fracs': expected 3 non-negative shares (train, val, test) "
                        f"summing to 1, got {f}")
    if p.source in ("mbpp", "jsonl") and not p.path:
        raise UserError(f"params key 'prepare.path': required for source {p.source!r}")


def load_source(p: PrepareParams, seed: int) -> tuple[dict[str, list[dict]], list[str]]:
    """Tasks per split before checking, and the ids of records that could not be converted."""
    splits, unconverted = _load_source(p, seed)
    if p.test_source == "humaneval":
        from src.tasks import loaders
        splits["test"] = loaders.load_humaneval()
    return splits, unconverted


def _load_source(p: PrepareParams, seed: int) -> tuple[dict[str, list[dict]], list[str]]:
    if p.source == "synthetic":
        counts = {"train": p.n_train, "val": p.n_val, "test": p.n_test, "rl": p.n_rl}
        try:
            shape = synthetic.TestShape(p.random_inputs, p.max_asserts, p.min_asserts)
            return synthetic.generate_splits(counts, seed, p.families, p.difficulty_weights,
                                             p.heldout_combo_frac, p.heldout_family, shape,
                                             heldout_free=("train",) if p.rl_heldout_combos else ("train", "rl")), []
        except ValueError as e:
            raise UserError(f"prepare: {e}") from None
    from src.tasks import loaders

    if p.source == "humaneval":
        return {"train": [], "val": [], "test": loaders.load_humaneval(), "rl": []}, []
    if p.source == "mbpp":
        unconverted: list[tuple[str, str]] = []
        tasks = loaders.load_mbpp(p.path, unconverted)
        names = {"prompt": "train", "train": "train", "validation": "val", "test": "test"}
        splits = {s: [t for t in tasks if names[t["split"]] == s] for s in ("train", "val", "test")}
        return move_to_rl(splits, p.rl_frac, seed), [i for i, _ in unconverted]
    tasks = loaders.load_jsonl_problems(p.path)
    random.Random(f"{seed}:prepare:jsonl").shuffle(tasks)
    n_train, n_val = round(p.split_fracs[0] * len(tasks)), round(p.split_fracs[1] * len(tasks))
    splits = {"train": tasks[:n_train], "val": tasks[n_train:n_train + n_val], "test": tasks[n_train + n_val:]}
    return move_to_rl(splits, p.rl_frac, seed), []


def move_to_rl(splits: dict[str, list[dict]], frac: float, seed: int) -> dict[str, list[dict]]:
    """A seeded `frac` of the train tasks (rounded) becomes the rl split; both keep their order."""
    train = splits["train"]
    chosen = set(random.Random(f"{seed}:prepare:rl").sample(range(len(train)), round(frac * len(train))))
    return {**splits, "train": [t for i, t in enumerate(train) if i not in chosen],
            "rl": [t for i, t in enumerate(train) if i in chosen]}


def strip_references(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(rows with canonical_solution "", [{task_id, canonical_solution}]): the rl split and its references."""
    return ([{**t, "canonical_solution": ""} for t in rows],
            [{"task_id": t["task_id"], "canonical_solution": t["canonical_solution"]} for t in rows])


def check_canonical(tasks: list[dict], sandbox_params) -> list[tuple[dict, str]]:
    """(task, why) for every task whose canonical solution fails its own tests in the sandbox."""
    from src.sandbox import Job, execute

    jobs = [Job(t["prompt"], t["canonical_solution"], t["test"], t["entry_point"]) for t in tasks]
    results = execute(jobs, sandbox_params, progress=True)
    return [(t, f"{r.status}: {r.detail}".strip()) for t, r in zip(tasks, results) if not r.passed]


def _tally(tasks: list[dict], key: str) -> dict[str, int]:
    return dict(sorted(Counter(str(t[key]) if t[key] is not None else "none" for t in tasks).items()))


def prepare(p: PrepareParams, seed: int, sandbox_params) -> tuple[dict[str, list[dict]], dict]:
    """Build, check and cap the splits; returns (splits, metrics)."""
    splits, unconverted = load_source(p, seed)
    everything = [t for s in SPLITS for t in splits[s]]
    failed = check_canonical(everything, sandbox_params)
    if failed and p.source in ("synthetic", "jsonl"):
        ids = [t["task_id"] for t, _ in failed]
        raise UserError(f"{len(ids)} canonical solution(s) fail their own tests: {', '.join(ids[:20])}"
                        + (" ..." if len(ids) > 20 else "") + f" (first: {failed[0][1][:300]})")
    bad = {t["task_id"] for t, _ in failed}
    caps = {"train": p.n_train, "val": p.n_val, "test": p.n_test, "rl": p.n_rl}
    for s in SPLITS:
        kept = [t for t in splits[s] if t["task_id"] not in bad]
        if p.source != "synthetic" and len(kept) > caps[s]:
            chosen = set(random.Random(f"{seed}:prepare:cap:{s}").sample(range(len(kept)), caps[s]))
            kept = [t for i, t in enumerate(kept) if i in chosen]
        splits[s] = [{k: t.get(k) for k in OUT_FIELDS} | {"heldout": bool(t.get("heldout"))} for t in kept]
    # rl may be empty (humaneval has none; n_rl 0 or rl_frac 0 turn it off): the stages that read it say so
    required = {"synthetic": SPLITS[:3], "mbpp": SPLITS[:3], "humaneval": ("test",),
                "jsonl": tuple(s for s, f in zip(SPLITS, p.split_fracs) if f > 0)}[p.source]
    for s in required:
        if not splits[s]:
            raise UserError(f"prepare: split {s!r} is empty (source {p.source!r}; check prepare.n_{s}"
                            + (", prepare.split_fracs" if p.source == "jsonl" else "") + ")")
    dropped = sorted(bad | set(unconverted), key=lambda i: (len(i), i))
    held_combos = synthetic.heldout_combos(seed, p.families or synthetic.FAMILY_NAMES, p.heldout_combo_frac) \
        if p.source == "synthetic" else set()
    metrics = {
        "source": p.source,
        "counts": {s: len(splits[s]) for s in SPLITS},
        "per_family": {s: _tally(splits[s], "family") for s in SPLITS},
        "per_difficulty": {s: _tally(splits[s], "difficulty") for s in SPLITS},
        "heldout_tasks": {s: sum(t["heldout"] for t in splits[s]) for s in SPLITS},
        "distinct_combos": {s: len({t["combo"] for t in splits[s] if t["combo"]}) for s in SPLITS},
        "heldout_combos": {"held_out": len(held_combos),
                           "used_in_val_test": len({t["combo"] for s in ("val", "test") for t in splits[s]
                                                    if t["combo"] in held_combos}),
                           "used_in_rl": len({t["combo"] for t in splits["rl"] if t["combo"] in held_combos})},
        "canonical_checked": len(everything),
        "dropped": {"count": len(dropped), "ids": dropped},
    }
    return splits, metrics


def main(params_path: str = "params.yaml", out_dir: str = "data/prepared",
         metrics_path: str = "metrics/prepare.json", timing_path: str | None = None) -> dict:
    """Run the stage: read params, build and check the splits, write the split files and metrics.

    Args:
        params_path: params.yaml (sections base, prepare, sandbox).
        out_dir: folder for train.jsonl, val.jsonl, test.jsonl, rl.jsonl (references blanked) and
            rl_references.jsonl.
        metrics_path: the metrics JSON file.
        timing_path: where to record the wall time and work (src.io.write_timing); None: nowhere.
    Returns:
        the metrics dict.
    """
    from src.sandbox import SandboxParams

    t0 = time.perf_counter()
    raw = read_params(params_path)
    base = parse_section(BaseParams, raw.get("base"), "base")
    p = parse_section(PrepareParams, raw.get("prepare"), "prepare")
    validate(p)
    sandbox_params = parse_section(SandboxParams, raw.get("sandbox"), "sandbox")
    splits, metrics = prepare(p, base.seed, sandbox_params)
    splits["rl"], references = strip_references(splits["rl"])
    for s in SPLITS:
        write_jsonl(Path(out_dir) / f"{s}.jsonl", splits[s])
    write_jsonl(Path(out_dir) / "rl_references.jsonl", references)   # analysis only: no stage reads it
    write_json(metrics_path, metrics)
    write_timing(timing_path, t0, tasks=sum(metrics["counts"].values()),
                 sandbox_programs=metrics["canonical_checked"])
    print(f"prepare: {p.source}: " + ", ".join(f"{s} {len(splits[s])}" for s in SPLITS)
          + f"; dropped {metrics['dropped']['count']}")
    return metrics


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="data/prepared")
    ap.add_argument("--metrics", default="metrics/prepare.json")
    ap.add_argument("--timing", default=None, help="the stage's timing record (JSON), e.g. reports/timing/prepare.json")
    args = ap.parse_args()
    main(args.params, args.out, args.metrics, args.timing)


if __name__ == "__main__":
    run_cli(cli)
