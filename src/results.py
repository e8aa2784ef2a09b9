"""The experiment table: every `dvc exp` of the current commit (and the commit itself) with the
aligned policy against SFT on pass@k and the text metrics, as Markdown. Δ pass@1 carries its paired
standard error (both policies on the same tasks), and so do the Δ pass@5 at the headline and at
evaluate's low temperature ("low T"): pass@1 up with pass@5 flat is sharpening, both up is learning.

    python -m src.results [dvc exp show options, e.g. --rev <commit>] > RESULTS.md
"""
from __future__ import annotations

import json
import subprocess
import sys

COLUMNS = ("pass@1", "pass@5", "pass@1_greedy", "codebleu", "ruby")
DELTAS = (("pass@5", "Δ pass@5"), ("pass@1_lowtemp", "Δ pass@1 low T"), ("pass@5_lowtemp", "Δ pass@5 low T"))


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        out.update(flat(v, key) if isinstance(v, dict) else {key: v})
    return out


def rows(exps: list[dict]) -> list[tuple[str, str, dict, dict]]:
    """(name, rev, params, eval metrics) for the baseline commit and each of its experiments."""
    out = []
    for r in exps:
        if r["rev"] == "workspace":
            continue
        runs = [(r.get("name") or r["rev"][:7], r["rev"], r["data"])]
        runs += [(e.get("name") or rv["rev"][:7], rv["rev"], rv["data"])
                 for e in r.get("experiments") or [] for rv in e["revs"]]
        for name, rev, data in runs:
            params = flat(data["params"]["params.yaml"]["data"])
            metrics = data.get("metrics", {}).get("metrics/eval.json", {}).get("data", {})
            out.append((name, rev, params, metrics))
    return out


def paired_from_samples(rev: str) -> float | None:
    """The paired stderr of Δ pass@1 from a run's eval samples in the DVC cache, for runs made before
    evaluate wrote it; None when the samples are not in the cache."""
    import dvc.api
    from dvc.exceptions import DvcException
    from dvc_data.index.index import DataIndexError

    from src.metrics.passk import paired_stderr, task_rates
    try:
        rates = {p: task_rates([json.loads(x) for x in dvc.api.read(f"data/eval/{p}.jsonl", rev=rev).splitlines()],
                               greedy=False) for p in ("sft", "aligned")}
    except (OSError, DvcException, DataIndexError):  # samples (or the rev) not in this cache
        return None
    return paired_stderr(rates["sft"], rates["aligned"])


def _delta(s: dict, a: dict, delta: dict, key: str) -> str:
    """aligned − sft for `key` with its paired stderr when the metrics have it; – for a run without it."""
    if not isinstance(a.get(key), (int, float)) or not isinstance(s.get(key), (int, float)):
        return "–"
    se = delta.get(f"{key}_stderr_paired")
    return f"{a[key] - s[key]:+.3f}" + (f" ± {se:.3f}" if se is not None else "")


def table(exps: list[dict], paired=None) -> str:
    """The Markdown table; `paired(rev)` supplies Δ's paired stderr where the metrics lack it."""
    runs = rows(exps)
    base = runs[0][2]
    width = 5 + len(COLUMNS) - 1 + len(DELTAS)
    lines = ["| experiment | changed params | SFT pass@1 | aligned pass@1 | Δ pass@1 | "
             + " | ".join(f"aligned {c}" for c in COLUMNS[1:]) + " | "
             + " | ".join(title for _, title in DELTAS) + " |",
             "|" + "---|" * width]
    for name, rev, params, m in runs:
        # a key the first baseline lacks was added later with its then default: not a change
        changed = ", ".join(f"`{k}={v}`" for k, v in params.items() if k in base and base[k] != v) or "(default)"
        if "aligned" not in m:
            lines.append(f"| {name} | {changed} |" + " – |" * (width - 2))
            continue
        s, a = m["sft"], m["aligned"]
        delta = m.get("delta", {}).get("aligned", {})
        dse = delta.get("pass@1_stderr_paired")
        if dse is None and paired is not None:
            dse = paired(rev)
        d = f"{a['pass@1'] - s['pass@1']:+.3f}" + (f" ± {dse:.3f}" if dse is not None else "")
        lines.append(f"| {name} | {changed} | {s['pass@1']:.3f} ± {s['pass@1_stderr']:.3f} | "
                     f"{a['pass@1']:.3f} ± {a['pass@1_stderr']:.3f} | {d} | "
                     + " | ".join(f"{a[c]:.3f}" if isinstance(a.get(c), (int, float)) else "–" for c in COLUMNS[1:])
                     + " | " + " | ".join(_delta(s, a, delta, key) for key, _ in DELTAS) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    out = subprocess.run(["dvc", "exp", "show", "--json", *sys.argv[1:]], capture_output=True, text=True,
                         check=True).stdout
    sys.stdout.write(table(json.loads(out), paired=paired_from_samples))


if __name__ == "__main__":
    main()
