"""The reward stage's task choice (`reward.prompts`) and a tiny end-to-end run on rl prompts, which
carry no reference: sampling (stubbed with known programs), execution, pairs, the reward model and
best-of-n on its held-out tasks."""
import json
from pathlib import Path

import pytest
import yaml

from src import prepare, reward
from src.io import UserError, read_jsonl
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """Tiny synthetic splits: 8 train, 2 val, 2 test, 6 rl (references in rl_references.jsonl)."""
    d = tmp_path_factory.mktemp("reward")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["base"]["num_threads"] = 1
    raw["prepare"].update(n_train=8, n_val=2, n_test=2, n_rl=6)
    raw["reward"].update(samples_per_task=2, max_new_tokens=8, gen_batch_size=8, val_frac=0.5, epochs=1,
                         batch_size=4, eval_batch_size=8, max_length=128, backbone="sft")
    (d / "params.yaml").write_text(yaml.safe_dump(raw))
    prepare.main(str(d / "params.yaml"), str(d / "prepared"), str(d / "prepare.json"))
    return d


def ids(rows):
    return [r["task_id"] for r in rows]


def test_prompts_pick_the_split(prepared):
    from src.tasks import read_prompts
    data = prepared / "prepared"
    train, rl = read_jsonl(data / "train.jsonl"), read_jsonl(data / "rl.jsonl")
    assert ids(read_prompts(data, "rl", "reward.prompts")) == ids(rl)
    assert ids(read_prompts(data, "train", "reward.prompts")) == ids(train)
    assert ids(read_prompts(data, "both", "reward.prompts")) == ids(train) + ids(rl)
    assert all(t["canonical_solution"] == "" for t in read_prompts(data, "rl", "reward.prompts"))
    (data / "rl.jsonl").rename(data / "rl.hidden")
    (data / "rl.jsonl").write_text("")
    try:
        with pytest.raises(UserError, match="ppo_or_dpo.prompts is 'rl'.*n_rl"):   # the key it is given
            read_prompts(data, "rl", "ppo_or_dpo.prompts")
        assert ids(read_prompts(data, "both", "reward.prompts")) == ids(train)   # an empty rl split is allowed
    finally:
        (data / "rl.hidden").replace(data / "rl.jsonl")


def test_stage_runs_on_rl_prompts_without_references(prepared, monkeypatch):
    from src import generation
    from src.models import save_policy, scratch_model, train_tokenizer

    data = prepared / "prepared"
    rl = read_jsonl(data / "rl.jsonl")
    ref = {t["prompt"]: r["canonical_solution"] for t, r in zip(rl, read_jsonl(data / "rl_references.jsonl"))}
    tok = train_tokenizer([t["prompt"] + ref[t["prompt"]] for t in rl] * 3, vocab_size=300, min_frequency=2)
    sft = prepared / "sft"
    save_policy(scratch_model(tok, n_layer=2, d_model=32, n_head=2, d_ff=64, max_len=256, seed=0), tok, sft, {})
    seen = {}

    def fake_generate(model, tokenizer, prompts, n, temperature, *args, **kwargs):
        """One passing program (the hidden reference) and one failing one per prompt."""
        seen.update(prompts=list(prompts), n=n, temperature=temperature)
        return [[ref[p], "    return None\n"] for p in prompts]

    monkeypatch.setattr(generation, "generate", fake_generate)
    out = prepared / "out"
    m = reward.main(str(prepared / "params.yaml"), str(data), str(sft), str(ROOT / "data/human_feedback"),
                    str(out / "data"), str(out / "rm"), str(out / "reward.json"), str(out / "plots"))
    base = yaml.safe_load((ROOT / "params.yaml").read_text())["base"]
    assert seen == {"prompts": [t["prompt"] for t in rl], "n": 2, "temperature": base["temperature"]}
    samples = read_jsonl(out / "data/samples.jsonl")
    assert ids(samples) == [i for i in ids(rl) for _ in range(2)]
    assert [s["passed"] for s in samples] == [True, False] * len(rl)
    assert m["prompts"] == "rl" and m["sft_pass@1"] == 0.5 and m["tasks_informative"] == len(rl)
    pairs = read_jsonl(out / "data/pairs_train.jsonl") + read_jsonl(out / "data/pairs_val.jsonl")
    execution = [p for p in pairs if p["source"] == "execution"]
    assert len(execution) == len(rl) and all(p["chosen"] == ref[p["prompt"]] for p in execution)
    val_tasks = {p["task_id"] for p in read_jsonl(out / "data/pairs_val.jsonl")}
    bon = m["best_of_n"]
    assert bon["tasks"] == len(val_tasks) > 0 and bon["n"] == 2
    assert bon["random"] == 0.5 and bon["oracle"] == 1.0
    # the top pick is the sample the saved reward model's mixed score ranks first (the earlier one on a tie)
    from src.reward_model import load_reward_model
    rm, rm_tok = load_reward_model(out / "rm")
    held = [s for s in samples if s["task_id"] in val_tasks]
    scores = rm.score_texts([s["prompt"] + s["completion"] for s in held], rm_tok, 8)
    picks = [held[i]["passed"] if scores[i] >= scores[i + 1] else held[i + 1]["passed"] for i in range(0, len(held), 2)]
    assert bon["top_pick"] == round(sum(picks) / len(picks), 4)
    assert bon["gain"] == round(bon["top_pick"] - 0.5, 4)
    assert json.loads((out / "reward.json").read_text()) == m
