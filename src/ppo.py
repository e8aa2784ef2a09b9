"""Classic RLHF PPO (Ziegler et al. 2019) for a causal-LM policy and a Python reward function:
the losses as small pure functions, a value head, and `train_ppo`, whose loop reads
rollout -> score -> advantages -> update -> log.

Per-token tensors are (batch, response_len), over response tokens only. `mask` is 1 on the tokens
the policy is credited for, up to and including the stop token (EOS, or the token that opens the
first top-level line, which ends a function body), and 0 after it.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Literal

import torch
from torch import nn

from src.generation import body_stopper, truncate_completion
from src.io import UserError
from src.params import bounded
from src.training import rng_states, save_checkpoint, set_rng_states, start_checkpointing

VALUE_HEAD_FILE = "value_head.safetensors"


# ---------------------------------------------------------------- losses (pure functions)

def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum(x·m) / sum(m) over every entry (0 for an empty mask)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True,
                  eps: float = 1e-8) -> torch.Tensor:
    """(x − μ) / sqrt(σ² + eps), μ and σ² (population variance) over masked entries; with
    shift_mean=False μ is added back (scale only, signs of rewards kept). Entries off the mask are 0."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    out = (values - mean) * torch.rsqrt(var + eps)
    return (out if shift_mean else out + mean) * mask


def compute_gae(rewards, values, mask, gamma: float, lam: float):
    """Generalised advantage estimation, right to left over token positions:
        δ_t = r_t + γ·V_{t+1} − V_t,   A_t = δ_t + γλ·A_{t+1},   R_t = A_t + V_t,
    where t+1 is the next position on the mask, and V = A = 0 after the last one (the episode ends).
    Off-mask positions (padding on either side) are skipped and get A = R = 0. Returns (A, R)."""
    adv = torch.zeros_like(rewards)
    next_value = next_adv = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        on = mask[:, t].bool()
        a = rewards[:, t] + gamma * next_value - values[:, t] + gamma * lam * next_adv
        adv[:, t] = torch.where(on, a, 0.0)
        next_adv = torch.where(on, a, next_adv)
        next_value = torch.where(on, values[:, t], next_value)
    return adv, (adv + values) * mask


def policy_loss(logprobs, old_logprobs, advantages, mask, clip_eps: float):
    """Clipped surrogate, ρ = exp(logπ − logπ_old):  L = mean_t max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)).
    clip_frac: share of tokens where the clipped term wins (no gradient there);
    approx_kl: mean ½(logπ − logπ_old)². Returns (loss, clip_frac, approx_kl)."""
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_eps, 1 + clip_eps)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_frac = masked_mean((clipped > unclipped).float(), mask)
    return loss, clip_frac.detach(), masked_mean(0.5 * log_ratio.detach() ** 2, mask)


def value_loss(values, old_values, returns, mask, clip_eps_value: float):
    """Clipped value loss: V_c = V_old + clip(V − V_old, −ε_v, ε_v),
    L = ½·mean_t max((V − R)², (V_c − R)²). Returns (loss, clip_frac)."""
    clipped_values = old_values + (values - old_values).clamp(-clip_eps_value, clip_eps_value)
    unclipped, clipped = (values - returns) ** 2, (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    return loss, masked_mean((clipped > unclipped).float(), mask).detach()


def kl_penalty(logprobs, ref_logprobs, kind: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(π‖π_ref) from tokens sampled from π, with d = logπ − logπ_ref:
    k1 = d (unbiased, can be < 0), abs = |d|, mse = ½d², k3 = (e^−d − 1) + d (unbiased, ≥ 0)."""
    d = logprobs - ref_logprobs
    estimators = {"k1": lambda: d, "abs": d.abs, "mse": lambda: 0.5 * d ** 2, "k3": lambda: torch.expm1(-d) + d}
    if kind not in estimators:
        raise ValueError(f"unknown kl kind {kind!r}")
    return estimators[kind]()


def token_rewards(scores, kl, mask, kl_coef: float) -> torch.Tensor:
    """r_t = −β·KL_t on every response token, plus the sequence score on the last masked token."""
    rewards = -kl_coef * kl * mask
    positions = torch.arange(1, mask.shape[1] + 1, device=mask.device)
    last = (mask * positions).argmax(1)
    rewards[torch.arange(len(scores), device=mask.device), last] += scores
    return rewards


class AdaptiveKLController:
    """β ← β·(1 + e·n_steps/horizon), e = clip(KL/target − 1, −0.2, 0.2) (Ziegler et al. 2019)."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1, -0.2), 0.2)
        self.value *= 1 + error * n_steps / self.horizon


class FixedKLController:
    """β stays at its initial value."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


# ---------------------------------------------------------------- value head

class PolicyWithValueHead(nn.Module):
    """A causal LM plus a linear value head on its last hidden state; `.model` is the plain policy."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.v_head = nn.Linear(model.config.hidden_size, 1)
        # Zero init: V = 0 at first, and the value loss sends no gradient into the LM until the head learns.
        nn.init.zeros_(self.v_head.weight)
        nn.init.zeros_(self.v_head.bias)

    def forward(self, input_ids, attention_mask, logits_to_keep: int = 0):
        """(logits, values) for the last `logits_to_keep` positions (0 = all)."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         position_ids=position_ids(attention_mask), logits_to_keep=logits_to_keep,
                         output_hidden_states=True)
        hidden = out.hidden_states[-1][:, -logits_to_keep:]  # [-0:] is everything
        return out.logits, self.v_head(hidden).squeeze(-1)

    def save_value_head(self, out_dir) -> None:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in self.v_head.state_dict().items()},
                  str(Path(out_dir) / VALUE_HEAD_FILE))

    def save_pretrained(self, out_dir) -> None:
        """A plain HF causal-LM folder (AutoModelForCausalLM loads it) with the value head beside it."""
        self.model.save_pretrained(out_dir)
        self.save_value_head(out_dir)

    @classmethod
    def from_pretrained(cls, path, **kwargs) -> "PolicyWithValueHead":
        """Load a saved policy; the value head too when the folder has one (else it starts at zero)."""
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM
        wrapped = cls(AutoModelForCausalLM.from_pretrained(path, **kwargs))
        if (Path(path) / VALUE_HEAD_FILE).exists():
            wrapped.v_head.load_state_dict(load_file(str(Path(path) / VALUE_HEAD_FILE)))
        return wrapped


def position_ids(attention_mask):
    """Positions counted over real tokens, as `generate` counts them with left padding."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def token_logprobs(logits, tokens, temperature: float):
    """log π(token) under softmax(logits / T), the distribution the tokens were sampled from (top-p aside)."""
    return torch.log_softmax(logits / temperature, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


# ---------------------------------------------------------------- params

@dataclasses.dataclass
class PPOParams:
    steps: int = bounded(1)               # rollout + update rounds
    batch_size: int = bounded(1)          # prompts (episodes) per rollout
    mini_batch_size: int = bounded(1)     # episodes per optimizer step
    ppo_epochs: int = bounded(1)          # passes over each rollout
    learning_rate: float = bounded(0)
    max_grad_norm: float = bounded(0)
    max_new_tokens: int = bounded(1)
    temperature: float = bounded(1e-3)    # base.temperature, filled in by ppo_or_dpo (> 0: sampled rollouts)
    top_p: float = bounded(0, 1)
    gamma: float = bounded(0, 1)
    lam: float = bounded(0, 1)            # GAE λ
    clip_eps: float = bounded(0)
    clip_eps_value: float = bounded(0)
    vf_coef: float = bounded(0)
    kl_coef: float = bounded(0)           # initial β
    adaptive_kl: bool                     # False: β fixed at kl_coef
    kl_target: float = bounded(1e-6)      # adaptive: target summed KL per sequence
    kl_horizon: int = bounded(1)          # adaptive: episodes over which β moves by up to 20%
    kl_kind: Literal["k1", "abs", "mse", "k3"]
    whiten_rewards: bool                  # scale per-token rewards to unit std (mean kept)
    seed: int


# ---------------------------------------------------------------- rollout

def response_lengths(tokenizer, responses: torch.Tensor) -> torch.Tensor:
    """Tokens kept per row: up to and including the first EOS, or the token that opens the first
    top-level line (as truncate_completion cuts the text); at least 1. Whether a prefix's text holds
    a top-level line only turns from no to yes as it grows, so bisect."""
    def ended(ids):
        text = tokenizer.decode(ids, skip_special_tokens=True)
        return len(truncate_completion(text)) < len(text)

    lengths = []
    for ids in responses.tolist():
        end = ids.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in ids else len(ids)
        if ended(ids[:end]):
            lo, hi = 1, end
            while lo < hi:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if ended(ids[:mid]) else (mid + 1, hi)
            end = lo
        lengths.append(end)
    return torch.tensor(lengths)


def sample_responses(model, tokenizer, prompts: list[str], p: PPOParams, seed: int):
    """Sample one body per prompt. Returns (ids, attention, mask, completions): ids are the left-padded
    prompt followed by the response (pad after the cut), mask is over response positions."""
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    torch.manual_seed(seed)
    with torch.no_grad():
        ids = model.generate(**enc, do_sample=True, temperature=p.temperature, top_p=p.top_p, top_k=None,
                             max_new_tokens=p.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id,
                             stopping_criteria=[body_stopper(tokenizer, enc.input_ids.shape[1],
                                                        vocab_size=model.config.vocab_size)])
    response = ids[:, enc.input_ids.shape[1]:]
    lengths = response_lengths(tokenizer, response).to(response.device)
    mask = (torch.arange(response.shape[1], device=response.device) < lengths[:, None]).long()
    response = response.masked_fill(mask == 0, tokenizer.pad_token_id)
    completions = [truncate_completion(tokenizer.decode(r[:n], skip_special_tokens=True))
                   for r, n in zip(response.tolist(), lengths.tolist())]
    return (torch.cat([enc.input_ids, response], 1), torch.cat([enc.attention_mask, mask], 1),
            mask.float(), completions)


def policy_forward(policy, ids, attention, n_response: int, temperature: float):
    """(logits, logprobs, values) at the response positions; position t predicts response token t."""
    logits, values = policy(ids, attention, logits_to_keep=n_response + 1)
    logits = logits[:, :-1]
    return logits, token_logprobs(logits, ids[:, -n_response:], temperature), values[:, :-1]


def reference_logprobs(ref, ids, attention, n_response: int, temperature: float):
    logits = ref(input_ids=ids, attention_mask=attention, position_ids=position_ids(attention),
                 logits_to_keep=n_response + 1).logits[:, :-1]
    return token_logprobs(logits, ids[:, -n_response:], temperature)


# ---------------------------------------------------------------- the loop

class _IndexStream:
    """Prompt indices forever: a fresh shuffle (drawn from `g`) at each pass over the prompts, drawn
    only when the previous pass runs out. `pending` (the rest of the current pass) and `g`'s state
    are all its state, so a checkpoint can store and restore it."""

    def __init__(self, n: int, g: torch.Generator):
        self.n, self.g, self.pending = n, g, []

    def take(self, k: int) -> list[int]:
        out = []
        while len(out) < k:
            if not self.pending:
                self.pending = torch.randperm(self.n, generator=self.g).tolist()
            m = k - len(out)
            out += self.pending[:m]
            self.pending = self.pending[m:]
        return out


def train_ppo(policy: PolicyWithValueHead, ref_policy, tokenizer, prompts: list[dict], reward_fn,
              params: PPOParams, log: Callable[[dict, int], None] | None = None,
              checkpoint_dir: str | os.PathLike | None = None, checkpoint_steps: int = 0,
              resume: bool = False) -> dict:
    """Train `policy` in place with PPO against `reward_fn(prompts, completions, **columns)`, where the
    columns are the task rows' other fields. `ref_policy` (the SFT policy, a separate copy) is frozen.
    `log(stats, step)` is called after every step; returns the last step's stats plus total timings.

    Checkpoints: every `checkpoint_steps` steps (0 = never) the whole loop state (policy with value
    head, optimizer, KL coefficient, prompt order, RNGs, stats) goes to one file in `checkpoint_dir`,
    written before that step's `log`. With `resume` and a checkpoint there, `policy` (as passed in,
    e.g. freshly loaded) takes its weights and the loop continues at the next step: on CPU the
    result is bit-identical to an uninterrupted run, provided `reward_fn` is deterministic. Without
    `resume` an old checkpoint there is removed. Params other than `steps` must match the checkpoint's.

    Runs through accelerate: under W processes each rolls out and scores batch_size / W of every
    step's prompts and DDP averages the gradients; advantages are whitened per process, the KL
    coefficient follows the mean KL over processes, and only the main process saves and logs."""
    from accelerate import Accelerator

    from src import distributed
    p = params
    world, rank = distributed.world_size(), distributed.rank()
    if p.batch_size % world or p.mini_batch_size % world:
        raise UserError(f"ppo batch_size ({p.batch_size}) and mini_batch_size ({p.mini_batch_size}) "
                        f"must be multiples of the process count ({world})")
    local_bs, local_mbs = p.batch_size // world, p.mini_batch_size // world
    if p.mini_batch_size > p.batch_size:
        raise UserError(f"params key 'mini_batch_size' ({p.mini_batch_size}) exceeds 'batch_size' ({p.batch_size})")
    if not prompts:
        raise UserError("train_ppo: no prompts")
    if ref_policy is policy.model:
        raise ValueError("ref_policy must be a separate copy of the policy")
    torch.manual_seed(p.seed)
    g = torch.Generator().manual_seed(p.seed)
    # Dropout off throughout: the PPO ratio needs one function at rollout and at update.
    policy.eval()
    ref_policy.eval().requires_grad_(False)
    tokenizer.padding_side = "left"
    optimizer = torch.optim.Adam(policy.parameters(), lr=p.learning_rate)
    accelerator = Accelerator()
    kl_ctl = (AdaptiveKLController(p.kl_coef, p.kl_target, p.kl_horizon) if p.adaptive_kl
              else FixedKLController(p.kl_coef))
    stream = _IndexStream(len(prompts), g)
    totals: dict[str, float] = defaultdict(float)
    stats: dict = {}
    start = 0
    run_params = {**dataclasses.asdict(p), "n_prompts": len(prompts)}
    ckpt = start_checkpointing(checkpoint_dir, checkpoint_steps, resume, run_params, free_keys=("steps",))
    if ckpt is not None:
        policy.load_state_dict(ckpt["policy"])
        optimizer.load_state_dict(ckpt["optimizer"])
        vars(kl_ctl).update(ckpt["kl_controller"])
        g.set_state(ckpt["generator"])
        stream.pending = ckpt["pending"]
        totals.update(ckpt["totals"])
        stats = ckpt["stats"]
        set_rng_states(ckpt["rng"])
        start = ckpt["step"] + 1
    ddp_policy, optimizer = accelerator.prepare(policy, optimizer)  # `policy` stays the plain module
    ref_policy.to(accelerator.device)
    for step in range(start, p.steps):
        # 1. rollout: sample bodies, then old logprobs, values and reference logprobs.
        t0 = time.perf_counter()
        rows = [prompts[i] for i in stream.take(p.batch_size)][rank::world]
        ids, attention, mask, completions = sample_responses(policy.model, tokenizer, [r["prompt"] for r in rows],
                                                             p, p.seed + step * world + rank)
        n_resp = mask.shape[1]
        t1 = time.perf_counter()
        # Minibatch orders are drawn now, and the rollout forward runs in epoch 0's chunks: the same
        # rows and shapes then give bit-identical logprobs, so the first ratio is exactly 1.
        perms = [torch.randperm(local_bs, generator=g).to(mask.device) for _ in range(p.ppo_epochs)]
        old_logprobs, values, ref_logprobs = (torch.zeros_like(mask) for _ in range(3))
        with torch.no_grad():
            for idx in perms[0].split(local_mbs):
                _, old_logprobs[idx], values[idx] = policy_forward(policy, ids[idx], attention[idx], n_resp,
                                                                   p.temperature)
                ref_logprobs[idx] = reference_logprobs(ref_policy, ids[idx], attention[idx], n_resp,
                                                       p.temperature)
        values = values * mask
        t2 = time.perf_counter()

        # 2. score the truncated bodies.
        columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}
        scores = [float(s) for s in reward_fn([r["prompt"] for r in rows], completions, **columns)]
        if len(scores) != len(rows):
            raise ValueError(f"reward_fn returned {len(scores)} scores for {len(rows)} completions")
        scores = torch.tensor(scores, device=mask.device)
        t3 = time.perf_counter()

        # 3. advantages: per-token rewards with the KL penalty, GAE, whitened advantages.
        kl = kl_penalty(old_logprobs, ref_logprobs, p.kl_kind) * mask
        rewards = token_rewards(scores, kl, mask, kl_ctl.value)
        total_reward = rewards.sum(1).mean().item()
        if p.whiten_rewards:
            rewards = masked_whiten(rewards, mask, shift_mean=False)
        advantages, returns = compute_gae(rewards, values, mask, p.gamma, p.lam)
        advantages = masked_whiten(advantages, mask)

        # 4. update: ppo_epochs × minibatches of clipped policy + value steps.
        update = _ppo_update(ddp_policy, optimizer, accelerator, perms, local_mbs, p, ids, attention, mask,
                             old_logprobs, values, advantages, returns)
        t4 = time.perf_counter()
        # figures over all processes' episodes (each process holds the same number)
        score_mean, score_sq, total_reward, seq_kl, resp_len = (v / world for v in distributed.sum_across([
            scores.mean().item(), scores.pow(2).mean().item(), total_reward, kl.sum(1).mean().item(),
            mask.sum(1).mean().item()]))
        update = dict(zip(update, (v / world for v in distributed.sum_across(list(update.values())))))
        stats = {"score": score_mean, "score_std": max(score_sq - score_mean ** 2, 0.0) ** 0.5,
                 "reward": total_reward, "kl": seq_kl, "kl_coef": kl_ctl.value,
                 "response_len": resp_len, **update,
                 "time_generate_s": t1 - t0, "time_forward_s": t2 - t1, "time_reward_s": t3 - t2,
                 "time_update_s": t4 - t3}
        kl_ctl.update(seq_kl, p.batch_size)

        # 5. checkpoint, then log
        for k in ("time_generate_s", "time_forward_s", "time_reward_s", "time_update_s"):
            totals["total_" + k] += stats[k]
        if checkpoint_steps and (step + 1) % checkpoint_steps == 0 and distributed.is_main():
            save_checkpoint(checkpoint_dir, {
                "step": step, "params": run_params,
                "policy": policy.state_dict(), "optimizer": optimizer.state_dict(),
                "kl_controller": dict(vars(kl_ctl)), "generator": g.get_state(), "pending": stream.pending,
                "totals": dict(totals), "stats": stats, "rng": rng_states()})
        if log is not None and distributed.is_main():
            log(stats, step)
    totals["total_time_s"] = sum(totals.values())
    return {**stats, **totals, "steps": p.steps}


def _ppo_update(policy, optimizer, accelerator, perms, mini_batch_size: int, p: PPOParams, ids, attention, mask,
                old_logprobs, old_values, advantages, returns) -> dict:
    """Clipped policy + value updates; returns the minibatch means of the losses and diagnostics.
    `policy` is the accelerate-prepared (e.g. DDP) module, `mini_batch_size` this process's share."""
    sums: dict[str, float] = defaultdict(float)
    n = 0
    n_resp = mask.shape[1]
    for perm in perms:
        for idx in perm.split(mini_batch_size):
            m = mask[idx]
            logits, logprobs, values = policy_forward(policy, ids[idx], attention[idx], n_resp, p.temperature)
            pg_loss, clip_frac, approx_kl = policy_loss(logprobs, old_logprobs[idx], advantages[idx], m, p.clip_eps)
            vf_loss, vf_clip_frac = value_loss(values, old_values[idx], returns[idx], m, p.clip_eps_value)
            optimizer.zero_grad()
            accelerator.backward(pg_loss + p.vf_coef * vf_loss)
            grad_norm = accelerator.clip_grad_norm_(policy.parameters(), p.max_grad_norm)
            optimizer.step()
            if n == 0:  # 0 unless rollout and update see different functions (dropout, padding)
                sums["logprob_drift0"] = ((logprobs - old_logprobs[idx]).abs() * m).max().item()
            logp = torch.log_softmax(logits.detach() / p.temperature, -1)
            for k, v in (("policy_loss", pg_loss), ("value_loss", vf_loss), ("clip_frac", clip_frac),
                         ("value_clip_frac", vf_clip_frac), ("approx_kl", approx_kl), ("grad_norm", grad_norm),
                         ("entropy", masked_mean(-(logp.exp() * logp).sum(-1), m))):
                sums[k] += v.item()
            n += 1
    return {k: (v if k == "logprob_drift0" else v / n) for k, v in sums.items()}
