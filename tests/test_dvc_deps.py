"""dvc.yaml's deps are the truth about what a stage runs: each stage lists exactly the project
modules its entry point imports, transitively, lazy imports inside functions included (derived
here from the code with ast), so editing any of them makes `dvc status` report the stage."""
import ast
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The file a dotted module name loads from, relative to root; None if not a project file."""
    base = root.joinpath(*name.split("."))
    for f in (base / "__init__.py", base.with_suffix(".py")):
        if f.exists():
            return f.relative_to(root)
    return None


def imported_names(path: Path, root: Path = ROOT) -> set[str]:
    """Dotted names a file imports anywhere in it (`from a import b` gives a and a.b: b may be a module)."""
    parts = path.with_suffix("").parts
    package = parts[:-1] if path.name != "__init__.py" else parts[:-1]
    names = set()
    for node in ast.walk(ast.parse((root / path).read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + ((node.module,) if node.module else ())) \
                if node.level else node.module
            names |= {base} | {f"{base}.{a.name}" for a in node.names}
    return names


def import_closure(module: str, root: Path = ROOT) -> set[str]:
    """Project files (relative paths) that running `python -m module` imports, packages included."""
    files, todo = set(), [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # a.b.c imports a and a.b first
        f = module_file(name, root)
        if f is None or str(f) in files:
            continue
        files.add(str(f))
        todo += sorted(imported_names(f, root))
    return files


def load_stages(root: Path = ROOT) -> dict[str, dict]:
    """dvc.yaml's stages, a foreach stage by its `do` body."""
    return {name: s.get("do", s) for name, s in yaml.safe_load((root / "dvc.yaml").read_text())["stages"].items()}


def stage_modules(root: Path = ROOT) -> dict[str, str]:
    """stage -> the module its cmd runs with `-m`."""
    return {name: re.search(r"-m\s+(src[\w.]*)", s["cmd"]).group(1) for name, s in load_stages(root).items()}


def listed_sources(stage: dict, root: Path = ROOT) -> set[str]:
    """The .py files under src/ a stage's deps name (a folder stands for every file in it)."""
    out = set()
    for dep in stage.get("deps", []):
        p = root / dep
        if not dep.startswith("src"):
            continue
        files = [p] if p.is_file() else [f for f in p.rglob("*.py") if "__pycache__" not in f.parts]
        out |= {str(f.relative_to(root)) for f in files if f.suffix == ".py"}
    return out


def deps_mismatch(root: Path = ROOT) -> list[str]:
    stages = load_stages(root)
    problems = []
    for name, module in stage_modules(root).items():
        needed, listed = import_closure(module, root), listed_sources(stages[name], root)
        problems += [f"stage {name}: {f} is imported but not in deps" for f in sorted(needed - listed)]
        problems += [f"stage {name}: {f} is in deps but not imported" for f in sorted(listed - needed)]
    return problems


def test_every_stage_lists_exactly_the_modules_it_imports():
    assert deps_mismatch() == []


def test_each_policy_is_evaluated_by_its_own_stage_and_compare_reads_them_all():
    """evaluate runs once per policy of evaluate.policies and depends on every evaluate key but the
    two only compare reads; compare depends on each policy's three files."""
    import dataclasses

    from src.evaluate import EvaluateParams
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    policies = yaml.safe_load((ROOT / "params.yaml").read_text())["evaluate"]["policies"]
    assert dvc["evaluate"]["foreach"] == "${evaluate.policies}"
    keys = {f.name for f in dataclasses.fields(EvaluateParams)}
    listed = {k.split(".", 1)[1] for k in dvc["evaluate"]["do"]["params"] if k.startswith("evaluate.")}
    assert listed == keys - {"policies", "targets"}
    assert {k.split(".", 1)[1] for k in dvc["compare"]["params"]} == {"policies", "targets"}
    outs = {o.replace("${item}", p) for p in policies for o in dvc["evaluate"]["do"]["outs"]}
    assert outs == {d for d in dvc["compare"]["deps"] if d.startswith("data/")}
    assert {f"models/{p}" for p in policies} <= {d.replace("${item}", p) for p in policies
                                                 for d in dvc["evaluate"]["do"]["deps"]}


def test_the_import_graph_is_real():
    """Known edges: prepare reaches the synthetic generator and the sandbox (a lazy import in a
    function); the reward stage reaches the checkpoint helpers through the reward model."""
    prepare = import_closure("src.prepare")
    assert {"src/__init__.py", "src/prepare.py", "src/tasks/__init__.py", "src/tasks/synthetic.py",
            "src/sandbox.py"} <= prepare
    assert "src/training.py" in import_closure("src.reward_model")
    assert "src/ppo.py" not in import_closure("src.reward")  # its checkpoint helpers live in training


def test_a_missing_or_extra_dep_is_named(tmp_path):
    for name in ("src", "dvc.yaml"):
        (tmp_path / name).symlink_to(ROOT / name)
    good = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    (tmp_path / "dvc.yaml").unlink()
    bad = dict(good, stages=dict(good["stages"]))
    bad["stages"]["prepare"] = dict(good["stages"]["prepare"],
                                    deps=[d for d in good["stages"]["prepare"]["deps"] if d != "src/sandbox.py"]
                                    + ["src/ppo.py"])
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(bad))
    new = [m for m in deps_mismatch(tmp_path) if m not in deps_mismatch()]
    assert new == ["stage prepare: src/sandbox.py is imported but not in deps",
                   "stage prepare: src/ppo.py is in deps but not imported"]


@pytest.mark.parametrize("source,expected", [
    ("import src.io\n", {"src.io"}),
    ("def f():\n    from src.tasks import loaders\n", {"src.tasks", "src.tasks.loaders"}),
    ("from . import io\n", {"src", "src.io"}),
    ("from .metrics.text import codebleu\n", {"src.metrics.text", "src.metrics.text.codebleu"}),
])
def test_imported_names(tmp_path, source, expected):
    (tmp_path / "src").mkdir()
    (tmp_path / "src/mod.py").write_text(source)
    assert imported_names(Path("src/mod.py"), tmp_path) == expected
