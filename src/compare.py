"""`compare` stage: metrics/eval.json and plots/eval/ from the per-policy evaluations in data/eval
(`src.evaluate`): every policy's metrics, the targets each meets, and each policy's difference from
`sft` with paired standard errors from the per-sample rows. Cheap: no model, no sandbox.

    python -m src.compare --params params.yaml --samples data/eval --metrics metrics/eval.json --plots plots/eval
"""
from __future__ import annotations

import argparse

from src.io import run_cli


def main(params_path: str, samples_dir: str, metrics_path: str, plots_dir: str) -> dict:
    from src.evaluate import EvaluateParams, combine
    from src.params import parse_section, read_params
    p = parse_section(EvaluateParams, read_params(params_path).get("evaluate"), "evaluate")
    return combine(p, samples_dir, metrics_path, plots_dir)


def cli(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--samples", default="data/eval")
    ap.add_argument("--metrics", default="metrics/eval.json")
    ap.add_argument("--plots", default="plots/eval")
    a = ap.parse_args(argv)
    run_cli(lambda: main(a.params, a.samples, a.metrics, a.plots))


if __name__ == "__main__":
    cli()
