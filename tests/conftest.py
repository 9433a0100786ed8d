"""Shared fixtures: a tiny model built once per session, offline and on CPU."""

import os

import pytest

# No test may reach a hub: everything is built here.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_configure(config):
    # As in the CLI, Unsloth is imported before transformers, or it warns and patches too late.
    from mcq_unsloth.models import unsloth_status

    config.unsloth_reason = unsloth_status()


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` skip cleanly without CUDA (CI has none)."""
    import torch

    if torch.cuda.is_available():
        return
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from mcq_unsloth.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen2")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(params=["hf", "unsloth"])
def backend(request, pytestconfig):
    """Each model backend in turn; unsloth is skipped, with the reason, where it cannot run."""
    if request.param == "unsloth" and pytestconfig.unsloth_reason:
        pytest.skip(pytestconfig.unsloth_reason)
    return request.param


@pytest.fixture
def run_recipe():
    """Run a recipe through the CLI with ``--set`` overrides; returns its closing JSON line."""
    import json

    from click.testing import CliRunner

    from mcq_unsloth.cli import main

    def run(name, out, overrides, *extra):
        args = ["recipe", name, "--out", str(out)] + [a for o in overrides for a in ("--set", o)] + list(extra)
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output + repr(result.exception)
        return json.loads(result.stdout.strip().splitlines()[-1])

    return run
