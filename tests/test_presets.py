"""Presets (presets/*.yaml, src/presets.py): every preset validates against the current params.yaml,
bad presets fail naming file, line and key, and the `dvc exp run -S` arguments carry the values intact."""
import shlex
import shutil
import subprocess
import sys

import pytest

from src import presets
from src.io import UserError
from src.params import read_params
from tests.conftest import ROOT
from tests.test_pipeline import tiny_repo

PRESETS = sorted(p.stem for p in (ROOT / "presets").glob("*.yaml"))
# what a preset leaves to the user, passed as `-S` the way the preset's header says
USER_SETS = {name: ["-S", "prepare.path=/data/mbpp.jsonl"] for name in ("smollm2_gpu", "smollm2_cpu")}


@pytest.fixture
def in_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_the_brief_presets_exist():
    assert {"fast", "research", "production", "smollm2_gpu", "smollm2_cpu", "hub_coder", "seed_composite"} <= set(PRESETS)


def test_seed_composite_restores_the_seeds_reward_on_prompts_with_references():
    p = {k: v for k, (v, _) in presets.load_preset(ROOT / "presets" / "seed_composite.yaml").items()}
    composite = {k.rsplit(".", 1)[1]: v for k, v in p.items() if k.startswith("ppo_or_dpo.composite.")}
    assert composite == {"syntax": 0.2, "execution": 0.3, "semantic": 0.3, "preference": 0.2,
                         "execution_credit": "fraction"}
    assert p["ppo_or_dpo.prompts"] == "train"   # the semantic part needs references; rl prompts have none
    default = read_params(ROOT / "params.yaml")["ppo_or_dpo"]["composite"]
    assert (default["execution"], default["semantic"], default["execution_credit"]) == (1.0, 0.0, "binary")


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_validates_against_params_yaml(name, in_root):
    cmd = presets.build(name, USER_SETS.get(name, []))
    assert cmd[:3] == ["dvc", "exp", "run"]
    header = (ROOT / "presets" / f"{name}.yaml").read_text().splitlines()[0]
    assert header.startswith(f"# {name}: "), "each preset opens with a comment saying what it is for"
    assert "wall time" in (ROOT / "presets" / f"{name}.yaml").read_text()


@pytest.mark.parametrize("name", PRESETS)
def test_gpu_presets_train_in_bf16_on_the_gpu(name):
    p = {k: v for k, (v, _) in presets.load_preset(ROOT / "presets" / f"{name}.yaml").items()}
    if p.get("base.accelerate", "cpu") == "cpu":
        return
    for section in ("sft.train", "ppo_or_dpo.dpo", "ppo_or_dpo.grpo", "ppo_or_dpo.sft_more", "ppo_or_dpo.rft.sft",
                    "ppo_or_dpo.online_dpo.dpo"):
        assert p[f"{section}.use_cpu"] is False and p[f"{section}.bf16"] is True, (name, section)


def test_a_preset_needs_what_it_leaves_to_the_user(in_root):
    with pytest.raises(UserError, match=r"presets/smollm2_gpu.yaml.*'prepare.path': required"):
        presets.build("smollm2_gpu", [])


@pytest.mark.parametrize("text, message", [
    ("prepare.n_train: 10\nsft.train.num_train_epoch: 1\n",
     r"bad.yaml:2: unknown params key 'sft.train.num_train_epoch'.*did you mean 'sft.train.num_train_epochs'"),
    ("sft.n_layer: 2\nprepare.n_train: many\n", r"bad.yaml:2: params key 'prepare.n_train': expected int"),
    ("evaluate.ks: [1, 5]\nppo_or_dpo.method: reinforce\n", r"bad.yaml:2: params key 'ppo_or_dpo.method'"),
    ("prepare.families: [nosuch]\n", r"bad.yaml:1: params key 'prepare.families\[0\]': unknown family"),
    ("ppo_or_dpo.composite.syntax: -1\n", r"bad.yaml:1: params key 'ppo_or_dpo.composite.syntax'.*out of range"),
    ("base.seed.x: 1\n", r"bad.yaml:1: unknown params key 'base.seed.x'"),
    ("sft.train: {bf16: true}\n", r"bad.yaml:1: 'sft.train': set single keys"),
    ("sft.n_layer: 2\nsft.n_layer: 3\n", r"bad.yaml:2: key 'sft.n_layer' is set twice"),
])
def test_a_bad_preset_fails_naming_file_line_and_key(tmp_path, in_root, text, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(UserError, match=message):
        presets.build(str(bad), [])


def test_a_bad_user_set_param_fails_before_dvc_runs(tmp_path, in_root):
    with pytest.raises(UserError, match=r"-S: unknown params key 'sft.nlayer'"):
        presets.build("fast", ["--temp", "-S", "sft.nlayer=2"])
    with pytest.raises(UserError, match=r"params key 'sft.n_layer': expected int"):
        presets.build("fast", ["--set-param", "sft.n_layer=two"])


SMALL = """\
# small: every kind of value
sft.n_layer: 2
sft.corpus_stdlib_mb: 0.0
sft.train.learning_rate: 3.0e-05
sft.train.bf16: true
prepare.path: null
prepare.families: [arith, strings]
sft.base_model: Qwen/Qwen2.5-Coder-0.5B-Instruct
sft.cache_dir: "models/my cache, 2"
evaluate.policies: [sft, "true"]
"""


def test_the_set_param_list_of_a_small_preset(tmp_path):
    (tmp_path / "small.yaml").write_text(SMALL)
    p = presets.load_preset(tmp_path / "small.yaml")
    assert presets.set_args(p) == [
        "-S", "sft.n_layer=2", "-S", "sft.corpus_stdlib_mb=0.0", "-S", "sft.train.learning_rate=3.0e-05",
        "-S", "sft.train.bf16=true", "-S", "prepare.path=null", "-S", "prepare.families=[arith, strings]",
        "-S", "sft.base_model=Qwen/Qwen2.5-Coder-0.5B-Instruct", "-S", 'sft.cache_dir="models/my cache, 2"',
        "-S", 'evaluate.policies=[sft, "true"]']
    assert p["sft.train.bf16"] == (True, 5)


@pytest.mark.parametrize("name", PRESETS + ["small"])
def test_values_survive_dvc_set_param(tmp_path, name):
    """DVC's own -S code, applied to a copy of params.yaml, writes what the preset validated (read as
    DVC reads it: YAML 1.2)."""
    from dvc.utils.hydra import apply_overrides
    from dvc.utils.serialize import load_yaml
    path = tmp_path / "small.yaml" if name == "small" else ROOT / "presets" / f"{name}.yaml"
    if name == "small":
        path.write_text(SMALL)
    preset = presets.load_preset(path)
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    apply_overrides(str(params), [a for a in presets.set_args(preset) if a != "-S"])
    assert load_yaml(params) == presets.apply(read_params(ROOT / "params.yaml"), preset, str(path))


def test_the_stages_read_small_floats_the_way_dvc_writes_them(tmp_path):
    from dvc.utils.hydra import apply_overrides
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    apply_overrides(str(params), ["reward.learning_rate=0.00001"])
    assert "learning_rate: 1e-05" in params.read_text()
    assert read_params(params)["reward"]["learning_rate"] == 1e-05


def test_print_in_a_tiny_project_copy_runs_nothing(tmp_path):
    repo = tiny_repo(tmp_path)
    shutil.copytree(ROOT / "presets", repo / "presets")
    before = (repo / "params.yaml").read_text()
    r = subprocess.run([sys.executable, "-m", "src.presets", "fast", "--print", "--temp", "-n", "smoke"], cwd=repo,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    preset = presets.load_preset(repo / "presets/fast.yaml")
    assert shlex.split(r.stdout.strip()) == ["dvc", "exp", "run", *presets.set_args(preset), "--temp", "-n", "smoke"]
    assert (repo / "params.yaml").read_text() == before and not (repo / ".dvc/tmp/exps").exists()
    r = subprocess.run([sys.executable, "-m", "src.presets", "nosuch"], cwd=repo, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: presets/nosuch.yaml: preset not found (presets: ")
    assert "fast" in r.stderr and "Traceback" not in r.stderr


def test_make_exp_runs_the_preset_module():
    r = subprocess.run(["make", "-n", "exp", "PRESET=fast", "EXP_ARGS=--temp -n smoke"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "python -m src.presets fast --temp -n smoke" in r.stdout
