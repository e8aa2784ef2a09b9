"""Human judgments of completion pairs: which pairs to show, how a judgment is stored, and how far
annotators agree. The labelling page (`src/label.py`) is a thin HTTP layer over this module.

- Candidates are rows of a samples file (the reward stage's `data/reward/samples.jsonl`), one per
  distinct completion of a task, named by a content hash, so a judgment still finds its pair after
  the samples file is regenerated.
- `select_pairs` picks the pairs worth a human's time (the strategy is `label.strategy`); the pool
  depends on the seed only, so every annotator is offered the same pairs. `annotator_order` and
  `sides` then shuffle tasks and A/B positions per annotator, deterministically: a reload resumes
  in the same order and position bias averages out across annotators.
- `append_judgment` appends one JSON line to `<folder>/<annotator>.jsonl` under an exclusive lock:
  a reader or a concurrent writer sees the whole line or none of it.
- `agreement_report` counts judgments and labels and gives Cohen's kappa for every two annotators
  who judged the same pairs.

Pure Python (no torch, no server).
"""
from __future__ import annotations

import dataclasses
import datetime
import fcntl
import hashlib
import json
import os
import random
import re
from pathlib import Path

from src.io import UserError, read_jsonl
from src.pairs import HUMAN_FIELDS, SKIP_LABELS, pick_spread

LABELS = ("a_better", "b_better", "tie", "both_bad", "skip")
PREFERENCES = ("a_better", "b_better")
STRATEGIES = ("informative", "random", "overlap")
SAMPLE_FIELDS = {"task_id": (str, int), "prompt": str, "completion": str}
MAX_REASON = 2000   # characters of free text kept per judgment
# A safe file name: no path separators, no leading dot (hidden files, "..").
_ANNOTATOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
RESERVED_ANNOTATORS = ("simulated",)   # src.pairs' rule-based stand-in uses this name
_EPS = 1e-9


def validate_annotator(name) -> str:
    """The annotator name, or UserError: 1-64 letters, digits, '_', '.', '-', starting with a
    letter or digit (the name becomes the file name `<name>.jsonl`)."""
    if not isinstance(name, str) or not _ANNOTATOR.fullmatch(name):
        raise UserError(f"annotator name {name!r} is not allowed: use 1-64 letters, digits, '_', '.', '-', "
                        "starting with a letter or digit")
    if name.lower() in RESERVED_ANNOTATORS:
        raise UserError(f"annotator name {name!r} is reserved (the simulated annotator)")
    return name


def feedback_path(folder, annotator: str) -> Path:
    """`<folder>/<annotator>.jsonl`, after validating the name."""
    return Path(folder) / f"{validate_annotator(annotator)}.jsonl"


# ----------------------------------------------------------------------------- candidates and pairs


def _task_key(task_id, prompt: str) -> str:
    return str(task_id) if task_id is not None else prompt


def sample_hash(task_id, prompt: str, completion: str) -> str:
    """16 hex digits naming a completion of a task (task id, or the prompt where there is none)."""
    return hashlib.sha256(f"{_task_key(task_id, prompt)}\0{completion}".encode("utf-8")).hexdigest()[:16]


def pair_id(hash_1: str, hash_2: str) -> str:
    """Names an unordered pair: the two sample hashes, sorted, joined by '~'."""
    return "~".join(sorted((hash_1, hash_2)))


@dataclasses.dataclass(frozen=True)
class Candidate:
    index: int            # row of the samples file, 0-based, blank lines not counted
    hash: str
    task_id: str | int
    prompt: str
    completion: str
    score: float | None   # fraction of asserts passed
    status: str | None    # the sandbox's verdict: passed | failed | timeout | syntax_error | ...
    passed: bool | None
    syntax_ok: bool | None

    @property
    def has_passed(self) -> bool:
        return bool(self.passed) or self.status == "passed"


@dataclasses.dataclass(frozen=True)
class Pair:
    pair_id: str
    first: Candidate      # the lower hash: a fixed order, independent of who looks
    second: Candidate
    rank: int             # position among the pairs picked for its task (0 = most worth judging)

    @property
    def task_id(self):
        return self.first.task_id


def load_candidates(path) -> list[Candidate]:
    """Distinct completions of a samples file (rows {task_id, prompt, completion} and optionally
    score, status, passed, syntax_ok); a completion sampled twice for a task keeps its first row."""
    rows = read_jsonl(path, SAMPLE_FIELDS)
    out, seen = [], set()
    for i, r in enumerate(rows):
        h = sample_hash(r["task_id"], r["prompt"], r["completion"])
        if h in seen:
            continue
        seen.add(h)
        score = r.get("score")
        out.append(Candidate(index=i, hash=h, task_id=r["task_id"], prompt=r["prompt"], completion=r["completion"],
                             score=float(score) if isinstance(score, (int, float)) and not isinstance(score, bool)
                             else None,
                             status=r.get("status"), passed=r.get("passed"), syntax_ok=r.get("syntax_ok")))
    if not out:
        raise UserError(f"{path}: no samples to compare")
    return out


def by_task(cands: list[Candidate]) -> dict:
    groups: dict = {}
    for c in cands:
        groups.setdefault(c.task_id, []).append(c)
    return groups


def _informative_tier(a: Candidate, b: Candidate, max_score_gap: float) -> int | None:
    """0: both passed (execution cannot tell them apart); 1: partial scores within max_score_gap
    (close, and not both zero); None: execution already decides, or both failed outright."""
    if a.has_passed and b.has_passed:
        return 0
    if a.score is None or b.score is None:
        return None
    if abs(a.score - b.score) <= max_score_gap + _EPS and max(a.score, b.score) > _EPS:
        return 1
    return None


def select_pairs(cands: list[Candidate], strategy: str, max_pairs_per_task: int, max_score_gap: float,
                 seed: int) -> list[Pair]:
    """The pairs offered to annotators, grouped by task in first-seen order.

    Args:
        cands: from load_candidates.
        strategy: "informative" (and "overlap", whose pool is the same): pairs whose two completions
            both passed, then pairs with close partial scores (gap <= max_score_gap, not both 0),
            smallest gap first; "random": any two distinct completions of a task.
        max_pairs_per_task: cap per task (0 = every qualifying pair); under the cap, a completion
            already picked for the task yields to one not yet picked, so the pairs cover more of them.
        seed: orders equally good pairs; the pool depends on the seed and the samples only.
    """
    if strategy not in STRATEGIES:
        raise UserError(f"pair strategy {strategy!r} is unknown (allowed: {', '.join(STRATEGIES)})")
    out = []
    for task_id, rows in by_task(cands).items():
        rng = random.Random(f"{seed}:pairs:{task_id}")
        scored = []
        for i in range(len(rows)):
            for j in range(i + 1, len(rows)):
                a, b = rows[i], rows[j]
                if strategy == "random":
                    key = (0, 0.0)
                else:
                    tier = _informative_tier(a, b, max_score_gap)
                    if tier is None:
                        continue
                    key = (tier, abs((a.score or 0.0) - (b.score or 0.0)))
                scored.append((key, rng.random(), a, b))
        scored.sort(key=lambda s: (s[0], s[1]))   # equal keys in seeded random order
        # best key first; among equal keys the pair whose completions were used least
        picked = pick_spread(scored, max_pairs_per_task, rank=lambda s: s[0],
                             members=lambda s: (s[2].hash, s[3].hash))
        for i, (_, _, a, b) in enumerate(picked):
            first, second = sorted((a, b), key=lambda c: c.hash)
            out.append(Pair(pair_id(a.hash, b.hash), first, second, i))
    return out


def annotator_order(pairs: list[Pair], annotator: str, seed: int) -> list[Pair]:
    """The pool in this annotator's order: tasks shuffled by (seed, annotator), then every task's
    best pair before any task's second-best, so a short session still covers many tasks."""
    tasks = list(dict.fromkeys(p.task_id for p in pairs))
    random.Random(f"{seed}:order:{annotator}").shuffle(tasks)
    pos = {t: i for i, t in enumerate(tasks)}
    return sorted(pairs, key=lambda p: (p.rank, pos[p.task_id]))


def sides(pair: Pair, annotator: str, seed: int) -> tuple[Candidate, Candidate]:
    """(A, B) as this annotator sees them: a seeded coin per (annotator, pair), stable across reloads."""
    if random.Random(f"{seed}:sides:{annotator}:{pair.pair_id}").random() < 0.5:
        return pair.first, pair.second
    return pair.second, pair.first


# ----------------------------------------------------------------------------- judgments


def _sample_ref(c: Candidate) -> dict:
    return {"index": c.index, "hash": c.hash, "score": c.score, "status": c.status}


def judgment_row(a: Candidate, b: Candidate, label: str, annotator: str, reason: str, samples_file: str,
                 now: datetime.datetime | None = None) -> dict:
    """One stored judgment of A vs B, in the format `src.pairs.read_human_feedback` reads.

    chosen/rejected: the preferred completion first for a_better/b_better; for tie, both_bad and
    skip (which the reward stage skips) A and B as shown. `samples` points back at the rows of the
    samples file; `shown` records which completion was on the left.
    """
    if label not in LABELS:
        raise UserError(f"label {label!r} is unknown (allowed: {', '.join(LABELS)})")
    if a.task_id != b.task_id or a.hash == b.hash:
        raise UserError("a judgment compares two different completions of one task")
    if not isinstance(reason, str):
        raise UserError("reason must be a string")
    reason = reason.strip()
    if len(reason) > MAX_REASON:
        raise UserError(f"reason is longer than {MAX_REASON} characters")
    chosen, rejected = (b, a) if label == "b_better" else (a, b)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return {"prompt": a.prompt, "chosen": chosen.completion, "rejected": rejected.completion, "label": label,
            "annotator": validate_annotator(annotator), "timestamp": now.isoformat(timespec="seconds"),
            "task_id": a.task_id, "pair_id": pair_id(a.hash, b.hash), "reason": reason,
            "samples": {"file": samples_file, "chosen": _sample_ref(chosen), "rejected": _sample_ref(rejected)},
            "shown": {"a": a.hash, "b": b.hash}}


def _repair_tail(fd: int) -> None:
    """A file not ending in a newline: finish the last line if it is a whole JSON object (edited by
    hand), else drop it (a write cut off by a crash, never acknowledged to the page)."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    data = os.pread(fd, size, 0)
    start = data.rfind(b"\n") + 1
    try:
        whole = isinstance(json.loads(data[start:]), dict)
    except ValueError:
        whole = False
    if whole:
        os.write(fd, b"\n")
    else:
        os.ftruncate(fd, start)


def append_judgment(folder, row: dict) -> Path:
    """Append `row` as one line to `<folder>/<row["annotator"]>.jsonl`, atomically: under an
    exclusive flock (concurrent servers and threads queue), with O_APPEND, then fsync; a failed
    write is truncated away, so the file holds the whole line or none of it."""
    path = feedback_path(folder, row["annotator"])
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _repair_tail(fd)
        start = os.fstat(fd).st_size
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)   # releases the lock
    if created:        # make the new directory entry durable too
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return path


def row_pair_id(row: dict) -> str:
    """The pair a stored judgment is about, from its content (so hand-written rows count too)."""
    return pair_id(sample_hash(row.get("task_id"), row["prompt"], row["chosen"]),
                   sample_hash(row.get("task_id"), row["prompt"], row["rejected"]))


def read_judgments(path) -> list[dict]:
    """Every row of one annotator file, skips included ([] when the file does not exist yet)."""
    return read_jsonl(path, HUMAN_FIELDS) if Path(path).exists() else []


# ----------------------------------------------------------------------------- agreement


def cohen_kappa(x: list, y: list) -> float | None:
    """Cohen's kappa of two raters' labels on the same items: (p_o - p_e) / (1 - p_e), with p_e
    from each rater's own label frequencies. None when undefined (no items, or p_e = 1: both
    raters used one and the same label throughout)."""
    if len(x) != len(y):
        raise ValueError("the two raters must label the same items")
    n = len(x)
    if n == 0:
        return None
    p_o = sum(a == b for a, b in zip(x, y)) / n
    p_e = sum((x.count(c) / n) * (y.count(c) / n) for c in set(x) | set(y))
    if p_e >= 1 - _EPS:
        return None
    return (p_o - p_e) / (1 - p_e)


def _canonical(row: dict) -> str | None:
    """A judgment as a label about the pair in its fixed order (hash-sorted), so two annotators who
    saw A and B swapped still compare: first_better | second_better | tie | both_bad; None = skip."""
    label = row.get("label")
    if label == "skip":
        return None
    if label in ("tie", "both_bad"):
        return label
    # a preference (a_better, b_better, or a hand-written row without a label): chosen won
    h_chosen = sample_hash(row.get("task_id"), row["prompt"], row["chosen"])
    h_rejected = sample_hash(row.get("task_id"), row["prompt"], row["rejected"])
    return "first_better" if h_chosen < h_rejected else "second_better"


def _counts(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))


def agreement_report(folder) -> dict:
    """Counts, label distribution and inter-annotator agreement of every `*.jsonl` in `folder`.

    An annotator is the row's `annotator` field, else the file name. When an annotator judged a
    pair more than once, the last judgment counts for agreement (`repeats` says how often).
    Skips are not judgments of the pair and are left out of agreement. For every two annotators
    with shared pairs: their number, the observed agreement, Cohen's kappa over the four labels
    (first_better, second_better, tie, both_bad; None when undefined), the confusion counts, and
    how often they agreed on the direction where both preferred one side.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: human feedback folder not found")
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        for r in read_jsonl(path, HUMAN_FIELDS):
            rows.append((r.get("annotator") or path.stem, r))
    latest: dict[str, dict[str, str | None]] = {}   # annotator -> pair -> canonical label
    per: dict[str, dict] = {}
    for name, r in rows:
        a = per.setdefault(name, {"judgments": 0, "labels": [], "repeats": 0})
        a["judgments"] += 1
        a["labels"].append(r.get("label") or "preference")
        pid = row_pair_id(r)
        mine = latest.setdefault(name, {})
        a["repeats"] += pid in mine
        mine[pid] = _canonical(r)
    annotators = {name: {"judgments": a["judgments"], "labels": _counts(a["labels"]), "repeats": a["repeats"],
                         "pairs": sum(v is not None for v in latest[name].values())}
                  for name, a in sorted(per.items())}
    judged = {}   # pair -> {annotator: label}, skips left out
    for name, pairs in latest.items():
        for pid, lab in pairs.items():
            if lab is not None:
                judged.setdefault(pid, {})[name] = lab
    agreement = {}
    names = sorted(latest)
    for i, n1 in enumerate(names):
        for n2 in names[i + 1:]:
            shared = sorted(p for p, by in judged.items() if n1 in by and n2 in by)
            if not shared:
                continue
            x = [judged[p][n1] for p in shared]
            y = [judged[p][n2] for p in shared]
            kappa = cohen_kappa(x, y)
            prefs = [(a, b) for a, b in zip(x, y) if a.endswith("_better") and b.endswith("_better")]
            confusion: dict[str, dict[str, int]] = {}
            for a, b in zip(x, y):
                confusion.setdefault(a, {}).setdefault(b, 0)
                confusion[a][b] += 1
            agreement[f"{n1}|{n2}"] = {
                "shared_pairs": len(shared),
                "observed_agreement": round(sum(a == b for a, b in zip(x, y)) / len(shared), 4),
                "cohen_kappa": None if kappa is None else round(kappa, 4),
                "confusion": {a: dict(sorted(c.items())) for a, c in sorted(confusion.items())},
                "both_preferred": len(prefs),
                "same_direction": round(sum(a == b for a, b in prefs) / len(prefs), 4) if prefs else None,
            }
    kappas = [v["cohen_kappa"] for v in agreement.values() if v["cohen_kappa"] is not None]
    all_labels = [r.get("label") or "preference" for _, r in rows]
    return {
        "judgments": len(rows),
        "preference_judgments": sum(r.get("label") not in SKIP_LABELS for _, r in rows),  # what reward trains on
        "labels": _counts(all_labels),
        "annotators": annotators,
        "pairs_judged": len(judged),
        "pairs_judged_by_2_or_more": sum(len(by) >= 2 for by in judged.values()),
        "agreement": agreement,
        "cohen_kappa_mean": round(sum(kappas) / len(kappas), 4) if kappas else None,
    }
