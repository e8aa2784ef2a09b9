"""The composite reward: components on known inputs, weights, skipped work, and no reward for hostile code."""
import os
import shutil
import socket
import sys
import tempfile
import uuid
import warnings
from pathlib import Path

import pytest

import src.rewards as rewards
from src.metrics.text import codebleu
from src.rewards import CompositeParams, CompositeReward
from src.sandbox import SandboxParams

sys.path.insert(0, str(Path(__file__).parent))
from hostile import PROGRAMS  # noqa: E402

PROMPT = "def inc(x):\n    \"\"\"Return x plus one.\"\"\"\n"
TEST = "def check(candidate):\n    assert candidate(0) == 1\n    assert candidate(1) == 2\n    assert candidate(-5) == -4\n"
REF = "    return x + 1\n"
COLS = dict(test=[TEST] * 4, entry_point=["inc"] * 4, canonical_solution=[REF] * 4)
COMPLETIONS = [
    REF,                                              # right
    "    return abs(x) + 1\n",                        # 2 of 3 asserts
    "    return (x +\n",                              # syntax error
    "    return x + 1\n\nprint('trailing code is cut')\n",  # right, with a top-level tail
]


def sandbox(**kw) -> SandboxParams:
    base = dict(backend="auto", timeout_s=1.0, cpu_time_s=1.0, memory_mb=1024, max_output_kb=64,
                max_file_mb=16, max_disk_mb=64, max_procs=32, workers=2)
    return SandboxParams(**{**base, **kw})


def params(**w) -> CompositeParams:
    base = dict(syntax=0.0, execution=0.0, semantic=0.0, preference=0.0, execution_credit="fraction",
                semantic_metric="codebleu",
                codebleu_weights=[0.25, 0.25, 0.25, 0.25], bertscore_model="minilm", bertscore_layers=6,
                bertscore_batch_size=8)
    return CompositeParams(**{**base, **w})


def run(reward, completions=COMPLETIONS, cols=COLS, prompt=PROMPT):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return reward([prompt] * len(completions), completions, **cols)


def test_components_on_known_inputs():
    r = CompositeReward(params(syntax=1, execution=1, semantic=1, preference=1), sandbox(),
                        preference_scorer=lambda texts: [0.0 if "abs" in t else 2.0 for t in texts])
    run(r)
    assert r.last["syntax"] == [1.0, 1.0, 0.0, 1.0]
    assert r.last["execution"] == pytest.approx([1.0, 2 / 3, 0.0, 1.0])
    ref_bleu = codebleu(["return abs(x) + 1"], ["return x + 1"])
    assert r.last["semantic"] == pytest.approx([1.0, ref_bleu, codebleu(["return (x +"], ["return x + 1"]), 1.0])
    sig2 = 1 / (1 + 2.718281828459045 ** -2)
    assert r.last["preference"] == pytest.approx([sig2, 0.5, sig2, sig2])


def test_binary_credit_pays_only_a_program_that_passes_every_assert():
    """binary: 1 iff all asserts pass; fraction: the share passed, also when the program then crashes."""
    comps = COMPLETIONS + ["    if x < 0:\n        raise ValueError(x)\n    return x + 1\n"]  # 2 asserts, then raises
    cols = {k: v[:1] * len(comps) for k, v in COLS.items()}
    binary = CompositeReward(params(execution=1.0, execution_credit="binary"), sandbox())
    fraction = CompositeReward(params(execution=1.0, execution_credit="fraction"), sandbox())
    assert run(binary, comps, cols) == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert run(fraction, comps, cols) == pytest.approx([1.0, 2 / 3, 0.0, 1.0, 2 / 3])
    assert binary.trl_reward_funcs()[0][0]([PROMPT] * 5, comps, **cols) == [1.0, 0.0, 0.0, 1.0, 0.0]


def test_a_task_without_reference_has_no_semantic_score_and_the_other_weights_fill_in():
    """canonical_solution "" (the rl split): semantic None for TRL's nansum; __call__ renormalises."""
    cols = {**COLS, "canonical_solution": ["", REF, "", REF]}
    r = CompositeReward(params(syntax=0.2, execution=0.3, semantic=0.3), sandbox())
    total = run(r, cols=cols)
    sem = codebleu(["return abs(x) + 1"], ["return x + 1"])
    assert r.last["semantic"] == pytest.approx([sem, 1.0])           # only the rows that have a value
    syn, exe = [1.0, 1.0, 0.0, 1.0], [1.0, 2 / 3, 0.0, 1.0]
    assert total == pytest.approx([(0.2 * syn[0] + 0.3 * exe[0]) * 0.8 / 0.5,
                                   0.2 * syn[1] + 0.3 * exe[1] + 0.3 * sem,
                                   (0.2 * syn[2] + 0.3 * exe[2]) * 0.8 / 0.5,
                                   0.2 * syn[3] + 0.3 * exe[3] + 0.3 * 1.0])
    funcs, _ = r.trl_reward_funcs()
    assert funcs[2]([PROMPT] * 4, COMPLETIONS, **cols) == pytest.approx([None, sem, None, 1.0])
    only = CompositeReward(params(semantic=1.0), sandbox())
    assert run(only, cols=cols) == pytest.approx([0.0, sem, 0.0, 1.0])   # nothing to score: 0


def test_bertscore_semantic_skips_tasks_without_reference(monkeypatch):
    import src.metrics.text as text
    seen = []
    monkeypatch.setattr(text, "bertscore_per_sample",
                        lambda c, r, *a: seen.append((c, r)) or [0.5] * len(c))
    r = CompositeReward(params(semantic=1.0, semantic_metric="bertscore"), sandbox())
    assert r.semantic([PROMPT] * 3, [REF] * 3, ["", REF, "  \n"]) == [None, 0.5, None]
    assert seen == [(["return x + 1"], ["return x + 1"])]
    seen.clear()
    assert r.semantic([PROMPT], [REF], [""]) == [None] and seen == []   # no model call at all


def test_total_is_the_weighted_sum():
    w = dict(syntax=0.2, execution=0.3, semantic=0.3, preference=0.2)
    r = CompositeReward(params(**w), sandbox(), preference_scorer=lambda texts: [0.0] * len(texts))
    total = run(r)
    for i, t in enumerate(total):
        assert t == pytest.approx(sum(w[c] * r.last[c][i] for c in w))


def test_zero_weight_skips_the_work(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("computed a component whose weight is 0")
    monkeypatch.setattr(rewards, "execute", boom)
    r = CompositeReward(params(syntax=1.0), sandbox(), preference_scorer=boom)
    assert run(r) == [1.0, 1.0, 0.0, 1.0]
    assert list(r.last) == ["syntax"]
    with pytest.raises(ValueError, match="preference weight needs a reward-model scorer"):
        CompositeReward(params(preference=0.5), sandbox())


def test_trl_reward_funcs_one_per_component():
    r = CompositeReward(params(syntax=0.2, execution=0.8), sandbox())
    funcs, weights = r.trl_reward_funcs()
    assert [f.__name__ for f in funcs] == ["syntax", "execution"] and weights == [0.2, 0.8]
    assert funcs[1]([PROMPT] * 4, COMPLETIONS, **COLS) == pytest.approx([1.0, 2 / 3, 0.0, 1.0])


@pytest.mark.parametrize("backend", ["auto", "process"])
def test_hostile_programs_earn_no_execution_reward(backend, tmp_path):
    """A policy that emits any hostile program gets execution reward 0: no hole of the sandbox pays."""
    from hostile import PROMPT as HPROMPT, TEST as HTEST
    server = socket.create_server(("127.0.0.1", 0))
    outside = Path(tempfile.mkdtemp(dir="/var/tmp"))  # on disk, outside any sandbox's private /tmp
    outside.chmod(0o755)
    (outside / "s.txt").write_text("keep")
    token = uuid.uuid4().hex
    fill = dict(sentinel=outside / "s.txt", outside=outside, port=server.getsockname()[1], token=token,
                secret=f"SECRET_{token}")
    progs = [h for h in PROGRAMS if os.geteuid() == 0 or not h.needs_own_uid]
    comps = [h.completion.format(**fill) for h in progs]
    cols = dict(test=[HTEST] * len(comps), entry_point=["f"] * len(comps), canonical_solution=["    return x + 1\n"] * len(comps))
    try:
        r = CompositeReward(params(execution=1.0), sandbox(backend=backend))
        scores = run(r, comps, cols, HPROMPT)
    finally:
        server.close()
    assert (outside / "s.txt").read_text() == "keep"
    shutil.rmtree(outside)
    assert len(progs) >= 30
    assert {h.name: s for h, s in zip(progs, scores) if s != 0.0} == {}
    # and the right program still earns full reward from the same harness
    assert run(r, ["    return x + 1\n"], {k: v[:1] for k, v in cols.items()}, HPROMPT) == [1.0]


def test_codebleu_weights_reach_the_semantic_reward():
    """The semantic reward scores with the weights it is given (evaluate's by default), not codebleu's own."""
    cands, refs = ["    return x - 1\n"], ["    return x + 1\n"]
    even = CompositeReward(params(semantic=1.0), sandbox()).semantic([PROMPT], cands, refs)
    syntax_only = CompositeReward(params(semantic=1.0, codebleu_weights=[0, 0, 1, 0]), sandbox()).semantic(
        [PROMPT], cands, refs)
    assert even == pytest.approx([codebleu(["return x - 1"], ["return x + 1"])])
    assert syntax_only == pytest.approx([codebleu(["return x - 1"], ["return x + 1"], (0, 0, 1, 0))])
    assert even != syntax_only
    with pytest.raises(ValueError, match="codebleu_weights"):
        CompositeReward(params(semantic=1.0, codebleu_weights=None), sandbox())


def test_bertscore_runs_on_the_given_device(monkeypatch):
    """The semantic reward's BERTScore runs where the stage runs (its device), not always on the CPU."""
    import src.metrics.text as text
    seen = []
    monkeypatch.setattr(text, "bertscore_per_sample", lambda c, r, m, layers, bs, device: seen.append(device) or [0.5] * len(c))
    r = CompositeReward(params(semantic=1.0, semantic_metric="bertscore"), sandbox(), device="cuda:0")
    assert r.semantic([PROMPT], [REF], [REF]) == [0.5] and seen == ["cuda:0"]
