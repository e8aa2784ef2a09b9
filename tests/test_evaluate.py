"""The evaluate stage's sampling plan: the headline at base.temperature, the same pass@k at
evaluate.low_temperature with paired deltas, greedy, and the text metrics on the headline samples.
Generation is replaced by a table of known completions, so every figure is known; the sandbox runs them."""
import json

import pytest
import yaml

from src import evaluate
from tests.conftest import ROOT

RIGHT, WRONG = "    return x + 1\n", "    return x\n"
TASKS = [{"task_id": f"T/{i}", "prompt": f"def inc{i}(x):\n", "canonical_solution": RIGHT,
          "test": "def check(candidate):\n    assert candidate(1) == 2\n", "entry_point": f"inc{i}"}
         for i in range(4)]
# (policy, temperature) -> the two samples of every task; greedy (T 0) always right
PLAN = {("sft", 0.8): [RIGHT, WRONG], ("aligned", 0.8): [RIGHT, RIGHT],
        ("sft", 0.2): [RIGHT, RIGHT], ("aligned", 0.2): [RIGHT, RIGHT]}


class FakeModel:
    def __init__(self, name):
        self.name = name

    def to(self, device):
        return self


def fake_generate(model, tok, prompts, n, temperature, *args, **kwargs):
    samples = [RIGHT] if temperature == 0 else PLAN[(model.name, temperature)]
    assert n == len(samples)
    return [list(samples) for _ in prompts]


@pytest.fixture
def run(tmp_path, monkeypatch):
    import src.generation
    import src.models
    monkeypatch.setattr(src.models, "load_policy", lambda path: (FakeModel(path.rsplit("/", 1)[-1]), None))
    monkeypatch.setattr(src.generation, "generate", fake_generate)
    (tmp_path / "data").mkdir()
    (tmp_path / "data/test.jsonl").write_text("".join(json.dumps(t) + "\n" for t in TASKS))

    def go(policy=None, **evaluate_params):
        raw = yaml.safe_load((ROOT / "params.yaml").read_text())
        raw["base"].update(temperature=0.8, num_threads=1)
        raw["evaluate"].update(n_samples=2, ks=[1, 2], **evaluate_params)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
        out = evaluate.main(str(tmp_path / "params.yaml"), str(tmp_path / "data"), str(tmp_path / "models"),
                            str(tmp_path / "eval.json"), str(tmp_path / "samples"), str(tmp_path / "plots"),
                            policy=policy)
        return out
    return go


def test_headline_at_base_temperature_and_pass_at_k_again_at_the_low_one(run, tmp_path):
    ev = run(low_temperature=0.2)
    assert ev["temperature"] == 0.8 and ev["low_temperature"] == 0.2
    sft, aligned = ev["sft"], ev["aligned"]
    # headline (T 0.8): sft half right, aligned all right; low (T 0.2): both all right; greedy: both right
    assert (sft["pass@1"], sft["pass@2"], aligned["pass@1"], aligned["pass@2"]) == (0.5, 1.0, 1.0, 1.0)
    assert (sft["pass@1_lowtemp"], sft["pass@2_lowtemp"], aligned["pass@1_lowtemp"]) == (1.0, 1.0, 1.0)
    assert sft["pass@1_lowtemp_stderr"] == 0.0 and sft["pass@1_greedy"] == 1.0
    d = ev["delta"]["aligned"]
    assert (d["pass@1"], d["pass@1_stderr_paired"], d["pass@2"], d["pass@2_stderr_paired"]) == (0.5, 0.0, 0.0, 0.0)
    assert (d["pass@1_lowtemp"], d["pass@1_lowtemp_stderr_paired"], d["pass@2_lowtemp"]) == (0.0, 0.0, 0.0)
    # the text metrics score the headline samples: sft's wrong halves lower its BLEU, aligned's are exact
    assert aligned["bleu"] == pytest.approx(1.0) and sft["bleu"] < 0.9
    rows = [json.loads(x) for x in (tmp_path / "samples/sft.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * 2 + 4 and sum(r["passed"] for r in rows if not r["greedy"]) == 4
    low = [json.loads(x) for x in (tmp_path / "samples/low_temperature/sft.jsonl").read_text().splitlines()]
    assert len(low) == 4 * 2 and all(r["passed"] for r in low)
    plot = json.loads((tmp_path / "plots/pass_at_k.json").read_text())
    assert {(r["policy"], r["temperature"], r["k"]) for r in plot} == {
        (p, t, k) for p in ("sft", "aligned") for t in (0.8, 0.2) for k in (1, 2)}


def test_low_temperature_null_skips_the_second_pass(run, tmp_path):
    ev = run(low_temperature=None)
    assert not [k for k in ev["sft"] if "lowtemp" in k]
    assert (tmp_path / "samples/low_temperature/sft.jsonl").read_text() == ""   # the declared out, empty
    assert ev["sft"]["pass@1"] == 0.5


def test_a_stage_per_policy_then_compare_gives_what_one_run_gives(run, tmp_path):
    """The pipeline's way (evaluate@sft, evaluate@aligned, then compare) writes the same metrics and
    plot data as evaluating both policies in one call; a policy alone writes no metrics file."""
    from src import compare
    whole = run(low_temperature=0.2)
    plots = {f: (tmp_path / "plots" / f).read_text() for f in ("targets.json", "pass_at_k.json", "by_group.json")}
    for f in ["eval.json", *(f"plots/{f}" for f in plots)]:
        (tmp_path / f).unlink()
    for policy in ("aligned", "sft"):   # order does not matter: each policy's draws are its own
        assert set(run(policy=policy, low_temperature=0.2)) == {policy}
    assert not (tmp_path / "eval.json").exists()
    parts = compare.main(str(tmp_path / "params.yaml"), str(tmp_path / "samples"), str(tmp_path / "eval.json"),
                         str(tmp_path / "plots"))
    assert parts == whole and json.loads((tmp_path / "eval.json").read_text()) == whole
    assert {f: (tmp_path / "plots" / f).read_text() for f in plots} == plots


def test_compare_refuses_policies_evaluated_apart(run, tmp_path):
    """Deltas are paired: a missing policy, or one evaluated on another split or temperature, is named."""
    from src import compare
    from src.io import UserError
    run(policy="sft", low_temperature=0.2)
    args = (str(tmp_path / "params.yaml"), str(tmp_path / "samples"), str(tmp_path / "eval.json"), str(tmp_path / "plots"))
    with pytest.raises(UserError, match=r"aligned\.json: no evaluation of policy 'aligned'"):
        compare.main(*args)
    run(policy="aligned", low_temperature=None)
    with pytest.raises(UserError, match=r"aligned\.json: evaluated with other settings than .*sft\.json"):
        compare.main(*args)


def test_split_val_scores_the_val_tasks(run, tmp_path):
    """evaluate.split=val evaluates data/val.jsonl (settings are chosen there), and says so."""
    val = [dict(t, task_id=f"V/{i}") for i, t in enumerate(TASKS[:2])]
    (tmp_path / "data/val.jsonl").write_text("".join(json.dumps(t) + "\n" for t in val))
    ev = run(split="val", low_temperature=None)
    assert ev["split"] == "val" and ev["tasks"] == 2
    rows = [json.loads(x) for x in (tmp_path / "samples/sft.jsonl").read_text().splitlines()]
    assert {r["task_id"] for r in rows} == {"V/0", "V/1"}
