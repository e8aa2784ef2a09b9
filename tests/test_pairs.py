"""Preference pairs: execution pairs with tie-breakers and a cap, the simulated annotator, human
feedback files with file:line:field errors, the by-task split and the stats."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from src.io import UserError
from src.pairs import (best_of_n, build_pairs, pair_stats, read_human_feedback, simulate_human_feedback,
                       split_pairs, style_cost)

PROMPT = "def f(x):\n"


def s(task, completion, score, status=None, syntax_ok=True, prompt=PROMPT):
    status = status or ("passed" if score == 1.0 else "failed")
    return {"task_id": task, "prompt": prompt, "completion": completion, "score": score,
            "status": status, "syntax_ok": syntax_ok}


def cr(pairs):
    return [(p["chosen"], p["rejected"]) for p in pairs]


def test_higher_score_is_chosen_and_identical_completions_never_pair():
    samples = [s("t", "    return x\n", 1.0), s("t", "    return 0\n", 0.5), s("t", "    pass\n", 0.0),
               s("t", "    return x\n", 1.0)]          # a duplicate completion
    pairs = build_pairs(samples, max_pairs_per_task=0, tie_breakers=["none"], seed=0)
    assert sorted(cr(pairs)) == sorted([("    return x\n", "    return 0\n"), ("    return x\n", "    pass\n"),
                                        ("    return 0\n", "    pass\n")])
    assert all(p["chosen"] != p["rejected"] for p in pairs)
    first = pairs[0]   # largest gap first
    assert first == {"prompt": PROMPT, "chosen": "    return x\n", "rejected": "    pass\n", "task_id": "t",
                     "chosen_score": 1.0, "rejected_score": 0.0, "decided_by": "score", "source": "execution"}


def test_tie_breaking_by_syntax_then_length_and_still_tied_dropped():
    a = s("t", "    return (\n", 0.0, "syntax_error", syntax_ok=False)   # short but invalid
    b = s("t", "    return x + 1\n", 0.0)                                # valid, long
    c = s("t", "    return x+1\n", 0.0)                                  # valid, shorter
    d = s("t", "    return x-1\n", 0.0)                                  # valid, same length as c
    pairs = build_pairs([a, b, c, d], max_pairs_per_task=0, tie_breakers=["syntax", "shorter"], seed=0)
    got = {(p["chosen"], p["rejected"]): p["decided_by"] for p in pairs}
    assert got == {(b["completion"], a["completion"]): "syntax", (c["completion"], a["completion"]): "syntax",
                   (d["completion"], a["completion"]): "syntax", (c["completion"], b["completion"]): "shorter",
                   (d["completion"], b["completion"]): "shorter"}   # c vs d: still tied, dropped
    # Order matters: length first makes the short invalid one win against the valid ones.
    by_len = build_pairs([a, b], 0, ["shorter", "syntax"], seed=0)
    assert cr(by_len) == [(a["completion"], b["completion"])]
    assert build_pairs([a, b, c, d], 0, ["none"], seed=0) == []
    assert build_pairs([a, b], 0, [], seed=0) == []


def test_unknown_tie_breaker_is_a_user_error():
    with pytest.raises(UserError, match="tie breaker 'longer'"):
        build_pairs([s("t", "a", 1.0)], 0, ["longer"], seed=0)


def many(task, n):
    return [s(task, f"    return x + {i}\n", i / (n - 1)) for i in range(n)]


def test_cap_per_task_deterministic_and_prefers_large_gaps():
    samples = many("t1", 6) + many("t2", 6)
    pairs = build_pairs(samples, max_pairs_per_task=4, tie_breakers=["syntax"], seed=3)
    assert [p["task_id"] for p in pairs].count("t1") == 4 and [p["task_id"] for p in pairs].count("t2") == 4
    assert pairs == build_pairs(samples, 4, ["syntax"], seed=3)
    gaps = [p["chosen_score"] - p["rejected_score"] for p in pairs if p["task_id"] == "t1"]
    all_gaps = sorted((p["chosen_score"] - p["rejected_score"] for p in build_pairs(many("t1", 6), 0, [], 0)),
                      reverse=True)
    assert sorted(gaps, reverse=True) == pytest.approx(all_gaps[:4])
    # A task's pairs don't depend on the other tasks present.
    assert [p for p in pairs if p["task_id"] == "t1"] == build_pairs(many("t1", 6), 4, ["syntax"], seed=3)


def test_cap_spreads_over_completions_when_gaps_are_equal():
    # One passing and five failing: all five pass-vs-fail pairs have gap 1; a cap of 3 picks 3 distinct losers.
    samples = [s("t", "    return x\n", 1.0)] + [s("t", f"    return {i}\n", 0.0) for i in range(5)]
    pairs = build_pairs(samples, 3, ["shorter"], seed=1)
    assert len(pairs) == 3 and {p["chosen"] for p in pairs} == {"    return x\n"}
    assert len({p["rejected"] for p in pairs}) == 3
    seeds = {tuple(cr(build_pairs(samples, 3, ["shorter"], seed=k))) for k in range(6)}
    assert len(seeds) > 1   # the seed picks which losers


SIM = [s("t", "    return x\n", 1.0),
       s("t", "    y = x\n    return y\n", 1.0),
       s("t", "    if x == None:\n        return 0\n", 0.0),
       s("t", "    return x is None\n", 0.0)]


def test_simulated_annotator_rule_without_noise():
    pairs = simulate_human_feedback(SIM, noise=0.0, max_pairs_per_task=0, seed=0)
    got = {(p["chosen"], p["rejected"]): p["rule"] for p in pairs}
    passing = {SIM[0]["completion"], SIM[1]["completion"]}
    for (c, r), rule in got.items():
        if rule == "passed":
            assert c in passing and r not in passing
    assert got[(SIM[0]["completion"], SIM[1]["completion"])] == "shorter"
    assert got[(SIM[3]["completion"], SIM[2]["completion"])] == "shorter"
    assert sum(rule == "passed" for rule in got.values()) == 4
    assert all(p["annotator"] == "simulated" and p["source"] == "simulated" for p in pairs)


def test_simulated_noise_one_flips_every_label_and_is_seeded():
    clean = simulate_human_feedback(SIM, 0.0, 0, seed=5)
    flipped = simulate_human_feedback(SIM, 1.0, 0, seed=5)
    assert cr(flipped) == [(r, c) for c, r in cr(clean)]
    half = simulate_human_feedback(SIM, 0.5, 0, seed=5)
    assert half == simulate_human_feedback(SIM, 0.5, 0, seed=5)


def test_simulated_idiom_rule_and_style_cost():
    loop = "def f(xs):\n    for i in range(len(xs)):\n        if xs[i] == None:\n            return True\n"
    good = "def f(xs):\n    return any(x is None for x in xs)\n"
    assert style_cost(good) < style_cost(loop)
    assert style_cost("def f(:\n") == (10**6, 10**6)
    # Same status, same line count: the more idiomatic one is chosen.
    a = s("t", "    return x == None\n", 0.0, prompt="def f(x):\n")
    b = s("t", "    return x is None\n", 0.0, prompt="def f(x):\n")
    pairs = simulate_human_feedback([a, b], 0.0, 0, seed=0)
    assert cr(pairs) == [(b["completion"], a["completion"])] and pairs[0]["rule"] == "idiomatic"


def test_simulated_docstring_says_not_human():
    assert "NOT human judgments" in simulate_human_feedback.__doc__


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def test_read_human_feedback_skips_non_preferences_and_marks_source(tmp_path):
    write(tmp_path / "a.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r", "annotator": "ann1",
                                  "timestamp": "2026-01-01T00:00:00Z", "task_id": "t1"},
                                 "",
                                 {"prompt": "p", "chosen": "c2", "rejected": "r2", "label": "tie"},
                                 {"prompt": "q", "chosen": "c", "rejected": "r", "label": "both_bad"},
                                 {"prompt": "q", "chosen": "c", "rejected": "r", "label": "skip"}])
    write(tmp_path / "b.jsonl", [{"prompt": "q", "chosen": "x", "rejected": "y", "time": 12.5}])
    (tmp_path / "notes.txt").write_text("not read")
    rows = read_human_feedback(tmp_path)
    assert [(r["prompt"], r["chosen"]) for r in rows] == [("p", "c"), ("q", "x")]
    assert all(r["source"] == "human" for r in rows) and rows[0]["annotator"] == "ann1"
    (tmp_path / "empty").mkdir()
    assert read_human_feedback(tmp_path / "empty") == []


@pytest.mark.parametrize("rows, message", [
    ([{"prompt": "p", "chosen": "c", "rejected": "r"}, {"prompt": "p", "chosen": "c"}],
     "h.jsonl:2: missing field 'rejected'"),
    ([{"prompt": "p", "chosen": 3, "rejected": "r"}], "h.jsonl:1: field 'chosen' must be str, got int"),
    ([{"prompt": "p", "chosen": "c", "rejected": "r"}, "", {"prompt": "p", "chosen": "c", "rejected": "r",
                                                           "annotator": 7}],
     "h.jsonl:3: field 'annotator' must be str, got int"),
    ([{"prompt": "p", "chosen": "c", "rejected": "r", "label": ["tie"]}], "h.jsonl:1: field 'label' must be str"),
    ([{"prompt": "p", "chosen": "c", "rejected": "c"}], "h.jsonl:1: field 'rejected' is identical"),
    (['{"prompt": "p", '], "h.jsonl:1: malformed JSON"),
])
def test_read_human_feedback_errors_name_file_line_field(tmp_path, rows, message):
    write(tmp_path / "h.jsonl", rows)
    with pytest.raises(UserError) as e:
        read_human_feedback(tmp_path)
    assert message in str(e.value)


def test_missing_human_feedback_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_human_feedback(tmp_path / "nope")


def test_split_by_task_has_no_overlap_and_agrees_across_sources():
    samples = [x for t in range(40) for x in many(f"t{t}", 3)]
    exec_pairs = build_pairs(samples, 0, ["syntax"], seed=0)
    sim_pairs = simulate_human_feedback(samples, 0.0, 0, seed=0)
    train, val = split_pairs(exec_pairs, 0.25, seed=7)
    tr, va = {p["task_id"] for p in train}, {p["task_id"] for p in val}
    assert tr and va and not tr & va and len(train) + len(val) == len(exec_pairs)
    assert 4 <= len(va) <= 18
    s_train, s_val = split_pairs(sim_pairs, 0.25, seed=7)
    assert {p["task_id"] for p in s_val} == va   # same tasks held out for both heads
    assert split_pairs(exec_pairs, 0.25, seed=7) == (train, val)
    assert split_pairs(exec_pairs, 0.0, seed=7) == (exec_pairs, [])
    # Tiny sets still get a val task; human rows without task_id group by prompt.
    two = [{"prompt": "a", "chosen": "1", "rejected": "2"}, {"prompt": "b", "chosen": "1", "rejected": "2"},
           {"prompt": "a", "chosen": "3", "rejected": "4"}]
    t2, v2 = split_pairs(two, 0.01, seed=0)
    assert len({p["prompt"] for p in v2}) == 1 and not {p["prompt"] for p in t2} & {p["prompt"] for p in v2}


def test_pair_stats_counts_gaps_and_sources():
    samples = many("t1", 3) + many("t2", 2)
    pairs = build_pairs(samples, 0, ["none"], seed=0) + [
        {"prompt": "p", "chosen": "ab", "rejected": "abcd", "source": "human"}]
    st = pair_stats(pairs)
    assert st["n_pairs"] == 5 and st["n_tasks"] == 3
    assert st["by_source"]["execution"]["n_pairs"] == 4
    assert st["by_source"]["execution"]["mean_score_gap"] == pytest.approx((0.5 + 1.0 + 0.5 + 1.0) / 4)
    assert st["by_source"]["human"]["mean_score_gap"] is None
    assert st["by_source"]["human"]["mean_chosen_chars"] == 2
    assert st["by_source"]["execution"]["decided_by"] == {"score": 4}
    assert pair_stats([])["n_pairs"] == 0


def test_best_of_n_against_random_and_oracle():
    groups = {
        "a": [(0.1, False), (0.9, True), (0.3, False), (0.2, False)],   # the top score passes
        "b": [(2.0, False), (1.0, True), (-1.0, True), (0.0, False)],   # the top score fails
        "c": [(0.5, False), (0.5, False), (0.1, False), (0.0, False)],  # nothing passes
        "d": [(0.7, True), (0.7, False), (0.2, True), (0.1, True)],     # a tie: the earlier sample wins
    }
    got = best_of_n(groups)
    assert got == {"tasks": 4, "n": 4, "top_pick": 2 / 4, "random": (1 / 4 + 2 / 4 + 0 + 3 / 4) / 4,
                   "oracle": 3 / 4, "gain": 2 / 4 - 6 / 16}
    groups["d"] = [(0.7, False), (0.7, True), (0.2, True), (0.1, True)]  # the tie's order flipped: the pick too
    assert best_of_n(groups)["top_pick"] == 1 / 4
    # a constant score always picks the first sample
    assert best_of_n({"t": [(0.0, False), (0.0, True)]})["top_pick"] == 0.0
    assert best_of_n({}) == {"tasks": 0, "n": 0, "top_pick": None, "random": None, "oracle": None, "gain": None}


# Pure logic (STYLE.md, convention 6): importing these must not pull in torch.
PURE_MODULES = ("src.pairs", "src.rewards", "src.sandbox", "src.metrics", "src.metrics.passk", "src.metrics.text",
                "src.metrics.ruby", "src.metrics.quality", "src.tasks", "src.tasks.synthetic", "src.tasks.loaders",
                "src.prompting")


def test_pure_logic_modules_import_no_torch():
    code = ("import importlib, sys\n"
            f"for m in {PURE_MODULES!r}:\n"
            "    importlib.import_module(m)\n"
            "    assert 'torch' not in sys.modules, f'importing {m} imports torch'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
