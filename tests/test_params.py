"""params.yaml validation: every mistake names the key and what is allowed."""
import dataclasses
from typing import Literal, Optional

import pytest
import yaml

from src.io import UserError
from src.params import BaseParams, bounded, load_section, parse_section, read_params
from tests.conftest import ROOT


@dataclasses.dataclass
class Demo:
    method: Literal["dpo", "ppo", "grpo"]
    lr: float = bounded(0, 1)
    steps: int = bounded(1)
    name: Optional[str]
    ks: list[int]
    weights: dict[str, float]


GOOD = {"method": "dpo", "lr": 0.1, "steps": 3, "name": None, "ks": [1, 2], "weights": {"a": 1}}


def test_valid_section_is_built_and_ints_become_floats():
    d = parse_section(Demo, GOOD, "demo")
    assert d.method == "dpo" and d.lr == 0.1 and d.ks == [1, 2]
    assert d.weights == {"a": 1.0} and isinstance(d.weights["a"], float)


@pytest.mark.parametrize("change, message", [
    ({"lrr": 0.1}, "params key 'demo.lrr' is unknown (allowed: method, lr, steps, name, ks, weights)"),
    ({"method": "dop"}, "params key 'demo.method': 'dop' is not allowed (allowed: 'dpo', 'ppo', 'grpo')"),
    ({"lr": "fast"}, "params key 'demo.lr': expected float, got 'fast'"),
    ({"lr": 2.0}, "params key 'demo.lr': 2.0 is out of range [0, 1]"),
    ({"steps": 0}, "params key 'demo.steps': 0 is out of range [1, None]"),
    ({"steps": True}, "params key 'demo.steps': expected int, got True"),
    ({"ks": [1, "x"]}, "params key 'demo.ks[1]': expected int, got 'x'"),
    ({"weights": {"a": "b"}}, "params key 'demo.weights.a': expected float, got 'b'"),
])
def test_bad_values_name_the_key(change, message):
    with pytest.raises(UserError) as e:
        parse_section(Demo, {**GOOD, **change}, "demo")
    assert str(e.value) == message


def test_missing_key_and_missing_section():
    raw = dict(GOOD)
    del raw["steps"]
    with pytest.raises(UserError, match="params key 'demo.steps' is missing"):
        parse_section(Demo, raw, "demo")
    with pytest.raises(UserError, match="params section 'demo' is missing"):
        parse_section(Demo, None, "demo")


def test_unknown_section_and_bad_yaml(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("base: {seed: 1, num_threads: 1}\nprepar: {}\n")
    with pytest.raises(UserError, match="unknown section 'prepar'"):
        read_params(p)
    p.write_text("base: [unclosed\n")
    with pytest.raises(UserError, match="invalid YAML"):
        read_params(p)
    with pytest.raises(UserError, match="params file not found"):
        read_params(tmp_path / "nope.yaml")


def test_params_are_read_as_yaml_1_2_as_dvc_writes_them(tmp_path):
    """`dvc exp run -S sft.train.eval_strategy=no` writes `no` unquoted and 1e-5 as 1e-05: YAML 1.2 reads
    a string and a float (YAML 1.1 would read False and a string)."""
    p = tmp_path / "params.yaml"
    p.write_text("sft: {train: {eval_strategy: no, learning_rate: 1e-05, bf16: false, use_cpu: True, x: on}}\n")
    assert read_params(p)["sft"]["train"] == {"eval_strategy": "no", "learning_rate": 1e-05, "bf16": False,
                                              "use_cpu": True, "x": "on"}


def test_repository_params_are_valid():
    """Every section of the committed params.yaml validates against its stage's dataclass."""
    from src.evaluate import EvaluateParams
    from src.label import LabelParams
    from src.ppo import PPOParams
    from src.ppo_or_dpo import AlignParams
    from src.prepare import PrepareParams
    from src.reward import RewardParams
    from src.rewards import CompositeParams
    from src.sandbox import SandboxParams
    from src.sft import SFTParams

    raw = read_params(ROOT / "params.yaml")
    for cls, name in [(BaseParams, "base"), (SandboxParams, "sandbox"), (PrepareParams, "prepare"),
                      (SFTParams, "sft"), (RewardParams, "reward"), (AlignParams, "ppo_or_dpo"),
                      (EvaluateParams, "evaluate"), (LabelParams, "label")]:
        parse_section(cls, raw[name], name)
    align = raw["ppo_or_dpo"]
    parse_section(CompositeParams, align["composite"], "ppo_or_dpo.composite")
    parse_section(PPOParams, {**align["ppo"], "seed": 0, "temperature": raw["base"]["temperature"]}, "ppo_or_dpo.ppo")
    assert load_section(BaseParams, "base", ROOT / "params.yaml").seed == raw["base"]["seed"]


def test_trl_config_rejects_unknown_key():
    from trl import SFTConfig

    from src.training import trl_config
    with pytest.raises(UserError, match="params key 'sft.train.learnin_rate' is not a SFTConfig option"):
        trl_config(SFTConfig, "sft.train", {"learnin_rate": 0.1}, output_dir="x")


def test_repository_trainer_sections_build_trl_configs(tmp_path):
    """The TRL sub-sections of params.yaml are accepted by the trainers' own config classes."""
    from trl import DPOConfig, GRPOConfig, SFTConfig

    from src.training import trl_config

    raw = read_params(ROOT / "params.yaml")
    align = raw["ppo_or_dpo"]
    for cls, key, values in [(SFTConfig, "sft.train", raw["sft"]["train"]),
                             (DPOConfig, "ppo_or_dpo.dpo", align["dpo"]),
                             (GRPOConfig, "ppo_or_dpo.grpo", align["grpo"]),
                             (SFTConfig, "ppo_or_dpo.sft_more", align["sft_more"]),
                             (SFTConfig, "ppo_or_dpo.rft.sft", align["rft"]["sft"]),
                             (DPOConfig, "ppo_or_dpo.online_dpo.dpo", align["online_dpo"]["dpo"])]:
        cfg = trl_config(cls, key, values, output_dir=str(tmp_path))
        assert cfg.bf16 is False and cfg.gradient_checkpointing is False, key
