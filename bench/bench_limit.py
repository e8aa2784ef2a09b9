"""SFT and sampling throughput of the default model as a share of what this machine's matmul can do at
the model's own shapes, measured in the same run.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_limit [--threads 2] [--steps 12] [--tasks 256]

The model is the default shape of params.yaml (sft: layers, width, heads, vocabulary), randomly
initialised, with a byte-level BPE trained on synthetic tasks (src.tasks.synthetic).
- The limit: torch.matmul FLOP/s over the model's linear layers at a training batch's shapes (rows =
  sequences x padded length) and at a decoding step's (rows = the sampling batch).
- SFT: forward + backward + AdamW on random batches of an optimizer step's tasks (per-device batch x
  accumulation; prompt + reference, padded to the longest as one batch: the pipeline's micro-batches of
  similar lengths pad less): 6 x linear weights FLOPs per position
  (attention aside). "real" counts non-padding tokens only: the useful share. The pipeline's own SFT rate
  (TRL trainer: logging, evaluation, checkpoints included) is read from reports/timing.json if present.
- Sampling: src.generation.generate on the tasks' prompts as the reward stage samples them (reward:
  samples_per_task, top_p, max_new_tokens, gen_batch_size; base.temperature): 2 x linear weights FLOPs
  per kept token plus the prompts' positions (each prompt computed once for its samples).
A random model writes rubbish and rarely stops; `--model models/sft` samples the trained policy instead.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from bench.bench_generation import build, linear_shapes, matmul_flops  # noqa: E402
from src import generation  # noqa: E402
from src.params import read_params  # noqa: E402

SEED = 1234


def sft_rate(model, tok, tasks, batch: int, steps: int) -> tuple[float, float, int]:
    """(padded positions/s, real tokens/s, mean padded rows) of plain training steps."""
    texts = [t["prompt"] + t["canonical_solution"] for t in tasks]
    gen = torch.Generator().manual_seed(SEED)
    batches = [[texts[i] for i in torch.randperm(len(texts), generator=gen)[:batch].tolist()] for _ in range(steps + 2)]
    tok.padding_side = "right"
    encs = [tok(b, return_tensors="pt", padding=True) for b in batches]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    for i, enc in enumerate(encs):
        if i == 2:
            t0 = time.perf_counter()
        model(**enc, labels=enc.input_ids).loss.backward()
        opt.step()
        opt.zero_grad()
    sec = time.perf_counter() - t0
    padded = sum(e.input_ids.numel() for e in encs[2:])
    real = sum(int(e.attention_mask.sum()) for e in encs[2:])
    model.eval()
    return padded / sec, real / sec, padded // steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=int(read_params()["base"]["num_threads"]))
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--tasks", type=int, default=256)
    ap.add_argument("--model", default=None, help="a saved policy folder for the sampling part (e.g. models/sft)")
    args = ap.parse_args()
    from src.tasks.synthetic import generate as synthetic

    torch.set_num_threads(args.threads)
    params = read_params()
    tasks = synthetic(args.tasks, seed=SEED)
    model, tok = build(tasks, argparse.Namespace(model=None))
    shapes = linear_shapes(model.config)
    n_linear = sum(k * n for k, n in shapes)
    train = params["sft"]["train"]
    batch = train["per_device_train_batch_size"] * train.get("gradient_accumulation_steps", 1)  # one optimizer step's
    print(f"default model: {n_linear / 1e6:.2f}M weights in linear layers; {args.threads} thread(s)")

    padded, real, rows = sft_rate(model, tok, tasks, batch, args.steps)
    # backward is two matmuls per forward one: the limit at training shapes is the forward's rate
    limit_train = matmul_flops(rows, shapes, args.threads)
    sft_flops = 6 * n_linear * padded
    print(f"\nmatmul limit at a training batch's shapes ({rows} rows): {limit_train / 1e9:.1f} GFLOP/s")
    print(f"SFT (plain loop, batch {batch}): {padded:.0f} positions/s = {sft_flops / 1e9:.1f} GFLOP/s, "
          f"{sft_flops / limit_train:.0%} of the limit; useful (non-padding) tokens {real:.0f}/s, "
          f"{6 * n_linear * real / limit_train:.0%} of the limit")
    timing = ROOT / "reports/timing.json"
    if timing.exists():
        s = json.loads(timing.read_text())["stages"].get("sft", {})
        if s.get("tokens_trained") and s.get("train_s"):
            rate = s["tokens_trained"] / s["train_s"]
            print(f"SFT in the pipeline (reports/timing.json, TRL trainer, {s.get('optimizer_steps')} steps): "
                  f"{rate:.0f} tokens/s = {6 * n_linear * rate / limit_train:.0%} of this run's limit")

    r, temperature = params["reward"], params["base"]["temperature"]
    if args.model:
        model, tok = build(tasks, args)
        shapes = linear_shapes(model.config)
        n_linear = sum(k * n for k, n in shapes)
    limit_decode = matmul_flops(r["gen_batch_size"], shapes, args.threads)
    torch.set_num_threads(args.threads)
    prompts = [t["prompt"] for t in tasks]
    generation.generate(model, tok, prompts[:8], 2, temperature, r["top_p"], 8, 16, SEED)  # warm-up
    t0 = time.perf_counter()
    out = generation.generate(model, tok, prompts, r["samples_per_task"], temperature, r["top_p"],
                              r["max_new_tokens"], r["gen_batch_size"], SEED)
    sec = time.perf_counter() - t0
    kept = sum(len(tok(t, add_special_tokens=False).input_ids) for ts in out for t in ts)
    prompt_tokens = sum(len(tok(p, add_special_tokens=False).input_ids) for p in prompts)
    work = 2 * n_linear * (kept + prompt_tokens) / sec
    print(f"\nmatmul limit at a decoding step's shapes ({r['gen_batch_size']} rows): {limit_decode / 1e9:.1f} GFLOP/s")
    print(f"sampling ({'--model ' + args.model if args.model else 'random init'}, {len(prompts)} prompts x "
          f"{r['samples_per_task']}): {kept / sec:.0f} kept tokens/s, {work / 1e9:.1f} GFLOP/s with the "
          f"prompts = {work / limit_decode:.0%} of the limit")


if __name__ == "__main__":
    main()
