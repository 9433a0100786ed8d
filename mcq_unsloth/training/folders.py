"""Run folders: created without overwriting anything, and recording what produced them.

Each run folder holds ``config.yaml`` (the resolved recipe) and ``run.json`` (recipe, command line, library
versions, the mcq-unsloth git commit, start time), written before training starts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import yaml

from ..config import Config, to_dict
from ..errors import OutputExists, RunExists
from ..model.precision import resolve_dtype
from ..outputs import empty_folder, replacing, write_text
from ..records import TRAINING_RECORD, VALIDATION_FILE, git_commit, latest_checkpoint, library_versions

log = logging.getLogger(__name__)


def prepare_run_dir(path: str | Path, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Create ``path`` for a new run. An existing non-empty folder is an error unless resuming it, or
    unless ``overwrite`` is set, which deletes it first."""
    path = Path(path)
    if resume:
        if not path.is_dir():
            raise RunExists(f"cannot resume {path}: there is no such run folder")
        return path
    try:
        return empty_folder(path, overwrite, holds="a run",
                            fix="pass resume=True to continue it, overwrite=True to replace it, or out= for another folder")
    except OutputExists as error:
        raise RunExists(str(error)) from None


def record_run(run_dir: Path, config: Config, resolved: str, recipe: str, resume: bool = False,
               processes: int = 1) -> None:
    """Write ``config.yaml`` (``resolved``: the configuration as YAML, with what reaches the trainer in comments)
    and ``run.json`` into the run folder (with the launch's process count and the
    effective batch per optimizer step). Resuming appends to ``run.json`` and requires the configuration the
    run started with; resuming in another process count is said (the data order and the steps per epoch change)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    batch = config.train.effective_batch(processes)
    if resume:
        _check_same_config(run_dir, config)
        record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        before = (record.get("resumed") or [record])[-1].get("processes", 1)
        if before != processes:
            log.warning(f"note: {run_dir} last ran in {before} process(es) and resumes in {processes}: each step now "
                        f"takes {batch} examples instead of {batch // processes * before}, so an epoch has other "
                        f"steps and the data order differs from an uninterrupted run (max_steps stays the total)")
        record.setdefault("resumed", []).append({"at": now, "command": sys.argv, "git_commit": git_commit(),
                                                 "processes": processes, "effective_batch": batch})
        write_text(run_dir / "run.json", json.dumps(record, indent=2, ensure_ascii=False) + "\n")
        return
    write_text(run_dir / "config.yaml", resolved)
    record = {
        "recipe": recipe,
        "command": sys.argv,
        "started": now,
        "processes": processes,
        "effective_batch": batch,
        "versions": library_versions(),
        "git_commit": git_commit(),
    }
    write_text(run_dir / "run.json", json.dumps(record, indent=2, ensure_ascii=False) + "\n")


def record_trainer(run_dir: Path, trainer: dict) -> None:
    """Add the trainer's configuration as built (:func:`~mcq_unsloth.training.trainer_settings.library_record`)
    to ``run.json``: under ``trainer``, or under the latest ``resumed`` entry of a resumed run."""
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    (record["resumed"][-1] if record.get("resumed") else record)["trainer"] = trainer
    write_text(run_dir / "run.json", json.dumps(record, indent=2, ensure_ascii=False) + "\n")


def record_finished(run_dir: Path, summary: dict) -> None:
    """Add a finished run's summary (what ``recipe`` prints) to ``run.json``, as ``finished``."""
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    record["finished"] = summary
    write_text(run_dir / "run.json", json.dumps(record, indent=2, ensure_ascii=False) + "\n")


def record_failed(run_dir: Path, error: BaseException) -> None:
    """Add why a started run stopped with an error to ``run.json``, as ``failed`` (the first line of the error; a
    later resume that finishes adds ``finished``, which is what the run is then)."""
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    line = (str(error).strip().splitlines() or [""])[0]
    record["failed"] = {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "error": f"{type(error).__name__}: {line}"}
    write_text(run_dir / "run.json", json.dumps(record, indent=2, ensure_ascii=False) + "\n")


def _check_same_config(run_dir: Path, config: Config) -> None:
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise RunExists(f"cannot resume {run_dir}: it has no config.yaml, so it is not a run folder")
    saved = yaml.safe_load(saved_path.read_text(encoding="utf-8"))
    current = to_dict(config)
    changed = [f"{section}.{key}" for section, values in current.items() if isinstance(values, dict)
               for key in {**(saved.get(section) or {}), **values}  # a TRL key set before and not now counts too
               if (saved.get(section) or {}).get(key) != values.get(key)]
    changed += [key for key, value in current.items() if not isinstance(value, dict) and saved.get(key) != value]
    if changed:
        raise RunExists(f"cannot resume {run_dir} with different settings ({', '.join(changed)}); resume with the "
                        f"run's own settings, or start a new run in another out=")


def resume_checkpoint(folder: Path) -> str | None:
    """The checkpoint to resume from (:func:`latest_checkpoint`), saying on stderr which newer ones are skipped
    and why."""
    skipped: list[str] = []
    checkpoint = latest_checkpoint(folder, skipped)
    for problem in skipped:
        log.warning(f"note: skipping {problem}; resuming from {Path(checkpoint).name if checkpoint else 'the start'}")
    return checkpoint


def write_training_record(folder: Path, config: Config, backend: str) -> None:
    """Write, beside an adapter (final or checkpoint), how it was trained: what inference needs to load it the
    same way (4-bit or not, the dtype it ran in) and to ask questions as training did (the prompt)."""
    record = {"task": config.task, "backend": backend, "base_model": config.model.name,
              "load_in_4bit": config.model.load_in_4bit, "dtype": resolve_dtype(config.model.dtype),
              "max_seq_length": config.model.max_seq_length, "prompt": dataclasses.asdict(config.prompt),
              "seed": config.train.seed}
    write_text(folder / TRAINING_RECORD, json.dumps(record, indent=2, ensure_ascii=False) + "\n")


def eval_command(run_dir: Path, adapter_dir: Path, config: Config) -> dict[str, str]:
    """The ``mcq-unsloth eval`` command that reproduces a run's last logged ``eval_accuracy`` on its saved
    validation questions, precision spelt out so that it holds on any machine; empty without validation."""
    if not (run_dir / VALIDATION_FILE).is_file():
        return {}
    return {"eval_command": f"mcq-unsloth eval --model {adapter_dir} --data {run_dir / VALIDATION_FILE} "
                            f"--out-dir {run_dir / 'eval'} --dtype {resolve_dtype(config.model.dtype)} "
                            f"--{'' if config.model.load_in_4bit else 'no-'}4bit"}


def write_history(history: list[dict], run_dir: Path) -> None:
    """The trainer's log history as ``history.jsonl``: one logged row per line."""
    with replacing(run_dir / "history.jsonl", encoding="utf-8") as out:
        for row in history:
            out.write(json.dumps(row) + "\n")


def last_logged(history: list[dict], key: str):
    """The most recent logged value of ``key``, or None."""
    return next((row[key] for row in reversed(history) if key in row), None)


def whole_run_loss(history: list[dict], resumed_from: str | None) -> float | None:
    """The mean training loss over every step of the run. The trainer's ``train_loss`` sums only the steps of
    its own session (divided by all steps), so after a resume from ``checkpoint-N`` the steps up to N are added
    back from the logged losses (each the mean since the previous log)."""
    final = last_logged(history, "train_loss")
    if final is None or resumed_from is None:
        return final
    steps = next(row["step"] for row in reversed(history) if "train_loss" in row)
    resumed_step = int(Path(resumed_from).name.rsplit("-", 1)[1])
    before, logged = 0.0, 0
    for row in history:
        if "loss" in row and logged < row["step"] <= resumed_step:
            before += row["loss"] * (row["step"] - logged)
            logged = row["step"]
    return (before + final * steps) / max(logged + steps - resumed_step, 1)
