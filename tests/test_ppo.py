"""PPO: every loss against hand-computed numbers, the value head's save/load, the rollout cut, the
first ratio being exactly 1, and a short loop on a tiny Llama that learns a trivial reward."""
import copy
import dataclasses
import math

import pytest
import torch

from src.ppo import (AdaptiveKLController, FixedKLController, PolicyWithValueHead, PPOParams, compute_gae,
                     kl_penalty, masked_mean, masked_whiten, policy_loss, response_lengths, token_rewards,
                     train_ppo, value_loss)

PROMPT = 'def f(x):\n    """Return x twice."""\n'
T = torch.tensor


# ---------------------------------------------------------------- losses by hand

def test_gae_three_steps_by_hand():
    # γ = 0.9, λ = 0.8, r = (1, 0, 2), V = (0.5, 1.0, 1.5); V = 0 after the end.
    # δ2 = 2 − 1.5 = 0.5               A2 = 0.5
    # δ1 = 0 + 0.9·1.5 − 1.0 = 0.35    A1 = 0.35 + 0.72·0.5 = 0.71
    # δ0 = 1 + 0.9·1.0 − 0.5 = 1.4     A0 = 1.4 + 0.72·0.71 = 1.9112
    adv, ret = compute_gae(T([[1.0, 0.0, 2.0]]), T([[0.5, 1.0, 1.5]]), T([[1.0, 1.0, 1.0]]), 0.9, 0.8)
    assert adv.tolist()[0] == pytest.approx([1.9112, 0.71, 0.5])
    assert ret.tolist()[0] == pytest.approx([2.4112, 1.71, 2.0])


@pytest.mark.parametrize("mask", [[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 0, 1, 0, 1]])
def test_gae_skips_padding_on_either_side(mask):
    """Off-mask positions (garbage rewards/values) neither count nor break the recursion."""
    m = T([mask], dtype=torch.float)
    on = m[0].bool()
    rewards, values = torch.full((1, 5), 7.0), torch.full((1, 5), -3.0)
    rewards[0, on], values[0, on] = T([1.0, 0.0, 2.0]), T([0.5, 1.0, 1.5])
    adv, ret = compute_gae(rewards, values, m, 0.9, 0.8)
    assert adv[0, on].tolist() == pytest.approx([1.9112, 0.71, 0.5])
    assert ret[0, on].tolist() == pytest.approx([2.4112, 1.71, 2.0])
    assert adv[0, ~on].abs().sum() == 0 and ret[0, ~on].abs().sum() == 0


def test_clipped_surrogate_by_hand():
    # ε = 0.2. ratio, advantage -> max(−Aρ, −A·clip(ρ)):
    #   1.5, +1 -> max(−1.5, −1.2) = −1.2  clipped
    #   0.5, +1 -> max(−0.5, −0.8) = −0.5
    #   1.1, −1 -> max( 1.1,  1.1) =  1.1  (inside the range)
    #   0.7, −1 -> max( 0.7,  0.8) =  0.8  clipped
    # loss = (−1.2 − 0.5 + 1.1 + 0.8) / 4 = 0.05, clip_frac = 2/4; a 5th, masked token is ignored.
    ratio = T([[1.5, 0.5, 1.1, 0.7, 9.0]])
    adv = T([[1.0, 1.0, -1.0, -1.0, 5.0]])
    mask = T([[1.0, 1.0, 1.0, 1.0, 0.0]])
    old = torch.zeros_like(ratio)
    logprobs = ratio.log().requires_grad_()
    loss, clip_frac, approx_kl = policy_loss(logprobs, old, adv, mask, 0.2)
    assert loss.item() == pytest.approx(0.05, abs=1e-6)
    assert clip_frac.item() == 0.5
    assert approx_kl.item() == pytest.approx(sum(0.5 * math.log(r) ** 2 for r in (1.5, 0.5, 1.1, 0.7)) / 4)
    loss.backward()  # dL/dlogπ = −A·ρ/4 where unclipped, 0 where clipped or masked
    assert logprobs.grad.tolist()[0] == pytest.approx([0.0, -0.125, 0.275, 0.0, 0.0], abs=1e-6)


def test_clipped_value_loss_by_hand():
    # ε_v = 0.2.  V, V_old, R -> V_clip; (V−R)², (V_clip−R)²:
    #   1.0, 0.5, 2.0 -> 0.7;  1, 1.69  -> 1.69 clipped
    #   2.0, 1.0, 1.0 -> 1.2;  1, 0.04  -> 1
    #   0.0, 0.2, 0.0 -> 0.0;  0, 0     -> 0
    # loss = ½·(1.69 + 1 + 0)/3, clip_frac = 1/3.
    loss, clip_frac = value_loss(T([[1.0, 2.0, 0.0, 5.0]]), T([[0.5, 1.0, 0.2, 0.0]]), T([[2.0, 1.0, 0.0, 0.0]]),
                                 T([[1.0, 1.0, 1.0, 0.0]]), 0.2)
    assert loss.item() == pytest.approx(0.5 * 2.69 / 3)
    assert clip_frac.item() == pytest.approx(1 / 3)


def test_kl_estimators_by_hand():
    lp, ref = T([math.log(0.5), math.log(0.25)]), T([math.log(0.25), math.log(0.5)])  # d = ±ln 2
    ln2 = math.log(2)
    assert kl_penalty(lp, ref, "k1").tolist() == pytest.approx([ln2, -ln2])
    assert kl_penalty(lp, ref, "abs").tolist() == pytest.approx([ln2, ln2])
    assert kl_penalty(lp, ref, "mse").tolist() == pytest.approx([0.5 * ln2 ** 2] * 2)
    assert kl_penalty(lp, ref, "k3").tolist() == pytest.approx([0.5 - 1 + ln2, 2 - 1 - ln2])
    with pytest.raises(ValueError):
        kl_penalty(lp, ref, "k2")


def test_token_rewards_put_the_score_on_the_last_token():
    r = token_rewards(T([1.0, 2.0]), T([[0.1, 0.2, 0.3], [0.5, 0.5, 9.0]]), T([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]), 0.1)
    assert r.tolist()[0] == pytest.approx([-0.01, -0.02, 0.97])
    assert r.tolist()[1] == pytest.approx([-0.05, 1.95, 0.0])


def test_kl_controllers_by_hand():
    # e = clip(KL/6 − 1, ±0.2); β·(1 + e·256/10000)
    for kl, want in ((9.0, 0.2 * 1.00512), (3.0, 0.2 * 0.99488), (6.6, 0.2 * 1.00256)):
        c = AdaptiveKLController(0.2, target=6.0, horizon=10000)
        c.update(kl, n_steps=256)
        assert c.value == pytest.approx(want)
    f = FixedKLController(0.2)
    f.update(100.0, 256)
    assert f.value == 0.2


def test_whitening_over_masked_entries():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, generator=g) * 3 + 5
    mask = (torch.rand(4, 6, generator=g) > 0.3).float()
    on = mask.bool()
    w = masked_whiten(x, mask)
    assert w[on].mean().item() == pytest.approx(0.0, abs=1e-6)
    assert w[on].std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    assert w[~on].abs().sum() == 0
    s = masked_whiten(x, mask, shift_mean=False)
    assert s[on].mean().item() == pytest.approx(x[on].mean().item(), abs=1e-5)
    assert s[on].std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    assert masked_mean(x, mask).item() == pytest.approx(x[on].mean().item())


# ---------------------------------------------------------------- the model side

@pytest.fixture(scope="module")
def tok():
    from src.models import train_tokenizer
    texts = [PROMPT + "    return x + x\n", "def g(y):\n    y = y * 2\n    return y\n", "xx = x + xx\n"] * 20
    return train_tokenizer(texts, vocab_size=300, min_frequency=1)


def tiny_llama(tok, dropout=0.0, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                      attention_dropout=dropout, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      bos_token_id=None, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg)


def params(**over) -> PPOParams:
    base = dict(steps=20, batch_size=16, mini_batch_size=8, ppo_epochs=2, learning_rate=3e-3, max_grad_norm=1.0,
                max_new_tokens=16, temperature=1.0, top_p=1.0, gamma=1.0, lam=0.95, clip_eps=0.2,
                clip_eps_value=0.2, vf_coef=0.1, kl_coef=0.02, adaptive_kl=True, kl_target=6.0,
                kl_horizon=10000, kl_kind="k1", whiten_rewards=False, seed=0)
    return PPOParams(**{**base, **over})


def count_x(prompts, completions, **columns):
    assert len(columns["task_id"]) == len(prompts)  # the task rows' other fields arrive as columns
    return [c.count("x") for c in completions]


ROWS = [{"prompt": PROMPT, "task_id": f"t{i}"} for i in range(8)]


def test_response_is_cut_at_eos_and_at_the_first_top_level_line(tok):
    body = tok("    return x\n", add_special_tokens=False).input_ids
    top = tok("print(x)\n", add_special_tokens=False).input_ids
    eos, pad = tok.eos_token_id, tok.pad_token_id
    width = len(body) + len(top) + 2
    rows = torch.tensor([(body + top + [pad] * width)[:width],   # keeps the token that opens 'print'
                         (body[:2] + [eos] + top * 9)[:width],    # EOS kept, nothing after it
                         (body * 9)[:width]])                     # no stop: everything
    assert response_lengths(tok, rows).tolist() == [len(body) + 1, 3, width]


def test_value_head_saves_beside_a_plain_causal_lm(tok, tmp_path):
    from transformers import AutoModelForCausalLM
    policy = PolicyWithValueHead(tiny_llama(tok))
    torch.nn.init.normal_(policy.v_head.weight)
    policy.save_pretrained(tmp_path)
    assert (tmp_path / "value_head.safetensors").exists()
    ids = torch.tensor([tok(PROMPT, add_special_tokens=False).input_ids])
    attn = torch.ones_like(ids)
    plain = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    policy.eval()
    logits, values = policy(ids, attn)
    assert torch.allclose(plain(input_ids=ids).logits, logits, atol=1e-6)
    again = PolicyWithValueHead.from_pretrained(tmp_path).eval()
    assert torch.allclose(again(ids, attn)[1], values, atol=1e-6) and values.shape == ids.shape


def test_first_minibatch_ratio_is_exactly_one_even_with_dropout(tok):
    """Dropout is switched off for rollout and update alike, so logπ_old equals the recomputed logπ."""
    model = tiny_llama(tok, dropout=0.5)
    ids = torch.tensor([tok(PROMPT, add_special_tokens=False).input_ids])
    model.train()
    assert not torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)  # dropout is live
    stats = train_ppo(PolicyWithValueHead(model), copy.deepcopy(model), tok, ROWS, count_x,
                      params(steps=1, batch_size=6, mini_batch_size=4))
    assert stats["logprob_drift0"] == 0.0
    assert stats["kl"] == 0.0  # the policy equals the reference before the first update


def test_ppo_loop_learns_a_trivial_reward(tok):
    model = tiny_llama(tok)
    ref = copy.deepcopy(model)
    policy = PolicyWithValueHead(model)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    ref_before = {k: v.clone() for k, v in ref.state_dict().items()}
    logged = []
    final = train_ppo(policy, ref, tok, ROWS, count_x, params(), log=lambda s, step: logged.append((step, s)))

    assert [s for s, _ in logged] == list(range(20))
    keys = {"score", "kl", "kl_coef", "policy_loss", "value_loss", "clip_frac", "value_clip_frac", "approx_kl",
            "entropy", "response_len", "logprob_drift0", "time_generate_s", "time_reward_s", "time_update_s"}
    assert all(keys <= set(s) for _, s in logged)
    assert {"total_time_generate_s", "total_time_reward_s", "total_time_update_s", "total_time_s"} <= set(final)
    assert all(s["logprob_drift0"] == 0.0 for _, s in logged)
    scores = [s["score"] for _, s in logged]
    first, last = sum(scores[:3]) / 3, sum(scores[-3:]) / 3
    assert last > max(3 * first, 2.0), scores
    assert logged[-1][1]["kl_coef"] != 0.02  # the adaptive controller moved
    after = policy.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before), "every parameter trains"
    assert all(torch.equal(ref_before[k], v) for k, v in ref.state_dict().items())
    assert not any(p.requires_grad for p in ref.parameters())


def test_same_seed_same_run(tok):
    def run():
        model = tiny_llama(tok, seed=1)
        policy = PolicyWithValueHead(model)
        stats = train_ppo(policy, copy.deepcopy(model), tok, ROWS, count_x,
                          params(steps=3, kl_kind="k3", whiten_rewards=True, adaptive_kl=False))
        return {k: v for k, v in stats.items() if "time" not in k}, policy.state_dict()
    (a, wa), (b, wb) = run(), run()
    assert a == b
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_mini_batch_larger_than_batch_is_a_user_error(tok):
    from src.io import UserError
    model = tiny_llama(tok)
    with pytest.raises(UserError, match="mini_batch_size"):
        train_ppo(PolicyWithValueHead(model), copy.deepcopy(model), tok, ROWS, count_x,
                  params(batch_size=4, mini_batch_size=8))


# ---------------------------------------------------------------- checkpoint / resume

class Killed(Exception):
    """Stands for an abrupt stop (SIGKILL, preemption) right after a log call."""


def test_killed_ppo_resumes_to_the_uninterrupted_result(tok, tmp_path):
    """Kill after step 2 (last checkpoint after step 1): a fresh policy resumed from the checkpoint
    redoes step 2 and ends with the uninterrupted run's weights, stats and step numbers, although
    the global RNGs were scrambled in between. 8 prompts in batches of 6 make a checkpoint fall in
    the middle of a pass over the prompts; 6 rows in minibatches of 4 split unevenly."""
    p = params(steps=5, batch_size=6, mini_batch_size=4, whiten_rewards=True, max_new_tokens=8, seed=3)

    def run(log=None, p=p, **kw):
        model = tiny_llama(tok, seed=1)
        policy = PolicyWithValueHead(model)
        stats = train_ppo(policy, copy.deepcopy(model), tok, ROWS, count_x, p, log=log, **kw)
        return {k: v for k, v in stats.items() if "time" not in k}, policy.state_dict()

    full_log = []
    full, full_w = run(lambda s, step: full_log.append((step, s)))

    def kill_at_2(s, step):
        if step == 2:
            raise Killed
    ck = dict(checkpoint_dir=tmp_path / "work", checkpoint_steps=2)
    with pytest.raises(Killed):
        run(kill_at_2, resume=True, **ck)  # resume with nothing to resume from: a fresh start
    assert [f.name for f in (tmp_path / "work").iterdir()] == ["checkpoint-last.pt"]
    assert torch.load(tmp_path / "work" / "checkpoint-last.pt", weights_only=True)["step"] == 1

    import random
    torch.manual_seed(123), random.seed(123)
    resumed_log = []
    resumed, resumed_w = run(lambda s, step: resumed_log.append((step, s)), resume=True, **ck)
    assert [s for s, _ in resumed_log] == [2, 3, 4]
    drop_time = [(step, {k: v for k, v in s.items() if "time" not in k}) for step, s in full_log[2:]]
    assert [(step, {k: v for k, v in s.items() if "time" not in k}) for step, s in resumed_log] == drop_time
    assert resumed == full
    assert full_w.keys() == resumed_w.keys()
    assert all(torch.equal(full_w[k], resumed_w[k]) for k in full_w), "weights differ after resume"

    with pytest.raises(ValueError, match="other params"):  # another run's checkpoint is never continued
        run(p=dataclasses.replace(p, learning_rate=1e-3), resume=True, checkpoint_dir=tmp_path / "work")


# ---------------------------------------------------------------- params: the rollouts' temperature is base's

def align_raw() -> dict:
    from src.params import read_params
    from tests.conftest import ROOT
    return read_params(ROOT / "params.yaml")


@pytest.mark.parametrize("section, key, value", [("grpo", "temperature", 1.0), ("ppo", "temperature", 1.0),
                                                 ("ppo", "seed", 7)])
def test_a_hand_set_rollout_temperature_is_rejected_naming_the_key(section, key, value):
    from src.io import UserError
    from src.ppo_or_dpo import validate
    raw = align_raw()
    raw["ppo_or_dpo"][section][key] = value
    with pytest.raises(UserError, match=rf"'ppo_or_dpo\.{section}\.{key}' is not set here.*base\.{key}"):
        validate(raw)


def test_masking_truncated_grpo_completions_is_refused_with_the_sampler():
    """The sampler's rollouts end at the body without EOS: TRL would mask every such row as truncated."""
    from src.io import UserError
    from src.ppo_or_dpo import validate
    raw = align_raw()
    raw["ppo_or_dpo"]["grpo"]["mask_truncated_completions"] = True
    with pytest.raises(UserError, match=r"'ppo_or_dpo\.grpo\.mask_truncated_completions'.*grpo_rollouts: trl"):
        validate(raw)
    raw["ppo_or_dpo"]["grpo_rollouts"] = "trl"
    assert validate(raw).p.grpo["mask_truncated_completions"] is True


def test_ppo_samples_at_base_temperature_and_greedy_is_refused_for_sampling_methods():
    from src.io import UserError
    from src.ppo_or_dpo import SAMPLING_METHODS, validate
    raw = align_raw()
    raw["base"]["temperature"] = 0.6
    assert validate(raw).ppo.temperature == 0.6 and validate(raw).ppo.seed == raw["base"]["seed"]
    raw["base"]["temperature"] = 0.0
    for method in SAMPLING_METHODS:
        raw["ppo_or_dpo"]["method"] = method
        with pytest.raises(UserError, match="'base.temperature'"):
            validate(raw)
    raw["ppo_or_dpo"]["method"] = "dpo"  # offline pairs: nothing sampled here
    assert validate(raw).p.method == "dpo"


def test_chat_prompts_are_refused_by_the_methods_that_score_bodies():
    """base.prompt_format: chat trains on prompt -> answer rows (rft, online_dpo, sft_more); the methods
    whose pairs, rewards and rollouts are completion-form bodies refuse it, naming the key."""
    from src.io import UserError
    from src.ppo_or_dpo import CHAT_METHODS, METHODS, validate
    raw = align_raw()
    raw["base"]["prompt_format"] = "chat"
    for method in METHODS:
        raw["ppo_or_dpo"]["method"] = method
        if method in CHAT_METHODS:
            assert validate(raw).base.chat == raw["base"]["instruction"]
        else:
            with pytest.raises(UserError, match=rf"'base.prompt_format': chat works with .*; {method} asks"):
                validate(raw)
    assert set(CHAT_METHODS) == {"rft", "online_dpo", "sft_more"}
