"""The synthetic task generator and the HumanEval / MBPP / JSONL loaders."""
from __future__ import annotations

import ast
import dataclasses
import gzip
import json
import random
import re
from pathlib import Path

import pytest

from src.io import UserError
from src.params import parse_section, read_params
from src.tasks import TASK_FIELDS, synthetic
from src.tasks.loaders import convert_mbpp, load_humaneval, load_jsonl_problems, load_mbpp
from tests.conftest import MBPP, needs_mbpp

ROOT = Path(__file__).resolve().parents[1]
MBPP_KNOWN_BAD = {"Mbpp/341", "Mbpp/596", "Mbpp/642"}   # set order / sys.getsizeof: see the data README


def run_in_sandbox(tasks: list[dict], completions: list[str] | None = None, timeout_s: float | None = None):
    from src.sandbox import Job, SandboxParams, execute

    params = parse_section(SandboxParams, read_params(ROOT / "params.yaml")["sandbox"], "sandbox")
    if timeout_s is not None:   # a longer wall-clock and CPU limit where the params have them
        limits = {f.name for f in dataclasses.fields(params)} & {"timeout_s", "cpu_time_s"}
        params = dataclasses.replace(params, **{k: max(getattr(params, k), timeout_s) for k in limits})
    completions = completions or [t["canonical_solution"] for t in tasks]
    return execute([Job(t["prompt"], c, t["test"], t["entry_point"]) for t, c in zip(tasks, completions)], params)


@pytest.fixture(scope="module")
def sample() -> list[dict]:
    """330 tasks: 10 per (family, level) cell, equal level weights."""
    return synthetic.generate(330, seed=11)


# ----------------------------------------------------------------------------------- generator

def test_same_seed_same_tasks_other_seed_other_tasks():
    counts = {"train": 60, "val": 10, "test": 20}
    a = synthetic.generate_splits(counts, 5, heldout_combo_frac=0.3)
    assert a == synthetic.generate_splits(counts, 5, heldout_combo_frac=0.3)
    b = synthetic.generate_splits(counts, 6, heldout_combo_frac=0.3)
    assert [t["prompt"] for t in a["train"]] != [t["prompt"] for t in b["train"]]


def test_val_and_test_do_not_depend_on_the_train_count():
    small = synthetic.generate_splits({"train": 30, "val": 10, "test": 20}, 3)
    large = synthetic.generate_splits({"train": 90, "val": 10, "test": 20}, 3)
    assert small["test"] == large["test"] and small["val"] == large["val"]


def test_families_levels_and_task_shape(sample):
    assert len(synthetic.FAMILY_NAMES) >= 8
    assert {t["family"] for t in sample} == set(synthetic.FAMILY_NAMES)
    assert {t["difficulty"] for t in sample} == {1, 2, 3}
    assert len({t["task_id"] for t in sample}) == len(sample)
    for t in sample:
        assert set(TASK_FIELDS) <= set(t) and t["source"] == "synthetic"
        assert t["task_id"].startswith("Synthetic/")
        assert t["prompt"].startswith(f"def {t['entry_point']}(") and ">>> " in t["prompt"]
        assert t["test"].startswith("def check(candidate):") and t["test"].count("assert ") >= 3
        assert t["canonical_solution"].startswith("    ")
        ast.parse(t["prompt"] + t["canonical_solution"] + "\n" + t["test"])   # well-formed program
        n_ops = len(t["combo"].split(":")[1].split("|"))
        assert n_ops >= t["difficulty"]                                      # levels chain more ops


def test_compact_prompts(sample):
    lengths = sorted(len(t["prompt"]) + len(t["canonical_solution"]) for t in sample)
    assert lengths[len(lengths) // 2] < 400 and lengths[-1] < 800


def test_levels_vary_phrasing_names_and_constants(sample):
    l1 = [t for t in sample if t["difficulty"] == 1]
    assert len({t["entry_point"] for t in l1}) > len(l1) // 3
    docs = [t["prompt"].split('"""')[1].split(">>>")[0] for t in sample]
    assert len(set(docs)) > 0.95 * len(docs)


def test_canonical_solutions_pass_and_a_wrong_one_fails(sample):
    tasks = random.Random(0).sample(sample, 300)
    results = run_in_sandbox(tasks)
    assert [t["task_id"] for t, r in zip(tasks, results) if not r.passed] == []
    wrong = run_in_sandbox(tasks, ["    return None\n"] * len(tasks))
    assert [t["task_id"] for t, r in zip(tasks, wrong) if r.passed] == []


def test_skipping_any_op_of_a_chain_fails_the_tests(sample):
    # level-3 chains are `v1 = op1(arg)`, `v2 = op2(v1)`, `return op3(v2)`: replace op1 or op2 by a copy
    chains = [t for t in sample if t["family"] in ("list_reduce", "string_transform", "arithmetic")
              and t["difficulty"] == 3]
    tasks, mutants = [], []
    for t in chains:
        arg = t["prompt"].split("(", 1)[1].split(":", 1)[0]
        lines = t["canonical_solution"].splitlines(keepends=True)
        v1, v2 = (line.strip().split(" = ", 1)[0] for line in lines[:2])
        tasks += [t, t]
        mutants += [f"    {v1} = {arg}\n" + "".join(lines[1:]), lines[0] + f"    {v2} = {v1}\n" + lines[2]]
    assert len(chains) >= 20
    results = run_in_sandbox(tasks, mutants)
    assert [t["task_id"] for t, r in zip(tasks, results) if r.passed] == []


def test_heldout_combinations_and_family_stay_out_of_train():
    splits = synthetic.generate_splits({"train": 400, "val": 60, "test": 200}, 9,
                                       heldout_combo_frac=0.5, heldout_family="recursion")
    held = synthetic.heldout_combos(9, synthetic.FAMILY_NAMES, 0.5)
    train_combos = {t["combo"] for t in splits["train"]}
    assert not train_combos & held
    assert all(t["family"] != "recursion" and not t["heldout"] for t in splits["train"])
    test_held = [t for t in splits["test"] if t["heldout"]]
    assert len(test_held) > len(splits["test"]) // 5
    assert all(t["combo"] not in train_combos for t in test_held)
    assert any(t["family"] == "recursion" for t in splits["test"])
    prompts = [t["prompt"] for s in splits.values() for t in s]
    assert len(prompts) == len(set(prompts))


def test_rl_split_is_fresh_and_leaves_the_other_splits_as_they_were():
    counts = {"train": 60, "val": 10, "test": 30}
    without = synthetic.generate_splits(counts, 4, heldout_combo_frac=0.5)
    splits = synthetic.generate_splits({**counts, "rl": 80}, 4, heldout_combo_frac=0.5)
    assert {s: splits[s] for s in counts} == without          # adding rl changes nothing else, ids included
    others = [t for s in counts for t in splits[s]]
    rl = splits["rl"]
    assert len(rl) == 80
    assert not {t["task_id"] for t in rl} & {t["task_id"] for t in others}
    assert not {t["prompt"] for t in rl} & {t["prompt"] for t in others}
    assert len({t["prompt"] for t in rl}) == 80
    assert sum(t["heldout"] for t in rl) > 0                    # by default rl may hold held-out combinations


def test_rl_without_heldout_combinations_or_family():
    held = synthetic.heldout_combos(4, synthetic.FAMILY_NAMES, 0.5)
    splits = synthetic.generate_splits({"train": 40, "test": 30, "rl": 120}, 4, heldout_combo_frac=0.5,
                                       heldout_family="loops", heldout_free=("train", "rl"))
    assert not {t["combo"] for t in splits["rl"]} & held
    assert all(t["family"] != "loops" and not t["heldout"] for t in splits["rl"])
    assert any(t["heldout"] for t in splits["test"])           # test keeps them on purpose
    free = synthetic.generate_splits({"train": 40, "test": 30, "rl": 120}, 4, heldout_combo_frac=0.5,
                                     heldout_family="loops")
    assert free["train"] == splits["train"] and free["test"] == splits["test"]
    assert any(t["family"] == "loops" for t in free["rl"]) and any(t["combo"] in held for t in free["rl"])


def test_test_shape_sets_the_cases_per_task():
    """prepare.random_inputs / max_asserts / min_asserts: the number of asserts each task's test has."""
    def asserts(shape):
        tasks = synthetic.generate_splits({"test": 60}, 3, shape=shape)["test"]
        return [t["test"].count("    assert ") for t in tasks]
    default = asserts(synthetic.TestShape())
    assert max(default) == 6 and min(default) >= 3
    assert max(asserts(synthetic.TestShape(max_asserts=3, min_asserts=3))) == 3
    assert min(asserts(synthetic.TestShape(random_inputs=6, max_asserts=8, min_asserts=5))) >= 5
    more = asserts(synthetic.TestShape(random_inputs=6, max_asserts=8))
    assert sum(more) > sum(default) and max(more) == 8
    with pytest.raises(ValueError, match="test shape"):
        synthetic.TestShape(max_asserts=2, min_asserts=3)


def test_bad_generator_arguments():
    with pytest.raises(ValueError, match="unknown family"):
        synthetic.generate_splits({"test": 5}, 0, families=["nope"])
    with pytest.raises(ValueError, match="heldout_family"):
        synthetic.generate_splits({"test": 5}, 0, families=["loops"], heldout_family="recursion")


# ----------------------------------------------------------------------------------- loaders

def test_humaneval_loader():
    problems = load_humaneval()
    assert len(problems) == 164
    assert all(p["source"] == "humaneval" and p["difficulty"] is None for p in problems)
    assert problems[0]["task_id"] == "HumanEval/0"


@needs_mbpp
def test_mbpp_conversion_passes_all_but_the_known_bad():
    tasks = load_mbpp(str(MBPP))
    assert len(tasks) == 974
    assert {s: sum(t["split"] == s for t in tasks) for s in ("prompt", "test", "validation", "train")} == \
        {"prompt": 10, "test": 500, "validation": 90, "train": 374}
    for t in tasks:
        assert "\r" not in t["prompt"] + t["canonical_solution"] + t["test"]
        assert t["entry_point"] != "check" and re.search(rf"def {t['entry_point']}\s*\(", t["prompt"])
    results = run_in_sandbox(tasks, timeout_s=20)     # Mbpp/123 alone takes about 4 s here
    failed = {t["task_id"] for t, r in zip(tasks, results) if not r.passed}
    assert failed <= MBPP_KNOWN_BAD


def test_mbpp_conversion_details():
    row = {"task_id": 700, "text": r"Match \d+ with a regex.", "test_setup_code": "", "challenge_test_list": [],
           "code": "import re\r\ndef f(s):\r\n\treturn g(s)\r\ndef g(s):\r\n\treturn re.findall(r'\\d+', s)",
           "test_list": ["assert f('a1b22') == ['1', '22']", "assert len(f('x')) == 0"]}
    t = convert_mbpp(row)
    assert t["entry_point"] == "f" and t["split"] == "train"
    assert t["prompt"].startswith("import re\ndef g(s):")          # helper moved before the entry point
    assert '\tr"""Match \\d+ with a regex.\n\t>>> f(\'a1b22\')\n\t[\'1\', \'22\']\n\t"""' in t["prompt"]
    assert t["canonical_solution"] == "\treturn g(s)\n"
    assert "assert candidate('a1b22') == ['1', '22']" in t["test"] and "len(candidate('x'))" in t["test"]
    one_liner = convert_mbpp({**row, "code": "def f(s): return [s]", "test_list": ["assert f('a') == ['a']"] * 3})
    assert one_liner["canonical_solution"] == "    return [s]\n"
    renamed = convert_mbpp({**row, "code": "def check(n):\n    return n > 1",
                            "test_list": ["assert check(2) == True"] * 3})
    assert renamed["entry_point"] == "check_fn" and "def check_fn(n):" in renamed["prompt"]


def test_mbpp_missing_file_and_unreachable_hub(monkeypatch):
    with pytest.raises(UserError, match="not found"):
        load_mbpp("data/no-such-mbpp.jsonl")
    import datasets

    def offline(*a, **k):
        raise ConnectionError("no network")
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError, match="hub dataset failed: ConnectionError"):
        load_mbpp("someone/mbpp")


def _problem(i: int, **over) -> dict:
    return {"task_id": f"T/{i}", "prompt": "def f(x):\n", "canonical_solution": "    return x\n",
            "test": "def check(candidate):\n    assert candidate(1) == 1\n", "entry_point": "f", **over}


def test_jsonl_loader_roundtrip_and_gzip(tmp_path):
    rows = [_problem(0), _problem(1, family="toy", difficulty=2)]
    plain = tmp_path / "p.jsonl"
    plain.write_text("".join(json.dumps(r) + "\n" for r in rows))
    zipped = tmp_path / "p.jsonl.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, zipped):
        tasks = load_jsonl_problems(path)
        assert [t["task_id"] for t in tasks] == ["T/0", "T/1"]
        assert tasks[0]["source"] == "jsonl" and tasks[0]["family"] is None and tasks[1]["difficulty"] == 2


@pytest.mark.parametrize("lines, message", [
    (['{"task_id": "T/0"', ], r"p\.jsonl:2: malformed JSON"),
    ([json.dumps({k: v for k, v in _problem(1).items() if k != "test"})], r"p\.jsonl:2: missing field 'test'"),
    ([json.dumps(_problem(1, prompt=3))], r"p\.jsonl:2: field 'prompt' must be str"),
    ([json.dumps(_problem(1, difficulty="hard"))], r"p\.jsonl:2: field 'difficulty' must be int or null"),
    ([json.dumps(_problem(0))], r"p\.jsonl:2: duplicate task_id 'T/0' \(first on line 1\)"),
])
def test_jsonl_loader_errors_name_file_and_line(tmp_path, lines, message):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(_problem(0)) + "\n" + "\n".join(lines) + "\n")
    with pytest.raises(UserError, match=message):
        load_jsonl_problems(path)
