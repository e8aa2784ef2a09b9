"""The docs stay true: every relative link in README.md and docs/*.md resolves, and README quotes no
results figure that RESULTS.md or metrics/*.json does not hold (figures live there, README links)."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
# [text](target "title") and ![alt](target); the target may be <wrapped>.
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s)]+)(?:\s+[\"'(][^)]*)?\s*\)")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.M)
_HTML_REF = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']", re.I)
_EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.I)  # http:, https:, mailto:, ...


def link_targets(text: str) -> list[str]:
    """Link and image targets of markdown text, code blocks and code spans left out."""
    prose = _CODE_SPAN.sub("", _FENCE.sub("", text))
    found = [m.group(1) for rx in (_INLINE_LINK, _REF_DEF, _HTML_REF) for m in rx.finditer(prose)]
    return [t[1:-1] if t.startswith("<") and t.endswith(">") else t for t in found]


def broken_links(md: Path, root: Path = ROOT) -> list[str]:
    """Relative targets in `md` whose file is missing (web addresses and in-page anchors skipped)."""
    bad = []
    for target in link_targets(md.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0].split("?", 1)[0]
        if not path or _EXTERNAL.match(target):
            continue
        resolved = (root / path.lstrip("/")) if path.startswith("/") else (md.parent / path)
        if not resolved.exists():
            bad.append(f"{md.relative_to(root)}: {target}")
    return bad


# A results-like figure: a signed decimal (a delta: +0.053, −0.007), a decimal in [0, 1] with 2-3
# places (0.640, .64, 1.000), or a percentage. Versions (2.13.0, 3.11) and dotted keys do not match.
_NUM = r"(?:0?\.\d{2,3}|1\.0{2,3})"
_FIGURE = re.compile(
    r"(?<![\w.\-+−])(?P<sign>[+\-−]\s?)?(?P<num>\d+(?:\.\d+)?|\.\d+)(?P<pct>\s?%)?(?![\w.]*\d)")
_SOURCE_NUMBER = re.compile(r"(?<![\w.])([+\-−]?)(\d+(?:,\d{3})*(?:\.\d+)?)(?![\d])")


def results_figures(text: str) -> list[tuple[str, float, int, bool, bool, int, int]]:
    """Every results-like figure of README text: (as written, value, decimals, signed, percent, start,
    end)."""
    out = []
    for m in _FIGURE.finditer(text):
        sign, num, pct = m.group("sign"), m.group("num"), m.group("pct")
        signed = sign is not None and "." in num
        if not (pct or signed or re.fullmatch(_NUM, num)):
            continue
        value = float(num) * (-1 if signed and sign.strip() in ("-", "−") else 1)
        decimals = len(num.split(".")[1]) if "." in num else 0
        out.append((m.group(0).strip(), value, decimals, signed, pct is not None, m.start(), m.end()))
    return out


def _numbers(text: str) -> list[tuple[float, int, int]]:
    """Every number of a source text, signed as written: (value, start, end)."""
    return [(float(m.group(2).replace(",", "")) * (-1 if m.group(1) in ("-", "−") else 1), m.start(), m.end())
            for m in _SOURCE_NUMBER.finditer(text)]


def _plus_minus(text: str, items: list) -> list[tuple]:
    """Pairs of consecutive items (start at [-2], end at [-1]) written as `a ± b`."""
    return [(x, y) for x, y in zip(items, items[1:]) if re.fullmatch(r"\s*±\s*", text[x[-1]:y[-2]])]


def source_values(results_md: str, metrics: list) -> tuple[list[float], list[tuple[float, float]]]:
    """Every number of RESULTS.md and of the metrics JSON documents, and every `value ± stderr` pair:
    written so in RESULTS.md, or sibling keys `k` and `k_stderr` / `k_stderr_paired` in the JSON."""
    nums = _numbers(results_md)
    vals = [v for v, _, _ in nums]
    pairs = [(x[0], y[0]) for x, y in _plus_minus(results_md, nums)]

    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                for err in (f"{k}_stderr", f"{k}_stderr_paired"):
                    if isinstance(v, (int, float)) and isinstance(x.get(err), (int, float)):
                        pairs.append((float(v), float(x[err])))
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            vals.append(float(x))
    for doc in metrics:
        walk(doc)
    return vals, pairs


def _matches(figure: tuple, value: float) -> bool:
    """A source value supports a figure when it rounds to it (same sign when the figure has one; a
    percentage may be written as a fraction)."""
    _, shown, decimals, signed, pct = figure[:5]
    candidates = [value if signed else abs(value)]
    if pct:
        candidates.append(candidates[0] * 100)
    return any(abs(c - shown) <= 0.5 * 10 ** -decimals + 1e-9 for c in candidates)


def unsupported_figures(readme: str, results_md: str, metrics: list) -> list[str]:
    """README figures that no source number rounds to, and `a ± b` claims that no source pair supports
    (a real figure with another figure's standard error is still wrong)."""
    vals, pairs = source_values(results_md, metrics)
    figures = results_figures(readme)
    bad = [f[0] for f in figures if not any(_matches(f, v) for v in vals)]
    for x, y in _plus_minus(readme, figures):
        if x[0] not in bad and y[0] not in bad and not any(
                _matches(x, a) and _matches(y, b) for a, b in pairs):
            bad.append(f"{x[0]} ± {y[0]}")
    return bad


def _sources() -> tuple[str, list]:
    metrics = [json.loads(p.read_text()) for p in sorted((ROOT / "metrics").glob("*.json"))]
    return (ROOT / "RESULTS.md").read_text(encoding="utf-8"), metrics


# ---------------------------------------------------------------- the repository's own docs

@pytest.mark.parametrize("md", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_relative_links_resolve(md):
    assert broken_links(md) == []


def test_readme_links_the_docs_and_results():
    targets = link_targets((ROOT / "README.md").read_text(encoding="utf-8"))
    assert "RESULTS.md" in targets and "docs/label.png" in targets
    for doc in (ROOT / "docs").glob("*.md"):
        assert f"docs/{doc.name}" in targets, f"README does not link {doc.name}"


def test_readme_quotes_no_figure_the_results_do_not_hold():
    results_md, metrics = _sources()
    assert unsupported_figures((ROOT / "README.md").read_text(encoding="utf-8"), results_md, metrics) == []


# ---------------------------------------------------------------- the checkers themselves

RESULTS = """| main | 0.640 ± 0.018 | 0.656 ± 0.018 | +0.015 ± 0.007 |
- the control gains +0.053 ± 0.011; lr 3e-4 collapses (−0.108 ± 0.015); 954 prompts
"""
METRICS = [{"sft": {"pass@1": 0.6403, "pass@1_stderr": 0.0183, "pass@1_greedy_stderr": 0.0195, "pass@5": 0.7203},
            "delta": {"aligned": {"pass@1": 0.0154, "pass@1_stderr_paired": 0.0073, "pass@5": -0.0067}},
            "met": {"sft": {"bleu": True}}}]


def test_made_up_figures_are_caught():
    readme = ("pass@1 rises from 0.640 ± 0.018 to 0.656 (+0.015 ± 0.007); pass@5 0.720, −0.007.\n"
              "The control gains +0.053 ± 0.008, GRPO 0.612, and it solves 85% of level-1 tasks.\n")
    assert unsupported_figures(readme, RESULTS, METRICS) == ["0.008", "0.612", "85%"]


def test_a_flipped_sign_is_caught():
    assert unsupported_figures("GRPO: −0.015 against the control's +0.053", RESULTS, METRICS) == ["−0.015"]
    assert unsupported_figures("lr 3e-4: +0.108", RESULTS, METRICS) == ["+0.108"]
    assert unsupported_figures("lr 3e-4: -0.108, or 0.108 lost", RESULTS, METRICS) == []


def test_a_figure_with_another_figures_stderr_is_caught():
    results = RESULTS + "- 400 more supervised steps: +0.034 ± 0.008\n"
    readme = "The control gains +0.053 ± 0.008 (GRPO +0.015 ± 0.007, SFT 0.640 ± 0.018)."
    assert unsupported_figures(readme, results, []) == ["+0.053 ± 0.008"]
    readme = "SFT pass@1 0.640 ± 0.018, aligned +0.015 ± 0.007 over it; greedy stderr 0.020"
    assert unsupported_figures(readme, "", METRICS) == []
    assert unsupported_figures("SFT pass@1 0.640 ± 0.020", "", METRICS) == ["0.640 ± 0.020"]


def test_numbers_that_are_not_figures_pass():
    readme = ("`torch==2.13.0`, Python 3.11, dvc==3.67.1, 4,000 tasks, 11 families, a 2 × 128 policy,\n"
              "`-S evaluate.temperature=0.2`, learning_rate=0.0001, weights 0.2 / 0.3, 1e-3 relative,\n"
              "difficulty 1–3, 1,431 steps, 2026-12, port 8765, SmolLM2-135M, -S key=value, 0.5B.\n")
    assert results_figures(readme) == []
    assert unsupported_figures(readme, "", []) == []


def test_rounding_matches_the_metrics_files():
    assert unsupported_figures("pass@5 0.720 (−0.007); 0.72; .64", "", METRICS) == []
    assert unsupported_figures("pass@5 0.721", "", METRICS) == ["0.721"]


def test_broken_links_are_caught(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# a\n")
    (tmp_path / "docs" / "pic.png").write_bytes(b"")
    readme = tmp_path / "README.md"
    readme.write_text(
        "[a](docs/a.md) [a, section](docs/a.md#a) ![pic](docs/pic.png) [anchor](#a) "
        "[web](https://example.com/x.md) [mail](mailto:x@example.com) [titled](docs/a.md \"title\")\n"
        "[gone](docs/gone.md) ![lost](docs/lost.png) [gone too](<docs/b c.md>)\n"
        "[ref]: docs/ref.md\n<img src=\"docs/img.png\">\n"
        "`[code](docs/not-a-link.md)`\n```\n[fenced](docs/fenced.md)\n```\n", encoding="utf-8")
    assert broken_links(readme, tmp_path) == [
        "README.md: docs/gone.md", "README.md: docs/lost.png", "README.md: docs/b c.md",
        "README.md: docs/ref.md", "README.md: docs/img.png"]
    doc = tmp_path / "docs" / "b.md"
    doc.write_text("[up](../README.md) [pic](pic.png) [sibling](a.md) [no](../docs/none.md)\n")
    assert broken_links(doc, tmp_path) == ["docs/b.md: ../docs/none.md"]
