"""Pieces every training stage shares: TRL-config building from a params sub-mapping (unknown keys
fail naming the key), dvclive logging that never rewrites dvc.yaml, and the prompt/completion
dataset built from task rows."""
from __future__ import annotations

import dataclasses
from typing import Any

from src.io import UserError


def trl_config(config_cls, section: str, values: dict[str, Any], **fixed):
    """Build a TRL/transformers config dataclass from params; an unknown key names `section.key`."""
    known = {f.name for f in dataclasses.fields(config_cls)}
    for key in values:
        if key not in known:
            raise UserError(f"params key '{section}.{key}' is not a {config_cls.__name__} option")
    try:
        return config_cls(**values, **fixed)
    except (TypeError, ValueError) as e:
        raise UserError(f"params section '{section}': {e}") from None


def dvclive_callback(plots_dir: str):
    """A transformers callback logging to `plots_dir`; dvc.yaml owns the plot declarations."""
    from dvclive import Live
    from transformers.integrations import DVCLiveCallback

    live = Live(dir=plots_dir, dvcyaml=False, save_dvc_exp=False, report=None)
    return DVCLiveCallback(live=live, log_model=False), live


def prompt_completion_rows(tasks: list[dict]) -> list[dict]:
    """TRL's prompt-completion format from tasks (prompt -> canonical body)."""
    return [{"prompt": t["prompt"], "completion": t["canonical_solution"]} for t in tasks]


def dvclive_logger(plots_dir: str):
    """(live, log) for hand-written loops: log(record) logs every number in record as one step."""
    from dvclive import Live

    live = Live(dir=plots_dir, dvcyaml=False, save_dvc_exp=False, report=None)

    def log(record: dict, step: int | None = None) -> None:
        if step is not None:
            live.step = step
        for k, v in record.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                live.log_metric(k, v)
        live.next_step()
    return live, log
