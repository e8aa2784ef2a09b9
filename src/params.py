"""Load params.yaml and validate one section against a dataclass: unknown keys, missing keys,
wrong types and out-of-range values fail at stage start with the key named.

Each stage declares its section as a dataclass (fields: int, float, bool, str, Literal[...],
Optional[...], list[...], dict[str, ...]); bounds go in field metadata via `bounded`.
"""
from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from src.io import UserError


class _Loader(yaml.SafeLoader):
    """YAML 1.2 scalars, as DVC writes params.yaml: floats like 1e-05 (`dvc exp run -S` writes small
    values so; YAML 1.1 reads a string) and booleans only true/false (`-S key=no` is written unquoted,
    which YAML 1.1 would read as False: TRL's eval_strategy "no", for one)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"), list("-+0123456789."))

SECTIONS = ("base", "prepare", "sandbox", "sft", "reward", "ppo_or_dpo", "evaluate", "label")
T = TypeVar("T")


def bounded(lo: float | None = None, hi: float | None = None) -> Any:
    """A required dataclass field whose value must lie in [lo, hi]."""
    return dataclasses.field(metadata={"lo": lo, "hi": hi})


def read_params(path: str | os.PathLike = "params.yaml") -> dict:
    """The whole params file as a dict; unknown top-level sections are rejected."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: params file not found")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of sections at the top level")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise UserError(f"{path}: unknown section '{unknown[0]}' (allowed: {', '.join(SECTIONS)})")
    return raw


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _check(value: Any, tp: Any, key: str) -> Any:
    """Return value converted to tp (int -> float only), or raise UserError naming key."""
    origin, args = get_origin(tp), get_args(tp)
    bad = UserError(f"params key '{key}': expected {_type_name(tp)}, got {value!r}")
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise UserError(f"params key '{key}': {value!r} is not allowed (allowed: "
                            + ", ".join(repr(a) for a in args) + ")")
        return value
    if origin in (Union, types.UnionType):
        for a in args:
            try:
                return _check(value, a, key)
            except UserError:
                pass
        raise bad
    if tp is type(None):
        if value is not None:
            raise bad
        return None
    if origin is list:
        if not isinstance(value, list):
            raise bad
        return [_check(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        return {_check(k, args[0], f"{key}.<key>"): _check(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp in (bool, str):
        if not isinstance(value, tp):
            raise bad
        return value
    raise TypeError(f"unsupported params type {tp} for {key}")


def parse_section(cls: type[T], raw: dict | None, name: str) -> T:
    """Validate a params section (a dict) against dataclass cls and build it."""
    if not isinstance(raw, dict):
        raise UserError(f"params section '{name}' is missing or not a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise UserError(f"params key '{name}.{unknown[0]}' is unknown (allowed: {', '.join(fields)})")
    values = {}
    for fname, f in fields.items():
        key = f"{name}.{fname}"
        if fname not in raw:
            if f.default is not dataclasses.MISSING:
                continue
            raise UserError(f"params key '{key}' is missing")
        v = _check(raw[fname], hints[fname], key)
        lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
        if v is not None and ((lo is not None and v < lo) or (hi is not None and v > hi)):
            raise UserError(f"params key '{key}': {v!r} is out of range [{lo}, {hi}]")
        values[fname] = v
    return cls(**values)


def load_section(cls: type[T], name: str, path: str | os.PathLike = "params.yaml") -> T:
    """Read params.yaml and return its section `name` validated as cls."""
    return parse_section(cls, read_params(path).get(name), name)


@dataclasses.dataclass
class BaseParams:
    seed: int
    # Torch threads; 1 by default: 2 threads on a shared 2-core box were erratically slower.
    num_threads: int = bounded(1, 256)
    checkpoint_steps: int = bounded(0)  # TRL trainers save every N optimizer steps (0 = never)
    resume: bool                        # continue from the last checkpoint of the same params and data
    accelerate: str                     # configs/accelerate/<name>.yaml: how dvc.yaml launches the stages
    # the one sampling temperature of rollouts, prompt filtering, the reward stage and headline pass@1
    temperature: float = bounded(0)
    # how every stage asks the policy (src/prompting.py): the prompt as is, or an instruct model's chat
    # template around `instruction` and the fenced prompt
    prompt_format: Literal["completion", "chat"]
    instruction: str

    @property
    def chat(self) -> str | None:
        """The instruction when the policy is asked through its chat template, else None."""
        return self.instruction if self.prompt_format == "chat" else None

