"""SFT's early stopping on the val loss: it stops before the cap when the val loss stops improving and
saves the best evaluation's weights; patience 0 runs the whole schedule; the val-loss curve is written
against the optimizer step."""
import json
import random

import pytest
import yaml

from tests.conftest import ROOT
from tests.test_pipeline import TINY, merge

EVAL_STEPS = 2
PATIENCE = 2


def tiny_sft(tmp, patience: int, epochs: int, **base) -> None:
    """tmp/params.yaml and tmp/data: 48 one-line train functions (3 steps an epoch at batch 16) and a
    val split the model cannot fit (random characters as bodies), so its val loss soon rises."""
    over = {"base": base, "sft": {"early_stopping_patience": patience,
                                  "train": {"num_train_epochs": epochs, "eval_steps": EVAL_STEPS}}}
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), merge(TINY, over))
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    ops, rng = "+-*", random.Random(0)

    def task(i, body):
        return {"task_id": f"T/{i}", "prompt": f'def f{i}(x):\n    """x {ops[i % 3]} {i}"""\n',
                "canonical_solution": body, "test": "", "entry_point": f"f{i}"}
    train = [task(i, f"    return x {ops[i % 3]} {i}\n") for i in range(48)]
    val = [task(100 + i, "".join(rng.choice("qzxjkvwy#@~ ") for _ in range(40)) + "\n") for i in range(8)]
    (tmp / "data").mkdir()
    for name, rows in (("train", train), ("val", val)):
        (tmp / "data" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def run_sft(tmp, out, **kw):
    from src import sft
    return sft.main(str(tmp / "params.yaml"), str(tmp / "data"), str(tmp / out), str(tmp / f"{out}.json"),
                    str(tmp / f"plots_{out}"), **kw)


def weights(folder):
    from safetensors.torch import load_file
    return load_file(str(folder / "model.safetensors"))


def curve(plots, name="eval/loss"):
    """{step: value} of a dvclive TSV, whose steps must each come once."""
    rows = [r.split("\t") for r in (plots / "plots" / "metrics" / f"{name}.tsv").read_text().splitlines()[1:]]
    steps = [int(s) for s, _ in rows]
    assert len(set(steps)) == len(steps), f"{name}: a step logged twice: {steps}"
    return {int(s): float(v) for s, v in rows}


def snapshots():
    """A callback keeping a copy of the weights at every evaluation during training, by step (the
    stage's closing evaluation, of the saved model, comes at the last step again: not kept)."""
    from transformers import TrainerCallback

    class Snapshots(TrainerCallback):
        taken = {}

        def on_evaluate(self, args, state, control, model=None, **kw):
            if state.global_step not in self.taken:
                self.taken[state.global_step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return Snapshots()


def same_weights(saved, snapshot):
    assert saved.keys() <= snapshot.keys()
    return all((saved[k] == snapshot[k]).all() for k in saved)


def test_early_stopping_stops_before_the_cap_with_the_best_weights(tmp_path):
    tiny_sft(tmp_path, patience=PATIENCE, epochs=10)
    snap = snapshots()
    m = run_sft(tmp_path, "sft", callbacks=[snap])
    assert m["max_steps"] == 30  # 10 epochs of 3 steps: the cap
    # stopped PATIENCE evaluations after the best one, well before the cap
    assert m["steps"] == m["best_step"] + PATIENCE * EVAL_STEPS < m["max_steps"]
    losses = curve(tmp_path / "plots_sft")
    assert list(losses) == list(range(EVAL_STEPS, m["steps"] + 1, EVAL_STEPS))  # every evaluation, once
    assert min(losses, key=losses.get) == m["best_step"]
    assert round(losses[m["best_step"]], 4) == m["best_eval_loss"]
    assert all(v >= losses[m["best_step"]] for s, v in losses.items() if s > m["best_step"])
    # the saved model is the best evaluation's: its weights, and so its val loss
    saved = weights(tmp_path / "sft")
    assert same_weights(saved, snap.taken[m["best_step"]])
    assert not same_weights(saved, snap.taken[m["steps"]])
    assert m["eval_loss"] == m["best_eval_loss"]
    # the train loss is on the same axis: one row per optimizer step
    assert list(curve(tmp_path / "plots_sft", "loss")) == list(range(1, m["steps"] + 1))
    assert not (tmp_path / "sft.work").exists()


def test_patience_0_runs_the_whole_schedule(tmp_path):
    tiny_sft(tmp_path, patience=0, epochs=4)
    snap = snapshots()
    m = run_sft(tmp_path, "sft", callbacks=[snap])
    assert m["steps"] == m["max_steps"] == 12
    losses = curve(tmp_path / "plots_sft")
    assert list(losses) == list(range(EVAL_STEPS, 13, EVAL_STEPS))  # the curve, though nothing stops on it
    assert min(losses, key=losses.get) == m["best_step"] < 12  # the val loss rose ...
    assert same_weights(weights(tmp_path / "sft"), snap.taken[12])  # ... yet the last weights are kept
    assert m["eval_loss"] == round(losses[12], 4)


def test_early_stopping_needs_evaluations(tmp_path):
    from trl import SFTConfig

    from src.io import UserError
    from src.sft import early_stopping_args
    cfg = SFTConfig(output_dir=str(tmp_path), eval_strategy="no", use_cpu=True, bf16=False)
    with pytest.raises(UserError, match="sft.early_stopping_patience"):
        early_stopping_args(cfg)
    cfg = SFTConfig(output_dir=str(tmp_path), eval_strategy="steps", eval_steps=5, use_cpu=True, bf16=False)
    args = early_stopping_args(cfg)
    assert (args["save_strategy"], args["save_steps"]) == ("steps", 5)  # a checkpoint at every evaluation


def test_drop_rows_after(tmp_path):
    from src.training import drop_rows_after
    (tmp_path / "eval").mkdir()
    (tmp_path / "loss.tsv").write_text("step\tloss\n1\t0.5\n2\t0.4\n3\t0.3\n")
    (tmp_path / "eval" / "loss.tsv").write_text("step\tloss\n2\t0.9\n")
    drop_rows_after(tmp_path, 2)
    assert (tmp_path / "loss.tsv").read_text() == "step\tloss\n1\t0.5\n2\t0.4\n"
    assert (tmp_path / "eval" / "loss.tsv").read_text() == "step\tloss\n2\t0.9\n"
