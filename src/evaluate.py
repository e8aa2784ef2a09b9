"""`evaluate` stage: sample completions for every test task from each policy, run them in the
sandbox, score them with every metric and compare with the targets.

Sampling: `evaluate.n_samples` per task at `base.temperature` (the one temperature of the rollouts: the
headline pass@k and every text metric), the same number at `evaluate.low_temperature` (pass@k only,
keys `pass@<k>_lowtemp`: sharpening lifts pass@1 there and leaves pass@k flat, learning lifts both) and
one greedy decode. Per-sample rows: data/eval/<policy>.jsonl (headline and greedy) and
data/eval/low_temperature/<policy>.jsonl.

    python -m src.evaluate --params params.yaml --data data/prepared --models models \
        --metrics metrics/eval.json --samples data/eval --plots plots/eval
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
from src.sandbox import STATUSES, Job, SandboxParams, execute
from src.tasks import TASK_COLUMNS

LOW = "_lowtemp"   # metric-key suffix of the low-temperature samples: pass@1_lowtemp, pass@5_lowtemp, ...


@dataclasses.dataclass
class EvaluateParams:
    policies: list[str]              # model folders under --models, e.g. [sft, aligned]
    max_tasks: int = bounded(0)      # 0 = every test task
    n_samples: int = bounded(1)      # sampled completions per task, at each temperature
    low_temperature: Optional[float] = bounded(0)   # a second pass@k at this temperature; null = skip
    top_p: float = bounded(0, 1)
    max_new_tokens: int = bounded(1)
    batch_size: int = bounded(1)
    greedy: bool                     # also decode greedily once per task (pass@1_greedy)
    prompt_format: Literal["completion", "chat"]   # chat: the tokenizer's chat template (src/prompting.py)
    instruction: str                 # chat: what the user asks before the fenced prompt
    ks: list[int]
    text_tokenize: Literal["code", "whitespace"]
    bertscore_model: str             # `minilm` = the packaged all-MiniLM-L6-v2; or a hub id / folder
    bertscore_layers: int = bounded(1)
    bertscore_batch_size: int = bounded(1)
    codebleu_weights: list[float]
    targets: dict[str, float]        # metric -> minimum; `met` says which are reached


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
    rows = [{"task_id": t["task_id"], "completion": c, "greedy": False, **r.to_dict(), "ruby_level": lvl}
            for (t, c), r, (_, lvl) in zip(flat, res, rb)]
    rows += [{"task_id": t["task_id"], "completion": c, "greedy": True, **r.to_dict()}
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
    low_rows = [{"task_id": t["task_id"], "completion": c, "greedy": False, **r.to_dict()}
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


def main(params_path: str, data_dir: str, models_dir: str, metrics_path: str, samples_dir: str,
         plots_dir: str, timing_path: str | None = None) -> dict:
    started = time.perf_counter()
    raw = read_params(params_path)
    base = parse_section(BaseParams, raw.get("base"), "base")
    sandbox = parse_section(SandboxParams, raw.get("sandbox"), "sandbox")
    p = parse_section(EvaluateParams, raw.get("evaluate"), "evaluate")

    from src import distributed
    from src.generation import generate
    from src.metrics.passk import policy_delta
    from src.models import load_policy
    from src.prompting import answer_to_body, chat_prompt
    from src.training import seed_everything

    seed_everything(base.seed, base.num_threads)
    tasks = read_split(Path(data_dir) / "test.jsonl", TASK_COLUMNS)
    if p.max_tasks:
        tasks = tasks[:p.max_tasks]
    chat = p.prompt_format == "chat"
    out: dict = {"targets": dict(p.targets), "met": {}, "tasks": len(tasks), "n_samples": p.n_samples,
                 "temperature": base.temperature, "low_temperature": p.low_temperature}
    bars, passk_rows, group_rows, sample_rows, low_rows, seconds = [], [], [], {}, {}, {}
    for name in p.policies:
        t0 = time.time()
        model, tok = load_policy(str(Path(models_dir) / name))
        model.to(distributed.device())
        if chat and not getattr(tok, "chat_template", None):
            raise UserError(f"params key 'evaluate.prompt_format': chat, but {Path(models_dir) / name} has no "
                            "chat template (use completion)")
        prompts = [chat_prompt(tok, t["prompt"], p.instruction) if chat else t["prompt"] for t in tasks]

        def sample(n: int, temperature: float, top_p: float) -> list[list[str]]:
            out = generate(model, tok, prompts, n, temperature, top_p, p.max_new_tokens, p.batch_size,
                           base.seed, progress=True, body_only=not chat)
            return [[answer_to_body(a, t["entry_point"]) for a in answers] if chat else answers
                    for t, answers in zip(tasks, out)]
        samples = sample(p.n_samples, base.temperature, p.top_p)
        greedy = [g[0] for g in sample(1, 0.0, 1.0)] if p.greedy else None
        low = sample(p.n_samples, p.low_temperature, p.top_p) if p.low_temperature is not None else None
        if not distributed.is_main():
            continue  # processes share the generation (the slow part); the main one scores
        t1 = time.time()
        metrics, rows, by_group, low_rows[name] = score_policy(tasks, samples, greedy, p, sandbox,
                                                               str(distributed.device()), low)
        seconds[name] = {"generate_s": round(t1 - t0, 3), "score_s": round(time.time() - t1, 3)}
        write_jsonl(Path(samples_dir) / f"{name}.jsonl", rows)
        if low is not None:   # a folder of its own: <policy>.jsonl keeps the headline and greedy rows only
            write_jsonl(Path(samples_dir) / "low_temperature" / f"{name}.jsonl", low_rows[name])
        sample_rows[name] = rows
        out[name] = metrics
        out["met"][name] = {k: bool(metrics.get(k, -1) >= v) for k, v in p.targets.items()}
        bars += [{"policy": name, "metric": k, "value": metrics.get(k), "target": v} for k, v in p.targets.items()]
        for suffix, temperature in (("", base.temperature), (LOW, p.low_temperature)):
            passk_rows += [{"policy": name, "temperature": temperature, "k": int(k_), "pass_at_k": v}
                           for k, v in metrics.items() for k_ in re.findall(rf"^pass@(\d+){suffix}$", k)]
        group_rows += [{"policy": name, "group": g, "pass@1": round(v, 4)} for g, v in by_group.items()]
        print(f"evaluate {name}: {time.time() - t0:.0f}s " + ", ".join(
            f"{k}={v}" for k, v in metrics.items() if not isinstance(v, dict)))
    if not distributed.is_main():
        return {}
    if "sft" in p.policies and len(p.policies) > 1:
        out["delta"] = {n: policy_delta(out["sft"], out[n], sample_rows["sft"], sample_rows[n],
                                        {LOW: (low_rows["sft"], low_rows[n])} if p.low_temperature is not None else {})
                        for n in p.policies if n != "sft"}
    write_json(metrics_path, out)
    write_json(Path(plots_dir) / "targets.json", bars)
    write_json(Path(plots_dir) / "pass_at_k.json", passk_rows)
    write_json(Path(plots_dir) / "by_group.json", group_rows)
    per_policy = len(tasks) * (p.n_samples * (1 + (p.low_temperature is not None)) + p.greedy)  # = programs run
    write_timing(timing_path, started, policies=seconds, completions_sampled=per_policy * len(p.policies),
                 sandbox_programs=per_policy * len(p.policies))
    return out


def cli(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default="data/prepared")
    ap.add_argument("--models", default="models")
    ap.add_argument("--metrics", default="metrics/eval.json")
    ap.add_argument("--samples", default="data/eval")
    ap.add_argument("--plots", default="plots/eval")
    ap.add_argument("--timing", default=None, help="the stage's timing record (JSON)")
    a = ap.parse_args(argv)
    run_cli(lambda: main(a.params, a.data, a.models, a.metrics, a.samples, a.plots, a.timing))


if __name__ == "__main__":
    cli()
