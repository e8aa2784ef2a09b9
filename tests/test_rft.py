"""rft and online_dpo: on programs really run in the sandbox, rft keeps only distinct passing programs
(at most keep_per_task per task, plus the labelled rows when mix_train) and online DPO pairs a passing
chosen with a failing rejected; offline DPO drops pairs whose chosen failed; the online methods' prompts
come from rl, train or both; and both methods run their rounds on a tiny Llama with the steps and
completions counted."""
import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from src.io import UserError
from src.params import BaseParams, load_section
from src.rollouts import body_key, keep_passing, pass_fail_pairs, pass_rate
from src.sandbox import Job, SandboxParams, execute
from tests.conftest import ROOT

PROMPT = 'def add_one(x: int) -> int:\n    """Return x + 1."""\n'
TEST = "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(-1) == 0\n    assert candidate(10) == 11\n"
TASK = {"task_id": "T/0", "prompt": PROMPT, "canonical_solution": "    return x + 1\n", "test": TEST,
        "entry_point": "add_one"}
TRAIN = {"task_id": "T/9", "prompt": 'def twice(x: int) -> int:\n    """Return 2 * x."""\n',
         "canonical_solution": "    return 2 * x\n", "test": "def check(candidate):\n    assert candidate(2) == 4\n",
         "entry_point": "twice"}
PASS = "    return x + 1\n"
PASS_SPACED = "    return x+1  # the same program\n\n"   # the same tokens as PASS: a duplicate
PASS_OTHER = "    return 1 + x\n"
FAIL = "    return x + 2\n"
FAIL_OTHER = "    return x\n"
COMPLETIONS = [PASS, FAIL, PASS_SPACED, FAIL_OTHER, PASS_OTHER, FAIL]


def sandbox() -> SandboxParams:
    return dataclasses.replace(load_section(SandboxParams, "sandbox", ROOT / "params.yaml"), workers=1)


def run(task: dict, completions: list[str]) -> list[dict]:
    """Sample rows as the reward stage writes them, from real sandbox runs."""
    results = execute([Job(task["prompt"], c, task["test"], task["entry_point"]) for c in completions], sandbox())
    return [{"task_id": task["task_id"], "prompt": task["prompt"], "completion": c, "score": r.score,
             "status": r.status, "passed": r.passed, "syntax_ok": True} for c, r in zip(completions, results)]


@pytest.fixture(scope="module")
def samples() -> list[dict]:
    rows = run(TASK, COMPLETIONS)
    assert [r["passed"] for r in rows] == [True, False, True, False, True, False]  # they really pass/fail
    return rows


# ---------------------------------------------------------------- selection (pure) on executed samples

def test_body_key_ignores_spacing_and_comments_not_structure():
    assert body_key(PASS) == body_key(PASS_SPACED) != body_key(PASS_OTHER)
    inside = "    for v in x:\n        y = v\n        return y\n"
    after = "    for v in x:\n        y = v\n    return y\n"
    assert body_key(inside) != body_key(after)


def test_rft_keeps_only_distinct_passing_programs(samples):
    kept = keep_passing(samples, 0, seed=1)
    assert sorted(k["completion"] for k in kept) == sorted([PASS, PASS_OTHER])  # PASS_SPACED is PASS again
    assert all(k["passed"] for k in kept)
    one = keep_passing(samples, 1, seed=1)
    assert len(one) == 1 and one[0]["completion"] in (PASS, PASS_OTHER)
    # a task whose samples all fail gives nothing; the cap is per task
    failing = run({**TASK, "task_id": "T/1"}, [FAIL, FAIL_OTHER])
    assert [k["task_id"] for k in keep_passing(samples + failing, 1, seed=1)] == ["T/0"]


def test_rft_rows_mix_in_the_labelled_train_split(samples):
    from src.ppo_or_dpo import RFTParams
    q = RFTParams(rounds=1, samples_per_prompt=4, keep_per_task=1, mix_train=True, sft={})
    kept, rows = rft_rows_of(samples, q)
    assert rows == [{"prompt": PROMPT, "completion": kept[0]["completion"]},
                    {"prompt": TRAIN["prompt"], "completion": TRAIN["canonical_solution"]}]
    kept, rows = rft_rows_of(samples, dataclasses.replace(q, mix_train=False, keep_per_task=0))
    assert sorted(r["completion"] for r in rows) == sorted([PASS, PASS_OTHER]) and len(kept) == 2


def rft_rows_of(samples, q):
    from src.ppo_or_dpo import rft_rows
    return rft_rows(samples, [TRAIN], q, seed=3)


def test_online_dpo_pairs_a_passing_chosen_with_a_failing_rejected(samples):
    pairs = pass_fail_pairs(samples, 0, seed=1)
    assert {(p["chosen"], p["rejected"]) for p in pairs} == {(c, r) for c in (PASS, PASS_OTHER)
                                                             for r in (FAIL, FAIL_OTHER)}
    rerun = run(TASK, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs])
    assert [r["passed"] for r in rerun] == [True] * len(pairs) + [False] * len(pairs)
    two = pass_fail_pairs(samples, 2, seed=1)
    assert len(two) == 2  # spread: two different chosen and two different rejected bodies
    assert len({p["chosen"] for p in two}) == 2 and len({p["rejected"] for p in two}) == 2
    assert pass_fail_pairs([s for s in samples if s["passed"]], 0, seed=1) == []  # nothing to pair against
    assert pass_rate(samples) == 0.5


def test_offline_dpo_drops_pairs_whose_chosen_failed(samples):
    from src.ppo_or_dpo import chosen_passed
    pairs = [{"prompt": PROMPT, "chosen": PASS_OTHER, "rejected": FAIL},       # kept
             {"prompt": PROMPT, "chosen": FAIL_OTHER, "rejected": FAIL},       # both fail: dropped
             {"prompt": PROMPT, "chosen": "    return -x\n", "rejected": FAIL}]  # never executed: dropped
    assert chosen_passed(pairs, samples) == pairs[:1]


# ---------------------------------------------------------------- prompts: rl | train | both

def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def task(i: int, split: str) -> dict:
    ref = "" if split == "rl" else "    return x\n"   # rl rows never carry a reference
    return {**TASK, "task_id": f"{split}/{i}", "canonical_solution": ref}


@pytest.mark.parametrize("prompts, ids", [("rl", ["rl/0", "rl/1"]), ("train", ["train/0", "train/1"]),
                                          ("both", ["train/0", "train/1", "rl/0", "rl/1"])])
def test_online_prompts_come_from_rl_train_or_both(tmp_path, prompts, ids):
    from src.ppo_or_dpo import method_prompts
    write_jsonl(tmp_path / "data/train.jsonl", [task(0, "train"), task(1, "train")])
    write_jsonl(tmp_path / "data/rl.jsonl", [task(0, "rl"), task(1, "rl")])
    rates = {"train/0": 0.5, "train/1": 1.0, "rl/0": 0.25, "rl/1": 0.0}
    write_jsonl(tmp_path / "reward/task_stats.jsonl", [{"task_id": t, "pass_rate": r} for t, r in rates.items()])
    p = SimpleNamespace(prompts=prompts, filter_prompts=False, max_prompts=0)
    ctx = SimpleNamespace(p=p, data_dir=str(tmp_path / "data"), reward_data=str(tmp_path / "reward"))
    got = method_prompts(ctx)
    assert [t["task_id"] for t in got] == ids
    assert all(t["canonical_solution"] == "" for t in got if t["task_id"].startswith("rl"))
    p.filter_prompts = True  # only tasks the SFT policy solves sometimes
    assert [t["task_id"] for t in method_prompts(ctx)] == [i for i in ids if 0 < rates[i] < 1]


# ---------------------------------------------------------------- the methods' rounds on a tiny Llama

@pytest.fixture(scope="module")
def tok():
    from src.models import train_tokenizer
    texts = [PROMPT + c for c in COMPLETIONS] + [TRAIN["prompt"] + TRAIN["canonical_solution"]]
    return train_tokenizer(texts * 20, vocab_size=300, min_frequency=1)


def context(tmp_path, tok, samples, method: str, **sections):
    """A MethodContext over tmp data: rl = [TASK], train = [TRAIN], the reward stage's samples of TASK."""
    from src.ppo_or_dpo import (AlignParams, MethodContext, OnlineDPOParams, RFTParams, SamplingParams)
    from tests.test_ppo import tiny_llama
    write_jsonl(tmp_path / "data/rl.jsonl", [{**TASK, "canonical_solution": ""}])
    write_jsonl(tmp_path / "data/train.jsonl", [TRAIN])
    write_jsonl(tmp_path / "reward/samples.jsonl", samples)
    write_jsonl(tmp_path / "reward/task_stats.jsonl", [{"task_id": "T/0", "pass_rate": 0.5}])
    p = AlignParams(method=method, prompts="rl", composite={}, filter_prompts=True, max_prompts=0, sampling={},
                    grpo_rollouts="sampler", dpo_pairs="execution", dpo_require_pass=True, dpo_rerank=False,
                    rm_batch_size=1, dpo={},
                    grpo={}, ppo={}, rft={}, online_dpo={}, sft_more={})
    trainer = dict(max_steps=2, per_device_train_batch_size=2, max_length=128, logging_steps=1, use_cpu=True,
                   bf16=False, gradient_checkpointing=False)
    rft = RFTParams(rounds=2, samples_per_prompt=2, keep_per_task=1, mix_train=True,
                    sft=dict(trainer, learning_rate=1e-3, completion_only_loss=True))
    online = OnlineDPOParams(rounds=1, samples_per_prompt=2, pairs_per_task=2,
                             dpo=dict(trainer, learning_rate=1e-3, beta=0.1))
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return MethodContext(
        p=p, base=BaseParams(seed=0, num_threads=1, checkpoint_steps=0, resume=False, accelerate="cpu",
                             temperature=1.0, prompt_format="completion", instruction=""),
        sandbox=sandbox(), composite=None, ppo=None,
        sampling=SamplingParams(reuse_reward_samples=True, top_p=1.0, max_new_tokens=12, batch_size=8),
        rft=sections.get("rft", rft), online_dpo=sections.get("online_dpo", online), data_dir=str(tmp_path / "data"),
        reward_data=str(tmp_path / "reward"), rm_dir="", plots_dir=str(tmp_path / "plots"),
        policy=tiny_llama(tok), tok=tok, work=str(work), resume=False,
        common=dict(output_dir=str(work), seed=0, data_seed=0, report_to="none", save_strategy="no"))


def weights(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_rft_rounds_reuse_then_sample_and_count_their_work(tmp_path, tok, samples):
    import torch

    from src.ppo_or_dpo import rft
    ctx = context(tmp_path, tok, samples, "rft")
    before = weights(ctx.policy)
    done = rft(ctx)
    first, second = done.extra["rounds"]
    # round 1: the reward stage's 6 executed samples of the task, none drawn here; one passing body kept
    assert first == {"round": 1, "prompts": 1, "completions": 6, "completions_sampled": 0, "pass_rate": 0.5,
                     "programs_kept": 1, "tasks_kept": 1, "train_rows": 2, "steps": 2,
                     "train_loss": first["train_loss"]}
    # round 2: the policy's own samples, run in the sandbox (a tiny random model rarely passes)
    assert second["completions"] == second["completions_sampled"] == 2 and second["steps"] == 2
    assert second["train_rows"] == second["programs_kept"] + 1  # the train row is mixed in every round
    assert done.extra["steps"] == 4 and done.extra["prompts"] == 1
    assert done.timing["optimizer_steps"] == 4 and done.timing["completions_sampled"] == 2
    assert done.policy is ctx.policy and any(not torch.equal(before[k], v) for k, v in weights(ctx.policy).items())
    # one loss curve over both rounds: the second round's rows follow the first's
    rows = (tmp_path / "plots/plots/metrics/loss.tsv").read_text().splitlines()[1:]
    steps = [int(r.split("\t")[0]) for r in rows]
    assert len(steps) == 4 and steps == sorted(set(steps))


def test_online_dpo_round_trains_on_pass_fail_pairs(tmp_path, tok, samples):
    from src.ppo_or_dpo import OnlineDPOParams, online_dpo
    ctx = context(tmp_path, tok, samples, "online_dpo")
    done = online_dpo(ctx)
    (only,) = done.extra["rounds"]
    assert only["pairs"] == 2 and only["tasks_paired"] == 1 and only["steps"] == 2
    assert done.timing["completions_sampled"] == 0 and done.timing["optimizer_steps"] == 2
    # with nothing that passes there is nothing to prefer: a clear error, not an empty trainer
    ctx = context(tmp_path / "again", tok, [s for s in samples if not s["passed"]], "online_dpo",
                  online_dpo=OnlineDPOParams(rounds=1, samples_per_prompt=2, pairs_per_task=2, dpo={}))
    with pytest.raises(UserError, match="online_dpo round 1: no task has both"):
        online_dpo(ctx)


class Killed(Exception):
    """Stands for an abrupt stop (SIGKILL, preemption)."""


def test_rft_resumes_after_its_last_finished_round(tmp_path, tok, samples, monkeypatch):
    """Killed when round 2 starts sampling, a resumed run loads round 1's policy and metrics from the
    work folder and ends as the uninterrupted run does."""
    import torch

    import src.ppo_or_dpo as m
    full = m.rft(context(tmp_path / "full", tok, samples, "rft"))

    def killed(*args, **kwargs):
        raise Killed
    real = m.sample_and_execute
    monkeypatch.setattr(m, "sample_and_execute", killed)  # round 1 reuses the reward samples: round 2 dies
    ctx = context(tmp_path / "run", tok, samples, "rft")
    with pytest.raises(Killed):
        m.rft(ctx)
    assert (Path(ctx.work) / "checkpoint-round1.pt").exists()
    monkeypatch.setattr(m, "sample_and_execute", real)
    ctx = context(tmp_path / "run", tok, samples, "rft")
    ctx.resume = True
    resumed = m.rft(ctx)
    assert resumed.extra == full.extra
    assert resumed.timing["optimizer_steps"] == full.timing["optimizer_steps"]
    a, b = weights(full.policy), weights(resumed.policy)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_grpo_rollouts_from_the_sampler(tok):
    """The GRPO rollout_func: rows in the order TRL asks (a prompt repeated per generation, any order),
    each prompt's ids as the trainer scores them, every completion cut where the body ends (nothing
    after EOS or the token opening a top-level line), the same draws for the same optimizer step."""
    from src.generation import truncate_completion
    from src.ppo_or_dpo import sampler_rollout
    from tests.test_ppo import tiny_llama
    model = tiny_llama(tok)
    model.train()
    trainer = SimpleNamespace(model=model, state=SimpleNamespace(global_step=3),
                              accelerator=SimpleNamespace(unwrap_model=lambda m: m))
    prompts = [PROMPT, TRAIN["prompt"], PROMPT, TRAIN["prompt"], PROMPT, PROMPT]
    rollout = sampler_rollout(tok, 1.0, 1.0, 12, seed=0)
    out = rollout(prompts, trainer)
    assert model.training and out["logprobs"] is None
    assert out["prompt_ids"] == [tok(q, add_special_tokens=False).input_ids for q in prompts]
    assert len(out["completion_ids"]) == len(prompts) and all(1 <= len(c) <= 12 for c in out["completion_ids"])
    for c in out["completion_ids"]:
        assert tok.eos_token_id not in c[:-1]
        text = tok.decode(c[:-1], skip_special_tokens=True)
        assert truncate_completion(text) == text   # no top-level line before the last token
    assert len({tuple(c) for c in out["completion_ids"]}) > 1
    assert rollout(prompts, trainer) == out
    trainer.state.global_step = 4
    assert rollout(prompts, trainer)["completion_ids"] != out["completion_ids"]
