"""A pretrained model as packaged, before any training, through the project's own prepare and evaluate:
the "before" row of a real-model experiment.

    python -m src.baseline --model smollm2-135m --out reports/baseline/smollm2_humaneval_chat \
        --set prepare.source=humaneval --set base.prompt_format=chat --set evaluate.n_samples=1 \
        --set base.temperature=0 --set evaluate.low_temperature=null --set evaluate.greedy=false

`--model` is what `sft.base_model` takes (a packaged alias, a hub id or a folder); each `--set key=value`
changes params.yaml (the value read as YAML) for this run only; above, one greedy answer per task
(`base.temperature` is evaluate's headline temperature) and no low-temperature pass. The out folder gets
the tasks, the samples, `eval.json` (evaluate's metrics for policy `base`) and the params used.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import yaml

from src.io import UserError, run_cli, write_text
from src.params import read_params


def apply_sets(raw: dict, sets: list[str]) -> dict:
    """`a.b.c=value` assignments on a params mapping; the key must exist (a typo is an error)."""
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set {item!r}: expected key=value")
        *path, last = key.split(".")
        node = raw
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                break
        if not isinstance(node, dict) or last not in node:
            raise UserError(f"--set {item!r}: params key {key!r} does not exist")
        node[last] = yaml.safe_load(value)
    return raw


def main(model: str, out_dir: str, params_path: str = "params.yaml", sets: list[str] = ()) -> dict:
    from src import evaluate, prepare
    from src.models import resolve_pretrained

    out = Path(out_dir)
    raw = apply_sets(read_params(params_path), list(sets))
    raw["evaluate"]["policies"] = ["base"]
    out.mkdir(parents=True, exist_ok=True)
    params = out / "params.yaml"
    write_text(params, yaml.safe_dump(raw, sort_keys=False))
    prepare.main(str(params), str(out / "prepared"), str(out / "prepare.json"))
    models = out / "models"
    models.mkdir(exist_ok=True)
    link = models / "base"
    if link.is_symlink() or link.exists():
        link.unlink()
    folder = Path(resolve_pretrained(model, raw["sft"]["cache_dir"]))
    if not folder.is_dir():
        raise UserError(f"--model {model!r}: not a packaged alias or a local model folder")
    os.symlink(folder.resolve(), link)
    return evaluate.main(str(params), str(out / "prepared"), str(models), str(out / "eval.json"),
                         str(out / "samples"), str(out / "plots"), str(out / "timing.json"))


def cli(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a packaged alias (smollm2-135m), hub id or folder")
    ap.add_argument("--out", required=True, help="folder for the tasks, samples and eval.json")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE")
    a = ap.parse_args(argv)
    run_cli(lambda: main(a.model, a.out, a.params, a.sets))


if __name__ == "__main__":
    cli()
