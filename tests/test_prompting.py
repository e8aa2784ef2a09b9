"""Chat answers -> function bodies the harness scores: fenced or bare, whole functions or bodies, with
the helpers and imports they define; each turned program really runs against the task's test."""
import pytest

from src.prompting import (answer_code, answer_to_body, body_indent, chat_prompt, code_closed, policy_rows,
                           reference_answer)
from src.sandbox import Job, SandboxParams, execute

PROMPT = 'import math\n\n\ndef hyp(a: float, b: float) -> float:\n    """The hypotenuse of a right triangle."""\n'
TEST = "def check(candidate):\n    assert candidate(3, 4) == 5.0\n    assert candidate(5, 12) == 13.0\n"
SANDBOX = SandboxParams(backend="auto", timeout_s=3.0, cpu_time_s=3.0, memory_mb=1024, max_output_kb=64,
                        max_file_mb=16, max_disk_mb=64, max_procs=32, workers=1)

ANSWERS = {  # a chat answer -> does the program it becomes pass?
    "fenced, docstring, helper, import, self-test": (
        "Here is the function:\n\n```python\nfrom math import sqrt\n\ndef square(x):\n    return x * x\n\n"
        "def hyp(a: float, b: float) -> float:\n    \"\"\"Hypotenuse.\"\"\"\n    return sqrt(square(a) + square(b))\n\n"
        "print(hyp(3, 4))\nassert hyp(1, 1) == 0\n```\nIt uses Pythagoras.", True),
    "bare function": ("def hyp(a, b):\n    return math.hypot(a, b)\n", True),
    "one-line def": ("```python\ndef hyp(a, b): return (a * a + b * b) ** 0.5\n```", True),
    "body only": ("```\n    return (a ** 2 + b ** 2) ** 0.5\n```", True),
    "cut off by the token limit": ("```python\ndef hyp(a, b):\n    c = a * a + b * b\n    return c ** 0.5\n\n"
                                   "def unused(x):\n    return [x,\n", True),
    "decorated helper": ("```python\nimport functools\n\n@functools.lru_cache(maxsize=None)\ndef sq(x):\n"
                         "    return x * x\n\ndef hyp(a, b):\n    return (sq(a) + sq(b)) ** 0.5\n```", True),
    "wrong function": ("```python\ndef other(a, b):\n    return a + b\n```", False),
    "wrong answer": ("```python\ndef hyp(a, b):\n    return a + b\n```", False),
    "prose only": ("I cannot help with that.", False),
}


def test_answers_become_programs_that_pass_or_fail_as_they_should():
    names = list(ANSWERS)
    bodies = [answer_to_body(ANSWERS[n][0], PROMPT, "hyp") for n in names]
    results = execute([Job(PROMPT, b, TEST, "hyp") for b in bodies], SANDBOX)
    assert {n: r.passed for n, r in zip(names, results)} == {n: ANSWERS[n][1] for n in names}


def test_body_drops_the_docstring_and_self_tests_and_keeps_helpers():
    body = answer_to_body(ANSWERS["fenced, docstring, helper, import, self-test"][0], PROMPT, "hyp")
    assert body.startswith("    return sqrt(square(a) + square(b))\n")
    assert "Hypotenuse" not in body and "print(" not in body and "assert" not in body
    assert "\nfrom math import sqrt\n" in body and "\ndef square(x):\n    return x * x\n" in body


@pytest.mark.parametrize("answer,code", [
    ("text\n```js\nlet x\n```\n```python\nx = 1\n```", "x = 1\n"),   # the Python block, not the first
    ("```\nx = 2\n```", "x = 2\n"),
    ("```python\nx = 3\n", "x = 3\n"),                                  # unclosed fence
    ("x = 4", "x = 4"),                                                 # no fence
])
def test_answer_code(answer, code):
    assert answer_code(answer) == code


class TemplateTokenizer:
    """Records what a chat template is applied to (the real template is the tokenizer's own)."""
    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        return "<user>" + messages[0]["content"] + "</user><assistant>"


def test_chat_prompt_puts_the_instruction_then_the_fenced_prompt():
    text = chat_prompt(TemplateTokenizer(), PROMPT, "Complete this function.")
    assert text == "<user>Complete this function.\n\n```python\n" + PROMPT.rstrip() + "\n```</user><assistant>"


def test_baseline_evaluates_a_model_folder_as_it_is(tmp_path):
    """src.baseline: prepare + evaluate on HumanEval for a model folder, no training; --set checks keys."""
    import json

    from src import baseline
    from src.io import UserError
    from src.models import save_policy, scratch_model, train_tokenizer

    tok = train_tokenizer(["def f(x):\n    return x + 1\n"] * 20, vocab_size=300, min_frequency=1)
    save_policy(scratch_model(tok, n_layer=1, d_model=32, n_head=2, d_ff=64, max_len=512, seed=0), tok,
                tmp_path / "m", {})
    sets = ["prepare.source=humaneval", "evaluate.max_tasks=3", "evaluate.n_samples=1", "base.temperature=0",
            "evaluate.low_temperature=null", "evaluate.greedy=false", "evaluate.max_new_tokens=8", "evaluate.ks=[1]", "base.num_threads=1"]
    ev = baseline.main(str(tmp_path / "m"), str(tmp_path / "out"), sets=sets)
    assert ev["tasks"] == 3 and 0.0 <= ev["base"]["pass@1"] <= 1.0
    rows = [json.loads(x) for x in (tmp_path / "out/samples/base.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in rows] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    with pytest.raises(UserError, match="evaluate.n_sample"):
        baseline.main(str(tmp_path / "m"), str(tmp_path / "out2"), sets=["evaluate.n_sample=1"])
    with pytest.raises(UserError, match="'base.prompt_format': chat, but .* has no chat template"):
        baseline.main(str(tmp_path / "m"), str(tmp_path / "out3"), sets=sets + ["base.prompt_format=chat"])


@pytest.mark.parametrize("text,closed", [
    ("Here:\n```python\nx = 1\n```", True),
    ("```python\nx = 1\n``", False),                  # the fence is not closed yet
    ("```python", False),                              # nor opened (its line has not ended)
    ("```\nx = 1\n```\nand then", True),              # unlabelled counts as Python
    ("```bash\nls\n```\nnow ```python\nx", False),      # a closed shell block is not the code
    ("```bash\nls\n```\n```py\nx = 1\n```", True),
    ("no code at all", False),
])
def test_code_closed(text, closed):
    assert code_closed(text) is closed


@pytest.mark.parametrize("answer", [a for a, _ in ANSWERS.values()])
def test_stopping_once_the_code_closes_leaves_the_code_as_it_was(answer):
    """The sampler stops a chat answer at the first prefix where code_closed holds: every prefix from
    there on, the whole answer included, gives the same code and so the same body."""
    cut = next((k for k in range(len(answer) + 1) if code_closed(answer[:k])), None)
    if cut is None:
        return
    assert {answer_code(answer[:k]) for k in range(cut, len(answer) + 1)} == {answer_code(answer)}


def test_training_rows_in_chat_are_the_fenced_whole_function():
    rows = [{"prompt": PROMPT, "completion": "    return math.hypot(a, b)\n", "task_id": "t"}]
    assert policy_rows(rows, ("completion",), None, None) == [{"prompt": PROMPT, "completion": rows[0]["completion"]}]
    chat = policy_rows(rows, ("completion",), TemplateTokenizer(), "Complete this function.")
    assert chat == [{"prompt": chat_prompt(TemplateTokenizer(), PROMPT, "Complete this function."),
                     "completion": "```python\n" + PROMPT + "    return math.hypot(a, b)\n```"}]
    # the answer a chat policy is trained to write becomes the body it was made from (the prompt's
    # import comes back after it, as any answer's imports do) and the program passes
    body = answer_to_body(chat[0]["completion"], PROMPT, "hyp")
    assert body == rows[0]["completion"] + "\n\nimport math\n"
    assert execute([Job(PROMPT, body, TEST, "hyp")], SANDBOX)[0].passed
    assert answer_to_body(reference_answer("def g():\n", "    return 1\n"), "def g():\n", "g") == "    return 1\n"


def test_a_body_takes_the_indentation_of_its_prompt():
    """MBPP's prompts keep their reference's indentation (2 spaces here): a body indented by 4 after
    them would not even parse."""
    prompt = 'def double(x):\n  """Twice x.\n  >>> double(2)\n  4\n  """\n'
    test = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(-1) == -2\n"
    answer = "```python\ndef double(x):\n    y = x * 2\n    return y\n```"
    assert body_indent(prompt) == "  " and body_indent(PROMPT) == "    " and body_indent("def f():\n") == "    "
    body = answer_to_body(answer, prompt, "double")
    assert body == "  y = x * 2\n  return y\n"
    four = answer_to_body(answer, prompt.replace("\n  ", "\n    "), "double")   # the body of a 4-space prompt
    ok, bad = execute([Job(prompt, body, test, "double"), Job(prompt, four, test, "double")], SANDBOX)
    assert ok.passed and bad.status == "syntax_error"
