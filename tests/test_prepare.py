"""The prepare stage end to end on tiny params."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from src.io import UserError, read_jsonl
from src.prepare import main

ROOT = Path(__file__).resolve().parents[1]


def write_params(tmp_path: Path, **prepare) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["prepare"] = {**raw["prepare"], "n_train": 40, "n_val": 8, "n_test": 16, **prepare}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def run(tmp_path: Path, **prepare) -> tuple[dict, dict]:
    out, metrics_path = tmp_path / "prepared", tmp_path / "metrics" / "prepare.json"
    metrics = main(str(write_params(tmp_path, **prepare)), str(out), str(metrics_path))
    assert json.loads(metrics_path.read_text()) == metrics
    return {s: read_jsonl(out / f"{s}.jsonl") for s in ("train", "val", "test")}, metrics


def test_synthetic_splits_and_metrics(tmp_path):
    splits, metrics = run(tmp_path, heldout_combo_frac=0.5, heldout_family="loops", difficulty_weights=[1, 1, 1])
    assert {s: len(v) for s, v in splits.items()} == {"train": 40, "val": 8, "test": 16} == metrics["counts"]
    ids = [t["task_id"] for v in splits.values() for t in v]
    assert len(ids) == len(set(ids))
    assert all(t["family"] != "loops" and not t["heldout"] for t in splits["train"])
    assert metrics["heldout_tasks"]["test"] == sum(t["heldout"] for t in splits["test"]) > 0
    assert sum(metrics["per_family"]["train"].values()) == 40
    assert set(metrics["per_difficulty"]["test"]) == {"1", "2", "3"}
    assert metrics["dropped"] == {"count": 0, "ids": []} and metrics["canonical_checked"] == 64
    again, _ = run(tmp_path, heldout_combo_frac=0.5, heldout_family="loops", difficulty_weights=[1, 1, 1])
    assert again == splits                                   # deterministic


def test_humaneval_goes_to_test_only(tmp_path):
    splits, metrics = run(tmp_path, source="humaneval", n_test=10)
    assert metrics["counts"] == {"train": 0, "val": 0, "test": 10}
    assert all(t["source"] == "humaneval" for t in splits["test"]) and metrics["canonical_checked"] == 164


def test_jsonl_failing_canonical_is_an_error(tmp_path):
    rows = [{"task_id": f"T/{i}", "prompt": "def f(x):\n", "canonical_solution": "    return x\n",
             "test": f"def check(candidate):\n    assert candidate({i}) == {i if i != 3 else 0}\n",
             "entry_point": "f"} for i in range(6)]
    data = tmp_path / "tasks.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(UserError, match="1 canonical solution.*T/3"):
        run(tmp_path, source="jsonl", path=str(data), split_fracs=[0.5, 0.0, 0.5])


@pytest.mark.parametrize("change, key", [
    ({"bogus": 1}, "prepare.bogus"),
    ({"n_train": "many"}, "prepare.n_train"),
    ({"families": ["loops", "nope"]}, r"prepare.families\[1\]"),
    ({"difficulty_weights": [1, 1]}, "prepare.difficulty_weights"),
    ({"heldout_combo_frac": 0.95}, "prepare.heldout_combo_frac"),
    ({"source": "mbpp", "path": None}, "prepare.path"),
    ({"n_val": 0}, "n_val"),
    ({"min_asserts": 7, "max_asserts": 6}, "prepare.min_asserts"),
    ({"random_inputs": 9}, "prepare.random_inputs"),
])
def test_bad_params_name_the_key(tmp_path, change, key):
    with pytest.raises(UserError, match=key):
        run(tmp_path, **change)
