"""The prepare stage end to end on tiny params."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from src.io import UserError, read_jsonl
from src.prepare import main
from src.tasks import synthetic

ROOT = Path(__file__).resolve().parents[1]


def write_params(tmp_path: Path, **prepare) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["prepare"] = {**raw["prepare"], "n_train": 40, "n_val": 8, "n_test": 16, "n_rl": 12, **prepare}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def run(tmp_path: Path, **prepare) -> tuple[dict, dict]:
    out, metrics_path = tmp_path / "prepared", tmp_path / "metrics" / "prepare.json"
    metrics = main(str(write_params(tmp_path, **prepare)), str(out), str(metrics_path))
    assert json.loads(metrics_path.read_text()) == metrics
    return {s: read_jsonl(out / f"{s}.jsonl") for s in ("train", "val", "test", "rl", "rl_references")}, metrics


def passes(tasks: list[dict], solutions: list[str]) -> list[bool]:
    """Whether each solution passes its task's tests in the sandbox (the repository's sandbox params)."""
    from src.params import parse_section, read_params
    from src.sandbox import Job, SandboxParams, execute

    params = parse_section(SandboxParams, read_params(ROOT / "params.yaml")["sandbox"], "sandbox")
    jobs = [Job(t["prompt"], c, t["test"], t["entry_point"]) for t, c in zip(tasks, solutions)]
    return [r.passed for r in execute(jobs, params)]


def assert_rl_hides_its_references(splits: dict) -> None:
    """The rl split never leaks a reference into what the training stages read."""
    rl, refs = splits["rl"], splits["rl_references"]
    assert rl and all(t["canonical_solution"] == "" for t in rl)
    assert [r["task_id"] for r in refs] == [t["task_id"] for t in rl]
    assert all(set(r) == {"task_id", "canonical_solution"} and r["canonical_solution"].strip() for r in refs)
    labelled = [t for s in ("train", "val", "test") for t in splits[s]]
    assert not {t["task_id"] for t in rl} & {t["task_id"] for t in labelled}
    assert not {t["prompt"] for t in rl} & {t["prompt"] for t in labelled}
    # No train/val row carries an rl reference, other than as its own solution: generator tasks with
    # different prompts often share a body (`return abs(n)`: 1445 of the default's 4000 rl references).
    training_text = "\n".join(json.dumps({k: v for k, v in t.items() if k != "canonical_solution"})
                               for s in ("train", "val") for t in splits[s])
    assert not [r["task_id"] for r in refs if json.dumps(r["canonical_solution"])[1:-1] in training_text]
    assert all(passes(rl, [r["canonical_solution"] for r in refs]))   # checked references, not junk


def test_synthetic_splits_and_metrics(tmp_path):
    splits, metrics = run(tmp_path, heldout_combo_frac=0.5, heldout_family="loops", difficulty_weights=[1, 1, 1])
    assert {s: len(v) for s, v in splits.items()} == {"train": 40, "val": 8, "test": 16, "rl": 12,
                                                      "rl_references": 12}
    assert metrics["counts"] == {"train": 40, "val": 8, "test": 16, "rl": 12}
    ids = [t["task_id"] for s in ("train", "val", "test", "rl") for t in splits[s]]
    assert len(ids) == len(set(ids))
    assert all(t["family"] != "loops" and not t["heldout"] for t in splits["train"])
    assert metrics["heldout_tasks"]["test"] == sum(t["heldout"] for t in splits["test"]) > 0
    assert sum(metrics["per_family"]["train"].values()) == 40
    assert set(metrics["per_difficulty"]["test"]) == {"1", "2", "3"}
    assert metrics["heldout_tasks"]["rl"] == sum(t["heldout"] for t in splits["rl"])
    seed = yaml.safe_load((ROOT / "params.yaml").read_text())["base"]["seed"]
    held = synthetic.heldout_combos(seed, synthetic.FAMILY_NAMES, 0.5)
    assert metrics["heldout_combos"]["used_in_rl"] == len({t["combo"] for t in splits["rl"]} & held)
    assert metrics["dropped"] == {"count": 0, "ids": []} and metrics["canonical_checked"] == 76
    again, _ = run(tmp_path, heldout_combo_frac=0.5, heldout_family="loops", difficulty_weights=[1, 1, 1])
    assert again == splits                                   # deterministic


def test_rl_split_hides_its_references(tmp_path):
    splits, metrics = run(tmp_path, heldout_combo_frac=0.5, n_rl=30)
    assert_rl_hides_its_references(splits)
    assert metrics["counts"]["rl"] == 30 and metrics["heldout_tasks"]["rl"] > 0   # rl_heldout_combos: true


def test_rl_without_heldout_combinations(tmp_path):
    held, _ = run(tmp_path, heldout_combo_frac=0.5, heldout_family="loops", n_rl=30)
    free, metrics = run(tmp_path, heldout_combo_frac=0.5, heldout_family="loops", n_rl=30, rl_heldout_combos=False)
    assert any(t["heldout"] for t in held["rl"])
    assert not any(t["heldout"] or t["family"] == "loops" for t in free["rl"])
    assert metrics["heldout_tasks"]["rl"] == 0 and metrics["heldout_combos"]["used_in_rl"] == 0
    assert all(free[s] == held[s] for s in ("train", "val", "test"))   # the flag touches rl alone


def mbpp_record(task_id: int) -> dict:
    return {"task_id": task_id, "text": f"Add {task_id} to x.", "code": f"def add_{task_id}(x):\n    return x + {task_id}",
            "test_list": [f"assert add_{task_id}({k}) == {k + task_id}" for k in (1, 2)], "test_setup_code": "",
            "challenge_test_list": []}


def test_mbpp_rl_frac_moves_training_tasks_to_rl(tmp_path):
    data = tmp_path / "mbpp.jsonl"
    ids = [3, 20, 21, 520] + list(range(601, 612))   # 1 few-shot prompt + 11 train: 12 training tasks
    data.write_text("".join(json.dumps(mbpp_record(i)) + "\n" for i in ids))
    splits, metrics = run(tmp_path, source="mbpp", path=str(data), rl_frac=0.5)
    assert metrics["counts"] == {"train": 6, "val": 1, "test": 2, "rl": 6}
    assert {t["task_id"] for t in splits["train"] + splits["rl"]} == {f"Mbpp/{i}" for i in [3] + ids[4:]}
    assert_rl_hides_its_references(splits)
    assert run(tmp_path, source="mbpp", path=str(data), rl_frac=0.0)[1]["counts"]["rl"] == 0
    assert run(tmp_path, source="mbpp", path=str(data), rl_frac=0.5, n_rl=2)[1]["counts"]["rl"] == 2   # a cap


def test_jsonl_rl_frac(tmp_path):
    rows = [{"task_id": f"T/{i}", "prompt": f"def f{i}(x):\n", "canonical_solution": f"    return x * {i}\n",
             "test": f"def check(candidate):\n    assert candidate(3) == {3 * i}\n", "entry_point": f"f{i}"}
            for i in range(20)]
    data = tmp_path / "tasks.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    splits, metrics = run(tmp_path, source="jsonl", path=str(data), split_fracs=[0.6, 0.2, 0.2], rl_frac=0.25)
    assert metrics["counts"] == {"train": 9, "val": 4, "test": 4, "rl": 3}
    assert_rl_hides_its_references(splits)
    again, _ = run(tmp_path, source="jsonl", path=str(data), split_fracs=[0.6, 0.2, 0.2], rl_frac=0.25)
    assert again == splits                                   # seeded


def test_humaneval_goes_to_test_only(tmp_path):
    splits, metrics = run(tmp_path, source="humaneval", n_test=10)
    assert metrics["counts"] == {"train": 0, "val": 0, "test": 10, "rl": 0} and splits["rl"] == []
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
    ({"rl_frac": 1.5}, "prepare.rl_frac"),
    ({"rl_heldout_combos": "yes"}, "prepare.rl_heldout_combos"),
])
def test_bad_params_name_the_key(tmp_path, change, key):
    with pytest.raises(UserError, match=key):
        run(tmp_path, **change)
