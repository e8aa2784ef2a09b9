"""Static code-quality measures of generated programs: syntax validity, cyclomatic complexity
(radon), and style warnings (pycodestyle + pyflakes), all in-process on a string.

The programs scored are whole functions (prompt + completion, composed by the caller).
"""
from __future__ import annotations

import ast
import io
import warnings
from typing import Sequence

MAX_LINE_LENGTH = 100  # pycodestyle's 79 would flag most generated code; 100 is a common project limit


def syntax_valid(code: str) -> bool:
    """True when `ast.parse` accepts the code."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)  # e.g. invalid escapes: still valid code
            ast.parse(code)
        return True
    except (SyntaxError, ValueError):  # ValueError: source with a NUL byte
        return False


def _function_blocks(blocks):
    """Functions, methods and closures from radon's block list (classes are only containers)."""
    from radon.visitors import Class

    out = []
    stack = list(blocks)
    while stack:
        b = stack.pop()
        if isinstance(b, Class):
            stack.extend(b.methods)
            stack.extend(b.inner_classes)
        else:
            out.append(b)
            stack.extend(b.closures)
    return out


def cyclomatic_complexity(code: str) -> float | None:
    """Mean cyclomatic complexity (radon) over the functions, methods and closures in the code;
    for code without any function, radon's complexity of the module-level code. None if unparsable.
    """
    if not syntax_valid(code):
        return None
    from radon.complexity import cc_visit
    from radon.visitors import ComplexityVisitor

    funcs = _function_blocks(cc_visit(code))
    if not funcs:
        return float(ComplexityVisitor.from_code(code).complexity)
    return sum(f.complexity for f in funcs) / len(funcs)


def _pycodestyle_count(code: str) -> int:
    import pycodestyle

    # quiet=True selects pycodestyle's BaseReport, which counts without printing; default ignore list.
    style = pycodestyle.StyleGuide(quiet=True, max_line_length=MAX_LINE_LENGTH)
    checker = pycodestyle.Checker(lines=code.splitlines(keepends=True), options=style.options)
    return checker.check_all()


def _pyflakes_count(code: str) -> int:
    from pyflakes.api import check
    from pyflakes.reporter import Reporter

    return check(code, "<code>", Reporter(io.StringIO(), io.StringIO()))


def style_warnings_per_100_lines(code: str) -> float | None:
    """(pycodestyle warnings + pyflakes warnings) * 100 / non-empty lines.

    pycodestyle runs with max line length 100 and its default ignore list. A missing final newline
    is added first: it is an artefact of how prompt and completion are joined, not the model's style.
    None when the code does not parse or has no non-empty line.
    """
    if not syntax_valid(code):
        return None
    lines = sum(1 for line in code.splitlines() if line.strip())
    if lines == 0:
        return None
    if not code.endswith("\n"):
        code += "\n"
    return (_pycodestyle_count(code) + _pyflakes_count(code)) * 100.0 / lines


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def quality_summary(codes: Sequence[str]) -> dict:
    """{"syntax_valid": rate, "complexity": mean over parsable, "style_per_100_lines": mean over parsable}.

    A mean with nothing to average (no code, or none parsable) is None.
    """
    valid = [syntax_valid(c) for c in codes]
    complexities = [x for x in map(cyclomatic_complexity, codes) if x is not None]
    styles = [x for x in map(style_warnings_per_100_lines, codes) if x is not None]
    return {
        "syntax_valid": _mean([float(v) for v in valid]),
        "complexity": _mean(complexities),
        "style_per_100_lines": _mean(styles),
    }
