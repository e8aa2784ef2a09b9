"""The whole pipeline through `dvc repro` on tiny params, in a temporary copy of the repository."""
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.test_dvc_deps import import_closure, stage_modules

pytestmark = pytest.mark.slow

TINY = {
    "base": {"num_threads": 1},
    "prepare": {"n_train": 60, "n_val": 10, "n_test": 8, "n_rl": 20},
    "sft": {"vocab_size": 300, "corpus_stdlib_mb": 0.0, "n_layer": 2, "d_model": 32, "n_head": 2,
            "d_ff": 64, "max_len": 256,
            # batches of 16 as 4 accumulated micro-batches of 4: the default's batch_rebalance path
            "train": {"num_train_epochs": 1, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 4,
                      "logging_steps": 1}},
    "reward": {"max_tasks": 16, "samples_per_task": 3, "max_new_tokens": 24, "gen_batch_size": 32,
               "epochs": 1, "batch_size": 8, "max_length": 128},
    "ppo_or_dpo": {"filter_prompts": False, "max_prompts": 8,
                   "dpo_require_pass": False,  # a tiny policy passes too little to leave a pair
                   "sampling": {"max_new_tokens": 16, "batch_size": 16},
                   "rft": {"samples_per_prompt": 2,
                           "sft": {"max_steps": 2, "per_device_train_batch_size": 4,
                                   "gradient_accumulation_steps": 1, "logging_steps": 1}},
                   "online_dpo": {"rounds": 1, "samples_per_prompt": 2,
                                  "dpo": {"max_steps": 2, "per_device_train_batch_size": 4, "max_length": 256,
                                          "logging_steps": 1}},
                   "dpo": {"num_train_epochs": 1, "per_device_train_batch_size": 8, "max_length": 256,
                           "logging_steps": 1},
                   "grpo": {"num_generations": 2, "per_device_train_batch_size": 4, "max_completion_length": 16,
                            "max_steps": 2, "logging_steps": 1},
                   "ppo": {"steps": 2, "batch_size": 4, "mini_batch_size": 2, "max_new_tokens": 16},
                   "sft_more": {"max_steps": 2, "per_device_train_batch_size": 4,
                                "gradient_accumulation_steps": 1, "logging_steps": 1}},
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
    for name in ("src", "configs", ".dvc", "dvc.yaml", ".gitignore", "data"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache", "prepared",
                                                                        "eval", "reward"))
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


def run_cache_stages(repo: Path) -> set[str]:
    """The stages with an entry in DVC's run-cache (.dvc/cache/runs/<key>/<value>: a lock entry with its cmd)."""
    modules = {m: s for s, m in stage_modules(repo).items()}
    entries = [f for f in (repo / ".dvc/cache/runs").glob("*/*/*") if f.is_file()]
    return {modules[re.search(r"-m\s+(src[\w.]*)", yaml.safe_load(f.read_text())["cmd"]).group(1)] for f in entries}


def git_out(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def exp_ref(repo: Path, name: str) -> str:
    """The ref of the experiment `name` (refs/exps/<baseline>/<name>)."""
    ref, = [r for r in git_out(repo, "for-each-ref", "--format=%(refname)", "refs/exps").split() if r.endswith("/" + name)]
    return ref


def plot_data(repo: Path) -> dict[str, bytes]:
    return {p.relative_to(repo).as_posix(): p.read_bytes() for p in (repo / "plots").rglob("*") if p.is_file()}


def test_dvc_repro_runs_every_stage_end_to_end(tmp_path):
    repo = tiny_repo(tmp_path)
    r = dvc(repo, "repro")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # each stage recorded its wall time (outside metrics/ and every DVC out), and the run-cache knows every stage
    for stage in ("prepare", "sft", "reward", "ppo_or_dpo", "evaluate@sft", "evaluate@aligned"):
        assert json.loads((repo / "reports/timing" / f"{stage}.json").read_text())["wall_s"] > 0, stage
    assert run_cache_stages(repo) == set(stage_modules(repo))
    prepared = json.loads((repo / "metrics/prepare.json").read_text())
    assert prepared["counts"]["train"] == 60 and prepared["counts"]["rl"] == 20
    sft = json.loads((repo / "metrics/sft.json").read_text())
    assert sft["steps"] >= 1 and sft["train_loss"] > 0
    reward = json.loads((repo / "metrics/reward.json").read_text())
    assert reward["human_feedback"] == "simulated" and reward["samples"] == 16 * 3
    default = yaml.safe_load((ROOT / "params.yaml").read_text())["ppo_or_dpo"]["method"]
    assert json.loads((repo / "metrics/ppo_or_dpo.json").read_text())["method"] == default
    ev = json.loads((repo / "metrics/eval.json").read_text())
    for policy in ("sft", "aligned"):
        for key in ("pass@1", "pass@2", "pass@1_greedy", "pass@1_stderr", "bertscore", "codebleu", "bleu",
                    "rouge", "ruby", "syntax_valid"):
            assert 0.0 <= ev[policy][key] <= 1.0, (policy, key)
        assert set(ev["met"][policy]) == set(ev["targets"])
        rows = [json.loads(x) for x in (repo / f"data/eval/{policy}.jsonl").read_text().splitlines()]
        assert len(rows) == 8 * 2 + 8
    assert ev["delta"]["aligned"]["pass@1"] == round(ev["aligned"]["pass@1"] - ev["sft"]["pass@1"], 4)
    # the delta's stderr is the paired one: per-task pass-rate differences over the same test tasks
    rates = {}
    for policy in ("sft", "aligned"):
        tot = {}
        for r in map(json.loads, (repo / f"data/eval/{policy}.jsonl").read_text().splitlines()):
            if not r["greedy"]:
                n, c = tot.get(r["task_id"], (0, 0))
                tot[r["task_id"]] = (n + 1, c + int(r["passed"]))
        rates[policy] = {k: c / n for k, (n, c) in tot.items()}
    diffs = [rates["aligned"][k] - rates["sft"][k] for k in rates["sft"]]
    assert ev["delta"]["aligned"]["pass@1_stderr_paired"] == round(statistics.stdev(diffs) / math.sqrt(len(diffs)), 4)
    for model in ("sft", "reward", "aligned"):
        assert (repo / "models" / model / "resolved_params.json").exists(), model
    for name in ("targets.json", "pass_at_k.json", "by_group.json"):
        assert json.loads((repo / "plots/eval" / name).read_text())
    assert (repo / "plots/sft/plots/metrics/loss.tsv").exists()
    # dvclive must not have rewritten the pipeline definition
    assert (repo / "dvc.yaml").read_text() == (ROOT / "dvc.yaml").read_text()
    # nothing left to do: every stage is up to date
    st = dvc(repo, "status")
    assert "up to date" in st.stdout, st.stdout
    # editing a module makes exactly the stages that import it (transitively, per the code) stale
    stages = stage_modules(repo)
    for module in ("src/training.py", "src/metrics/text.py", "src/tasks/synthetic.py"):
        path = repo / module
        original = path.read_text()
        path.write_text(original + "\n# edited\n")
        st = dvc(repo, "status")
        stale = {line[:-1].split("@")[0] for line in st.stdout.splitlines()   # evaluate@sft: stage evaluate
                 if line.endswith(":") and not line.startswith("\t")}
        assert stale == {s for s, m in stages.items() if module in import_closure(m, repo)}, (module, st.stdout)
        path.write_text(original)
    assert "up to date" in dvc(repo, "status").stdout
    # a new annotator's judgments, tracked by DVC, make the reward stage (and what follows) stale
    (repo / "data/human_feedback/ann.jsonl").write_text(json.dumps(
        {"prompt": "def f():\n", "chosen": "    return 1\n", "rejected": "    pass\n", "annotator": "ann"}) + "\n")
    assert dvc(repo, "add", "data/human_feedback/ann.jsonl").returncode == 0
    st = dvc(repo, "status")
    assert "reward:" in st.stdout and "prepare:" not in st.stdout and "sft:" not in st.stdout, st.stdout
    (repo / "data/human_feedback/ann.jsonl").unlink()
    (repo / "data/human_feedback/ann.jsonl.dvc").unlink()
    # the same params and seed give byte-identical metrics and plot data on a forced second run: no
    # wall-clock key reaches the committed plots (they go to reports/timing)
    first = {p.name: p.read_bytes() for p in (repo / "metrics").glob("*.json")}
    first_plots = plot_data(repo)
    first_samples = {p.relative_to(repo).as_posix(): p.read_bytes() for p in (repo / "data/eval").rglob("*.jsonl")}
    r = dvc(repo, "repro", "--force")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    second = {p.name: p.read_bytes() for p in (repo / "metrics").glob("*.json")}
    assert sorted(first) == ["eval.json", "human_feedback.json", "ppo_or_dpo.json", "prepare.json", "reward.json",
                            "sft.json"]
    assert [n for n in first if first[n] != second[n]] == []
    # ... and the same sample rows: no wall-clock field in them, so dvc.lock does not change either
    assert len(first_samples) == 4
    assert [n for n in first_samples if (repo / n).read_bytes() != first_samples[n]] == []
    second_plots = plot_data(repo)
    assert sorted(first_plots) == sorted(second_plots)
    assert [n for n in first_plots if first_plots[n] != second_plots[n]] == []
    assert not [n for n in first_plots if "runtime" in n or "per_second" in n or "time" in n.rsplit("/", 1)[-1]]
    # each method as an experiment in a fresh copy (as a queued one runs): it takes SFT from the run-cache
    # instead of training it again, trains the aligned policy, and evaluates the aligned policy only
    for method in ("grpo", "ppo", "sft_more"):
        r = dvc(repo, "exp", "run", "--temp", "-n", method, "-S", f"ppo_or_dpo.method={method}")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert "Running stage 'ppo_or_dpo'" in r.stdout and "Running stage 'sft'" not in r.stdout, r.stdout[-3000:]
        assert "Running stage 'evaluate@aligned'" in r.stdout and "Running stage 'evaluate@sft'" not in r.stdout
        ref = exp_ref(repo, method)
        m = json.loads(git_out(repo, "show", f"{ref}:metrics/ppo_or_dpo.json"))
        assert m["method"] == method and m["steps"] == 2
        curves = git_out(repo, "ls-tree", "--name-only", ref, "plots/ppo_or_dpo/plots/metrics/").split()
        assert curves and all(git_out(repo, "show", f"{ref}:{c}").count("\n") >= 2 for c in curves), curves
        ev = json.loads(git_out(repo, "show", f"{ref}:metrics/eval.json"))
        assert "pass@1" in ev["aligned"] and "delta" in ev
        assert ev["sft"] == json.loads((repo / "metrics/eval.json").read_text())["sft"]
    # a new rl split re-runs the stages that sample it, not SFT (it depends on train/val only)
    r = dvc(repo, "exp", "run", "--temp", "-S", "prepare.n_rl=24")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Running stage 'reward'" in r.stdout and "Running stage 'sft'" not in r.stdout, r.stdout[-3000:]
