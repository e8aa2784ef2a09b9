"""`evaluate` stage, one per policy (`evaluate@sft`, `evaluate@aligned`): sample completions for every
task of `evaluate.split` (test; val to choose settings) from a policy, run them in the sandbox and score
them with every metric. `src.compare` then writes metrics/eval.json from the policies' records; a
policy whose model and params did not change is not evaluated again (an alignment ablation re-scores
the aligned policy only).

Sampling: `evaluate.n_samples` per task at `base.temperature` (the one temperature of the rollouts: the
headline pass@k and every text metric), the same number at `evaluate.low_temperature` (pass@k only,
keys `pass@<k>_lowtemp`: sharpening lifts pass@1 there and leaves pass@k flat, learning lifts both) and
one greedy decode. Per policy in data/eval/: <policy>.jsonl (headline and greedy rows),
low_temperature/<policy>.jsonl and <policy>.json (its metrics, pass@1 by group and settings).

    python -m src.evaluate --params params.yaml --data data/prepared --models models --policy sft \
        --samples data/eval                    # one policy (the DVC stage)
    python -m src.evaluate --params params.yaml --data data/prepared --models models \
        --metrics metrics/eval.json --samples data/eval --plots plots/eval    # every policy, combined
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Literal, Optional

from src.io import UserError, read_split, run_cli, write_json, write_jsonl, write_timing
from src.params import BaseParams, bounded, parse_section, read_params
from src.prompting import check_chat
from src.sandbox import STATUSES, Job, SandboxParams, execute
from src.tasks import TASK_COLUMNS

LOW = "_lowtemp"   # metric-key suffix of the low-temperature samples: pass@1_lowtemp, pass@5_lowtemp, ...


@dataclasses.dataclass
class EvaluateParams:
    policies: list[str]              # model folders under --models, e.g. [sft, aligned]
    split: Literal["test", "val"]    # val: choose settings there; test: report once per setting
    max_tasks: int = bounded(0)      # 0 = every test task
    n_samples: int = bounded(1)      # sampled completions per task, at each temperature
    low_temperature: Optional[float] = bounded(0)   # a second pass@k at this temperature; null = skip
    top_p: float = bounded(0, 1)
    max_new_tokens: int = bounded(1)
    batch_size: int = bounded(1)
    greedy: bool                     # also decode greedily once per task (pass@1_greedy)
    ks: list[int]
    text_tokenize: Literal["code", "whitespace"]
    bertscore_model: str             # `minilm` = the packaged all-MiniLM-L6-v2; or a hub id / folder
    bertscore_layers: int = bounded(1)
    bertscore_batch_size: int = bounded(1)
    codebleu_weights: list[float]
    targets: dict[str, float]        # metric -> minimum; `met` says which are reached


def verdict_row(r) -> dict:
    """A sandbox result as a sample row keeps it: without its wall-clock duration, so that a re-run
    writes the same bytes and dvc.lock stays as it was when nothing changed."""
    row = r.to_dict()
    del row["duration_s"]
    return row


def score_policy(tasks: list[dict], samples: list[list[str]], greedy: list[str] | None,
                 p: EvaluateParams, sandbox: SandboxParams, device: str = "cpu",
                 low: list[list[str]] | None = None) -> tuple[dict, list[dict], dict, list[dict]]:
    """Every metric for one policy; also the per-sample rows, pass@1 per family/difficulty and the
    low-temperature rows. The text metrics score the headline samples (`samples`) only."""
    from src.metrics import passk, quality, text
    from src.metrics.ruby import ruby_pair
    from src.metrics.text import body

    flat = [(t, c) for t, cs in zip(tasks, samples) for c in cs]
    g_flat = [(t, c) for t, c in zip(tasks, greedy or [])]
    l_flat = [(t, c) for t, cs in zip(tasks, low or []) for c in cs]
    jobs = [Job(t["prompt"], c, t["test"], t["entry_point"]) for t, c in flat + g_flat + l_flat]
    results = execute(jobs, sandbox, progress=True)   # one batch: the workers stay busy
    res, g_res, l_res = (results[:len(flat)], results[len(flat):len(flat) + len(g_flat)],
                         results[len(flat) + len(g_flat):])

    rb = [ruby_pair(t["prompt"], c, t["canonical_solution"]) for t, c in flat]
    rows = [{"task_id": t["task_id"], "completion": c, "greedy": False, **verdict_row(r), "ruby_level": lvl}
            for (t, c), r, (_, lvl) in zip(flat, res, rb)]
    rows += [{"task_id": t["task_id"], "completion": c, "greedy": True, **verdict_row(r)}
             for (t, c), r in zip(g_flat, g_res)]
    counts = passk.task_counts(rows, greedy=False)
    cands = [body(c) for _, c in flat]
    refs = [body(t["canonical_solution"]) for t, _ in flat]
    full = [t["prompt"] + c for t, c in flat]
    m = {
        **passk.pass_at_k_table(counts, p.ks),
        "pass@1_stderr": passk.pass_at_1_stderr(counts),
        "exec_score": sum(r.score for r in res) / len(res),
        "bertscore": text.bertscore(cands, refs, p.bertscore_model, p.bertscore_layers, p.bertscore_batch_size,
                                    device),
        "codebleu": text.codebleu(cands, refs, tuple(p.codebleu_weights)),
        "bleu": text.bleu(cands, refs, p.text_tokenize),
        "rouge": text.rouge_l(cands, refs, p.text_tokenize),
        "ruby": sum(s for s, _ in rb) / len(rb),
        **quality.quality_summary(full),
    }
    if g_res:
        m["pass@1_greedy"] = sum(r.passed for r in g_res) / len(g_res)
        m["pass@1_greedy_stderr"] = passk.proportion_stderr(m["pass@1_greedy"], len(g_res))
    low_rows = [{"task_id": t["task_id"], "completion": c, "greedy": False, **verdict_row(r)}
                for (t, c), r in zip(l_flat, l_res)]
    if low_rows:
        low_counts = passk.task_counts(low_rows, greedy=False)
        m.update({k + LOW: v for k, v in passk.pass_at_k_table(low_counts, p.ks).items()})
        m[f"pass@1{LOW}_stderr"] = passk.pass_at_1_stderr(low_counts)

    groups: dict[str, list[float]] = defaultdict(list)
    for t in tasks:
        n, c = counts[t["task_id"]]
        for key in ("family", "difficulty", "heldout"):   # heldout: an op combination never seen in train
            if t.get(key) is not None:
                groups[f"{key}={t[key]}"].append(c / n)
    by_group = {g: sum(v) / len(v) for g, v in sorted(groups.items())}

    status = dict.fromkeys(STATUSES, 0)  # every verdict, so a forged value shows as a count, 0 or not
    for r in res:
        status[r.status] += 1
    m["status"] = dict(sorted(status.items()))
    m["ruby_levels"] = {lvl: sum(1 for _, x in rb if x == lvl) for lvl in ("graph", "tree", "string")}
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()}, rows, by_group, low_rows


def _sampler(model, tok, tasks: list[dict], p: EvaluateParams, base: BaseParams):
    """sample(n, temperature, top_p) -> n bodies per task, the policy asked as base.prompt_format says."""
    from src.generation import sample_bodies

    def sample(n: int, temperature: float, top_p: float) -> list[list[str]]:
        return sample_bodies(model, tok, tasks, n, temperature, top_p, p.max_new_tokens, p.batch_size,
                             base.seed, base.chat, progress=True)[0]
    return sample


def evaluate_policy(name: str, model_dir: str, tasks: list[dict], p: EvaluateParams, base: BaseParams,
                    sandbox: SandboxParams, samples_dir: str) -> dict | None:
    """Sample and score one policy; write its rows and its record `<samples_dir>/<name>.json` (metrics,
    pass@1 by group, sampling settings) for `combine`. None in the processes that only helped sample."""
    from src import distributed
    from src.models import load_policy
    t0 = time.time()
    model, tok = load_policy(model_dir)
    model.to(distributed.device())
    check_chat(tok, base, model_dir)
    sample = _sampler(model, tok, tasks, p, base)
    samples = sample(p.n_samples, base.temperature, p.top_p)
    greedy = [g[0] for g in sample(1, 0.0, 1.0)] if p.greedy else None
    low = sample(p.n_samples, p.low_temperature, p.top_p) if p.low_temperature is not None else None
    if not distributed.is_main():
        return None  # processes share the generation (the slow part); the main one scores
    t1 = time.time()
    metrics, rows, by_group, low_rows = score_policy(tasks, samples, greedy, p, sandbox,
                                                     str(distributed.device()), low)
    # the low-temperature rows get a folder of their own (<policy>.jsonl keeps the headline and greedy
    # rows), written empty when there are none so that the file a DVC stage declares always exists
    write_jsonl(Path(samples_dir) / f"{name}.jsonl", rows)
    write_jsonl(Path(samples_dir) / "low_temperature" / f"{name}.jsonl", low_rows)
    record = {"split": p.split, "tasks": len(tasks), "n_samples": p.n_samples, "temperature": base.temperature,
              "low_temperature": p.low_temperature, "metrics": metrics, "by_group": by_group}
    write_json(Path(samples_dir) / f"{name}.json", record)
    print(f"evaluate {name}: {time.time() - t0:.0f}s " + ", ".join(
        f"{k}={v}" for k, v in metrics.items() if not isinstance(v, dict)))
    return {"record": record, "seconds": {"generate_s": round(t1 - t0, 3), "score_s": round(time.time() - t1, 3)}}


def combine(p: EvaluateParams, samples_dir: str, metrics_path: str, plots_dir: str) -> dict:
    """metrics/eval.json and the plot data from the policies' records and rows (`evaluate_policy`):
    each policy's metrics, the targets met, and every policy's delta against `sft` with paired
    standard errors from the per-sample rows."""
    from src.io import read_json, read_jsonl
    from src.metrics.passk import policy_delta
    folder = Path(samples_dir)
    records = {}
    for name in p.policies:
        path = folder / f"{name}.json"
        if not path.exists():
            raise UserError(f"{path}: no evaluation of policy {name!r} (evaluate it first: "
                            f"`dvc repro evaluate@{name}`)")
        records[name] = read_json(path)
    first = records[p.policies[0]]
    for name, r in records.items():   # deltas are paired: every policy on the same tasks and settings
        if any(r.get(k) != first.get(k) for k in ("split", "tasks", "n_samples", "temperature", "low_temperature")):
            raise UserError(f"{folder / (name + '.json')}: evaluated with other settings than "
                            f"{folder / (p.policies[0] + '.json')} (split, tasks, samples or temperatures)")
    out: dict = {"targets": dict(p.targets), "met": {}, "split": first.get("split", "test"),
                 **{k: first.get(k) for k in ("tasks", "n_samples", "temperature", "low_temperature")}}
    bars, passk_rows, group_rows = [], [], []
    for name, r in records.items():
        metrics = r["metrics"]
        out[name] = metrics
        out["met"][name] = {k: bool(metrics.get(k, -1) >= v) for k, v in p.targets.items()}
        bars += [{"policy": name, "metric": k, "value": metrics.get(k), "target": v} for k, v in p.targets.items()]
        for suffix, temperature in (("", r["temperature"]), (LOW, r["low_temperature"])):
            passk_rows += [{"policy": name, "temperature": temperature, "k": int(k_), "pass_at_k": v}
                           for k, v in metrics.items() for k_ in re.findall(rf"^pass@(\d+){suffix}$", k)]
        group_rows += [{"policy": name, "group": g, "pass@1": round(v, 4)} for g, v in r["by_group"].items()]
    if "sft" in records and len(records) > 1:
        rows = {n: read_jsonl(folder / f"{n}.jsonl") for n in records}
        low = ({n: read_jsonl(folder / "low_temperature" / f"{n}.jsonl") for n in records}
               if first.get("low_temperature") is not None else None)
        out["delta"] = {n: policy_delta(out["sft"], out[n], rows["sft"], rows[n],
                                        {LOW: (low["sft"], low[n])} if low else {})
                        for n in records if n != "sft"}
    write_json(metrics_path, out)
    write_json(Path(plots_dir) / "targets.json", bars)
    write_json(Path(plots_dir) / "pass_at_k.json", passk_rows)
    write_json(Path(plots_dir) / "by_group.json", group_rows)
    return out


def load(params_path: str, data_dir: str):
    """The params sections evaluate reads and the tasks of `evaluate.split` (first max_tasks)."""
    raw = read_params(params_path)
    base = parse_section(BaseParams, raw.get("base"), "base")
    sandbox = parse_section(SandboxParams, raw.get("sandbox"), "sandbox")
    p = parse_section(EvaluateParams, raw.get("evaluate"), "evaluate")
    tasks = read_split(Path(data_dir) / f"{p.split}.jsonl", TASK_COLUMNS)
    return base, sandbox, p, tasks[:p.max_tasks] if p.max_tasks else tasks


def main(params_path: str, data_dir: str, models_dir: str, metrics_path: str, samples_dir: str,
         plots_dir: str, timing_path: str | None = None, policy: str | None = None) -> dict:
    """Evaluate every policy of `evaluate.policies` (models_dir/<name>) and combine them; with `policy`,
    that one only (a stage per policy; `src.compare` combines them)."""
    started = time.perf_counter()
    base, sandbox, p, tasks = load(params_path, data_dir)
    from src import distributed
    from src.training import seed_everything
    names = [policy] if policy else p.policies
    done, seconds = {}, {}
    for name in names:
        seed_everything(base.seed, base.num_threads)   # each policy's draws as if it were evaluated alone
        r = evaluate_policy(name, str(Path(models_dir) / name), tasks, p, base, sandbox, samples_dir)
        if r is not None:
            done[name], seconds[name] = r["record"], r["seconds"]
    if not distributed.is_main():
        return {}
    per_policy = len(tasks) * (p.n_samples * (1 + (p.low_temperature is not None)) + p.greedy)  # = programs run
    write_timing(timing_path, started, policies=seconds, completions_sampled=per_policy * len(names),
                 sandbox_programs=per_policy * len(names))
    return done if policy else combine(p, samples_dir, metrics_path, plots_dir)


def cli(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default="data/prepared")
    ap.add_argument("--models", default="models")
    ap.add_argument("--metrics", default="metrics/eval.json")
    ap.add_argument("--samples", default="data/eval")
    ap.add_argument("--plots", default="plots/eval")
    ap.add_argument("--timing", default=None, help="the stage's timing record (JSON)")
    ap.add_argument("--policy", default=None,
                    help="evaluate this policy (a folder under --models) only, and write no metrics file")
    a = ap.parse_args(argv)
    run_cli(lambda: main(a.params, a.data, a.models, a.metrics, a.samples, a.plots, a.timing, a.policy))


if __name__ == "__main__":
    cli()
