"""Review report: the metrics against targets, `dvc metrics diff` against a base revision, the
experiment table and PNG plots of the committed plot data, as one Markdown file for a pull request;
with --timing, the stages' timing records (reports/timing/<stage>.json) gathered into one file.

    python -m src.report [--base main] [--out reports]   # writes reports/summary.md, reports/plots/*.png
    python -m src.report --timing                        # writes reports/timing.json from reports/timing/
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

from src.io import UserError, _atomic_write, read_json, run_cli, write_json, write_text
from src.results import table

STAGES = ("sft", "reward", "ppo_or_dpo")    # stages whose dvclive TSVs become one PNG each
POLICIES = ("sft", "aligned")
EVAL_PLOTS = ("targets", "pass_at_k", "by_group")
PIPELINE = ("prepare", "sft", "reward", "ppo_or_dpo", "evaluate", "compare")   # the timing table's row order

# (args after `dvc`, folder) -> stdout; tests pass a fake so they need no dvc repository.
Dvc = Callable[[list[str], Path], str]


def run_dvc(args: list[str], cwd: Path) -> str:
    # `python -m dvc` from this interpreter: the venv's dvc even when it is not on PATH.
    r = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"dvc {' '.join(args)} failed: {last}")
    return r.stdout


def _git(args: list[str], cwd: Path) -> str | None:
    r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def _fmt(x, sign: bool = False) -> str:
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return "–"
    return f"{x:+.4f}" if sign else f"{x:.4f}"


def targets_table(ev: dict) -> str:
    """metric | target | sft | aligned | delta | met; metrics with targets first, then the rest."""
    targets, met = ev.get("targets", {}), ev.get("met", {})
    delta = ev.get("delta", {}).get("aligned", {})
    scalars = {k for p in POLICIES for k, v in ev.get(p, {}).items()
               if isinstance(v, (int, float)) and not k.endswith("_stderr")}
    names = list(targets) + sorted(scalars - set(targets))
    lines = ["| metric | target | sft | aligned | delta | met |", "|---|---|---|---|---|---|"]
    for k in names:
        cells = []
        for p in POLICIES:
            m = ev.get(p, {})
            se = m.get(k + "_stderr") if k in m else None   # pass@1 and pass@1_greedy carry a stderr
            cells.append(_fmt(m.get(k)) + (f" ± {se:.4f}" if se is not None else ""))
        flags = ", ".join(f"{p} {'✓' if met[p][k] else '✗'}" for p in POLICIES if k in met.get(p, {}))
        dse = delta.get(k + "_stderr_paired")   # the standard error of the difference over the same tasks
        d = _fmt(delta.get(k), sign=True) + (f" ± {dse:.4f}" if dse is not None else "")
        lines.append(f"| {k} | {_fmt(targets.get(k))} | {cells[0]} | {cells[1]} | {d} | {flags or '–'} |")
    return "\n".join(lines) + "\n"


def metrics_diff(base: str, root: Path, dvc: Dvc = run_dvc) -> str:
    """`dvc metrics diff <base> --md`, or one line saying why there is nothing to compare."""
    base_rev = _git(["rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"], root)
    if base_rev is None:
        return f"Base revision `{base}` not found; no metrics diff.\n"
    dirty = _git(["status", "--porcelain", "--untracked-files=no"], root)
    if base_rev == _git(["rev-parse", "HEAD"], root) and dirty == "":
        return f"Base revision `{base}` is HEAD and the tree is clean; nothing to compare.\n"
    out = dvc(["metrics", "diff", base, "--md"], root)
    # Without changes dvc prints only the header and the separator row.
    if len([x for x in out.splitlines() if x.startswith("|")]) <= 2:
        return f"No metric changed against `{base}`.\n"
    return out.rstrip("\n") + "\n"


def experiments(root: Path, dvc: Dvc = run_dvc) -> str:
    """The experiment table of HEAD (src.results); just the baseline row when there are none."""
    exps = json.loads(dvc(["exp", "show", "--json"], root) or "[]")
    if not any(r.get("rev") != "workspace" for r in exps):
        return "No committed baseline to show.\n"
    return table(exps)


def read_tsv(path: Path) -> tuple[list[float], list[float]]:
    """(steps, values) of a dvclive TSV with columns step, <metric>."""
    steps, values = [], []
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, row in enumerate(csv.reader(f, delimiter="\t"), 1):
            if lineno == 1 or not row:
                continue
            try:
                steps.append(float(row[0]))
                values.append(float(row[1]))
            except (IndexError, ValueError):
                raise UserError(f"{path}:{lineno}: expected two numbers, step and value") from None
    return steps, values


def _pyplot():
    # Imported here: matplotlib is slow to import, and Agg renders without a display.
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_png(fig, path: Path) -> None:
    """Atomic write, without the Software tag: the bytes depend only on the data and the renderer."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    _pyplot().close(fig)
    _atomic_write(path, lambda f: f.write(buf.getvalue()), binary=True)


def plot_stage(folder: Path, path: Path) -> None:
    """One small subplot per dvclive metric of a stage."""
    tsvs = sorted(folder.rglob("*.tsv"), key=lambda p: p.relative_to(folder).as_posix())
    if not tsvs:
        raise UserError(f"{folder}: no .tsv plot data (run `dvc repro` first)")
    cols = 4
    rows = -(-len(tsvs) // cols)
    fig, axes = _pyplot().subplots(rows, cols, figsize=(3.2 * cols, 2.3 * rows), squeeze=False)
    for ax, tsv in zip(axes.flat, tsvs):
        steps, values = read_tsv(tsv)
        ax.plot(steps, values, marker="." if len(steps) < 20 else None)
        ax.set_title(tsv.relative_to(folder).with_suffix("").as_posix(), fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(tsvs):]:
        ax.axis("off")
    fig.suptitle(f"{path.stem}: training metrics by step")
    fig.tight_layout()
    save_png(fig, path)


def _by_policy(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows by policy, and by sampling temperature where rows carry one (pass@k at two temperatures)."""
    out: dict[str, list[dict]] = {}
    for r in rows:
        label = r.get("policy", "all") + (f" T={r['temperature']}" if r.get("temperature") is not None else "")
        out.setdefault(label, []).append(r)
    return out


def plot_eval(name: str, rows: list[dict], path: Path) -> None:
    """targets: bars per metric and policy with the target marked; pass_at_k: lines over k, one per
    policy and temperature; by_group: horizontal bars of pass@1 per task group; the policies side by side."""
    plt = _pyplot()
    groups = _by_policy(rows)
    width = 0.8 / len(groups)
    if name == "pass_at_k":
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for policy, rs in groups.items():
            ax.plot([r["k"] for r in rs], [r["pass_at_k"] for r in rs], marker="o", label=policy)
        ax.set(xlabel="k", ylabel="pass@k", xticks=sorted({r["k"] for r in rows}))
    else:
        key, value = ("metric", "value") if name == "targets" else ("group", "pass@1")
        labels = list(dict.fromkeys(r[key] for r in rows))
        fig, ax = plt.subplots(figsize=(7, 3.5) if name == "targets" else (7, 0.35 * len(labels) + 1.5))
        bar = ax.bar if name == "targets" else ax.barh
        for i, (policy, rs) in enumerate(groups.items()):
            at = {r[key]: r[value] for r in rs}
            bar([j + i * width for j, lab in enumerate(labels) if lab in at],
                [at[lab] for lab in labels if lab in at], width, label=policy)
        ticks = [j + width * (len(groups) - 1) / 2 for j in range(len(labels))]
        if name == "targets":
            target = {r["metric"]: r["target"] for r in rows}
            ax.hlines([target[m] for m in labels], [t - 0.45 for t in ticks], [t + 0.45 for t in ticks],
                      colors="black", label="target")
            ax.set(xticks=ticks, xticklabels=labels, ylabel="score",
                   ylim=(0, 1.2 * max(max(r[value], r["target"]) for r in rows)))
        else:
            ax.set(yticks=ticks, yticklabels=labels, xlabel="pass@1")
            ax.invert_yaxis()
    ax.set_title(f"evaluate: {name}")
    ax.legend(fontsize=8, ncol=3 if name == "targets" else 1)   # targets: one row, above the bars
    fig.tight_layout()
    save_png(fig, path)


def plots(root: Path, out: Path) -> list[Path]:
    """Render every stage's and the evaluation's plot data; the PNG paths, relative to `out`."""
    pngs = []
    for stage in STAGES:
        plot_stage(root / "plots" / stage / "plots" / "metrics", out / "plots" / f"{stage}.png")
        pngs.append(Path("plots") / f"{stage}.png")
    for name in EVAL_PLOTS:
        src = root / "plots" / "eval" / f"{name}.json"
        rows = read_json(src)
        try:
            if not rows or not isinstance(rows, list):
                raise TypeError
            plot_eval(name, rows, out / "plots" / f"eval_{name}.png")
        except (KeyError, TypeError, AttributeError):
            raise UserError(f"{src}: expected a non-empty list of rows, as `evaluate` writes") from None
        pngs.append(Path("plots") / f"eval_{name}.png")
    return pngs


def gather_timing(folder: Path) -> dict:
    """{"stages": {stage: record}, "machine": ...} from the per-stage timing records in `folder`
    (src.io.write_timing), stages in pipeline order; records made on different machines list them all."""
    files = {p.stem: p for p in folder.glob("*.json")}
    if not files:
        raise UserError(f"{folder}: no timing records (run the pipeline first: `dvc repro`)")
    def rank(stage: str) -> int:   # evaluate@sft ranks as evaluate
        name = stage.split("@")[0]
        return PIPELINE.index(name) if name in PIPELINE else len(PIPELINE)
    order = sorted(files, key=lambda s: (rank(s), s))
    stages, machines = {}, []
    for stage in order:
        record = read_json(files[stage])
        if not isinstance(record, dict) or not isinstance(record.get("wall_s"), (int, float)):
            raise UserError(f"{files[stage]}: expected a timing record with a number wall_s")
        m = record.pop("machine", None)
        if m and m not in machines:
            machines.append(m)
        stages[stage] = record
    return {"stages": stages, "machine": " | ".join(machines) or "unknown"}


def timing_table(timing: dict) -> str:
    """stage | wall time | share | work: one row per stage, then the total."""
    stages = timing.get("stages", {})
    total = sum(r.get("wall_s", 0) for r in stages.values())
    lines = ["| stage | wall (s) | share | work |", "|---|---|---|---|"]
    def flat(d: dict, prefix: str = "") -> dict:   # {"policies": {"sft": {"generate_s": 1}}} -> policies.sft.generate_s
        return {k2: v2 for k, v in d.items()
                for k2, v2 in (flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v}).items()}

    for stage, r in stages.items():
        work = ", ".join(f"{k} {v}" for k, v in flat(r).items()
                         if k not in ("wall_s", "finished") and isinstance(v, (int, float, str)))
        lines.append(f"| {stage} | {r.get('wall_s', 0):.1f} | {r.get('wall_s', 0) / (total or 1.0):.0%} | {work or '–'} |")
    lines.append(f"| total | {total:.1f} | | |")
    return "\n".join(lines) + f"\n\nMachine: {timing.get('machine', 'unknown')}.\n"


def write_timing_summary(folder: str | Path = "reports/timing", out: str | Path = "reports/timing.json") -> dict:
    """Gather the stages' timing records into `out` (committed: one machine's figures for a run)."""
    timing = gather_timing(Path(folder))
    write_json(out, timing)
    return timing


def main(root: str | Path = ".", out: str | Path = "reports", base: str = "main", dvc: Dvc = run_dvc) -> str:
    """Write <out>/summary.md and <out>/plots/*.png from the repository at `root`; returns the summary."""
    root, out = Path(root), Path(out)
    ev = read_json(root / "metrics" / "eval.json")   # first, so a missing run fails before any work
    if not isinstance(ev, dict) or not any(p in ev for p in POLICIES):
        raise UserError(f"{root / 'metrics' / 'eval.json'}: no per-policy metrics (sft, aligned)")
    pngs = plots(root, out)
    head = f"`{_git(['rev-parse', '--short', 'HEAD'], root) or 'no commit'}`"
    if _git(["status", "--porcelain", "--untracked-files=no"], root):
        head += " + uncommitted changes"
    summary = "\n".join([
        "# Review report", "",
        f"Commit {head}, {ev.get('tasks', '?')} test tasks, {ev.get('n_samples', '?')} samples per task"
        + sampling(ev) + ". "
        "Written by `make report` (`python -m src.report`).", "",
        "## Metrics against targets", "", targets_table(ev),
        f"## Metrics diff against `{base}`", "", metrics_diff(base, root, dvc),
        "## Experiments", "", experiments(root, dvc),
        *timing_section(out / "timing.json"),
        "## Plots", "", *[f"![{p.stem}]({p.as_posix()})\n" for p in pngs]])
    write_text(out / "summary.md", summary)
    return summary


def sampling(ev: dict) -> str:
    """ at temperature 0.8 (and again at 0.2: the `_lowtemp` rows), as evaluate recorded them; "" before it did."""
    if ev.get("temperature") is None:
        return ""
    low = ev.get("low_temperature")
    return f" at temperature {ev['temperature']}" + (f" (and at {low}: the `_lowtemp` rows)" if low is not None else "")


def timing_section(path: Path) -> list[str]:
    """The summary's per-stage timing table, from reports/timing.json when present."""
    if not path.is_file():
        return []
    return ["## Where the time went", "", f"From `{path.name}` (not reproducible: one run on one machine).", "",
            timing_table(read_json(path))]


def cli(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="main", help="revision for `dvc metrics diff` (default: main)")
    ap.add_argument("--out", default="reports", help="output folder (default: reports)")
    ap.add_argument("--timing", action="store_true",
                    help="only gather <out>/timing/<stage>.json into <out>/timing.json and print the table")
    a = ap.parse_args(argv)
    if a.timing:
        out = Path(a.out)
        run_cli(lambda: print(timing_table(write_timing_summary(out / "timing", out / "timing.json")), end=""))
    else:
        run_cli(lambda: main(".", a.out, a.base))


if __name__ == "__main__":
    cli()
