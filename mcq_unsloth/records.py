"""What a run folder records, read by every stage: the training record beside an adapter, the checkpoints
that are complete, the run's summary in ``run.json``, the library versions and the code's commit. The bottom
floor: training writes these, and inference, export and the benchmarks read them.
"""

from __future__ import annotations

import json
import subprocess
import zipfile
from importlib import metadata
from pathlib import Path

from .errors import RunExists
from .outputs import writer

LIBRARIES = ("mcq-unsloth", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes",
             "unsloth", "unsloth_zoo")


TRAINING_RECORD = "mcq_unsloth.json"


VALIDATION_FILE = "validation.jsonl"


PROGRESS_FILE = "progress.json"  # where a training run is: written every step while it trains


def training_record(folder: str | Path) -> dict | None:
    """An adapter folder's training record (see :func:`write_training_record`), or None when it has none (or
    ``folder`` is a Hub id)."""
    path = Path(folder) / TRAINING_RECORD
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def finished_summary(run_dir: Path) -> dict:
    """The summary :func:`record_finished` stored; raises :class:`~mcq_unsloth.errors.RunExists` for a run that
    did not finish."""
    path = Path(run_dir) / "run.json"
    record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if "finished" not in record:
        raise RunExists(f"{run_dir} holds no finished run (run.json has no summary)")
    return record["finished"]


def run_status(run_dir: Path) -> tuple[str, str]:
    """What a run folder is now, read from the folder alone (so a page, a second tab or a restarted server sees
    the same): ``("running", "process PID on HOST")`` while a process holds its lock, ``("finished", adapter)``,
    ``("failed", the error)``, or ``("stopped", the last complete checkpoint or that there is none)``."""
    run_dir = Path(run_dir)
    if (holder := writer(run_dir)) is not None:
        return "running", holder
    path = run_dir / "run.json"
    record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if "finished" in record:
        return "finished", str(record["finished"].get("adapter", ""))
    if "failed" in record:
        return "failed", record["failed"]["error"]
    last = latest_checkpoint(run_dir / "checkpoints")
    return "stopped", f"last complete checkpoint: {Path(last).name}" if last else "stopped before its first checkpoint"


def read_history(run_dir: Path) -> list[dict]:
    """The rows of a run's ``history.jsonl``: what the trainer logged, step by step (while it trains, the rows
    logged so far: a last line still being written is left for the next read)."""
    text = (Path(run_dir) / "history.jsonl").read_text(encoding="utf-8")
    whole = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in whole.split("\n") if line.strip()]


def read_progress(run_dir: Path) -> dict | None:
    """Where a training run is (see :class:`~mcq_unsloth.training.callbacks.LiveHistory`): ``step``,
    ``max_steps``, ``first_step`` (where this session began: 0, or the checkpoint resumed from), ``seconds`` since
    then; None before the first step."""
    path = Path(run_dir) / PROGRESS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def progress_line(progress: dict | None) -> str:
    """A run's progress in words: the step, the elapsed time and, once steps were timed, the time left.

    >>> progress_line({"step": 30, "max_steps": 120, "first_step": 20, "seconds": 50.0})
    'step 30 / 120, 50 s elapsed, about 7 min 30 s left'
    >>> progress_line(None)
    'loading'
    """
    if not progress:
        return "loading"
    step, total, done = progress["step"], progress["max_steps"], progress["step"] - progress["first_step"]
    line = f"step {step} / {total}, {_duration(progress['seconds'])} elapsed"
    if done > 0 and total > step:
        line += f", about {_duration(progress['seconds'] / done * (total - step))} left"
    return line


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (f"{hours} h {minutes} min" if hours else f"{minutes} min {seconds} s" if minutes else f"{seconds} s")


def library_version(name: str) -> str | None:
    """The installed version of the distribution ``name``, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str | None]:
    return {name: library_version(name) for name in LIBRARIES}


def git_commit() -> str | None:
    """The commit of the mcq-unsloth checkout this code runs from (``+dirty`` if changed), or None."""
    source = Path(__file__).resolve().parents[1]  # the folder that holds the mcq_unsloth package
    try:
        top, commit = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=source,
                                     capture_output=True, text=True, check=True).stdout.split()
        if Path(top).resolve() != source:
            return None  # an installed wheel inside some other repository's tree
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def latest_checkpoint(folder: Path, skipped: list[str] | None = None) -> str | None:
    """The newest complete ``checkpoint-N`` in ``folder`` (see :func:`checkpoint_problem`). The newer ones that
    are not complete are added to ``skipped``, each as "NAME: what is wrong"."""
    if not folder.is_dir():
        return None
    numbered = [p for p in folder.glob("checkpoint-*") if p.name[11:].isdigit() and p.is_dir()]
    for checkpoint in sorted(numbered, key=lambda p: -int(p.name[11:])):
        if (problem := checkpoint_problem(checkpoint)) is None:
            return str(checkpoint)
        if skipped is not None:
            skipped.append(f"{checkpoint.name}: {problem}")
    return None


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from, or None when it is complete: the trainer writes
    ``trainer_state.json`` last, and every JSON, safetensors and torch file in it must be whole (a crash while
    one was written leaves it cut short)."""
    if not (checkpoint / "trainer_state.json").is_file():
        return "it has no trainer_state.json (saving was cut short)"
    for path in sorted(checkpoint.iterdir()):
        try:
            if path.suffix == ".json":
                json.loads(path.read_bytes())
            elif path.suffix == ".safetensors":
                _check_safetensors(path)
            elif path.suffix in (".pt", ".pth", ".bin"):
                zipfile.ZipFile(path).close()  # torch.save writes a zip; a cut one lacks its closing directory
        except (ValueError, zipfile.BadZipFile):
            return f"{path.name} is cut short or damaged"
    return None


def _check_safetensors(path: Path) -> None:
    """Raise ValueError unless the file is as long as its header says."""
    with path.open("rb") as source:
        size = int.from_bytes(source.read(8), "little")
        header = json.loads(source.read(size))
    end = max((entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"), default=0)
    if path.stat().st_size != 8 + size + end:
        raise ValueError(f"{path} holds {path.stat().st_size} bytes, its header says {8 + size + end}")
