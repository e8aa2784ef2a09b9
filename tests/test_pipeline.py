"""The whole pipeline through `dvc repro` on tiny params, in a temporary copy of the repository."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

TINY = {
    "prepare": {"n_train": 60, "n_val": 10, "n_test": 8},
    "sft": {"vocab_size": 300, "corpus_stdlib_mb": 0.0, "n_layer": 1, "d_model": 32, "n_head": 2,
            "d_ff": 64, "max_len": 256,
            "train": {"num_train_epochs": 1, "per_device_train_batch_size": 16, "logging_steps": 1}},
    "evaluate": {"n_samples": 2, "max_new_tokens": 24, "ks": [1, 2], "batch_size": 16},
}


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def tiny_repo(tmp_path: Path, overrides: dict = TINY) -> Path:
    """A git+DVC copy of the project (code and config only) with tiny params, committed."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("src", ".dvc", "dvc.yaml", ".gitignore"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
        else:
            shutil.copy(src, repo / name)
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), overrides)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(git + ["add", "-A"], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-qm", "tiny"], cwd=repo, check=True)
    return repo


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=900)


def test_dvc_repro_runs_every_stage_end_to_end(tmp_path):
    repo = tiny_repo(tmp_path)
    r = dvc(repo, "repro")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    prepared = json.loads((repo / "metrics/prepare.json").read_text())
    assert prepared["counts"]["train"] == 60
    sft = json.loads((repo / "metrics/sft.json").read_text())
    assert sft["steps"] >= 1 and sft["train_loss"] > 0
    ev = json.loads((repo / "metrics/eval.json").read_text())
    for key in ("pass@1", "pass@2", "pass@1_greedy", "pass@1_stderr", "bertscore", "codebleu", "bleu",
                "rouge", "ruby", "syntax_valid"):
        assert 0.0 <= ev["sft"][key] <= 1.0, key
    assert set(ev["met"]["sft"]) == set(ev["targets"])
    assert (repo / "models/sft/resolved_params.json").exists()
    rows = [json.loads(x) for x in (repo / "data/eval/sft.jsonl").read_text().splitlines()]
    assert len(rows) == 8 * 2 + 8
    for name in ("targets.json", "pass_at_k.json", "by_group.json"):
        assert json.loads((repo / "plots/eval" / name).read_text())
    assert (repo / "plots/sft/plots/metrics/loss.tsv").exists()
    # dvclive must not have rewritten the pipeline definition
    assert (repo / "dvc.yaml").read_text() == (ROOT / "dvc.yaml").read_text()
    # nothing left to do: every stage is up to date
    st = dvc(repo, "status")
    assert "up to date" in st.stdout, st.stdout
