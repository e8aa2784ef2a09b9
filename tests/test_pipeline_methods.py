"""`dvc exp run -S ppo_or_dpo.method=...` on tiny params: each method trains the aligned policy.

A file of its own so that pytest-xdist runs it beside test_pipeline.py, and one repository for the
three methods: after the first, each run re-uses prepare, sft, reward and evaluate@sft.
"""
import json

from tests.test_pipeline import dvc, tiny_repo


def test_dvc_exp_run_switches_the_alignment_method(tmp_path):
    repo = tiny_repo(tmp_path)
    for i, method in enumerate(["grpo", "ppo", "sft_more"]):
        r = dvc(repo, "exp", "run", "-S", f"ppo_or_dpo.method={method}")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert ("Running stage 'sft'" in r.stdout) == (i == 0), (method, r.stdout[-3000:])
        assert "Running stage 'evaluate@aligned'" in r.stdout, (method, r.stdout[-3000:])
        m = json.loads((repo / "metrics/ppo_or_dpo.json").read_text())
        assert m["method"] == method and m["steps"] == 2
        plots = repo / "plots/ppo_or_dpo/plots/metrics"
        assert plots.exists() and any(plots.iterdir())
        ev = json.loads((repo / "metrics/eval.json").read_text())
        assert "pass@1" in ev["aligned"] and "delta" in ev
