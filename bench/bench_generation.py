"""Sampling rate of src.generation.generate against plain `model.generate` and against the old stop rule
(every row's whole text decoded at every step), and against the machine's matmul rate at the model's shapes.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_generation [--tasks 256] [--model models/sft]

The model is the default shape of params.yaml (sft: layers, width, heads, vocabulary), randomly
initialised with a byte-level BPE trained on the tasks (or --model, e.g. the pipeline's models/sft);
prompts are synthetic tasks (src.tasks.synthetic), sampled as the reward stage does (reward:
temperature, top_p, max_new_tokens, gen_batch_size; one sample per prompt). All variants use the same
batches and seeds; the bench asserts they give the same texts (the dynamic-cache variant is only
compared). "tokens" are decoding positions computed (rows x new steps of each batch, the work done whether
a row has stopped or not); the FLOP share counts the (padded) prompt positions of the prefill too. FLOP/s:
torch.matmul at one decoding step's shapes (batch rows x d_model against each weight), 1 and 2 threads; a
position costs about 2 x (weights of the linear layers) FLOPs, attention aside.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import argparse  # noqa: E402
import functools  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from src import generation  # noqa: E402
from src.params import read_params  # noqa: E402

SEED = 1234


def matmul_flops(rows: int, shapes: list[tuple[int, int]], threads: int, seconds: float = 1.0) -> float:
    """FLOP/s of (rows, k) @ (k, n) over `shapes` in turn, as one decoding step runs them."""
    torch.set_num_threads(threads)
    pairs = [(torch.randn(rows, k), torch.randn(k, n)) for k, n in shapes]
    flops = sum(2 * rows * k * n for k, n in shapes)
    for a, b in pairs:
        torch.matmul(a, b)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for a, b in pairs:
            torch.matmul(a, b)
        reps += 1
    return reps * flops / (time.perf_counter() - t0)


def build(tasks, args):
    from src.models import load_policy, scratch_model, train_tokenizer
    if args.model:
        return load_policy(args.model)
    sft = read_params()["sft"]
    tok = train_tokenizer([t["prompt"] + t["canonical_solution"] for t in tasks], sft["vocab_size"],
                          sft["tokenizer_min_frequency"])
    tok.padding_side = "left"
    model = scratch_model(tok, n_layer=sft["n_layer"], d_model=sft["d_model"], n_head=sft["n_head"],
                          d_ff=sft["d_ff"], max_len=sft["max_len"], seed=SEED)
    return model, tok


class Counter:
    """Wraps model.generate: decoding positions computed (rows x new steps) and the raw outputs."""

    def __init__(self, model):
        self.model, self.sample, self.tokens, self.prompt_tokens, self.outputs = model, model.generate, 0, 0, []

    def __call__(self, **kw):
        ids = self.sample(**kw)
        self.tokens += ids.shape[0] * (ids.shape[1] - kw["input_ids"].shape[1])
        self.prompt_tokens += kw["input_ids"].numel()
        self.outputs.append(ids)
        return ids


def ours(model, tok, prompts, r, incremental=True, cache="static"):
    counter = Counter(model)
    model.generate = counter
    stopper, cache_was = generation.body_stopper, generation.CACHE
    generation.body_stopper = functools.partial(stopper, incremental=incremental)
    generation.CACHE = cache
    try:
        t0 = time.perf_counter()
        texts = generation.generate(model, tok, prompts, 1, r["temperature"], r["top_p"], r["max_new_tokens"],
                                    r["gen_batch_size"], SEED)
        return [t[0] for t in texts], counter.tokens, counter.prompt_tokens, time.perf_counter() - t0
    finally:
        generation.body_stopper, generation.CACHE = stopper, cache_was
        del model.generate


def plain(model, tok, prompts, r):
    """The same batches, seeds and sampling settings through model.generate alone (no stop rule)."""
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    out, tokens, prompt_tokens, bs = [None] * len(prompts), 0, 0, r["gen_batch_size"]
    t0 = time.perf_counter()
    for b, start in enumerate(range(0, len(order), bs)):
        idx = order[start:start + bs]
        enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(SEED + b)
        with torch.no_grad():
            ids = model.generate(**enc, do_sample=True, temperature=r["temperature"], top_p=r["top_p"], top_k=None,
                                 max_new_tokens=r["max_new_tokens"], pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id, cache_implementation=generation.CACHE)
        new = ids[:, enc.input_ids.shape[1]:]
        tokens += new.numel()
        prompt_tokens += enc.input_ids.numel()
        for i, t in zip(idx, tok.batch_decode(new, skip_special_tokens=True)):
            out[i] = generation.truncate_completion(t)
    return out, tokens, prompt_tokens, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=256)
    ap.add_argument("--model", default=None, help="a saved policy folder instead of a random-init default")
    args = ap.parse_args()
    from src.tasks.synthetic import generate as synthetic

    tasks = synthetic(args.tasks, seed=SEED)
    prompts = [t["prompt"] for t in tasks]
    model, tok = build(tasks, args)
    model.eval()
    r = read_params()["reward"]
    cfg = model.config
    d, ff, vocab = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    kv = cfg.num_key_value_heads * (d // cfg.num_attention_heads)
    layer = [(d, d), (d, kv), (d, kv), (d, d), (d, ff), (d, ff), (ff, d)]
    shapes = layer * cfg.num_hidden_layers + [(d, vocab)]
    n_linear = sum(k * n for k, n in shapes)
    print(f"model: {cfg.num_hidden_layers} layers x {d}, d_ff {ff}, vocab {vocab}: {n_linear / 1e6:.2f}M weights "
          f"in linear layers (~{2 * n_linear / 1e6:.1f} MFLOP a token); {len(prompts)} prompts, batch "
          f"{r['gen_batch_size']}, max_new_tokens {r['max_new_tokens']}, cache {generation.CACHE}\n")

    flops = {t: matmul_flops(r["gen_batch_size"], shapes, t) for t in (1, 2)}
    print(f"matmul at one step's shapes ({r['gen_batch_size']} rows): "
          + ", ".join(f"{t} thread{'s' * (t > 1)} {f / 1e9:.1f} GFLOP/s" for t, f in flops.items()))
    torch.set_num_threads(1)

    ours(model, tok, prompts[:8], dict(r, max_new_tokens=8))  # warm-up
    runs = {"ours (incremental stop rule)": ours(model, tok, prompts, r),
            "plain model.generate": plain(model, tok, prompts, r),
            "ours with the old stop rule": ours(model, tok, prompts, r, incremental=False),
            "ours with a dynamic cache": ours(model, tok, prompts, r, cache="dynamic")}
    texts = [v[0] for v in runs.values()]
    assert texts[0] == texts[1] == texts[2], "the variants sampled different texts"

    ref = runs["plain model.generate"]
    print("\n| variant (1 thread) | seconds | tokens/s | vs plain | prefill + decode FLOP/s, share of matmul's |")
    print("|---|---|---|---|---|")
    for name, (_, tokens, prompt_tokens, sec) in runs.items():
        rate, work = tokens / sec, (tokens + prompt_tokens) * 2 * n_linear / sec
        print(f"| {name} | {sec:.1f} | {rate:.0f} | {rate / (ref[1] / ref[3]):.2f}x | "
              f"{work / 1e9:.1f} G, {work / flops[1]:.1%} |")
    new, old = runs["ours (incremental stop rule)"], runs["ours with the old stop rule"]
    print(f"\nincremental vs old stop rule: {(new[1] / new[3]) / (old[1] / old[3]):.2f}x tokens/s; "
          f"the {len(prompts)} texts are identical across ours, plain and the old rule; dynamic cache "
          f"{'identical too' if texts[3] == texts[0] else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
