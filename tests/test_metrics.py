"""pass@k, text metrics and quality metrics against hand-computed values and the reference packages."""
import math

import pytest

from src.metrics.passk import paired_stderr, pass_at_1_stderr, pass_at_k, pass_at_k_table
from src.metrics.quality import (cyclomatic_complexity, quality_summary, style_warnings_per_100_lines,
                                 syntax_valid)
from src.metrics.text import bleu, code_tokenize, codebleu, codebleu_components, has_dataflow, rouge_l

# ---------------------------------------------------------------- pass@k


@pytest.mark.parametrize("n, c, k, expected", [
    (5, 2, 1, 0.4),            # c / n
    (5, 2, 2, 0.7),            # 1 - C(3,2)/C(5,2) = 1 - 3/10
    (5, 0, 3, 0.0),            # nothing passed
    (5, 4, 2, 1.0),            # n - c = 1 < k: every pair holds a pass
    (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
])
def test_pass_at_k_known_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_matches_binomials_and_is_stable():
    for n, c, k in [(20, 7, 1), (20, 7, 10), (200, 3, 100)]:
        assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k))
    assert 0.0 < pass_at_k(10_000, 1, 10) < 1.0  # no overflow with large n


def test_pass_at_k_rejects_bad_counts():
    for n, c, k in [(5, 6, 1), (5, 2, 6), (0, 0, 1), (5, 2, 0)]:
        with pytest.raises(ValueError):
            pass_at_k(n, c, k)


def test_pass_at_k_table_only_ks_every_task_supports():
    counts = {"a": (5, 2), "b": (3, 1)}
    table = pass_at_k_table(counts, [1, 2, 5])
    assert set(table) == {"pass@1", "pass@2"}  # b has only 3 samples: no pass@5
    assert table["pass@1"] == pytest.approx((0.4 + 1 / 3) / 2)
    assert table["pass@2"] == pytest.approx((0.7 + (1 - 1 / 3)) / 2)  # b: 1 - C(2,2)/C(3,2)
    assert pass_at_k_table({}, [1]) == {}


def test_pass_at_1_stderr_by_hand():
    # Rates 0.4 and 1/3: sample std = |d|/sqrt(2), so stderr = |d|/2.
    assert pass_at_1_stderr({"a": (5, 2), "b": (3, 1)}) == pytest.approx((0.4 - 1 / 3) / 2)
    # Rates 0, 0.5, 1: std(ddof=1) = 0.5, over sqrt(3).
    assert pass_at_1_stderr({"a": (2, 0), "b": (2, 1), "c": (2, 2)}) == pytest.approx(0.5 / math.sqrt(3))
    assert pass_at_1_stderr({"a": (4, 1)}) == 0.0


def test_paired_stderr_by_hand():
    before = {"a": 0.0, "b": 0.5, "c": 1.0, "d": 0.2}
    # Every task up by 0.2: the difference has no spread, though each policy's own stderr is large.
    assert paired_stderr(before, {k: v + 0.2 for k, v in before.items()}) == pytest.approx(0.0)
    # Differences 1, 0, 0 over the shared tasks (d is missing in after): std(ddof=1) = 1/sqrt(3), over sqrt(3).
    assert paired_stderr(before, {"a": 1.0, "b": 0.5, "c": 1.0}) == pytest.approx(1 / 3)
    assert paired_stderr({"a": 0.0}, {"a": 1.0}) == 0.0


def test_policy_delta_pairs_the_stderr_by_task():
    from src.metrics.passk import policy_delta
    rows = lambda spec: [{"task_id": t, "greedy": g, "passed": p} for t, g, p in spec]  # noqa: E731
    sft = rows([("x", False, True), ("x", False, False), ("y", False, False), ("y", False, False),
                ("x", True, True), ("y", True, False)])
    aligned = rows([("x", False, True), ("x", False, True), ("y", False, True), ("y", False, False),
                    ("x", True, True), ("y", True, True)])
    d = policy_delta({"pass@1": 0.25, "pass@1_stderr": 0.1, "pass@1_greedy": 0.5},
                     {"pass@1": 0.75, "pass@1_stderr": 0.2, "pass@1_greedy": 1.0}, sft, aligned)
    # sampled: both tasks gain 0.5, so no spread; greedy: differences 0 and 1 -> std 1/sqrt(2), over sqrt(2)
    assert d == {"pass@1": 0.5, "pass@1_greedy": 0.5, "pass@1_stderr_paired": 0.0,
                 "pass@1_greedy_stderr_paired": 0.5}



def test_policy_delta_pairs_pass_at_k_and_the_low_temperature_set():
    """pass@k and the `more` sample sets (evaluate's low temperature) get a paired stderr from their own rows."""
    from src.metrics.passk import policy_delta
    rows = lambda spec: [{"task_id": t, "greedy": False, "passed": p} for t, p in spec]  # noqa: E731
    sft = rows([("x", True), ("x", False), ("y", False), ("y", False)])
    aligned = rows([("x", True), ("x", True), ("y", True), ("y", False)])
    low_sft = rows([("x", True), ("x", True), ("y", False), ("y", False)])
    low_aligned = rows([("x", True), ("x", True), ("y", True), ("y", True)])
    m = lambda p1, p2: {"pass@1": p1, "pass@2": p2, "pass@1_lowtemp": p1, "pass@2_lowtemp": p2}  # noqa: E731
    d = policy_delta(m(0.25, 0.5), m(0.75, 1.0), sft, aligned, {"_lowtemp": (low_sft, low_aligned)})
    # headline pass@2 per task: sft x 1, y 0; aligned x 1, y 1 -> differences 0, 1 -> stderr 0.5
    assert d["pass@2_stderr_paired"] == 0.5 and d["pass@1_stderr_paired"] == 0.0
    # low temperature pass@1: x 1 -> 1, y 0 -> 1: differences 0, 1 -> 0.5; pass@2 the same
    assert d["pass@1_lowtemp_stderr_paired"] == 0.5 and d["pass@2_lowtemp_stderr_paired"] == 0.5
    assert d["pass@1_lowtemp"] == 0.5 and d["pass@2_lowtemp"] == 0.5
    assert "pass@1_greedy_stderr_paired" not in d   # no greedy metric, no stderr for it


# ---------------------------------------------------------------- tokenisation


def test_code_tokenize_keeps_operators_and_structure_drops_comments():
    code = "def f(a, b):\n    # add them\n    return a+b  # done\n"
    assert code_tokenize(code) == ["def", "f", "(", "a", ",", "b", ")", ":", "<NEWLINE>",
                                   "<INDENT>", "return", "a", "+", "b", "<NEWLINE>", "<DEDENT>"]
    assert code_tokenize('s = "two words"\n') == ["s", "=", '"two', 'words"', "<NEWLINE>"]
    assert code_tokenize("y //= 2 ** x") == ["y", "//=", "2", "**", "x", "<NEWLINE>"]
    assert code_tokenize("a+b  c", mode="whitespace") == ["a+b", "c"]


def test_code_tokenize_falls_back_to_regex_on_broken_code():
    # An open bracket at EOF makes Python's tokenizer fail; the regex gives the same kinds of tokens.
    assert code_tokenize("x = f(a, b # cut\n") == ["x", "=", "f", "(", "a", ",", "b"]
    assert code_tokenize('x = f("a # b", c # cut\n') == ["x", "=", "f", "(", '"a', "#", 'b"', ",", "c"]
    with pytest.raises(ValueError):
        code_tokenize("x", mode="13a")


# ---------------------------------------------------------------- BLEU / ROUGE-L

CAND = "def add(a, b):\n    return a + b\n"
REF = "def add(a, b):\n    return a - b\n"
CAND_TOKENS = "def add ( a , b ) : <NEWLINE> <INDENT> return a + b <NEWLINE> <DEDENT>"
REF_TOKENS = "def add ( a , b ) : <NEWLINE> <INDENT> return a - b <NEWLINE> <DEDENT>"


def test_bleu_equals_sacrebleu_on_pretokenised_text():
    import sacrebleu

    direct = sacrebleu.corpus_bleu([CAND_TOKENS], [[REF_TOKENS]], tokenize="none").score / 100
    assert bleu([CAND], [REF]) == pytest.approx(direct)
    assert 0 < bleu([CAND], [REF]) < 1
    assert bleu([CAND, REF], [CAND, REF]) == pytest.approx(1.0)
    assert bleu([], []) == 0.0
    with pytest.raises(ValueError):
        bleu([CAND], [])


def test_rouge_l_equals_rouge_score_with_the_same_tokens():
    from rouge_score import rouge_scorer

    class Split:
        def tokenize(self, text):
            return text.split()

    direct = rouge_scorer.RougeScorer(["rougeL"], tokenizer=Split()).score(REF_TOKENS, CAND_TOKENS)
    assert rouge_l([CAND], [REF]) == pytest.approx(direct["rougeL"].fmeasure)
    assert rouge_l([CAND], [REF]) == pytest.approx(15 / 16)  # LCS 15 of 16 tokens each side
    assert rouge_l([CAND], [CAND]) == pytest.approx(1.0)


def test_code_tokenisation_keeps_operators_that_default_tokenisers_drop():
    from rouge_score import rouge_scorer

    default = rouge_scorer.RougeScorer(["rougeL"]).score("a - b", "a + b")["rougeL"].fmeasure
    assert default == 1.0  # rouge-score keeps only [a-z0-9]: `a + b` == `a - b`
    assert rouge_l(["a + b"], ["a - b"]) < 1.0
    assert bleu(["x = a + b"], ["x = a - b"]) < bleu(["x = a + b"], ["x = a + b"])


# ---------------------------------------------------------------- CodeBLEU


def test_codebleu_equals_calc_codebleu():
    from codebleu import calc_codebleu

    cand = "def add(a, b):\n    total = a + b\n    return total\n"
    ref = "def add(x, y):\n    s = x + y\n    return s\n"
    direct = calc_codebleu([ref], [cand], lang="python", weights=(0.25, 0.25, 0.25, 0.25))
    assert codebleu([cand], [ref]) == pytest.approx(direct["codebleu"])
    parts = codebleu_components([cand], [ref])
    assert parts == pytest.approx(direct)
    assert set(parts) >= {"ngram_match_score", "weighted_ngram_match_score", "syntax_match_score",
                          "dataflow_match_score"}
    assert codebleu([ref], [ref]) == pytest.approx(1.0)


def test_codebleu_scores_a_genuine_zero_data_flow_match_as_zero():
    """codebleu 0.7.0 adds `dataflow_match_score or 1`; a reference with data flow that the
    candidate does not match at all must add 0, not a perfect 1."""
    from codebleu import calc_codebleu

    ref, cand = "y = x + 1\nreturn y", "return 0"
    assert has_dataflow(ref) and not has_dataflow(cand)
    half = (0, 0, 0.5, 0.5)   # syntax and data flow only: both 0 here
    assert calc_codebleu([ref], [cand], lang="python", weights=half)["codebleu"] == pytest.approx(0.5)  # the bug
    assert codebleu([cand], [ref], half) == 0.0
    # partial matches are codebleu's own: syntax 1 of 5 subtrees, data flow 1 of 4 edges
    assert codebleu(["z = q\nreturn z"], [ref], half) == pytest.approx(0.5 * 0.2 + 0.5 * 0.25)
    parts = codebleu_components([cand], [ref])
    assert parts["dataflow_match_score"] == 0
    assert parts["codebleu"] == pytest.approx(0.25 * (parts["ngram_match_score"] + parts["weighted_ngram_match_score"]
                                                      + parts["syntax_match_score"]))


def test_codebleu_drops_the_data_flow_part_when_the_reference_has_none():
    """`return x + 1` has no data flow: the other three weights are scaled up to the full weight."""
    ref = "return x + 1"
    assert not has_dataflow(ref)
    half = (0, 0, 0.5, 0.5)
    assert codebleu(["return 0"], [ref], half) == 0.0            # syntax 0; codebleu 0.7.0 says 0.5
    assert codebleu(["return x + 2"], [ref], half) == pytest.approx(1.0)   # same tree
    assert codebleu([ref], [ref]) == pytest.approx(1.0)
    parts = codebleu_components(["return x - 1"], [ref])
    rest = parts["ngram_match_score"] + parts["weighted_ngram_match_score"] + parts["syntax_match_score"]
    assert parts["codebleu"] == pytest.approx(rest / 3) and parts["codebleu"] < 0.25 * rest + 0.25
    assert codebleu(["return 0"], [ref], (0, 0, 0, 1)) == 0.0   # nothing left to score
    # one reference in the corpus with data flow: the corpus match is defined, and used as it is
    both = codebleu_components(["return 0", "return 0"], [ref, "y = x + 1\nreturn y"], half)
    assert both["dataflow_match_score"] == 0 and both["codebleu"] == pytest.approx(0.5 * both["syntax_match_score"])


# ---------------------------------------------------------------- BERTScore (loads a model)


@pytest.mark.model
def test_bertscore_local_minilm():
    from src.metrics.text import bertscore, bertscore_per_sample

    code = "def add(a, b):\n    return a + b\n"
    cands = [code, "The weather in Paris is mild in spring.", ""]
    refs = [code, "def add(a, b):\n    return a + b\n", "return 1"]
    f1 = bertscore_per_sample(cands, refs, model="minilm", num_layers=6, batch_size=8)
    assert f1[0] == pytest.approx(1.0, abs=1e-4)
    assert f1[1] < f1[0] - 0.2
    assert f1[2] == 0.0  # empty candidate: scored 0, not a crash
    assert bertscore(cands, refs, model="minilm", num_layers=6, batch_size=8) == pytest.approx(sum(f1) / 3)


# ---------------------------------------------------------------- quality


def test_syntax_valid():
    assert syntax_valid("def f():\n    return 1\n")
    assert not syntax_valid("def f(:\n")
    assert not syntax_valid("x = 1\0")


def test_cyclomatic_complexity():
    assert cyclomatic_complexity("def f(x):\n    if x:\n        return 1\n    return 0\n") == 2
    # Two functions, complexities 1 and 3 (if + elif): mean 2.
    two = ("def g():\n    return 1\n\n\ndef h(x):\n    if x > 0:\n        return 1\n"
           "    elif x < 0:\n        return -1\n    return 0\n")
    assert cyclomatic_complexity(two) == 2
    assert cyclomatic_complexity("def f(:\n") is None


def test_style_warnings_per_100_lines():
    clean = "def f(x):\n    return x + 1\n"
    assert style_warnings_per_100_lines(clean) == 0.0
    assert style_warnings_per_100_lines("def f(x):\n    return x + 1") == 0.0  # final newline added
    assert style_warnings_per_100_lines("x=1\n") == 100.0  # E225 (pycodestyle), 1 line
    assert style_warnings_per_100_lines("import os\n") == 100.0  # unused import (pyflakes)
    assert style_warnings_per_100_lines("import os\n\n\ndef f(x):\n    return x\n") == pytest.approx(100 / 3)
    assert style_warnings_per_100_lines("y = '" + "a" * 94 + "'\n") == 0.0  # 100 chars: at the limit
    assert style_warnings_per_100_lines("y = '" + "a" * 95 + "'\n") == 100.0  # 101 chars: E501
    assert style_warnings_per_100_lines("def f(:\n") is None


def test_quality_summary():
    good = "def f(x):\n    if x:\n        return 1\n    return 0\n"  # complexity 2, no warnings
    bad_style = "x=1\n"                                               # complexity 1, 100 per 100 lines
    out = quality_summary([good, bad_style, "def f(:\n"])
    assert out == {"syntax_valid": pytest.approx(2 / 3), "complexity": pytest.approx(1.5),
                   "style_per_100_lines": pytest.approx(50.0)}
    assert quality_summary([]) == {"syntax_valid": None, "complexity": None, "style_per_100_lines": None}
