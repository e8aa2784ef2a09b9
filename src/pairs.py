"""Preference pairs for the reward model, from three sources, all in TRL's preference format
(`prompt`, `chosen`, `rejected` plus bookkeeping columns):

- `build_pairs`: execution-derived pairs (higher fraction of asserts passed wins);
- `simulate_human_feedback`: a seeded rule-based stand-in for annotators (NOT human judgments);
- `read_human_feedback`: real annotations from `data/human_feedback/*.jsonl`.

`split_pairs` splits by task so no task is in both train and val; `pair_stats` summarises;
`best_of_n` scores the reward model as a selector of samples. Pure Python (no torch), so the pair
logic is tested quickly and on its own.
"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import random
from pathlib import Path
from typing import Callable

from src.io import UserError, read_jsonl
from src.params import bounded

TIE_BREAKERS = ("syntax", "shorter", "none")
SKIP_LABELS = ("tie", "both_bad", "skip")   # human rows with these labels are not preferences
HUMAN_FIELDS = {"prompt": str, "chosen": str, "rejected": str}
HUMAN_OPTIONAL = {"annotator": (str,), "time": (str, int, float), "timestamp": (str, int, float),
                  "task_id": (str, int), "label": (str,)}
SAMPLE_KEYS = ("task_id", "prompt", "completion", "score", "status", "syntax_ok")
_EPS = 1e-9   # scores are fractions k/n: closer than this counts as equal


@dataclasses.dataclass
class PairParams:
    """The pair-building keys of the reward stage's params section (combine with
    RewardModelParams by dataclass inheritance)."""
    max_pairs_per_task: int = bounded(0)    # 0 = every distinct pair
    tie_breakers: list[str]                 # applied in order to equal scores: syntax | shorter | none
    val_frac: float = bounded(0, 0.9)       # tasks held out for pair accuracy
    simulated_noise: float = bounded(0, 1)  # flip probability of the simulated annotator


# ----------------------------------------------------------------------------- selection


def _by_task(samples: list[dict]) -> dict[str, list[dict]]:
    """Samples grouped by task (first-seen order), one row per distinct completion.

    A completion sampled twice keeps its first row: duplicates would only repeat the same pairs.
    """
    groups: dict[str, dict[str, dict]] = {}
    for i, s in enumerate(samples):
        missing = [k for k in SAMPLE_KEYS if k not in s]
        if missing:
            raise ValueError(f"sample {i}: missing key '{missing[0]}'")
        groups.setdefault(s["task_id"], {}).setdefault(s["completion"], s)
    return {t: list(rows.values()) for t, rows in groups.items()}


def _task_rng(seed: int, task_id) -> random.Random:
    """One generator per task, so a task's pairs don't depend on which other tasks are present."""
    return random.Random(f"{seed}:{task_id}")


def _select(cands: list[tuple[float, int, int]], cap: int, rng: random.Random) -> list[tuple[float, int, int]]:
    """Pick up to `cap` of the candidate pairs (priority, winner index, loser index).

    Order: seeded shuffle, then greedily the highest priority (the score gap); among equal
    priorities the pair whose two completions have been picked least so far (diversity: one
    strong completion does not fill the whole cap), then the shuffled order.
    """
    cands = list(cands)
    rng.shuffle(cands)
    if cap == 0 or len(cands) <= cap:
        return sorted(cands, key=lambda c: -c[0])   # stable: shuffled order within a priority
    return pick_spread(cands, cap, rank=lambda c: -c[0], members=lambda c: c[1:])


def pick_spread(items: list, cap: int, rank: Callable, members: Callable) -> list:
    """Pick up to `cap` items (0 = all), one at a time: the lowest `rank(item)`; among equal ranks
    the item whose `members(item)` (its two completions) have been picked least so far, so one
    strong completion does not fill the whole cap; then the earliest in `items`."""
    items = list(items)
    used: dict = {}
    picked = []
    while items and (cap == 0 or len(picked) < cap):
        best = min(range(len(items)),
                   key=lambda k: (rank(items[k]), sum(used.get(m, 0) for m in members(items[k])), k))
        item = items.pop(best)
        picked.append(item)
        for m in members(item):
            used[m] = used.get(m, 0) + 1
    return picked


# ----------------------------------------------------------------------------- execution pairs


def _tie_break(a: dict, b: dict, breakers: list[str]) -> tuple[int, str] | None:
    """(+1 if a wins / -1 if b wins, the breaker that decided), or None when still tied."""
    for name in breakers:
        if name == "syntax" and bool(a["syntax_ok"]) != bool(b["syntax_ok"]):
            return (1 if a["syntax_ok"] else -1), "syntax"
        if name == "shorter" and len(a["completion"]) != len(b["completion"]):
            return (1 if len(a["completion"]) < len(b["completion"]) else -1), "shorter"
        if name == "none":
            break
    return None


def build_pairs(samples: list[dict], max_pairs_per_task: int, tie_breakers: list[str], seed: int) -> list[dict]:
    """Execution-derived preference pairs.

    Within each task, over distinct completions: the one with the higher score (fraction of asserts
    passed) is chosen. Equal scores go through `tie_breakers` in order ("syntax": the syntax-valid
    one wins; "shorter": fewer characters wins; "none": stop) and the pair is dropped if still tied.
    At most `max_pairs_per_task` pairs per task (0 = all), chosen by `_select`: largest score gap
    first (tie-broken pairs have gap 0, so they come last), spread over as many completions as
    possible, seeded.

    Args:
        samples: rows {task_id, prompt, completion, score, status, syntax_ok}, several per task.
        max_pairs_per_task: cap per task; 0 for no cap.
        tie_breakers: names from TIE_BREAKERS.
        seed: makes the choice under the cap reproducible.

    Returns:
        rows {prompt, chosen, rejected, task_id, chosen_score, rejected_score, decided_by,
        source: "execution"}; `decided_by` is "score" or the tie-breaker's name.
    """
    bad = [t for t in tie_breakers if t not in TIE_BREAKERS]
    if bad:
        raise UserError(f"tie breaker '{bad[0]}' is unknown (allowed: {', '.join(TIE_BREAKERS)})")
    out = []
    for task_id, rows in _by_task(samples).items():
        cands, reason = [], {}
        for i in range(len(rows)):
            for j in range(i + 1, len(rows)):
                a, b = rows[i], rows[j]
                gap = float(a["score"]) - float(b["score"])
                if abs(gap) > _EPS:
                    win, why = (1 if gap > 0 else -1), "score"
                else:
                    decided = _tie_break(a, b, tie_breakers)
                    if decided is None:
                        continue
                    win, why = decided
                w, l = (i, j) if win > 0 else (j, i)
                cands.append((abs(gap) if why == "score" else 0.0, w, l))
                reason[(w, l)] = why
        for _, w, l in _select(cands, max_pairs_per_task, _task_rng(seed, task_id)):
            out.append({"prompt": rows[w]["prompt"], "chosen": rows[w]["completion"],
                        "rejected": rows[l]["completion"], "task_id": task_id,
                        "chosen_score": float(rows[w]["score"]), "rejected_score": float(rows[l]["score"]),
                        "decided_by": reason[(w, l)], "source": "execution"})
    return out


# ----------------------------------------------------------------------------- simulated annotator

_BRANCHES = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.IfExp, ast.ExceptHandler, ast.comprehension,
             ast.match_case)


def style_cost(code: str) -> tuple[int, int]:
    """(style warnings, cyclomatic complexity) of Python source: simple `ast` proxies, lower is
    more idiomatic. Unparsable code costs (10**6, 10**6).

    Warnings counted: `range(len(...))`, `== / !=` against None/True/False, `type(x) == ...`,
    bare `except:`, `global`, `if c: return True else: return False`, lines over 79 characters.
    Complexity: 1 + branches (if/for/while/ternary/except/comprehension/case) + extra boolean operands.
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return 10**6, 10**6
    warnings = sum(len(line) > 79 for line in code.splitlines())
    complexity = 1
    for node in ast.walk(tree):
        if isinstance(node, _BRANCHES):
            complexity += 1 + (len(node.ifs) if isinstance(node, ast.comprehension) else 0)
        elif isinstance(node, ast.BoolOp):
            complexity += len(node.values) - 1
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"
                and len(node.args) == 1 and isinstance(node.args[0], ast.Call)
                and isinstance(node.args[0].func, ast.Name) and node.args[0].func.id == "len"):
            warnings += 1
        elif isinstance(node, ast.Compare):
            if any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops) and any(
                    isinstance(c, ast.Constant) and (c.value is None or isinstance(c.value, bool))
                    for c in [node.left, *node.comparators]):
                warnings += 1
            if (isinstance(node.left, ast.Call) and isinstance(node.left.func, ast.Name)
                    and node.left.func.id == "type"):
                warnings += 1
        elif isinstance(node, ast.ExceptHandler) and node.type is None:
            warnings += 1
        elif isinstance(node, ast.Global):
            warnings += 1
        elif isinstance(node, ast.If) and _returns_bool(node.body, True) and _returns_bool(node.orelse, False):
            warnings += 1
    return warnings, complexity


def _returns_bool(body: list[ast.stmt], value: bool) -> bool:
    return (len(body) == 1 and isinstance(body[0], ast.Return) and isinstance(body[0].value, ast.Constant)
            and body[0].value.value is value)


def _n_lines(code: str) -> int:
    return sum(1 for line in code.splitlines() if line.strip())


def _annotator_prefers(a: dict, b: dict) -> tuple[int, str] | None:
    """The simulated annotator's rule: (+1 a / -1 b, which criterion) or None (no preference)."""
    pa, pb = a["status"] == "passed", b["status"] == "passed"
    if pa != pb:
        return (1 if pa else -1), "passed"
    la, lb = _n_lines(a["completion"]), _n_lines(b["completion"])
    if la != lb:
        return (1 if la < lb else -1), "shorter"
    ca, cb = style_cost(a["prompt"] + a["completion"]), style_cost(b["prompt"] + b["completion"])
    if ca != cb:
        return (1 if ca < cb else -1), "idiomatic"
    return None


_RULE_PRIORITY = {"passed": 2.0, "shorter": 1.0, "idiomatic": 0.0}


def simulate_human_feedback(samples: list[dict], noise: float, max_pairs_per_task: int, seed: int) -> list[dict]:
    """Preference pairs from a SIMULATED annotator: a fixed rule plus seeded label noise.

    These are NOT human judgments. They stand in for human feedback when `data/human_feedback/`
    holds none, so the human head and its plumbing can be exercised; what the human head learns from
    them is this rule, nothing more.

    The rule, over distinct completions of one task: prefer the one that passed (status "passed");
    then the one with fewer non-blank lines; then the more idiomatic one (fewer style warnings, then
    lower cyclomatic complexity; see `style_cost`); otherwise no preference (pair dropped). Pairs
    are capped per task as in `build_pairs` (pairs decided by correctness first, then length, then
    style). Then each kept label is flipped with probability `noise` (noise 1 flips all).

    Returns:
        rows {prompt, chosen, rejected, task_id, rule, annotator: "simulated", source: "simulated"}.
    """
    if not 0.0 <= noise <= 1.0:
        raise UserError(f"simulated annotator noise must lie in [0, 1], got {noise}")
    out = []
    for task_id, rows in _by_task(samples).items():
        cands, rule = [], {}
        for i in range(len(rows)):
            for j in range(i + 1, len(rows)):
                decided = _annotator_prefers(rows[i], rows[j])
                if decided is None:
                    continue
                w, l = (i, j) if decided[0] > 0 else (j, i)
                cands.append((_RULE_PRIORITY[decided[1]], w, l))
                rule[(w, l)] = decided[1]
        rng = _task_rng(seed, task_id)
        for _, w, l in _select(cands, max_pairs_per_task, rng):
            chosen, rejected = (l, w) if rng.random() < noise else (w, l)
            out.append({"prompt": rows[w]["prompt"], "chosen": rows[chosen]["completion"],
                        "rejected": rows[rejected]["completion"], "task_id": task_id,
                        "rule": rule[(w, l)], "annotator": "simulated", "source": "simulated"})
    return out


# ----------------------------------------------------------------------------- human annotations


def _nonblank_line_numbers(path: Path) -> list[int]:
    """Line numbers of the non-blank lines: read_jsonl skips blank lines, so rows map onto these."""
    with open(path, encoding="utf-8") as f:
        return [n for n, line in enumerate(f, 1) if line.strip()]


def read_human_feedback(folder) -> list[dict]:
    """Human preference pairs from every `*.jsonl` in `folder` (sorted by file name).

    Each row needs `prompt`, `chosen`, `rejected` (strings); optional `annotator`, `time` or
    `timestamp`, `task_id`, `label`. A malformed row raises UserError naming file:line and field.
    Rows labelled "tie", "both_bad" or "skip" are not preferences and are skipped. Rows get
    `source: "human"`; other fields pass through. A missing folder is a UserError (an empty one
    gives no rows).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: human feedback folder not found")
    out = []
    for path in sorted(folder.glob("*.jsonl")):
        rows = read_jsonl(path, HUMAN_FIELDS)
        for lineno, row in zip(_nonblank_line_numbers(path), rows):
            for name, types in HUMAN_OPTIONAL.items():
                value = row.get(name)
                if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
                    want = " or ".join(t.__name__ for t in types)
                    raise UserError(f"{path}:{lineno}: field '{name}' must be {want}, got {type(value).__name__}")
            if row.get("label") in SKIP_LABELS:
                continue
            if row["chosen"] == row["rejected"]:
                raise UserError(f"{path}:{lineno}: field 'rejected' is identical to 'chosen'")
            out.append({**row, "source": "human"})
    return out


# ----------------------------------------------------------------------------- split and stats


def _group_key(pair: dict):
    """Pairs group by task; human rows without a task_id group by prompt."""
    return pair.get("task_id") if pair.get("task_id") is not None else pair["prompt"]


def _unit_hash(seed: int, key) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_pairs(pairs: list[dict], val_frac: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, val) split by task: a task's pairs all go to one side.

    A task is in val when a seeded hash of its id falls below `val_frac`. The decision depends only
    on (seed, task id), so execution and human pairs of the same task land on the same side (the
    two heads share a backbone, so a task trained through either head would leak into the other's
    validation). Hence the val share is val_frac only on average; if it would be empty although
    val_frac > 0 and there are two or more tasks, the task with the lowest hash goes to val.
    Input order is kept on both sides.
    """
    keys = list(dict.fromkeys(_group_key(p) for p in pairs))
    val_keys = {k for k in keys if _unit_hash(seed, k) < val_frac}
    if not val_keys and val_frac > 0 and len(keys) >= 2:
        val_keys = {min(keys, key=lambda k: _unit_hash(seed, k))}
    train = [p for p in pairs if _group_key(p) not in val_keys]
    val = [p for p in pairs if _group_key(p) in val_keys]
    return train, val


def _summary(pairs: list[dict]) -> dict:
    gaps = [p["chosen_score"] - p["rejected_score"] for p in pairs
            if p.get("chosen_score") is not None and p.get("rejected_score") is not None]
    out = {"n_pairs": len(pairs), "n_tasks": len({_group_key(p) for p in pairs}),
           "mean_score_gap": sum(gaps) / len(gaps) if gaps else None,
           "mean_chosen_chars": sum(len(p["chosen"]) for p in pairs) / len(pairs) if pairs else None,
           "mean_rejected_chars": sum(len(p["rejected"]) for p in pairs) / len(pairs) if pairs else None}
    for col in ("decided_by", "rule"):
        counts = _count(pairs, lambda p: p.get(col))
        if counts:
            out[col] = counts
    return out


def _count(pairs: list[dict], key: Callable[[dict], str | None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in pairs:
        k = key(p)
        if k is not None:
            counts[k] = counts.get(k, 0) + 1
    return dict(sorted(counts.items()))


def pair_stats(pairs: list[dict]) -> dict:
    """Counts, mean score gap (execution pairs), mean lengths and decision reasons, overall and by source."""
    sources = sorted({p.get("source", "unknown") for p in pairs})
    return {**_summary(pairs),
            "by_source": {s: _summary([p for p in pairs if p.get("source", "unknown") == s]) for s in sources}}


# ----------------------------------------------------------------------------- best-of-n


def best_of_n(groups: dict[str, list[tuple[float, bool]]]) -> dict:
    """The reward model as a selector: per task, its n samples as (score, passed) in sampling order.

    Returns {tasks, n (samples per task, the largest group), top_pick: mean pass of each task's
    highest-scored sample, random: mean pass rate (the expected pass of a uniform pick), oracle: share
    of tasks with any passing sample (pass@n), gain: top_pick - random}; None values for no tasks.
    A tie for the top score goes to the earliest sample: deterministic, and as samples come in
    random order it favours neither passing nor failing ones.
    """
    groups = {t: g for t, g in groups.items() if g}
    if not groups:
        return {"tasks": 0, "n": 0, "top_pick": None, "random": None, "oracle": None, "gain": None}
    top = [max(range(len(g)), key=lambda i: (g[i][0], -i)) for g in groups.values()]
    top_pick = sum(g[i][1] for g, i in zip(groups.values(), top)) / len(groups)
    rand = sum(sum(ok for _, ok in g) / len(g) for g in groups.values()) / len(groups)
    oracle = sum(any(ok for _, ok in g) for g in groups.values()) / len(groups)
    return {"tasks": len(groups), "n": max(len(g) for g in groups.values()), "top_pick": top_pick,
            "random": rand, "oracle": oracle, "gain": top_pick - rand}
