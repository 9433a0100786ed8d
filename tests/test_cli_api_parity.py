"""Every command line option reaches a parameter of the API call behind its command: the CLI parses and prints,
the API does the work, and the two cannot drift apart.

For each command the API function it calls is replaced by a recorder; the command runs once with its required
arguments and once more for each option, that option changed from its default. Each change must change the
value of the API parameter the option maps to, so an option that is parsed and dropped, or an API parameter the
CLI fills from something else, fails here.
"""

import inspect
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mcq_unsloth.api import answers
from mcq_unsloth.cli.main import main

CLI_INFERENCE, CLI_BENCH, CLI_CONVERT, CLI_MAIN = ("mcq_unsloth.cli.inference", "mcq_unsloth.cli.benchmarks",
                                                   "mcq_unsloth.cli.convert", "mcq_unsloth.cli.main")
ANSWERING = {"model_dir": "model", "data_file": "data", "template": "prompt", "config_file": "accelerate_config"}

# command -> (module whose name the command calls, that name, the command's required arguments,
#             CLI parameter -> API parameter where the names differ; None: the option only shapes what is printed)
CALLS = {
    "predict": (CLI_INFERENCE, "predict_questions", ["--model", "m", "--data", "d.csv", "--out", "o.csv"], ANSWERING),
    "eval": (CLI_INFERENCE, "evaluate", ["--model", "m", "--data", "d.csv", "--out-dir", "o"], ANSWERING),
    "ensemble": (CLI_INFERENCE, "ensemble", ["a.csv", "b.csv", "--out", "o.csv"], {}),
    "bench": (CLI_BENCH, "run_backends", [], {}),
    "bench letters": (CLI_BENCH, "bench_letters", ["--model", "m"],
                      {"model_dir": "model", "data_file": "data", "sizes": "debias"}),
    "bench grpo-variants": (CLI_BENCH, "bench_grpo_variants", [], {}),
    "bench padding": (CLI_BENCH, "bench_padding", ["--model", "m"], {"model_dir": "model", "data_files": "data"}),
    "bench inference": (CLI_BENCH, "bench_inference", [], {"model_dir": "model", "count": "n"}),
    "export": (CLI_CONVERT, "export_model", ["src", "--format", "lora", "--out", "o"],
               {"fmt": "format", "quants": "quant"}),
    "verify-gguf": (CLI_CONVERT, "verify_gguf", ["m.gguf", "--reference", "ref"], {"data_file": "data", "count": "n"}),
    "data check": (CLI_MAIN, "load_questions", ["d.csv"], {"file": "source", "as_json": None}),
    "data synth": (CLI_MAIN, "synth", ["o.csv"], {"count": "n"}),
    "recipe list": (CLI_MAIN, "shipped_recipes", [], {}),
    "recipe show": (CLI_MAIN, "show_recipe", ["smoke"], {"name": "recipe"}),
    "recipe cp": (CLI_MAIN, "copy_recipe", ["smoke", "d.yaml"], {}),
    "recipe run": (CLI_MAIN, "train", ["smoke"], {"name": "recipe", "config_file": "accelerate_config"}),
    "tiny": (CLI_MAIN, "write_tiny", ["o"], {}),
    "smollm2": (CLI_MAIN, "write_smollm2", ["o"], {}),
    "demo": (CLI_MAIN, "run_demo", [], {"out": "out", "overwrite": "overwrite"}),
    "ui": ("mcq_unsloth.ui.app", "serve", [], {}),
}
# Strings the command line parses before the call: a changed value it accepts.
PARSED = {"batch_size": "3", "weights": "2,1", "sizes": "4", "kinds": "plain", "tasks": "score", "variants": "grpo",
          "root": str(Path(__file__).parent)}  # an existing folder


def _commands(group: click.Group, prefix: str = ""):
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            if command.callback is not None and command.invoke_without_command:
                yield path, command
            yield from _commands(command, path + " ")
        else:
            yield path, command


COMMANDS = dict(_commands(main))


def test_every_command_names_the_api_call_behind_it():
    assert sorted(COMMANDS) == sorted(CALLS)


class _Called(Exception):
    pass


def _record(monkeypatch, module: str, name: str) -> list:
    real = getattr(__import__(module, fromlist=[name]), name)
    signature = inspect.signature(real)
    calls = []

    def recorder(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)  # a keyword the API lacks fails here
        bound.apply_defaults()
        calls.append(dict(bound.arguments))
        raise _Called

    monkeypatch.setattr(f"{module}.{name}", recorder)
    return calls


def _changed(param: click.Parameter, given: list[str] = ()) -> list[str]:
    """Command line words that set ``param`` to something other than its default and than ``given`` sets it to."""
    if isinstance(param, click.Argument):
        return ["changed-value"]
    flag = param.opts[0]
    if param.is_flag:
        if param.secondary_opts:
            return [param.secondary_opts[0] if param.default else flag]
        return [flag]
    if isinstance(param.type, click.Choice):
        taken = {param.default, *(given[i + 1] for i, word in enumerate(given[:-1]) if word in param.opts)}
        return [flag, next(c for c in param.type.choices if c not in taken)]
    if param.name in PARSED:
        return [flag, PARSED[param.name]]
    if isinstance(param.type, click.types.IntParamType):
        low = getattr(param.type, "min", None) or 0
        return [flag, str(max(low, (param.default or 0)) + 1)]
    return [flag, "changed-value"]


def _invoke(path: str, words: list[str]):
    args = [*path.split(), *CALLS[path][2]]
    if words == ["changed-value"]:  # the command's first argument (the required arguments start with it), changed
        args[len(path.split())] = "changed-value"
    else:
        args += words
    return CliRunner().invoke(main, args)


@pytest.mark.parametrize("path", sorted(CALLS))
def test_every_option_reaches_the_api(path, monkeypatch):
    module, name, _, renamed = CALLS[path]
    calls = _record(monkeypatch, module, name)
    result = _invoke(path, [])
    assert isinstance(result.exception, _Called), f"{path} did not call {name}: {result.output}"
    base = calls.pop()
    command = COMMANDS[path]
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    for param in command.params:
        target = renamed.get(param.name, param.name)
        if target is None:
            continue
        if isinstance(param, click.Argument) and param is not arguments[0]:
            assert target in base, f"{path}: argument {param.name} is not a parameter of {name}"
            continue
        words = _changed(param, CALLS[path][2])
        result = _invoke(path, words)
        assert isinstance(result.exception, _Called), f"{path} {words}: {result.output}"
        got = calls.pop()
        assert target in got, f"{path}: {param.name} has no parameter {target!r} in {name}"
        assert got[target] != base[target], f"{path}: {' '.join(words)} does not reach {name}({target}=)"


@pytest.mark.parametrize("command, extra", [
    ("predict", {"raw": "r.jsonl", "id_column": "qid", "answer_column": "letter", "top_k": 2, "batch_size": 3,
                 "load_in_4bit": False, "prompt": "en", "base": "b", "resume": True}),
    ("eval", {"mode": "generate", "circular": True, "max_new_tokens": 5, "load_in_4bit": True, "card": True,
              "overwrite": True, "on_long": "error", "backend": "hf", "dtype": "float32"}),
    ("eval", {"debias": 4, "debias_seed": 7, "combine": "vote"}),
])
def test_a_launch_asks_its_processes_what_the_api_was_asked(command, extra, monkeypatch, tmp_path):
    """``num_processes`` runs the command in every process: its options, parsed again, are the call's arguments."""
    launched = []

    def launch(args, num_processes, config):  # what the processes leave: an empty submission and metrics
        launched.append(args)
        (tmp_path / "o.csv").write_text("id,answer\n")
        (tmp_path / "e").mkdir(exist_ok=True)
        (tmp_path / "e" / "metrics.json").write_text("{}")
        return {}

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(answers.processes, "launch", launch)
    monkeypatch.setattr(answers, "load_questions", lambda data: [])
    call = answers.predict if command == "predict" else answers.evaluate
    given = {"model": "runs/x/adapter", "data": "q.csv", **extra}
    out = {"out": "o.csv"} if command == "predict" else {"out_dir": "e"}
    call(**given, **out, num_processes=2)
    context = COMMANDS[command].make_context(command, list(launched[0][1:]))
    parsed = {ANSWERING.get(k, k): v for k, v in context.params.items()}
    for key, value in {**given, **out}.items():
        assert parsed[key] == (str(value) if key in ("batch_size", "out_dir") else value), key
    assert parsed["num_processes"] is None and parsed["accelerate_config"] is None  # each process answers its share
