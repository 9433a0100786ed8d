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
from pathlib import Path

from ..errors import RunExists
from ..outputs import lock_path, writer
from ..records import run_status
from .roots import Root

_started: list[subprocess.Popen] = []  # collected when they end, so that none lingers as a zombie


def recipe_command(recipe: str, out: str, overrides: list[str] = (), resume: bool = False) -> list[str]:
    """The command line that runs ``recipe`` into ``out`` (what the page shows, to copy).

    >>> shlex.join(recipe_command("smoke", "runs/smoke", ["train.max_steps=20"]))
    'mcq-unsloth recipe smoke --out runs/smoke --set train.max_steps=20'
    """
    return ["mcq-unsloth", "recipe", recipe, "--out", out, *[part for o in overrides for part in ("--set", o)],
            *(["--resume"] if resume else [])]


def start(root: Root, recipe: str, out: str, overrides: list[str] = (), resume: bool = False) -> Path:
    """Start training ``recipe`` into the run folder ``out`` (under the root) in a process of its own; its output
    goes to ``OUT.log`` beside the folder. Returns the log file."""
    folder = root.resolve(out)
    recipe_path = recipe if "/" not in recipe and not recipe.endswith((".yaml", ".yml")) else str(root.resolve(recipe))
    if (holder := writer(folder)) is not None:
        raise RunExists(f"{out} is being trained by {holder}; stop it first, or choose another run folder")
    log = folder.parent / f"{folder.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = recipe_command(recipe_path, str(folder), overrides, resume)
    with open(log, "ab") as sink:
        sink.write(f"$ {shlex.join(command)}\n".encode())
        sink.flush()
        _started.append(subprocess.Popen([sys.executable, "-m", "mcq_unsloth", *command[1:]], stdout=sink,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root.folder,
                                         start_new_session=True))
    reap()
    return log


def stop(root: Root, out: str) -> str:
    """Stop the run training into ``out`` as Ctrl-C would (SIGINT to its process: the trainer ends its step, the
    last complete checkpoint stays, ``--resume`` continues); what was stopped."""
    folder = root.resolve(out)
    state, holder = run_status(folder)
    if state != "running":
        raise RunExists(f"{out} is not running ({state}: {holder})")
    pid, host = lock_path(folder).read_text(encoding="utf-8").split()
    if host != socket.gethostname():
        raise RunExists(f"{out} is trained by {holder}, on another machine: stop it there")
    os.kill(int(pid), signal.SIGINT)
    return f"asked {holder} to stop; its last complete checkpoint stays, and resume continues from it"


def reap() -> None:
    """Collect the started processes that have ended."""
    _started[:] = [process for process in _started if process.poll() is None]
