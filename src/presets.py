"""Run a named params preset (presets/<name>.yaml) as one DVC experiment.

    python -m src.presets research --temp -n research-1   # dvc exp run -S key=value ... --temp -n research-1
    python -m src.presets fast --print                    # only print the command

A preset is a flat mapping of dotted params.yaml keys to values. Every key must exist in params.yaml, and
params.yaml with the preset (and any `-S` among the extra arguments) applied must pass the stages' own
section checks, before `dvc exp run -S ...` puts the values into the experiment's params.yaml.
"""
from __future__ import annotations

import argparse
import copy
import difflib
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from src.io import UserError, run_cli
from src.params import _Loader, parse_section, read_params

PRESETS_DIR = Path("presets")
MISSING = object()
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")   # strings that both YAML and DVC's -S read unquoted


def load_preset(path: Path) -> dict[str, tuple[object, int]]:
    """{dotted key: (value, line)} from a preset file: a flat mapping, each key once."""
    if not path.exists():
        names = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
        raise UserError(f"{path}: preset not found (presets: {names or 'none'})")
    text = path.read_text(encoding="utf-8")
    try:
        node, values = yaml.compose(text, Loader=_Loader), yaml.load(text, Loader=_Loader)  # 1e-05 is a float
    except yaml.YAMLError as e:
        raise UserError(f"{path}: invalid YAML: {e}") from None
    if node is None:
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise UserError(f"{path}: expected a mapping of dotted params keys to values")
    out: dict[str, tuple[object, int]] = {}
    for key_node, _ in node.value:
        key, line = key_node.value, key_node.start_mark.line + 1
        if key_node.tag != "tag:yaml.org,2002:str" or key in out:
            raise UserError(f"{path}:{line}: key '{key}' is " + ("set twice" if key in out else "not a params key"))
        out[key] = (values[key], line)
    return out


def lookup(params: dict, key: str):
    """The value at a dotted key, or MISSING."""
    node = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def leaf_keys(params: dict, prefix: str = "") -> list[str]:
    return [k for name, v in params.items()
            for k in (leaf_keys(v, f"{prefix}{name}.") if isinstance(v, dict) else [f"{prefix}{name}"])]


def apply(params: dict, preset: dict[str, tuple[object, int]], source: str) -> dict:
    """A copy of params with the preset's values set; a key params.yaml lacks fails naming file:line."""
    out = copy.deepcopy(params)
    for key, (value, line) in preset.items():
        current, where = lookup(out, key), f"{source}:{line}" if line else source
        if current is MISSING:
            near = difflib.get_close_matches(key, leaf_keys(params), n=1)
            raise UserError(f"{where}: unknown params key '{key}' (not in params.yaml"
                            + (f"; did you mean '{near[0]}'?)" if near else ")"))
        if isinstance(current, dict) or isinstance(value, dict):
            raise UserError(f"{where}: '{key}': set single keys, not a whole mapping")
        *parents, last = key.split(".")
        lookup(out, ".".join(parents))[last] = value
    return out


def check_stages(raw: dict) -> None:
    """Each section through the dataclass (and extra checks) its stage uses; imported here because
    src.reward pulls in torch."""
    from src.evaluate import EvaluateParams
    from src.label import LabelParams
    from src.ppo_or_dpo import validate as validate_align
    from src.prepare import PrepareParams, validate
    from src.reward import RewardParams
    from src.sandbox import SandboxParams
    from src.sft import SFTParams

    for cls, name in ((SandboxParams, "sandbox"), (SFTParams, "sft"), (RewardParams, "reward"),
                      (EvaluateParams, "evaluate"), (LabelParams, "label")):
        parse_section(cls, raw.get(name), name)
    validate(parse_section(PrepareParams, raw.get("prepare"), "prepare"))
    validate_align(raw)  # base too, and every method's section (base.temperature, seed injected as the stage does)


def flow(value) -> str:
    """A value as YAML flow that DVC's `-S` (Hydra's override grammar) reads back the same."""
    if isinstance(value, list):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if isinstance(value, str):
        plain = _PLAIN.fullmatch(value) and value.lower() not in ("true", "false", "null", "inf", "nan") \
            and yaml.safe_load(value) == value
        if not plain and "\\" in value:
            raise UserError(f"value {value!r}: a backslash does not survive `dvc exp run -S`")
        return value if plain else json.dumps(value, ensure_ascii=False)
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def set_args(preset: dict[str, tuple[object, int]]) -> list[str]:
    return [a for key, (value, _) in preset.items() for a in ("-S", f"{key}={flow(value)}")]


def user_sets(extra: list[str]) -> dict[str, tuple[object, int]]:
    """The `-S key=value` for params.yaml among the extra dvc arguments (+key, ~key: DVC's to judge)."""
    out = {}
    for flag, arg in zip(extra, extra[1:]):
        key, _, value = arg.removeprefix("params.yaml:").partition("=")
        if flag in ("-S", "--set-param") and key and key[0] not in "+~" and ":" not in key:
            try:
                out[key] = (yaml.safe_load(value) if value else "", 0)
            except yaml.YAMLError:
                out[key] = (value, 0)
    return out


def build(name: str, extra: list[str], params_path: str = "params.yaml") -> list[str]:
    """The checked `dvc exp run` command for preset `name` (a name in presets/ or a .yaml path)."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else PRESETS_DIR / f"{name}.yaml"
    preset, user = load_preset(path), user_sets(extra)
    params = apply(apply(read_params(params_path), preset, str(path)), user, "-S")
    try:
        check_stages(params)
    except UserError as e:   # name the preset's line when the error is about one of its keys
        line = next((ln for key, (_, ln) in preset.items()
                     if key not in user and re.search(f"'{re.escape(key)}['\\[]", str(e))), None)
        raise UserError(f"{path}:{line}: {e}" if line else f"{path} (applied to {params_path}): {e}") from None
    return ["dvc", "exp", "run", *set_args(preset), *extra]


def cli(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False,
                                 epilog="Every other argument goes to `dvc exp run` (after the preset's -S).")
    ap.add_argument("preset", help="a name in presets/ (e.g. fast) or a path to a preset .yaml")
    ap.add_argument("--print", action="store_true", dest="print_only", help="print the command, run nothing")
    args, extra = ap.parse_known_args(argv)
    cmd = build(args.preset, extra)
    print(shlex.join(cmd), flush=True)
    if not args.print_only:
        dvc = Path(sys.executable).with_name("dvc")   # the venv's dvc, whatever PATH says
        raise SystemExit(subprocess.run([str(dvc) if dvc.exists() else "dvc", *cmd[1:]]).returncode)


if __name__ == "__main__":
    run_cli(cli)
