"""The incremental stop rule gives the reference's decisions (whole text decoded at every step) on
adversarial token streams and inside `generate`, so sampled texts do not move for a seed."""
import functools
import random

import pytest
import torch

from src import generation
from src.generation import _byte_level, body_stopper

PROMPT = 'def add(a: int, b: int) -> int:\n    """Return a plus b."""\n'
CORPUS = [PROMPT + "    total = a + b\n    return total\n\ndef mul(x, y):\n    return x * y\n",
          "def f():\n\n    pass\nprint(f())\n  \n\t\nx = 1\n"] * 20
# whitespace (for `\s`) and not, one to four UTF-8 bytes: NBSP, NEL, line separator, ideographic space
ODD = "\u00a0\u0085\u2028\u3000λ€😀\t\r\x0b\x0c "


def tokenizer(newline_merges: bool):
    """The project's tokenizer (newlines isolated), or a byte-level BPE that merges across newlines
    (tokens like "\\nd", ")\\n    ") as a hub tokenizer may."""
    from src.models import train_tokenizer
    if not newline_merges:
        return train_tokenizer(CORPUS, vocab_size=300, min_frequency=2)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=400, min_frequency=2, special_tokens=["<eos>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")


@pytest.fixture(scope="module", params=[False, True], ids=["isolated_newlines", "newline_merges"])
def tok(request):
    t = tokenizer(request.param)
    t.padding_side = "left"
    assert _byte_level(t)
    return t


def pool(tok) -> list[int]:
    """Token ids that make trouble: single bytes of multi-byte characters (whole and split), newlines,
    whitespace-only pieces, specials, and tokens holding a newline with text on either side."""
    ids = set(tok.encode(ODD + "\n \n\n\t\n x\nx", add_special_tokens=False))
    ids |= {tok.eos_token_id, tok.pad_token_id}
    ids |= {i for i in range(len(tok)) if "\n" in tok.decode([i])}
    return sorted(ids)


def reference_and_new(tok, rows: list[list[int]], prompt: list[int]):
    """Per step, the reference's and the incremental stopper's per-row decisions."""
    old, new = body_stopper(tok, len(prompt), incremental=False), body_stopper(tok, len(prompt))
    assert type(old).__name__ == "BodyEnded" and type(new).__name__ == "BodyEndedIncremental"
    out = []
    for k in range(1, len(rows[0]) + 1):
        ids = torch.tensor([prompt + r[:k] for r in rows])
        out.append((old(ids, None).tolist(), new(ids, None).tolist()))
    return out


def test_incremental_stopper_matches_whole_text_decoding_on_adversarial_streams(tok):
    """At every step, the incremental decision is the reference's decision so far (OR over the steps:
    the reference itself can flip back, e.g. "\\n" + a lone 0xC2 byte is U+FFFD, a match, until 0xA0
    completes a no-break space, but `generate` stops a row at its first match). Hence the first stop
    of every row is the same step."""
    rng = random.Random(0)
    bad, vocab = pool(tok), list(range(len(tok)))
    prompt = tok.encode(PROMPT, add_special_tokens=False)
    flips = 0
    for _ in range(60):
        rows = [[rng.choice(bad) if rng.random() < 0.85 else rng.choice(vocab) for _ in range(24)]
                for _ in range(16)]
        sofar = [False] * len(rows)
        for old, new in reference_and_new(tok, rows, prompt):
            flips += sum(s and not o for s, o in zip(sofar, old))
            sofar = [s or o for s, o in zip(sofar, old)]
            assert new == sofar
    assert flips  # the streams did reach the cases where the reference is not monotone


@pytest.mark.parametrize("text, step", [
    ("    x = 1\n", None),                 # a body line: no stop
    ("    x = 1\nprint(x)", 1),            # stop at the first character of the top-level line
    ("\n\n  \n\t\ny", 1),                  # whitespace-only lines do not stop, the "y" line does
    ("\n\u00a0\u3000\u2028z", 1),          # Unicode whitespace after the newline (split into bytes)
    ("\nλ", 1),                            # a multi-byte character: its lone first byte already stops
])
def test_incremental_stopper_on_hand_made_texts(tok, text, step):
    prompt = tok.encode(PROMPT, add_special_tokens=False)
    ids = tok.encode(text, add_special_tokens=False)
    rows = [ids + [tok.pad_token_id, tok.eos_token_id]]
    decisions = reference_and_new(tok, rows, prompt)
    first_old = next((k for k, (o, _) in enumerate(decisions) if o[0]), None)
    first_new = next((k for k, (_, n) in enumerate(decisions) if n[0]), None)
    assert first_old == first_new
    assert (first_old is None) == (step is None)


def test_pad_between_newline_and_text_still_stops(tok):
    """A special token adds no text: the window reaches back over it to the newline."""
    prompt = tok.encode(PROMPT, add_special_tokens=False)
    nl, x = tok.encode("\n", add_special_tokens=False), tok.encode("x", add_special_tokens=False)
    rows = [[tok.encode(" ", add_special_tokens=False)[0]] + nl + [tok.pad_token_id] * 2 + x]
    assert [n for _, n in reference_and_new(tok, rows, prompt)][-1] == [True]


def test_clean_up_spaces_keeps_the_reference():
    """" ." -> "." clean-up rewrites earlier text: no window argument, so the whole text is decoded."""
    t = tokenizer(False)
    t.clean_up_tokenization_spaces = True
    assert not _byte_level(t)
    assert type(body_stopper(t, 3)).__name__ == "BodyEnded"


def tiny_model(tok):
    from src.models import scratch_model
    return scratch_model(tok, n_layer=1, d_model=32, n_head=2, d_ff=64, max_len=128, seed=0)


PROMPTS = [PROMPT, "def f():\n", "x = 1\n" * 3, "def g(a):\n    "]


def hf_generate(model, tok, prompts, temperature, max_new_tokens):
    """`model.generate` with the reference stop rule, one prompt at a time (no padding)."""
    out = []
    for p in prompts:
        enc = tok([p], return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                 stopping_criteria=[body_stopper(tok, enc.input_ids.shape[1], incremental=False)])
        out.append(generation.truncate_completion(tok.decode(ids[0, enc.input_ids.shape[1]:],
                                                             skip_special_tokens=True)))
    return out


def test_greedy_texts_match_model_generate(tok):
    """Our loop (left-padded batches, finished rows dropped, table stop rule) writes what `model.generate`
    writes for each prompt alone with the whole-text stop rule: same positions, cache and stops."""
    model = tiny_model(tok)
    ours = generation.generate(model, tok, PROMPTS * 2, 1, 0.0, 1.0, 40, 3, seed=0)
    assert [o[0] for o in ours] == hf_generate(model, tok, PROMPTS * 2, 0.0, 40)


def test_sampled_texts_match_model_generate_on_the_same_batches(tok):
    """Same batches of requests and seeds: the same samples as `model.generate` with the stop rule
    (its multinomial is an exponential race on the same random stream), though our loop computes each
    prompt once per batch and drops ended rows; batches may split a prompt's samples."""
    model = tiny_model(tok)
    prompts, n, bs, seed = PROMPTS, 3, 4, 7
    ours = generation.generate(model, tok, prompts, n, 1.2, 0.9, 30, bs, seed=seed)
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    requests = [i for i in order for _ in range(n)]
    ref = [[] for _ in prompts]
    for b, start in enumerate(range(0, len(requests), bs)):
        idx = requests[start:start + bs]
        enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(seed + b)
        with torch.inference_mode():
            ids = model.generate(**enc, max_new_tokens=30, do_sample=True, temperature=1.2, top_p=0.9, top_k=None,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                 stopping_criteria=[body_stopper(tok, enc.input_ids.shape[1], incremental=False)])
        for i, t in zip(idx, tok.batch_decode(ids[:, enc.input_ids.shape[1]:], skip_special_tokens=True)):
            ref[i].append(generation.truncate_completion(t))
    assert ours == ref


def test_sampling_is_seeded_stops_rows_and_drops_them(tok, monkeypatch):
    model = tiny_model(tok)
    args = dict(n=6, temperature=1.5, top_p=1.0, max_new_tokens=40, batch_size=24)
    batches = []  # rows fed to the model at each decoding step
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **kw: batches.append(kw["input_ids"].shape) or forward(*a, **kw))
    runs = [generation.generate(model, tok, PROMPTS, seed=s, **args) for s in (0, 0, 1)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    texts = [t for ts in runs[0] for t in ts]
    assert len(set(texts)) > len(texts) // 2  # real samples, not one repeated string
    assert any(generation._TOP_LEVEL.search(t) is None and t.endswith("\n") for t in texts)  # cut at a stop
    rows = [s[0] for s in batches if s[1] == 1]  # decoding steps (the prefill has the prompt's length)
    assert max(rows) == 24 and min(rows) < max(rows)  # 4 prompts x 6 samples; finished rows left the batch


def test_whole_text_rule_for_tokenizers_that_rewrite_text():
    """A tokenizer with space clean-up gets no table: every row's whole text is decoded at every step,
    and the texts are `model.generate`'s with the reference rule."""
    t = tokenizer(False)
    t.padding_side = "left"
    t.clean_up_tokenization_spaces = True
    assert generation.stop_table(t) is None
    model = tiny_model(t)
    ours = generation.generate(model, t, PROMPTS, 1, 0.0, 1.0, 30, 4, seed=0)
    assert [o[0] for o in ours] == hf_generate(model, t, PROMPTS, 0.0, 30)


def test_pick_samples_the_nucleus_at_the_temperature():
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1]])).repeat(20000, 1)
    assert torch.equal(generation.pick(logits, 0.0, 1.0), torch.zeros(20000, dtype=torch.long))
    assert set(generation.pick(logits, 1.0, 0.5).tolist()) == {0}  # 0.6 alone reaches top_p 0.5
    draws = generation.pick(logits, 1.0, 0.8)  # {0, 1}: 0.6 + 0.3 reaches 0.8; renormalised 2:1
    assert set(draws.tolist()) == {0, 1} and abs((draws == 0).float().mean().item() - 2 / 3) < 0.02
    draws = generation.pick(logits, 2.0, 1.0)  # T 2: probabilities as sqrt(p), renormalised
    want = torch.tensor([0.6, 0.3, 0.1]).sqrt()
    freq = torch.bincount(draws, minlength=3).float() / len(draws)
    assert torch.allclose(freq, want / want.sum(), atol=0.02)


def test_pick_finds_the_nucleus_beyond_the_candidates():
    """Candidates first, the whole vocabulary when the nucleus reaches past them: the same rule."""
    torch.manual_seed(0)
    peaked = torch.cat([torch.tensor([4.0, 3.0, 2.0]), torch.full((197,), -4.0)])  # top 3 hold ~0.96
    p = peaked.softmax(-1)
    keep = (p.sort().values.cumsum(-1) > 0.05).sum().item()  # the tokens the top-p 0.95 rule keeps
    draws = generation.pick(peaked.repeat(20000, 1), 1.0, 0.95, candidates=8)
    assert set(draws.tolist()) == set(range(keep))
    freq = torch.bincount(draws, minlength=keep).float()[:keep] / len(draws)
    assert torch.allclose(freq, p[:keep] / p[:keep].sum(), atol=0.02)
    flat = torch.linspace(0, 0.5, 200)  # the nucleus holds most of the 200 tokens: beyond 8 candidates
    q = flat.softmax(-1)
    kept = set(q.argsort()[(q.sort().values.cumsum(-1) > 0.05)].tolist())
    draws = generation.pick(flat.repeat(20000, 1), 1.0, 0.95, candidates=8)
    assert set(draws.tolist()) <= kept and len(set(draws.tolist())) > 150
    mixed = torch.stack([peaked, flat] * 5000)  # rows of both kinds in one batch
    draws = generation.pick(mixed, 1.0, 0.95, candidates=8)
    assert set(draws[0::2].tolist()) <= set(range(keep)) and len(set(draws[1::2].tolist())) > 150


def test_a_samples_draws_do_not_depend_on_the_other_rows(tok):
    """The first prompt's samples are the same whatever the rest of its batch writes (and however long
    it runs): a slightly different model moves few samples, so one and two processes train alike."""
    model = tiny_model(tok)
    short = "def f():\n"  # the shortest prompt sorts first: the same rows of the first batch in both runs
    args = dict(n=4, temperature=1.5, top_p=0.9, max_new_tokens=30, batch_size=16, seed=3)
    a = generation.generate(model, tok, [short, PROMPT], **args)
    b = generation.generate(model, tok, [short, "x = 1\n" * 5], **args)
    assert a[0] == b[0] and a[1] != b[1]


def test_stopper_takes_ids_the_model_has_beyond_the_tokenizer(tok):
    """A model's vocab may be padded past the tokenizer's (rows no text maps to, which sampling can
    still pick): with the model's vocab_size those ids add no text and change no decision."""
    prompt = tok.encode(PROMPT, add_special_tokens=False)
    extra = len(tok) + 7
    nl, text = tok.encode("\n", add_special_tokens=False)[0], tok.encode("x", add_special_tokens=False)[0]
    stop = body_stopper(tok, len(prompt), vocab_size=len(tok) + 8)
    decisions = [stop(torch.tensor([prompt + row[:k] for row in ([nl, extra, text], [extra, extra, extra])]),
                      None).tolist() for k in (1, 2, 3)]
    assert decisions == [[False, False], [False, False], [True, False]]  # "\n", nothing, "x": a top-level line


def test_chat_answers_stop_once_their_code_closes_with_the_same_code(monkeypatch):
    """`stop_after_code`: a whole answer ends once its code block closes; each sample's draws are the
    same, so the stopped answer is a prefix of the unstopped one with the same code. The model is
    pushed towards backticks so that fenced blocks really open and close."""
    from src.models import train_tokenizer
    from src.prompting import answer_code, code_closed
    t = train_tokenizer(["Here:\n```python\ndef f(x):\n    return x\n```\nDone.\n", "```bash\nls\n```\n"] * 20
                        + CORPUS, vocab_size=300, min_frequency=2)
    t.padding_side = "left"
    model = tiny_model(t)
    ticks = [i for i in range(len(t)) if "`" in t.decode([i])]
    newlines = [i for i in range(len(t)) if "\n" in t.decode([i])]
    forward = model.forward

    def towards_fences(*a, **kw):
        out = forward(*a, **kw)
        out.logits[..., ticks] += 4.0
        out.logits[..., newlines] += 2.0
        return out
    monkeypatch.setattr(model, "forward", towards_fences)
    args = dict(n=16, temperature=1.0, top_p=1.0, max_new_tokens=64, batch_size=32, seed=0, body_only=False)
    full = [a for x in generation.generate(model, t, PROMPTS, **args) for a in x]
    cut = [a for x in generation.generate(model, t, PROMPTS, stop_after_code=True, **args) for a in x]
    assert all(a.startswith(b) and answer_code(a) == answer_code(b) for a, b in zip(full, cut))
    stopped = [b for a, b in zip(full, cut) if len(b) < len(a)]
    assert len(stopped) >= 5 and all(code_closed(b) for b in stopped)
