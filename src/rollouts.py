"""Sampled and executed programs, and what the iterative methods learn from them: `sample_and_execute`
(sample a policy, run every completion in the sandbox: the reward stage's samples and the later rounds
of rft and online_dpo), `keep_passing` (rft's distinct passing programs per task) and `pass_fail_pairs`
(online DPO's pairs, a passing chosen against a failing rejected). The selection is pure Python (no
torch), so it is tested on hand-made rows.
"""
from __future__ import annotations

import io
import random
import time
import tokenize
from collections import defaultdict

from src.pairs import pick_spread
from src.sandbox import Job, SandboxParams, execute

SAMPLE_FIELDS = {"task_id": str, "prompt": str, "completion": str, "passed": bool}


def sample_and_execute(tasks: list[dict], model, tok, n: int, temperature: float, top_p: float,
                       max_new_tokens: int, batch_size: int, sandbox: SandboxParams, seed: int,
                       seconds: dict | None = None, chat: str | None = None) -> list[dict]:
    """n samples per task, each run in the sandbox against the task's test; `chat` (base.chat): the
    policy is asked through its chat template and each row also keeps the answer its body came from.

    Returns rows {task_id, prompt, completion, score, status, passed, syntax_ok[, answer]}, n per task in
    task order; `seconds` (if given) gets generate_s and execute_s.
    """
    from src import distributed
    from src.generation import sample_bodies
    from src.metrics.quality import syntax_valid

    t0 = time.perf_counter()
    completions, answers = sample_bodies(model, tok, tasks, n, temperature, top_p, max_new_tokens, batch_size,
                                         seed, chat, progress=True)
    t1 = time.perf_counter()
    flat = [(t, c, a) for t, cs, ans in zip(tasks, completions, answers or [[None] * n for _ in tasks])
            for c, a in zip(cs, ans)]
    jobs = [Job(t["prompt"], c, t["test"], t["entry_point"]) for t, c, _ in flat]
    results = distributed.map_sharded(lambda part: execute(part, sandbox, progress=True), jobs)
    if seconds is not None:
        seconds.update(generate_s=round(t1 - t0, 3), execute_s=round(time.perf_counter() - t1, 3))
    return [{"task_id": t["task_id"], "prompt": t["prompt"], "completion": c, "score": r.score,
             "status": r.status, "passed": r.passed, "syntax_ok": syntax_valid(t["prompt"] + c),
             **({"answer": a} if a is not None else {})}
            for (t, c, a), r in zip(flat, results)]


def body_key(code: str) -> tuple | str:
    """What makes two bodies the same program here: their Python tokens, with spacing, blank lines and
    comments dropped and the indentation structure kept (text that does not tokenize: its words)."""
    try:
        toks = tokenize.generate_tokens(io.StringIO(code).readline)
        return tuple((t.type, t.string if t.type not in (tokenize.INDENT, tokenize.DEDENT) else "")
                     for t in toks if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE,
                                                     tokenize.ENDMARKER))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return " ".join(code.split())


def _distinct_by_task(samples: list[dict], passed: bool) -> dict[str, list[dict]]:
    """Per task (first-seen order), the first row of each distinct body with that outcome."""
    out: dict[str, dict] = defaultdict(dict)
    for s in samples:
        if bool(s["passed"]) == passed:
            out[s["task_id"]].setdefault(body_key(s["completion"]), s)
    return {t: list(rows.values()) for t, rows in out.items()}


def keep_passing(samples: list[dict], keep_per_task: int, seed: int) -> list[dict]:
    """rft's training programs: passing completions only, one per distinct body, at most keep_per_task
    per task (0 = all), picked by a per-task seeded shuffle (independent of the other tasks)."""
    kept = []
    for task_id, rows in _distinct_by_task(samples, passed=True).items():
        random.Random(f"{seed}:{task_id}").shuffle(rows)
        kept += rows[:keep_per_task] if keep_per_task else rows
    return kept


def pass_fail_pairs(samples: list[dict], pairs_per_task: int, seed: int) -> list[dict]:
    """Online DPO's pairs: per task, a passing body (chosen) against a failing one (rejected), distinct
    bodies on each side, at most pairs_per_task (0 = all), spread over as many programs as possible
    (src.pairs.pick_spread after a per-task seeded shuffle). Tasks with no pass or no failure give none.
    Rows {prompt, chosen, rejected, task_id}."""
    good, bad = _distinct_by_task(samples, passed=True), _distinct_by_task(samples, passed=False)
    out = []
    for task_id, wins in good.items():
        cands = [(w, l) for w in range(len(wins)) for l in range(len(bad.get(task_id, [])))]
        random.Random(f"{seed}:{task_id}").shuffle(cands)
        for w, l in pick_spread(cands, pairs_per_task, rank=lambda c: 0, members=lambda c: (("w", c[0]), ("l", c[1]))):
            out.append({"prompt": wins[w]["prompt"], "chosen": wins[w]["completion"],
                        "rejected": bad[task_id][l]["completion"], "task_id": task_id})
    return out


def pass_rate(samples: list[dict]) -> float:
    return round(sum(bool(s["passed"]) for s in samples) / len(samples), 4) if samples else 0.0
