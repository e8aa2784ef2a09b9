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
    assert lines[2].startswith("| main | (default) | – | 0.300 ± 0.010 | 0.250 ± 0.020 | -0.050 | – |")
    assert lines[3].startswith("| grpo | `ppo_or_dpo.method=grpo` | – | 0.300 ± 0.010 | 0.420 ± 0.020 | +0.120 | – |")


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


def test_pass_at_5_and_low_temperature_deltas_with_their_paired_stderr():
    """Δ pass@5 and the low-temperature Δ pass@1 / pass@5 (sharpening vs learning); – for runs made before."""
    new = run("main", "grpo", 0.30, 0.40)
    m = new["data"]["metrics"]["metrics/eval.json"]["data"]
    m["sft"].update({"pass@5": 0.55, "pass@1_lowtemp": 0.35, "pass@5_lowtemp": 0.45})
    m["aligned"].update({"pass@1_lowtemp": 0.45, "pass@5_lowtemp": 0.46})
    m["delta"] = {"aligned": {"pass@1_stderr_paired": 0.004, "pass@5_stderr_paired": 0.006,
                              "pass@1_lowtemp_stderr_paired": 0.005}}
    old = run("old", "dpo", 0.30, 0.25)
    old["rev"] = "fff0000"
    lines = table([{**new, "experiments": [{"name": "old", "revs": [old]}]}]).splitlines()
    assert lines[0].endswith("| aligned ruby | Δ pass@5 | Δ pass@1 low T | Δ pass@5 low T |")
    assert lines[1].count("---|") == lines[0].count(" | ") + 1
    assert lines[2].endswith("| 0.800 | -0.050 ± 0.006 | +0.100 ± 0.005 | +0.010 |")
    assert lines[3].endswith("| 0.800 | – | – | – |")


def test_a_run_without_pass_at_5_shows_a_dash():
    r = run("fast", "grpo", 0.30, 0.40)
    del r["data"]["metrics"]["metrics/eval.json"]["data"]["aligned"]["pass@5"]
    assert "| +0.100 | – | – | 0.400 | 0.700 | 0.800 | – | – | – |" in table([r])


def test_each_method_against_the_control_paired_over_tasks_with_its_compute():
    """Δ vs control: aligned pass@1 minus the sft_more run's, its stderr from the per-task differences."""
    main = run("main", "rft", 0.30, 0.50)
    main["data"]["params"]["params.yaml"]["data"]["ppo_or_dpo"]["rft"] = {"samples_per_prompt": 4, "rounds": 2}
    main["data"]["metrics"]["metrics/ppo_or_dpo.json"] = {"data": {"steps": 600, "prompts": 3000}}
    ctrl = run("ctrl", "sft_more", 0.30, 0.40)
    ctrl["rev"] = "c0ffee0"
    ctrl["data"]["metrics"]["metrics/ppo_or_dpo.json"] = {"data": {"steps": 600}}
    grpo = run("grpo", "grpo", 0.30, 0.45)
    grpo["rev"] = "9999999"
    grpo["data"]["params"]["params.yaml"]["data"]["ppo_or_dpo"]["grpo"] = {"per_device_train_batch_size": 16}
    grpo["data"]["metrics"]["metrics/ppo_or_dpo.json"] = {"data": {"steps": 600}}
    per_task = {"abc1234def": {"t1": 1.0, "t2": 0.0, "t3": 0.5}, "c0ffee0": {"t1": 0.0, "t2": 0.0, "t3": 0.5},
                "9999999": {"t1": 1.0, "t2": 1.0, "t3": 0.5}}
    lines = table([{**main, "experiments": [{"name": "ctrl", "revs": [ctrl]}, {"name": "grpo", "revs": [grpo]}]}],
                  rates=per_task.get).splitlines()
    # differences against the control: main (1, 0, 0) -> stderr sqrt(1/3)/sqrt(3) = 0.333; grpo (1, 1, 0) -> 0.333
    assert "| main | (default) | 600 / 24,000 | 0.300 ± 0.010 | 0.500 ± 0.020 | +0.200 | +0.100 ± 0.333 |" in lines[2]
    assert "| ctrl | `ppo_or_dpo.method=sft_more` | 600 / 0 |" in lines[3] and "| (control) |" in lines[3]
    assert "| grpo | `ppo_or_dpo.method=grpo` | 600 / 9,600 |" in lines[4] and "| +0.050 ± 0.333 |" in lines[4]


def test_the_control_matches_split_and_steps():
    """A run is compared with the sft_more run of its own split and optimizer steps only: val rows with
    the val control, a 1,200-step run with a 1,200-step control, none when there is no such run."""
    def with_(r, rev, steps, split=None):
        r["rev"] = rev
        r["data"]["metrics"]["metrics/ppo_or_dpo.json"] = {"data": {"steps": steps}}
        if split:
            r["data"]["params"]["params.yaml"]["data"]["evaluate"] = {"split": split}
        return r
    main = with_(run("main", "rft", 0.3, 0.5), "a" * 10, 600)
    exps = [with_(run("ctrl", "sft_more", 0.3, 0.4), "b" * 10, 600),
            with_(run("ctrl_val", "sft_more", 0.3, 0.2), "c" * 10, 600, "val"),
            with_(run("rft_val", "rft", 0.3, 0.35), "d" * 10, 600, "val"),
            with_(run("rft_r2", "rft", 0.3, 0.55), "e" * 10, 1200),
            with_(run("ctrl_1200", "sft_more", 0.3, 0.45), "f" * 10, 1200),
            with_(run("grpo_900", "grpo", 0.3, 0.45), "0" * 10, 900)]
    lines = table([{**main, "experiments": [{"name": e["name"], "revs": [e]} for e in exps]}]).splitlines()[2:]
    vs = {line.split(" | ")[0][2:]: line.split(" | ")[6] for line in lines}
    assert vs == {"main": "+0.100", "ctrl": "(control)", "ctrl_val": "(control)", "rft_val": "+0.150",
                  "rft_r2": "+0.100", "ctrl_1200": "(control)", "grpo_900": "–"}
