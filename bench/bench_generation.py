"""Sampling rate of src.generation.generate (our decoding loop: finished rows leave the batch) against
`model.generate` with the same stop rule as a stopping criterion (the project's previous sampler) and
plain `model.generate` (no stop rule), on the same prompts, batches and seeds; and against the machine's
matmul rate at the model's shapes.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_generation [--tasks 256] [--model models/sft] [--batch-sizes 128]

The model is the default shape of params.yaml (sft: layers, width, heads, vocabulary), randomly
initialised with a byte-level BPE trained on the tasks, or --model (a trained policy such as the
pipeline's models/sft: it stops where a trained policy stops, which is what the loop exploits). Prompts are
synthetic tasks (src.tasks.synthetic), sampled as the reward stage does (reward: samples_per_task, top_p,
max_new_tokens, gen_batch_size; base.temperature), and greedily: on the same batches and seeds both greedy and sampled
texts should be the same from our loop and from `model.generate` (its multinomial is an exponential race
on the same random stream; the bench counts the identical ones).
"kept tokens" are the tokens of the returned completions (after the cut at the first top-level line):
the useful output, the same measure for every variant. The FLOP share counts 2 x (linear weights) per
kept token, prompts aside: the work a sampler cannot avoid.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import argparse  # noqa: E402
import statistics  # noqa: E402
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


def linear_shapes(cfg) -> list[tuple[int, int]]:
    """(in, out) of every linear layer of a Llama-style decoder, in the order one forward runs them."""
    d, ff, vocab = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    kv = cfg.num_key_value_heads * (d // cfg.num_attention_heads)
    return [(d, d), (d, kv), (d, kv), (d, d), (d, ff), (d, ff), (ff, d)] * cfg.num_hidden_layers + [(d, vocab)]


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


def ours(model, tok, prompts, n, temperature, top_p, max_new_tokens, batch_size):
    return [t for ts in generation.generate(model, tok, prompts, n, temperature, top_p, max_new_tokens,
                                            batch_size, SEED) for t in ts]


def hf(model, tok, prompts, n, temperature, top_p, max_new_tokens, batch_size, stop_rule=True):
    """`model.generate` as the previous sampler ran it: requests (prompt x sample) sorted by prompt length
    in batches of `batch_size`, each seeded by its index, a static KV cache, the stop rule as a stopping
    criterion (or none)."""
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    requests = [i for i in order for _ in range(n if temperature else 1)]
    out = [[] for _ in prompts]
    for b, start in enumerate(range(0, len(requests), batch_size)):
        idx = requests[start:start + batch_size]
        enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(SEED + b)
        sampling = (dict(do_sample=False) if temperature == 0
                    else dict(do_sample=True, temperature=temperature, top_p=top_p))
        stop = [generation.body_stopper(tok, enc.input_ids.shape[1])] if stop_rule else []
        with torch.inference_mode():
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id, top_k=None, stopping_criteria=stop,
                                 cache_implementation="static", **sampling)
        for i, t in zip(idx, tok.batch_decode(ids[:, enc.input_ids.shape[1]:], skip_special_tokens=True)):
            out[i].append(generation.truncate_completion(t))
    return [t for ts in out for t in ts]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=256)
    ap.add_argument("--model", default=None, help="a saved policy folder instead of a random-init default")
    ap.add_argument("--batch-sizes", default="128,512", help="our loop's batch sizes to time (comma-separated)")
    args = ap.parse_args()
    from src.tasks.synthetic import generate as synthetic

    tasks = synthetic(args.tasks, seed=SEED)
    prompts = [t["prompt"] for t in tasks]
    model, tok = build(tasks, args)
    model.eval()
    params = read_params()
    r, temperature = params["reward"], params["base"]["temperature"]
    top_p, max_new, bs, n = r["top_p"], r["max_new_tokens"], r["gen_batch_size"], r["samples_per_task"]
    cfg = model.config
    d, ff, vocab = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    shapes = linear_shapes(cfg)
    n_linear = sum(k * n for k, n in shapes)
    threads = torch.get_num_threads()
    print(f"model: {cfg.num_hidden_layers} layers x {d}, d_ff {ff}, vocab {vocab}: {n_linear / 1e6:.2f}M weights "
          f"in linear layers (~{2 * n_linear / 1e6:.1f} MFLOP a token); {len(prompts)} prompts x {n} samples, T {temperature}, "
          f"top_p {top_p}, max_new_tokens {max_new}; {threads} thread(s)")
    limit = matmul_flops(bs, shapes, threads)
    print(f"matmul at one decoding step's shapes ({bs} rows, {threads} thread(s)): {limit / 1e9:.1f} GFLOP/s\n")
    torch.set_num_threads(threads)

    ours(model, tok, prompts[:8], n, temperature, top_p, 8, 8)  # warm-up
    greedy_ours = ours(model, tok, prompts, 1, 0.0, top_p, max_new, bs)
    greedy_hf = hf(model, tok, prompts, 1, 0.0, top_p, max_new, bs)
    same = sum(a == b for a, b in zip(greedy_ours, greedy_hf))
    print(f"greedy: {same} of {len(prompts)} texts identical between our loop and model.generate + stop rule")

    runs = {}
    for name, fn in [*[(f"ours, batch {b}", lambda b=b: ours(model, tok, prompts, n, temperature, top_p, max_new, b))
                       for b in map(int, args.batch_sizes.split(","))],
                     (f"model.generate + stop rule, batch {bs} (previous)",
                      lambda: hf(model, tok, prompts, n, temperature, top_p, max_new, bs)),
                     (f"plain model.generate, batch {bs}",
                      lambda: hf(model, tok, prompts, n, temperature, top_p, max_new, bs, stop_rule=False))]:
        t0 = time.perf_counter()
        texts = fn()
        sec = time.perf_counter() - t0
        kept = sum(len(tok(t, add_special_tokens=False).input_ids) for t in texts)
        runs[name] = (sec, kept, statistics.mean(len(t) for t in texts), len(texts), texts)

    ref = runs[f"model.generate + stop rule, batch {bs} (previous)"]
    same = sum(a == b for a, b in zip(runs[f"ours, batch {bs}"][4], ref[4])) if f"ours, batch {bs}" in runs else None
    if same is not None:
        print(f"sampled (T {temperature}): {same} of {len(ref[4])} texts identical between our loop and "
              f"model.generate + stop rule on the same batches and seeds")
    print("\n| sampler | seconds | samples/s | kept tokens/s | vs previous | mean chars | FLOP/s on kept tokens, share of matmul's |")
    print("|---|---|---|---|---|---|---|")
    for name, (sec, kept, chars, count, _) in runs.items():
        work = kept * 2 * n_linear / sec
        print(f"| {name} | {sec:.1f} | {count / sec:.0f} | {kept / sec:.0f} | {ref[0] / sec:.2f}x | "
              f"{chars:.0f} | {work / 1e9:.2f} G, {work / limit:.1%} |")


if __name__ == "__main__":
    main()
