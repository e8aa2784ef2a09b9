"""DVC remotes: the project names a default one, and push / pull through a local remote restores
pipeline outputs byte for byte."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

DVC = str(Path(sys.executable).parent / "dvc")
MAKE = ("import pathlib, random; r = random.Random(7); p = pathlib.Path('models/m'); p.mkdir(parents=True);"
        " (p / 'weights.bin').write_bytes(r.randbytes(50000)); (p / 'config.json').write_text('{}');"
        " pathlib.Path('data').mkdir(); pathlib.Path('data/table.csv').write_text('a,b\\n1,2\\n')")


def run(repo: Path, *cmd: str) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    r = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{' '.join(cmd)}: {r.stdout[-2000:]}{r.stderr[-2000:]}"
    return r.stdout


def test_the_project_names_a_default_remote_outside_the_repo():
    # --project: only the committed .dvc/config, whatever a developer's config.local says
    assert run(ROOT, DVC, "remote", "default", "--project").strip() == "local"
    remotes = dict(line.split()[:2] for line in run(ROOT, DVC, "remote", "list", "--project").splitlines())
    # DVC resolves a relative url against .dvc/: ../../dvc-remote is a folder beside the clone
    assert (ROOT / ".dvc" / remotes["local"]).resolve() == ROOT.parent / "dvc-remote"


def test_push_then_pull_restores_outputs_byte_for_byte(tmp_path):
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run(repo, "git", "init", "-q")
    run(repo, DVC, "init", "-q")
    run(repo, DVC, "config", "core.analytics", "false")
    run(repo, DVC, "stage", "add", "-n", "make", "-o", "models", "-o", "data/table.csv", f'python -c "{MAKE}"')
    run(repo, DVC, "repro")
    run(repo, *git, "add", "-A")
    run(repo, *git, "commit", "-qm", "outputs")
    run(repo, DVC, "remote", "add", "-d", "--local", "store", str(remote))
    outputs = [repo / "models/m/weights.bin", repo / "models/m/config.json", repo / "data/table.csv"]
    before = {p: p.read_bytes() for p in outputs}

    assert "4 files pushed" in run(repo, DVC, "push")   # the three files and the listing of models/
    assert any(remote.rglob("*")), "the remote holds the pushed objects"
    shutil.rmtree(repo / ".dvc/cache")
    shutil.rmtree(repo / "models")
    (repo / "data/table.csv").unlink()

    run(repo, DVC, "pull")
    assert {p: p.read_bytes() for p in outputs} == before
    assert "Data and pipelines are up to date" in run(repo, DVC, "status")
    assert "in sync" in run(repo, DVC, "status", "--cloud")
