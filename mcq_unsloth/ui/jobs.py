"""Training the page starts: ``mcq-unsloth recipe ...`` in a process of its own session, so that closing the page,
stopping the server or restarting it never stops a run; stopped as Ctrl-C stops one (the last complete checkpoint
kept, ``--resume`` continues). The run folder's lock is the one arbiter: a second start of a running run is
refused here, and one that slips past (two tabs at the same moment) is refused by the lock itself."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from ..errors import RunExists
from ..outputs import lock_path, writer
from ..records import run_status
from .roots import Root

# The processes this server started, by run folder: collected when they end (so that none lingers as a zombie),
# and, until a process takes its folder's lock, what refuses a second start of the same run.
_started: dict[Path, subprocess.Popen] = {}
_stopping: set[Path] = set()  # the folders whose process was asked to stop: a new start waits for it to end
STOP_WAIT_S = 60
_starting = threading.Lock()


def recipe_command(recipe: str, out: str, overrides: list[str] = (), resume: bool = False,
                   overwrite: bool = False) -> list[str]:
    """The command line that runs ``recipe`` into ``out`` (what the page shows, to copy).

    >>> shlex.join(recipe_command("smoke", "runs/smoke", ["train.max_steps=20"]))
    'mcq-unsloth recipe smoke --out runs/smoke --set train.max_steps=20'
    """
    return ["mcq-unsloth", "recipe", recipe, "--out", out, *[part for o in overrides for part in ("--set", o)],
            *(["--resume"] if resume else []), *(["--overwrite"] if overwrite else [])]


def log_file(folder: Path) -> Path:
    """Where the output of a run the page started goes: ``OUT.log`` beside the run folder."""
    return folder.parent / f"{folder.name}.log"


def start(root: Root, recipe: str, out: str, overrides: list[str] = (), resume: bool = False,
          overwrite: bool = False) -> Path:
    """Start training ``recipe`` into the run folder ``out`` (under the root) in a process of its own; its output
    goes to :func:`log_file`. Returns the log file."""
    folder = root.resolve(out)
    recipe_path = recipe if "/" not in recipe and not recipe.endswith((".yaml", ".yml")) else str(root.resolve(recipe))
    with _starting:
        reap()
        if (holder := writer(folder)) is not None:
            raise RunExists(f"{out} is being trained by {holder}; stop it first, or choose another run folder")
        if folder in _stopping and folder in _started:  # asked to stop: it is ending, wait for it to be gone
            try:
                _started[folder].wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                pass
            reap()
        if folder in _started:
            raise RunExists(f"{out}: the process this page started for it ({_started[folder].pid}) is still running "
                            f"(loading, or ending); stop it first, wait, or choose another run folder")
        _stopping.discard(folder)
        log = log_file(folder)
        log.parent.mkdir(parents=True, exist_ok=True)
        command = recipe_command(recipe_path, str(folder), overrides, resume, overwrite)
        with open(log, "ab") as sink:
            sink.write(f"$ {shlex.join(command)}\n".encode())
            sink.flush()
            _started[folder] = subprocess.Popen([sys.executable, "-m", "mcq_unsloth", *command[1:]], stdout=sink,
                                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                cwd=root.folder, start_new_session=True)
    return log


def stop(root: Root, out: str) -> str:
    """Stop the run training into ``out`` as Ctrl-C would (SIGINT to its process: the trainer ends its step, the
    last complete checkpoint stays, ``--resume`` continues); what was stopped."""
    folder = root.resolve(out)
    state, holder = run_status(folder)
    reap()
    if state != "running" and folder in _started:  # started here, still loading: before any checkpoint
        _stopping.add(folder)
        os.kill(_started[folder].pid, signal.SIGINT)
        return f"asked process {_started[folder].pid} to stop while it loads: nothing was trained yet"
    if state != "running":
        raise RunExists(f"{out} is not running ({state}: {holder})")
    pid, host = lock_path(folder).read_text(encoding="utf-8").split()
    if host != socket.gethostname():
        raise RunExists(f"{out} is trained by {holder}, on another machine: stop it there")
    _stopping.add(folder)
    os.kill(int(pid), signal.SIGINT)
    return f"asked {holder} to stop; its last complete checkpoint stays, and resume continues from it"


def reap() -> None:
    """Collect the started processes that have ended."""
    for folder, process in list(_started.items()):
        if process.poll() is not None:
            del _started[folder]
