"""Training from Python: :func:`train` (in this process, or starting a launch), :func:`show_recipe`, and a
finished :class:`Run` with its curves (:func:`plot_run`), and runs side by side (:func:`compare_runs`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import processes
from ..config import dump_yaml, from_dict, load_config, recipe_text, to_dict
from ..data.questions import write_questions
from ..data.sources import load_questions
from ..errors import ConfigError, DataError
from ..model.backends import resolve_backend
from ..plots import SFT_PANELS, curves_figure, grpo_panels
from ..records import finished_summary, read_history, run_status
from ..training import trainer_settings
from ..training.recipes import find_recipe
from ..training.run import run_training


@dataclass
class Run:
    """A finished (or resumed and finished) training run: its folder, the adapter in it, the summary the command
    line prints (``metrics``: steps, losses, ``eval_accuracy``, ``seconds``...), and the command that measures the
    adapter again as training did."""
    run_dir: Path
    adapter: Path
    metrics: dict

    @property
    def eval_command(self) -> str | None:
        return self.metrics.get("eval_command")

    @property
    def history(self):
        """The values the trainer logged (loss, eval_loss, eval_accuracy, learning rate... by step), a
        ``pandas.DataFrame`` read from the run's ``history.jsonl``."""
        import pandas as pd

        return pd.DataFrame(read_history(self.run_dir))


def train(recipe, *, overrides=None, train_data=None, validation_data=None, out: str | Path | None = None,
          resume: bool = False, overwrite: bool = False, num_processes: int | None = None,
          accelerate_config: str | Path | None = None) -> Run:
    """Run a training recipe and return its :class:`Run`. ``recipe`` is a shipped name (``smoke``,
    ``sft_qwen14b_1m``...), a YAML path, or a dict of the recipe's sections; ``overrides`` a dict of dotted keys
    (``{"lora.r": 8, "train.learning_rate": 1e-4}``) or ``--set`` strings. ``train_data`` and
    ``validation_data``, when given, are anything :func:`load_questions` takes (a DataFrame above all); they are
    stored in the run folder (``train_data.jsonl``, ``validation_data.jsonl``) and the configuration names those
    files, so the run record holds them and ``mcq-unsloth recipe RUN/config.yaml --out RUN --resume`` continues
    the run. ``out`` is the run folder (default ``runs/NAME``); an existing one needs ``resume`` or ``overwrite``.

    ``num_processes`` (one per GPU) trains data-parallel: ``accelerate launch`` runs the recipe in that many
    processes (a notebook cannot start them itself), with ``accelerate_config`` (a file, or ``ddp``,
    ``fsdp_qlora``, ``zero2``, ``zero3`` from ``recipes/accelerate/``) when given; its output goes to stderr, and
    the returned Run is the one the main process recorded. A recipe then is a name or a file, and its data files.

    >>> run = mu.train("smoke", train_data=frame, overrides={"train.max_steps": 20})   # doctest: +SKIP
    >>> run = mu.train("smoke", num_processes=2)                                     # doctest: +SKIP
    >>> run.metrics["eval_accuracy"], run.history.tail()                             # doctest: +SKIP
    """
    sets, typed = _overrides(overrides)
    if num_processes is not None or accelerate_config is not None:
        return _train_launched(recipe, sets, typed, out, resume, overwrite, num_processes or 1, accelerate_config,
                               train_data is not None or validation_data is not None)
    config, source, name = _recipe_config(recipe, sets, typed)
    run_dir = Path(out) if out is not None else Path("runs") / name
    stored = {"train": train_data, "validation": validation_data}
    stored = {part: load_questions(data) for part, data in stored.items() if data is not None}  # bad data: now

    def store(folder: Path):
        changed = {}
        for part, questions in stored.items():
            path = (folder / f"{part}_data.jsonl").resolve()
            if path.exists() and resume and load_questions(path) != questions:
                raise ConfigError([f"{part}_data differs from the questions {folder} was started with ({path}); "
                                   f"resume with the same data, or start a new run"])
            write_questions(questions, path)
            changed[f"data.{part}"] = str(path)
        return from_dict(to_dict(config), [], typed=changed) if changed else config

    metrics = run_training(config, run_dir, source, resume=resume, overwrite=overwrite, prepare=store)
    return Run(run_dir, Path(metrics["adapter"]), metrics)


def show_recipe(recipe, *, overrides=None, resolved: bool = True, out: str | Path | None = None) -> str:
    """A recipe as YAML: with ``resolved``, every setting with its default filled in and, in comments under
    ``train`` and ``grpo``, the values mcq-unsloth sets for the trainer and the libraries' defaults it leaves alone
    (what ``config.yaml`` of a run folder holds); without, the recipe's text as written, or with ``overrides`` its
    settings after them. The trainer settings are checked as :func:`train` checks them (a :class:`ConfigError`). ``out`` is the run folder the values name (default ``runs/NAME``).

    >>> print(mu.show_recipe("grpo_50pct", overrides={"grpo.loss_type": "dr_grpo"}))   # doctest: +SKIP
    """
    sets, typed = _overrides(overrides)
    given_as_dict = isinstance(recipe, dict)
    if not (resolved or sets or typed or given_as_dict):
        return recipe_text(find_recipe(str(recipe)))
    config, source, name = _recipe_config(recipe, sets, typed)
    resolve_backend(config.model.backend, training=True)  # Unsloth, when used, before TRL is imported
    trainer_settings.check(config, None if given_as_dict else source)
    if not resolved:
        return dump_yaml(config)
    return trainer_settings.resolved_yaml(config, Path(out) if out is not None else Path("runs") / name,
                                          header=f"# resolved from recipe {'a dict' if given_as_dict else recipe}")


def plot_run(run):
    """The curves of a training run (a :class:`Run` or its folder) as a ``matplotlib.figure.Figure``, the same the
    run folder's PNG shows: loss, eval loss, validation accuracy and learning rate for SFT; rewards, accuracy, KL,
    loss and completion length for GRPO. A notebook shows it inline; the global plotting backend is left alone.

    >>> mu.plot_run("runs/smoke")          # doctest: +SKIP
    """

    run_dir = run.run_dir if isinstance(run, Run) else Path(run)
    history_file, config_file = run_dir / "history.jsonl", run_dir / "config.yaml"
    if not history_file.is_file() or not config_file.is_file():
        raise DataError(run_dir, "not a run folder, or nothing logged yet (no history.jsonl or config.yaml)",
                        fix="give the folder a training run wrote")
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    grpo = config.get("task") == "grpo"
    panels = grpo_panels(list(config.get("grpo", {}).get("reward_weights", {}))) if grpo else SFT_PANELS
    figure = curves_figure(read_history(run_dir), panels, f"{'GRPO' if grpo else 'SFT'} {run_dir.name}")
    if figure is None:
        raise DataError(run_dir, "the run logged nothing to plot", fix="train for more steps than train.logging_steps")
    return figure


@dataclass
class Comparison:
    """Runs side by side (:func:`compare_runs`): their curves overlaid (``figure``, a matplotlib Figure, or None
    when none logged anything), the settings that differ between them (``settings``, a DataFrame: a row a
    setting, a column a run) and their final figures (``metrics``, a row a run)."""
    figure: object
    settings: object
    metrics: object


def compare_runs(runs) -> Comparison:
    """Compare run folders (or :class:`Run` objects): the curves every one of them logged, overlaid in the panels
    :func:`plot_run` draws; the recipe settings whose values differ; and each run's final summary (or its state,
    for one still running or stopped).

    >>> mu.compare_runs(["runs/smoke", "runs/smoke-lr1e-3"]).settings           # doctest: +SKIP
    """
    import pandas as pd

    folders = [r.run_dir if isinstance(r, Run) else Path(r) for r in runs]
    if len(folders) < 2:
        raise ConfigError(["runs: give two run folders or more to compare"])
    configs, histories = {}, {}
    for folder in folders:
        config_file = folder / "config.yaml"
        if not config_file.is_file():
            raise DataError(folder, "not a run folder (no config.yaml)", fix="give folders a training run wrote")
        configs[folder.name if folder.name not in configs else str(folder)] = yaml.safe_load(
            config_file.read_text(encoding="utf-8"))
        histories[list(configs)[-1]] = read_history(folder) if (folder / "history.jsonl").is_file() else []
    names = list(configs)
    flat = {name: _flatten(config) for name, config in configs.items()}
    keys = sorted({key for values in flat.values() for key in values})
    differing = [key for key in keys if len({json.dumps(flat[n].get(key), sort_keys=True) for n in names}) > 1]
    settings = pd.DataFrame([[key, *[flat[n].get(key) for n in names]] for key in differing],
                            columns=["setting", *names])
    rows = []
    for name, folder in zip(names, folders):
        state, detail = run_status(folder)
        summary = finished_summary(folder) if state == "finished" else {}
        rows.append({"run": name, "status": state, **{k: v for k, v in summary.items()
                                                      if isinstance(v, (int, float)) and not isinstance(v, bool)}})
    grpo = any(config.get("task") == "grpo" for config in configs.values())
    rewards = sorted({r for c in configs.values() for r in c.get("grpo", {}).get("reward_weights", {})})
    panels = grpo_panels(rewards) if grpo else SFT_PANELS
    merged = [{"step": row["step"], **{f"{name}: {k}": v for k, v in row.items() if k != "step"}}
              for name, history in histories.items() for row in history if "step" in row]
    figure = curves_figure(merged, [(label, [f"{name}: {k}" for k in keys for name in names])
                                    for label, keys in panels], " vs ".join(names))
    return Comparison(figure, settings, pd.DataFrame(rows))


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "reward_weights":
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _recipe_config(recipe, sets: list[str], typed: dict):
    """``recipe`` (a shipped name, a YAML path or a dict of sections) with its overrides: the configuration, where
    it came from (the file, or "a dict") and the name of its default run folder."""
    if isinstance(recipe, dict):
        return from_dict({**recipe}, sets, typed=typed), "a dict", "run"
    path = find_recipe(str(recipe))
    return load_config(path, sets, typed=typed), str(path), Path(str(recipe)).stem


def _train_launched(recipe, sets: list[str], typed: dict, out, resume: bool, overwrite: bool, num_processes: int,
                    accelerate_config, with_data: bool) -> Run:
    """:func:`train` in ``num_processes`` processes started by accelerate's launcher; the summary is the one the
    main process wrote into ``run.json``."""
    if isinstance(recipe, dict) or with_data:
        raise ConfigError(["num_processes: the launched processes read the recipe and its data from files; save the "
                           "questions (frame.to_csv(path)) and give the recipe's name or file with overrides "
                           "{'data.train': path}"])
    find_recipe(str(recipe))  # a misspelt name: here, not in every process
    run_dir = Path(out) if out is not None else Path("runs") / Path(str(recipe)).stem
    args = ["recipe", str(recipe), "--out", str(run_dir)]
    for item in [*sets, *(f"{key}={json.dumps(value)}" for key, value in typed.items())]:
        args += ["--set", item]
    args += ["--resume"] * resume + ["--overwrite"] * overwrite
    processes.launch(args, num_processes, accelerate_config)
    metrics = finished_summary(run_dir)
    return Run(run_dir, Path(metrics["adapter"]), metrics)


def _overrides(overrides) -> tuple[list[str], dict]:
    """``--set`` strings and typed values from what :func:`train` takes as ``overrides``."""
    if overrides is None:
        return [], {}
    if isinstance(overrides, dict):
        return [], dict(overrides)
    return list(overrides), {}
