"""A training stage killed mid-run resumes from its last checkpoint and ends where an uninterrupted
run ends, with early stopping too; a run with other params never resumes a stale checkpoint."""
import json
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT
from tests.test_pipeline import TINY, merge

KILL_AT = """
import os, sys
from transformers import TrainerCallback
sys.path.insert(0, {root!r})
from src import sft

class Kill(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == {step}:
            os._exit(9)  # as abrupt as SIGKILL: no cleanup, no final save

sft.main({params!r}, {data!r}, {out!r}, {metrics!r}, {plots!r}, callbacks=[Kill()])
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    over = merge(TINY, {"base": {"checkpoint_steps": 3, "resume": True},
                        "sft": {"early_stopping_patience": 0, "train": {"max_steps": 7, "num_train_epochs": 1}}})
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), over)
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    from src import prepare
    prepare.main(str(tmp / "params.yaml"), str(tmp / "data"), str(tmp / "prepare.json"))
    return tmp


def run_sft(tmp, out, **kw):
    from src import sft
    return sft.main(str(tmp / "params.yaml"), str(tmp / "data"), str(tmp / out), str(tmp / f"{out}.json"),
                    str(tmp / f"plots_{out}"), **kw)


def weights(folder):
    from safetensors.torch import load_file
    return load_file(str(folder / "model.safetensors"))


def test_killed_sft_resumes_to_the_uninterrupted_result(tiny):
    full = run_sft(tiny, "full")
    script = KILL_AT.format(root=str(ROOT), step=5, params=str(tiny / "params.yaml"), data=str(tiny / "data"),
                            out=str(tiny / "killed"), metrics=str(tiny / "killed.json"), plots=str(tiny / "plots_k"))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 9, r.stderr[-2000:]
    assert not (tiny / "killed").exists()  # no half-written output for DVC to cache
    assert (tiny / "killed.work" / "checkpoint-3").exists()
    resumed = run_sft(tiny, "killed")
    assert not (tiny / "killed.work").exists()  # checkpoints removed once the stage finished
    a, b = weights(tiny / "full"), weights(tiny / "killed")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), k
    assert resumed["eval_loss"] == full["eval_loss"] and resumed["steps"] == full["steps"] == 7


def test_changed_params_do_not_resume_a_stale_checkpoint(tiny):
    from src.training import checkpointing
    work = tiny / "stale.work"
    kw, resume = checkpointing(str(work), {"lr": 1}, every=3, resume=True)
    assert not resume and kw["save_steps"] == 3
    (work / "checkpoint-3").mkdir()
    assert checkpointing(str(work), {"lr": 1}, every=3, resume=True)[1] is True
    assert checkpointing(str(work), {"lr": 2}, every=3, resume=True)[1] is False
    assert not (work / "checkpoint-3").exists()
    assert json.loads((work / "fingerprint.json").read_text()) == {"lr": 2}


KILL_AFTER_LOG = """
import os, sys
from transformers import TrainerCallback
sys.path.insert(0, {root!r})
from src import sft

class Kill(TrainerCallback):
    def on_log(self, args, state, control, logs=None, **kw):
        if state.global_step == {step} and "loss" in logs:
            os._exit(9)  # after the step's train loss reached the curves, past the last checkpoint

sft.main({params!r}, {data!r}, {out!r}, {metrics!r}, {plots!r}, callbacks=[Kill()])
"""


def test_killed_sft_with_early_stopping_resumes_to_the_uninterrupted_result(tmp_path):
    from tests.test_sft import EVAL_STEPS, curve, run_sft as run, tiny_sft
    tiny_sft(tmp_path, patience=2, epochs=10, checkpoint_steps=3, resume=True)
    full = run(tmp_path, "full")
    assert (full["best_step"], full["steps"]) == (4, 8)  # evaluations at 2, 4 (best), 6, 8: stops at 8
    script = KILL_AFTER_LOG.format(root=str(ROOT), step=7, params=str(tmp_path / "params.yaml"),
                                   data=str(tmp_path / "data"), out=str(tmp_path / "killed"),
                                   metrics=str(tmp_path / "killed.json"), plots=str(tmp_path / "plots_killed"))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 9, r.stderr[-2000:]
    # a checkpoint at every evaluation (not every checkpoint_steps); the best one kept besides the last
    assert sorted(p.name for p in (tmp_path / "killed.work").glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]
    assert max(curve(tmp_path / "plots_killed", "loss")) == 7  # logged past checkpoint-6 before the kill
    resumed = run(tmp_path, "killed")
    # resumed from checkpoint-6 with one evaluation without improvement already counted: stops at 8, not 10.
    # (train_loss is the Trainer's mean over the steps this process ran, so it differs after a resume.)
    assert {**resumed, "train_loss": None} == {**full, "train_loss": None}
    a, b = weights(tmp_path / "full"), weights(tmp_path / "killed")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), k
    # the curves hold each step once, as the uninterrupted run's do
    for name in ("loss", "eval/loss"):
        assert curve(tmp_path / "plots_killed", name) == curve(tmp_path / "plots_full", name), name
    assert list(curve(tmp_path / "plots_full")) == list(range(EVAL_STEPS, 9, EVAL_STEPS))
