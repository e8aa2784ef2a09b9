"""pass@k: the unbiased estimator of Chen et al. 2021 (the Codex paper), plus a per-task table,
the standard error of pass@1, per-task pass counts of sample rows and the difference of two policies.

For one task with n samples of which c pass, pass@k = 1 - C(n-c, k) / C(n, k): the chance that k
samples drawn without replacement from the n include at least one that passes. The ratio of
binomials is computed as the product prod_{i=n-c+1}^{n} (1 - k/i), which never forms a big binomial.
"""
from __future__ import annotations

import math
import re
from typing import Mapping, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one task.

    Args:
        n: samples drawn (n >= 1).
        c: samples that passed (0 <= c <= n).
        k: budget (1 <= k <= n).
    """
    if not (n >= 1 and 0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:  # every k-subset holds a passing sample
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def pass_at_k_table(counts: Mapping[str, tuple[int, int]], ks: Sequence[int]) -> dict[str, float]:
    """Mean pass@k over tasks, for each k every task has enough samples for.

    Args:
        counts: task_id -> (n, c).
        ks: the k values wanted; a k with some task's n < k is left out (its estimate is undefined).

    Returns:
        {"pass@1": mean, "pass@10": mean, ...}; empty when counts is empty.
    """
    if not counts:
        return {}
    table = {}
    for k in ks:
        if all(n >= k for n, _ in counts.values()):
            table[f"pass@{k}"] = sum(pass_at_k(n, c, k) for n, c in counts.values()) / len(counts)
    return table


def pass_at_1_stderr(counts: Mapping[str, tuple[int, int]]) -> float:
    """Standard error over tasks of mean pass@1: std(c/n, ddof=1) / sqrt(T); 0.0 when T < 2."""
    return _stderr_of_mean([c / n for n, c in counts.values()])


def paired_stderr(before: Mapping[str, float], after: Mapping[str, float]) -> float:
    """Standard error of mean(after - before) over the tasks both score (same tasks, so paired).

    Two policies scored on the same tasks share each task's difficulty; the per-task difference
    cancels it, so this is much smaller than either policy's own standard error. 0.0 below 2 tasks.
    """
    return _stderr_of_mean([after[k] - before[k] for k in before if k in after])


def _stderr_of_mean(xs: Sequence[float]) -> float:
    """std(xs, ddof=1) / sqrt(len(xs)); 0.0 below 2 values."""
    t = len(xs)
    if t < 2:
        return 0.0
    mean = sum(xs) / t
    var = sum((x - mean) ** 2 for x in xs) / (t - 1)
    return math.sqrt(var / t)


def proportion_stderr(p: float, n: int) -> float:
    """Binomial standard error of a pass rate p over n programs; 0.0 below 2."""
    return math.sqrt(p * (1 - p) / n) if n > 1 else 0.0


def task_counts(rows: list[dict], greedy: bool) -> dict[str, tuple[int, int]]:
    """Per task (in first-seen order), (programs, passed) over its sampled (or greedy) rows."""
    counts: dict[str, tuple[int, int]] = {}
    for r in rows:
        if r["greedy"] == greedy:
            n, c = counts.get(r["task_id"], (0, 0))
            counts[r["task_id"]] = (n + 1, c + int(r["passed"]))
    return counts


def task_rates(rows: list[dict], greedy: bool) -> dict[str, float]:
    """Per task, the share of its sampled (or greedy) programs that passed."""
    return {k: c / n for k, (n, c) in task_counts(rows, greedy).items()}


def task_pass_at_k(rows: list[dict], greedy: bool, k: int) -> dict[str, float]:
    """Per task, pass@k of its sampled (or greedy) programs (task_rates for k = 1, exactly c / n)."""
    if k == 1:
        return task_rates(rows, greedy)
    return {t: pass_at_k(n, c, k) for t, (n, c) in task_counts(rows, greedy).items()}


def policy_delta(base: dict, other: dict, base_rows: list[dict], other_rows: list[dict],
                 more: Mapping[str, tuple[list[dict], list[dict]]] | None = None) -> dict:
    """other - base per metric, and for each pass@k (sampled, and greedy pass@1) the standard error of
    that difference over the same tasks (`*_stderr_paired`): far smaller than either policy's own.

    Args:
        more: further sample sets by metric-key suffix, {suffix: (base rows, other rows)}; their
            `pass@<k><suffix>` get a paired standard error from those rows.
    """
    d = {k: round(v - base[k], 4) for k, v in other.items()
         if isinstance(v, float) and isinstance(base.get(k), float) and not k.endswith("_stderr")}
    sets = [("", False, base_rows, other_rows), ("_greedy", True, base_rows, other_rows)]
    sets += [(suffix, False, b, o) for suffix, (b, o) in (more or {}).items()]
    for suffix, greedy, b, o in sets:
        for key in list(d):
            if m := re.fullmatch(rf"pass@(\d+){re.escape(suffix)}", key):
                k = int(m[1])
                se = paired_stderr(task_pass_at_k(b, greedy, k), task_pass_at_k(o, greedy, k))
                d[f"{key}_stderr_paired"] = round(se, 4)
    return d
