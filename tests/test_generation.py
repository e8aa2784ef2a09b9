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


def test_generate_gives_the_same_texts_with_either_stopper(tok, monkeypatch):
    from src.models import scratch_model
    model = scratch_model(tok, n_layer=1, d_model=32, n_head=2, d_ff=64, max_len=128, seed=0)
    prompts = [PROMPT, "def f():\n", "x = 1\n" * 3, "def g(a):\n    "]
    args = dict(n=6, temperature=1.5, top_p=1.0, max_new_tokens=40, batch_size=8)
    ids = []  # what model.generate returned: the same stop steps give the same ids, pads included
    sample = model.generate
    monkeypatch.setattr(model, "generate", lambda **kw: ids.append(sample(**kw)) or ids[-1])
    new = [generation.generate(model, tok, prompts, seed=s, **args) for s in (0, 1)]
    new_ids, ids = ids, []
    monkeypatch.setattr(generation, "body_stopper", functools.partial(body_stopper, incremental=False))
    old = [generation.generate(model, tok, prompts, seed=s, **args) for s in (0, 1)]
    assert new == old
    assert len(new_ids) == len(ids) and all(torch.equal(a, b) for a, b in zip(new_ids, ids))
    rows = [r for a in ids for r in a.tolist()]
    assert sum(tok.pad_token_id in r and tok.eos_token_id not in r for r in rows)  # the rule did stop rows
    texts = [t for run in new for ts in run for t in ts]
    assert len(set(texts)) > len(texts) // 2  # real samples, not one repeated string
