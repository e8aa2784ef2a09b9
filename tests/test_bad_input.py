"""User mistakes reach the user as one line naming the file:line or the key, never a bare traceback."""
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def stage(module: str, *args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"src.{module}", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                                       "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})


def params_with(tmp_path, section: str, **changes) -> str:
    p = {k: dict(v) if isinstance(v, dict) else v for k, v in PARAMS.items()}
    p[section].update(changes)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p))
    return str(path)


def assert_one_line_error(r, expected: str):
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
    assert lines == [f"error: {expected}"] or (len(lines) == 1 and expected in lines[0]), r.stderr[-2000:]


@pytest.mark.parametrize("module, section, change, expected", [
    ("sft", "sft", {"n_layers": 2}, "params key 'sft.n_layers' is unknown"),
    ("sft", "sft", {"vocab_size": "big"}, "params key 'sft.vocab_size': expected int, got 'big'"),
    ("prepare", "prepare", {"source": "mpbb"}, "params key 'prepare.source': 'mpbb' is not allowed"),
    ("ppo_or_dpo", "ppo_or_dpo", {"method": "dop"}, "params key 'ppo_or_dpo.method': 'dop' is not allowed "
                                                      "(allowed: 'dpo', 'grpo', 'ppo', 'sft_more', 'rft', 'online_dpo')"),
    ("evaluate", "evaluate", {"top_p": 1.5}, "params key 'evaluate.top_p': 1.5 is out of range [0, 1]"),
    ("reward", "reward", {"human_feedback": "humans"}, "params key 'reward.human_feedback': 'humans' is not allowed"),
])
def test_bad_params_fail_at_stage_start(tmp_path, module, section, change, expected):
    assert_one_line_error(stage(module, "--params", params_with(tmp_path, section, **change), cwd=tmp_path), expected)


def test_trainer_option_typo_is_named(tmp_path):
    train = dict(PARAMS["ppo_or_dpo"]["dpo"], betta=0.1)
    p = params_with(tmp_path, "ppo_or_dpo", dpo=train)
    (tmp_path / "models/sft").mkdir(parents=True)
    r = stage("ppo_or_dpo", "--params", p, cwd=tmp_path)
    assert_one_line_error(r, "params key 'ppo_or_dpo.dpo.betta' is not a DPOConfig option")


def test_malformed_task_file_names_file_and_line(tmp_path):
    bad = tmp_path / "tasks.jsonl"
    bad.write_text('{"task_id": "a", "prompt": "def f():\\n", "canonical_solution": "    return 1\\n", '
                   '"test": "def check(c):\\n    assert c() == 1\\n", "entry_point": "f"}\n{"task_id": 3\n')
    r = stage("prepare", "--params", params_with(tmp_path, "prepare", source="jsonl", path=str(bad)),
              "--out", str(tmp_path / "out"), "--metrics", str(tmp_path / "m.json"), cwd=tmp_path)
    assert_one_line_error(r, f"{bad}:2: malformed JSON")


def test_missing_model_folder(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/test.jsonl").write_text(
        '{"task_id": "a", "prompt": "def f():\\n", "canonical_solution": "    return 1\\n", '
        '"test": "def check(c):\\n    assert c() == 1\\n", "entry_point": "f"}\n')
    (tmp_path / "models/sft").mkdir(parents=True)
    r = stage("evaluate", "--params", str(ROOT / "params.yaml"), "--data", str(tmp_path / "data"),
              "--models", str(tmp_path / "models"), cwd=tmp_path)
    assert_one_line_error(r, "not a model folder (no config.json); run the stage that makes it")


def test_empty_split(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/train.jsonl").write_text("")
    r = stage("sft", "--params", str(ROOT / "params.yaml"), "--data", str(tmp_path / "data"), cwd=tmp_path)
    assert_one_line_error(r, "train.jsonl: the split is empty")
