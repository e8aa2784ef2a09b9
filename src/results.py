"""The experiment table: every `dvc exp` of the current commit (and the commit itself) with the
aligned policy against SFT on pass@k and the text metrics, as Markdown. Δ pass@1 carries its paired
standard error (both policies on the same tasks), and so do the Δ pass@5 at the headline and at
evaluate's low temperature ("low T"): pass@1 up with pass@5 flat is sharpening, both up is learning.
Each row states its compute (optimizer steps / completions learned from) and, when the table holds an
`sft_more` run with as many optimizer steps on the same `evaluate.split`, its aligned pass@1 against
that equal-compute control, paired over tasks.

    python -m src.results [dvc exp show options, e.g. --rev <commit>] > RESULTS.md
"""
from __future__ import annotations

import json
import subprocess
import sys

COLUMNS = ("pass@1", "pass@5", "pass@1_greedy", "codebleu", "ruby")
CONTROL = "sft_more"   # ppo_or_dpo.method of the equal-compute control
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
            method = data.get("metrics", {}).get("metrics/ppo_or_dpo.json", {}).get("data", {})
            out.append((name, rev, params, {**metrics, "ppo_or_dpo": method}))
    return out


def compute(params: dict, m: dict) -> str:
    """A method's compute from its params and metrics: optimizer steps / completions it learned from
    (the reward stage's samples that rft and online_dpo reuse count: they are the same draw)."""
    method, steps = params.get("ppo_or_dpo.method"), m.get("steps")
    if steps is None:
        return "–"
    if method in ("rft", "online_dpo"):  # prompts x samples per prompt, every round (dvc exp show drops lists)
        completions = (m.get("prompts") or 0) * params.get(f"ppo_or_dpo.{method}.samples_per_prompt", 0) \
            * params.get(f"ppo_or_dpo.{method}.rounds", 0)
    elif method == "grpo":
        completions = steps * params.get("ppo_or_dpo.grpo.per_device_train_batch_size", 0)
    elif method == "ppo":
        completions = params.get("ppo_or_dpo.ppo.steps", 0) * params.get("ppo_or_dpo.ppo.batch_size", 0)
    else:
        completions = 0
    return f"{steps} / {completions:,}"


def run_rates(rev: str, policy: str) -> dict[str, float] | None:
    """Per-task pass rates of one policy of a run, from its eval samples in the DVC cache (None: absent)."""
    import dvc.api
    from dvc.exceptions import DvcException
    from dvc_data.index.index import DataIndexError

    from src.metrics.passk import task_rates
    try:
        return task_rates([json.loads(x) for x in dvc.api.read(f"data/eval/{policy}.jsonl", rev=rev).splitlines()],
                          greedy=False)
    except (OSError, DvcException, DataIndexError):  # samples (or the rev) not in this cache
        return None


def aligned_rates(rev: str) -> dict[str, float] | None:
    return run_rates(rev, "aligned")


def split_of(params: dict) -> str:
    return params.get("evaluate.split", "test")   # runs from before the key evaluated on test


def versus_control(runs: list, rates) -> dict[str, str]:
    """Per run name, aligned pass@1 minus its control's, paired over tasks from `rates(rev)` (per-task
    pass rates; the ± is left out when they are not available). A run's control is the first `sft_more`
    run evaluated on the same split with as many optimizer steps (equal compute); none, no entry."""
    from src.metrics.passk import paired_stderr

    def key(run) -> tuple:
        return split_of(run[2]), run[3].get("ppo_or_dpo", {}).get("steps")
    controls: dict[tuple, tuple] = {}
    for r in runs:
        if r[2].get("ppo_or_dpo.method") == CONTROL and "aligned" in r[3]:
            controls.setdefault(key(r), r)
    out = {}
    for name, rev, params, m in runs:
        ctrl = controls.get(key((name, rev, params, m)))
        if "aligned" not in m or ctrl is None:
            continue
        if rev == ctrl[1]:
            out[name] = "(control)"
            continue
        d = f"{m['aligned']['pass@1'] - ctrl[3]['aligned']['pass@1']:+.3f}"
        c_rates = rates(ctrl[1]) if rates else None
        a_rates = rates(rev) if rates and c_rates else None
        out[name] = d + (f" ± {paired_stderr(c_rates, a_rates):.3f}" if a_rates else "")
    return out


def paired_from_samples(rev: str) -> float | None:
    """The paired stderr of Δ pass@1 from a run's eval samples in the DVC cache, for runs made before
    evaluate wrote it; None when the samples are not in the cache."""
    from src.metrics.passk import paired_stderr
    sft, aligned = run_rates(rev, "sft"), run_rates(rev, "aligned")
    return paired_stderr(sft, aligned) if sft is not None and aligned is not None else None


def _delta(s: dict, a: dict, delta: dict, key: str) -> str:
    """aligned − sft for `key` with its paired stderr when the metrics have it; – for a run without it."""
    if not isinstance(a.get(key), (int, float)) or not isinstance(s.get(key), (int, float)):
        return "–"
    se = delta.get(f"{key}_stderr_paired")
    return f"{a[key] - s[key]:+.3f}" + (f" ± {se:.3f}" if se is not None else "")


def table(exps: list[dict], paired=None, rates=None) -> str:
    """The Markdown table; `paired(rev)` supplies Δ's paired stderr where the metrics lack it, `rates(rev)`
    the aligned policy's per-task pass rates for the paired Δ against the control."""
    runs = rows(exps)
    base = runs[0][2]
    vs = versus_control(runs, rates)
    width = 7 + len(COLUMNS) - 1 + len(DELTAS)
    lines = ["| experiment | changed params | steps / completions | SFT pass@1 | aligned pass@1 | Δ pass@1 | "
             "Δ vs control | "
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
        lines.append(f"| {name} | {changed} | {compute(params, m['ppo_or_dpo'])} | "
                     f"{s['pass@1']:.3f} ± {s['pass@1_stderr']:.3f} | "
                     f"{a['pass@1']:.3f} ± {a['pass@1_stderr']:.3f} | {d} | {vs.get(name, '–')} | "
                     + " | ".join(f"{a[c]:.3f}" if isinstance(a.get(c), (int, float)) else "–" for c in COLUMNS[1:])
                     + " | " + " | ".join(_delta(s, a, delta, key) for key, _ in DELTAS) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    out = subprocess.run(["dvc", "exp", "show", "--json", *sys.argv[1:]], capture_output=True, text=True,
                         check=True).stdout
    sys.stdout.write(table(json.loads(out), paired=paired_from_samples, rates=aligned_rates))


if __name__ == "__main__":
    main()
