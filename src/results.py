"""The experiment table: every `dvc exp` of the current commit (and the commit itself) with the
aligned policy against SFT on pass@k and the text metrics, as Markdown.

    python -m src.results [dvc exp show options, e.g. --rev <commit>] > RESULTS.md
"""
from __future__ import annotations

import json
import subprocess
import sys

COLUMNS = ("pass@1", "pass@5", "pass@1_greedy", "codebleu", "ruby")


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        out.update(flat(v, key) if isinstance(v, dict) else {key: v})
    return out


def rows(exps: list[dict]) -> list[tuple[str, dict, dict]]:
    """(name, params, eval metrics) for the baseline commit and each of its experiments."""
    out = []
    for r in exps:
        if r["rev"] == "workspace":
            continue
        runs = [(r.get("name") or r["rev"][:7], r["data"])]
        runs += [(e.get("name") or rv["rev"][:7], rv["data"]) for e in r.get("experiments") or [] for rv in e["revs"]]
        for name, data in runs:
            params = flat(data["params"]["params.yaml"]["data"])
            metrics = data.get("metrics", {}).get("metrics/eval.json", {}).get("data", {})
            out.append((name, params, metrics))
    return out


def table(exps: list[dict]) -> str:
    runs = rows(exps)
    base = runs[0][1]
    lines = ["| experiment | changed params | SFT pass@1 | aligned pass@1 | Δ pass@1 | "
             + " | ".join(f"aligned {c}" for c in COLUMNS[1:]) + " |",
             "|" + "---|" * (5 + len(COLUMNS) - 1)]
    for name, params, m in runs:
        # a key the first baseline lacks was added later with its then default: not a change
        changed = ", ".join(f"`{k}={v}`" for k, v in params.items() if k in base and base[k] != v) or "(default)"
        if "aligned" not in m:
            lines.append(f"| {name} | {changed} | – | – | – |" + " – |" * (len(COLUMNS) - 1))
            continue
        s, a = m["sft"], m["aligned"]
        lines.append(f"| {name} | {changed} | {s['pass@1']:.3f} ± {s['pass@1_stderr']:.3f} | "
                     f"{a['pass@1']:.3f} ± {a['pass@1_stderr']:.3f} | {a['pass@1'] - s['pass@1']:+.3f} | "
                     + " | ".join(f"{a[c]:.3f}" for c in COLUMNS[1:]) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    out = subprocess.run(["dvc", "exp", "show", "--json", *sys.argv[1:]], capture_output=True, text=True,
                         check=True).stdout
    sys.stdout.write(table(json.loads(out)))


if __name__ == "__main__":
    main()
