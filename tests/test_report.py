"""The review report: targets table, PNG plots and the dvc parts, on copies of the committed results."""
import json
import shutil
import subprocess

import pytest

from src import report
from src.io import UserError
from tests.conftest import ROOT

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def repo(tmp_path):
    """A folder holding copies of the committed metrics/eval.json and plot data (not a git repository)."""
    (tmp_path / "metrics").mkdir()
    shutil.copy(ROOT / "metrics" / "eval.json", tmp_path / "metrics" / "eval.json")
    for stage in (*report.STAGES, "eval"):
        shutil.copytree(ROOT / "plots" / stage, tmp_path / "plots" / stage)
    return tmp_path


def fake_dvc(calls):
    """Stands in for dvc: a baseline-only `exp show`, and records every call."""
    ev = json.loads((ROOT / "metrics" / "eval.json").read_text())
    exps = [{"rev": "workspace", "data": {}},
            {"rev": "abc1234def", "name": "main", "data": {
                "params": {"params.yaml": {"data": {"ppo_or_dpo": {"method": "dpo"}}}},
                "metrics": {"metrics/eval.json": {"data": ev}}}}]

    def dvc(args, cwd):
        calls.append(args)
        assert args == ["exp", "show", "--json"], args
        return json.dumps(exps)
    return dvc


def test_summary_has_every_target_row_and_the_plots(repo, tmp_path):
    ev = json.loads((repo / "metrics" / "eval.json").read_text())
    calls = []
    out = tmp_path / "reports"
    summary = report.main(repo, out, base="no-such-rev", dvc=fake_dvc(calls))
    assert (out / "summary.md").read_text() == summary
    rows = {line.split(" | ")[0].lstrip("| "): line for line in summary.splitlines() if line.startswith("| ")}
    assert ev["targets"]
    for k, target in ev["targets"].items():
        s, a, d = ev["sft"][k], ev["aligned"][k], ev["delta"]["aligned"][k]
        flags = ", ".join(f"{p} {'✓' if ev['met'][p][k] else '✗'}" for p in ("sft", "aligned"))
        assert rows[k] == f"| {k} | {target:.4f} | {s:.4f} | {a:.4f} | {d:+.4f} | {flags} |"
    sft = ev["sft"]
    assert rows["pass@1"].startswith(f"| pass@1 | – | {sft['pass@1']:.4f} ± {sft['pass@1_stderr']:.4f} |")
    assert "Base revision `no-such-rev` not found" in summary
    assert calls == [["exp", "show", "--json"]]     # no metrics diff without a base
    assert "| main | (default) |" in summary          # the experiment table of src.results
    names = [*report.STAGES, *(f"eval_{n}" for n in report.EVAL_PLOTS)]
    for name in names:
        png = out / "plots" / f"{name}.png"
        assert png.read_bytes().startswith(PNG)
        assert f"![{name}](plots/{name}.png)" in summary
    assert not list(out.rglob("*.tmp"))


def test_summary_shows_the_low_temperature_pass_at_k_and_its_paired_delta(repo, tmp_path):
    """evaluate's second pass@k (evaluate.low_temperature) gets rows beside the headline's, and the
    pass@k plot a line per policy and temperature."""
    ev = json.loads((repo / "metrics" / "eval.json").read_text())
    ev.update(temperature=0.8, low_temperature=0.2)
    for p, (p1, p5) in (("sft", (0.70, 0.80)), ("aligned", (0.75, 0.81))):
        ev[p].update({"pass@1_lowtemp": p1, "pass@1_lowtemp_stderr": 0.02, "pass@5_lowtemp": p5})
    ev["delta"]["aligned"].update({"pass@1_lowtemp": 0.05, "pass@1_lowtemp_stderr_paired": 0.01,
                                   "pass@5_lowtemp": 0.01})
    ev["delta"]["aligned"].pop("pass@5_lowtemp_stderr_paired", None)  # the committed run has one: not this case
    (repo / "metrics" / "eval.json").write_text(json.dumps(ev))
    rows = json.loads((repo / "plots/eval/pass_at_k.json").read_text())
    rows = [{**r, "temperature": t} for r in rows for t in (0.8, 0.2)]
    (repo / "plots/eval/pass_at_k.json").write_text(json.dumps(rows))
    summary = report.main(repo, tmp_path / "reports", base="no-such-rev", dvc=fake_dvc([]))
    assert "5 samples per task at temperature 0.8 (and at 0.2: the `_lowtemp` rows)." in summary
    assert "| pass@1_lowtemp | – | 0.7000 ± 0.0200 | 0.7500 ± 0.0200 | +0.0500 ± 0.0100 | – |" in summary
    assert "| pass@5_lowtemp | – | 0.8000 | 0.8100 | +0.0100 | – |" in summary
    assert set(report._by_policy(rows)) == {"sft T=0.8", "sft T=0.2", "aligned T=0.8", "aligned T=0.2"}
    assert (tmp_path / "reports/plots/eval_pass_at_k.png").read_bytes().startswith(PNG)


def test_png_bytes_do_not_change_between_runs(repo, tmp_path):
    a, b = tmp_path / "a" / "reward.png", tmp_path / "b" / "reward.png"
    report.plot_stage(repo / "plots" / "reward" / "plots" / "metrics", a)
    report.plot_stage(repo / "plots" / "reward" / "plots" / "metrics", b)
    assert a.read_bytes() == b.read_bytes()
    assert b"Matplotlib" not in a.read_bytes()     # no version tag


def test_missing_eval_json_is_one_error_naming_the_file(repo, tmp_path):
    (repo / "metrics" / "eval.json").unlink()
    with pytest.raises(UserError, match=r"metrics/eval\.json: file not found"):
        report.main(repo, tmp_path / "reports", dvc=fake_dvc([]))
    assert not (tmp_path / "reports").exists()


def test_missing_plot_data_names_the_file(repo, tmp_path):
    (repo / "plots" / "eval" / "by_group.json").unlink()
    with pytest.raises(UserError, match=r"plots/eval/by_group\.json: file not found"):
        report.main(repo, tmp_path / "reports", dvc=fake_dvc([]))


def test_malformed_tsv_names_file_and_line(tmp_path):
    (tmp_path / "loss.tsv").write_text("step\tloss\n0\t1.5\n1\tnan?\n")
    with pytest.raises(UserError, match=r"loss\.tsv:3: "):
        report.read_tsv(tmp_path / "loss.tsv")


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin", "HOME": str(cwd)})


def test_metrics_diff_falls_back_without_a_base_or_a_change(tmp_path):
    def dvc(args, cwd):
        raise AssertionError(f"dvc must not run: {args}")

    git(tmp_path, "init", "-q", "-b", "main")
    assert report.metrics_diff("main", tmp_path, dvc) == "Base revision `main` not found; no metrics diff.\n"
    (tmp_path / "m.json").write_text("{}")
    git(tmp_path, "add", "m.json")
    git(tmp_path, "commit", "-q", "-m", "x")
    assert report.metrics_diff("origin/main", tmp_path, dvc).startswith("Base revision `origin/main` not")
    assert "is HEAD and the tree is clean" in report.metrics_diff("main", tmp_path, dvc)


def test_metrics_diff_passes_dvc_output_through(tmp_path):
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "m.json").write_text("{}")
    git(tmp_path, "add", "m.json")
    git(tmp_path, "commit", "-q", "-m", "x")
    (tmp_path / "m.json").write_text('{"a": 1}')     # a dirty tree: compare even though base is HEAD
    header = "| Path | Metric | main | workspace | Change |\n|---|---|---|---|---|\n"
    table = header + "| m.json | a | - | 1 | - |\n"
    assert report.metrics_diff("main", tmp_path, lambda args, cwd: table) == table
    no_change = report.metrics_diff("main", tmp_path, lambda args, cwd: header + "\n")
    assert no_change == "No metric changed against `main`.\n"
