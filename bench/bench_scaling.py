"""Scaling of the model stages over processes: SFT optimizer steps/s and the reward stage's sampling
rate with 1 process against 2 processes (DDP over gloo on the CPU, configs/accelerate/cpu_ddp.yaml),
measured in the same run on the same data and the same global batch. On a GPU machine pass
`--configs single_gpu multi_gpu` to compare those instead.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_scaling [--tasks 600] [--configs cpu cpu_ddp]

Both runs launch the real stage (`accelerate launch -m src.sft`, `-m src.reward`) as dvc.yaml does,
on the default model of params.yaml; 1 process also runs with base.num_threads 2, the fair reference
on a 2-core machine (all cores busy either way). SFT steps/s is TRL's own `train_steps_per_second`
(training only); the reward stage's rate is samples/s over its whole sampling + execution phase, read
from its progress lines. Start-up (interpreter, imports, process group) is excluded from both.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def launch(cwd: Path, config: str, module: str, args: list[str]) -> tuple[str, float]:
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file",
           str(ROOT / f"configs/accelerate/{config}.yaml"), "-m", module, *args]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{config} {module} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r.stdout + r.stderr, time.perf_counter() - t0


def processes(config: str) -> int:
    return yaml.safe_load((ROOT / f"configs/accelerate/{config}.yaml").read_text())["num_processes"]


def run(tmp: Path, config: str, threads: int, base: dict) -> dict:
    n = processes(config)
    params = json.loads(json.dumps(base))
    params["base"]["num_threads"] = threads
    bs = params["sft"]["train"]["per_device_train_batch_size"]
    params["sft"]["train"]["per_device_train_batch_size"] = bs // n  # same global batch
    name = f"{config}_t{threads}"
    pfile = tmp / f"{name}.yaml"
    pfile.write_text(yaml.safe_dump(params))
    out = tmp / name
    log, _ = launch(tmp, config, "src.sft", ["--params", str(pfile), "--data", str(tmp / "data"), "--out",
                                             str(out / "sft"), "--metrics", str(out / "sft.json"), "--plots",
                                             str(out / "plots_sft")])
    sft_rate = float(re.findall(r"'train_steps_per_second': '?([\d.]+)", log)[-1])
    log, wall = launch(tmp, config, "src.reward", [
        "--params", str(pfile), "--data", str(tmp / "data"), "--sft", str(out / "sft"), "--feedback",
        str(ROOT / "data/human_feedback"), "--out-data", str(out / "reward_data"), "--out-model",
        str(out / "reward"), "--metrics", str(out / "reward.json"), "--plots", str(out / "plots_reward")])
    # tqdm's final "generate: 100%|...| N/N [mm:ss<...": seconds of this process's share
    gen = [(int(m[0]), m[1]) for m in re.findall(r"generate: 100%\|[^|]*\| (\d+)/\d+ \[([\d:]+)<", log)]
    secs = max(sum(int(x) * 60 ** i for i, x in enumerate(reversed(t.split(":")))) for _, t in gen)
    samples = sum(k for k, _ in gen)
    return {"config": config, "processes": n, "threads": threads, "sft_steps_per_s": sft_rate,
            "sample_per_s": samples / max(secs, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=600, help="train tasks (SFT data and sampled prompts)")
    ap.add_argument("--configs", nargs=2, default=["cpu", "cpu_ddp"], help="reference, then scaled")
    a = ap.parse_args()
    from src import prepare

    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    base["prepare"].update(n_train=a.tasks, n_val=20, n_test=20)
    base["sft"]["train"].update(num_train_epochs=1, logging_steps=1000)
    base["reward"].update(max_tasks=a.tasks // 2, epochs=1)
    base["base"]["checkpoint_steps"] = 0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "params.yaml").write_text(yaml.safe_dump(base))
        prepare.main(str(tmp / "params.yaml"), str(tmp / "data"), str(tmp / "prepare.json"))
        ref_cfg, scaled_cfg = a.configs
        rows = [run(tmp, ref_cfg, 1, base), run(tmp, ref_cfg, 2, base), run(tmp, scaled_cfg, 1, base)]
    print("| config | processes | threads each | SFT steps/s | sampling samples/s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['processes']} | {r['threads']} | {r['sft_steps_per_s']:.2f} | {r['sample_per_s']:.1f} |")
    one, two_threads, scaled = rows
    print(f"\n{scaled_cfg} vs {ref_cfg} x 1 thread: SFT {scaled['sft_steps_per_s'] / one['sft_steps_per_s']:.2f}x, "
          f"sampling {scaled['sample_per_s'] / one['sample_per_s']:.2f}x")
    print(f"{scaled_cfg} vs {ref_cfg} x 2 threads: SFT {scaled['sft_steps_per_s'] / two_threads['sft_steps_per_s']:.2f}x, "
          f"sampling {scaled['sample_per_s'] / two_threads['sample_per_s']:.2f}x")


if __name__ == "__main__":
    main()
