"""Where the time goes: each stage's timing record (src.io.write_timing), their gathering into
reports/timing.json (src.report), and wall-clock keys kept out of the committed dvclive plot data."""
import json
import time
from types import SimpleNamespace

import pytest

from src import report
from src.io import UserError, is_timing_key, timing_keys, write_timing

WALL_CLOCK = {"train_runtime": 3.2, "train_samples_per_second": 40.1, "train_steps_per_second": 1.2,
              "eval_runtime": 0.5, "eval_samples_per_second": 99.0, "eval_steps_per_second": 9.0,
              "step_time": 0.8, "time_generate_s": 0.3, "total_time_s": 4.0}
STEADY = {"loss": 1.5, "eval_loss": 1.7, "learning_rate": 1e-3, "epoch": 1.0, "num_tokens": 512.0,
          "total_flos": 10.0, "mean_token_accuracy": 0.5, "kl_coef": 0.1, "response_len": 12.0}


def test_timing_keys_are_the_wall_clock_ones():
    assert [k for k in {**WALL_CLOCK, **STEADY} if is_timing_key(k)] == list(WALL_CLOCK)
    assert timing_keys({**STEADY, "train_runtime": 3.21234, "flag_time": True}) == {"train_runtime": 3.2123}


def test_write_timing_records_wall_time_work_and_machine(tmp_path):
    started = time.perf_counter() - 1.5
    write_timing(tmp_path / "timing" / "sft.json", started, optimizer_steps=7, train_examples=60)
    record = json.loads((tmp_path / "timing" / "sft.json").read_text())
    assert 1.5 <= record["wall_s"] < 60
    assert record["optimizer_steps"] == 7 and record["train_examples"] == 60
    assert "cores" in record["machine"] and "torch" in record["machine"]
    write_timing(None, started, steps=1)    # no path (a test calling main()): nothing written
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["sft.json"]


def test_gather_timing_orders_stages_and_names_the_machine(tmp_path):
    folder = tmp_path / "timing"
    for stage, wall in (("evaluate", 4.0), ("sft", 10.0), ("prepare", 1.0), ("reward", 5.0)):
        write_timing(folder / f"{stage}.json", time.perf_counter() - wall, completions_sampled=3,
                     policies={"sft": {"generate_s": 1.5}})
    timing = report.write_timing_summary(folder, tmp_path / "timing.json")
    assert json.loads((tmp_path / "timing.json").read_text()) == timing
    assert list(timing["stages"]) == ["prepare", "sft", "reward", "evaluate"]
    assert all(r["wall_s"] > 0 and "machine" not in r for r in timing["stages"].values())
    assert "cores" in timing["machine"] and "|" not in timing["machine"]   # one machine made them all
    table = report.timing_table(timing)
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[1].startswith("| prepare | ") and "completions_sampled 3" in rows[1]
    assert "policies.sft.generate_s 1.5" in rows[1] and "finished" not in rows[1]
    assert rows[-1].startswith("| total | ")
    # `make report` shows the table when reports/timing.json is there, and nothing otherwise
    assert report.timing_section(tmp_path / "timing.json")[0] == "## Where the time went"
    assert report.timing_section(tmp_path / "none.json") == []


def test_gather_timing_without_records_is_one_error(tmp_path):
    with pytest.raises(UserError, match="no timing records"):
        report.gather_timing(tmp_path)
    (tmp_path / "sft.json").write_text('{"steps": 3}')
    with pytest.raises(UserError, match=r"sft\.json: expected a timing record"):
        report.gather_timing(tmp_path)


def written(folder):
    """Every metric name dvclive wrote: TSV paths under plots/metrics and the keys of metrics.json."""
    tsvs = {p.relative_to(folder / "plots" / "metrics").with_suffix("").as_posix()
            for p in (folder / "plots" / "metrics").rglob("*.tsv")}

    def keys(d, prefix=""):
        return {k2 for k, v in d.items() for k2 in (keys(v, f"{prefix}{k}/") if isinstance(v, dict) else {prefix + k})}
    return tsvs, keys(json.loads((folder / "metrics.json").read_text()))


def test_dvclive_callback_never_writes_wall_clock_keys(tmp_path):
    from src.training import dvclive_callback
    callback, live = dvclive_callback(str(tmp_path / "plots"))
    args = SimpleNamespace(to_dict=lambda: {"learning_rate": 1e-3})
    state = SimpleNamespace(is_world_process_zero=True)
    for step in range(2):
        callback.on_log(args, state, None, logs={**STEADY, **WALL_CLOCK, "step_time": 0.1 * step})
    live.end()
    tsvs, keys = written(tmp_path / "plots")
    assert {"loss", "eval/loss", "learning_rate", "total_flos"} <= tsvs
    for names in (tsvs, keys):
        assert not [k for k in names if "runtime" in k or "per_second" in k or "time" in k], names
    assert (tmp_path / "plots" / "plots" / "metrics" / "loss.tsv").read_text().count("\n") == 3  # header + 2 steps


def test_dvclive_logger_never_writes_wall_clock_keys(tmp_path):
    from src.training import dvclive_logger
    live, log = dvclive_logger(str(tmp_path / "plots"))
    log({"reward": 0.5, "kl": 0.01, "time_generate_s": 0.2, "time_update_s": 0.1}, 0)
    log({"reward": 0.6, "kl": 0.02, "time_generate_s": 0.3, "time_update_s": 0.1}, 1)
    live.end()
    tsvs, keys = written(tmp_path / "plots")
    assert tsvs == {"reward", "kl"} and {"reward", "kl"} <= keys
    assert not [k for k in keys if "time" in k], keys
