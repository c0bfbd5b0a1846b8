# Two entry points for a fresh machine (see README "Quick start"):
#   make demo   - install everything, then run the main job
#   make test   - install everything, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch is pinned and installed first: an unpinned torch pulls several GB of CUDA wheels.
TORCH_SPEC ?= torch==2.13.0
OUT    ?= outputs

.PHONY: setup system-deps demo app test test-fast bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -r requirements.txt -r requirements-dev.txt
	$(PIP) install -q --no-deps -r requirements-nodeps.txt
	touch $@

system-deps:
	@bash .ci/system-deps.sh

setup: system-deps $(VENV)/.installed

demo: setup
	$(PY) -m scripts.talk --example --preview-sheet --out $(OUT)/talking_head.mp4

app: setup
	GRADIO_ANALYTICS_ENABLED=False $(PY) app.py

test: setup
	$(PY) -m pytest -q tests

test-fast: setup
	$(PY) -m pytest -q -m "not slow" tests

bench: setup
	$(PY) -m scripts.benchmark --out $(OUT)/benchmark.json

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
