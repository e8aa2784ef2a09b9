import os
import sys
from pathlib import Path

import pytest

# One thread: two on a shared 2-core machine were erratically slower. Offline: no hub access here.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The MBPP copy beside the repository (never a path in the product). CI has it: there a missing copy
# fails the tests that need it (they run and cannot read it) instead of skipping them.
MBPP = ROOT.parent / "shared/data/mbpp/mbpp.jsonl"
needs_mbpp = pytest.mark.skipif(not MBPP.exists() and os.environ.get("CI") != "true",
                                reason=f"no local MBPP copy at {MBPP}")


def pytest_configure(config):
    config.addinivalue_line("markers", "model: loads a local pretrained model")
    config.addinivalue_line("markers", "slow: minutes of work; its file is handed out first")


def pytest_collection_modifyitems(items):
    """Files with slow tests first: `make test` hands files to its processes in this order
    (--no-loadscope-reorder), so the long ones start at once and the short ones fill in around them;
    xdist's default order (the files with the most tests first) handed them out last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
