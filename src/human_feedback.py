"""`human_feedback` stage: the agreement report of the annotators' judgments in data/human_feedback
(judgments and labels per annotator, pairs judged by two or more, Cohen's kappa between annotators;
see src/feedback.py). The judgments themselves are made on the labelling page, `python -m src.label`.

    python -m src.human_feedback --feedback data/human_feedback --metrics metrics/human_feedback.json
"""
from __future__ import annotations

import argparse

from src.feedback import agreement_report
from src.io import run_cli, write_json


def main(feedback_dir: str, metrics_path: str) -> dict:
    """Write the agreement report of `feedback_dir` to `metrics_path`.

    Args:
        feedback_dir: the folder of `<annotator>.jsonl` judgment files.
        metrics_path: the metrics JSON file.
    Returns:
        the report.
    """
    out = agreement_report(feedback_dir)
    write_json(metrics_path, out)
    kappa = out["cohen_kappa_mean"]
    print(f"human feedback: {out['judgments']} judgments by {len(out['annotators'])} annotators, "
          f"{out['pairs_judged_by_2_or_more']} pairs judged by 2+, Cohen's kappa "
          f"{'n/a' if kappa is None else kappa}")
    return out


def cli(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feedback", default="data/human_feedback")
    ap.add_argument("--metrics", default="metrics/human_feedback.json")
    a = ap.parse_args(argv)
    run_cli(lambda: main(a.feedback, a.metrics))


if __name__ == "__main__":
    cli()
