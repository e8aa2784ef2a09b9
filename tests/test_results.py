"""The experiment table from `dvc exp show --json` output."""
from src.results import table


def run(name, method, sft, aligned):
    m = {"sft": {"pass@1": sft, "pass@1_stderr": 0.01},
         "aligned": {"pass@1": aligned, "pass@1_stderr": 0.02, "pass@5": 0.5, "pass@1_greedy": 0.4,
                     "codebleu": 0.7, "ruby": 0.8}}
    return {"rev": "abc1234def", "name": name, "data": {
        "params": {"params.yaml": {"data": {"ppo_or_dpo": {"method": method, "dpo": {"beta": 0.1}}}}},
        "metrics": {"metrics/eval.json": {"data": m}}}}


def test_table_lists_baseline_and_experiments_with_changed_params():
    base = run("main", "dpo", 0.30, 0.25)
    exp = run("grpo", "grpo", 0.30, 0.42)
    exp["rev"] = "fff0000"
    out = table([{"rev": "workspace", "data": {}}, {**base, "experiments": [{"name": "grpo", "revs": [exp]}]}])
    lines = out.splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| main | (default) | 0.300 ± 0.010 | 0.250 ± 0.020 | -0.050 |")
    assert lines[3].startswith("| grpo | `ppo_or_dpo.method=grpo` | 0.300 ± 0.010 | 0.420 ± 0.020 | +0.120 |")


def test_delta_carries_the_paired_stderr_from_metrics_or_the_lookup():
    base = run("main", "dpo", 0.30, 0.25)
    base["data"]["metrics"]["metrics/eval.json"]["data"]["delta"] = {"aligned": {"pass@1_stderr_paired": 0.004}}
    old = run("old", "grpo", 0.30, 0.42)
    old["rev"] = "fff0000"
    looked_up = []
    out = table([{**base, "experiments": [{"name": "old", "revs": [old]}]}],
                paired=lambda rev: looked_up.append(rev) or 0.0123)
    lines = out.splitlines()
    assert "| 0.250 ± 0.020 | -0.050 ± 0.004 |" in lines[2]
    assert "| 0.420 ± 0.020 | +0.120 ± 0.012 |" in lines[3]
    assert looked_up == ["fff0000"]          # only the run whose metrics lack it
