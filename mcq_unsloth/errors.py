"""The errors mcq-unsloth raises where the user's input or machine is at fault, in one place: the API raises them,
the command line turns each into one line and exit code 2."""

from __future__ import annotations

import errno
import os
from pathlib import Path

# A full disk or quota, a read-only file system, missing permissions: the machine's state, not a bug.
MACHINE_FIXES = {
    errno.ENOSPC: "free some space, then run again",
    errno.EDQUOT: "free some space, then run again",
    errno.EROFS: "choose a location on a writable file system",
    errno.EACCES: "check its permissions, or choose another location",
    errno.EPERM: "check its permissions, or choose another location",
}


class DataError(ValueError):
    """A problem with an input file, phrased for the person who has to fix it.

    >>> str(DataError("q.csv", "answer is 'E'", row=3, column="answer", fix="use one of A, B, C, D"))
    "q.csv: data row 3, column 'answer': answer is 'E'. Fix: use one of A, B, C, D."
    >>> str(DataError("DataFrame", "the question is empty", row=2, column="question", label="q7"))
    "DataFrame: row 2 (index label 'q7'), column 'question': the question is empty."
    """

    def __init__(self, path: str | Path, problem: str, *, row: int | None = None,
                 column: str | None = None, fix: str | None = None, label=None):
        self.path, self.problem, self.row, self.column, self.fix = str(path), problem, row, column, fix
        self.label = label  # a DataFrame row's index label, beside its 1-based position ``row``
        where = []
        if row is not None:
            where.append(f"data row {row}" if label is None else f"row {row} (index label {label!r})")
        if column is not None:
            where.append(f"column '{column}'")
        message = f"{self.path}: " + (", ".join(where) + ": " if where else "") + problem
        super().__init__(message + (f". Fix: {fix}." if fix else "."))


class ConfigError(ValueError):
    """Everything wrong with a configuration, one problem per line."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = problems
        head = f"{source}: " if source else ""
        if len(problems) == 1:
            super().__init__(head + problems[0])
        else:
            super().__init__(head + f"{len(problems)} problems in the configuration:\n  - " + "\n  - ".join(problems))


class OutputError(OSError):
    """An output that cannot be written, or that another process is writing: the user's to fix."""


class OutputExists(OutputError, FileExistsError):
    """An output that already holds something, replaced only when asked (``--overwrite``, ``overwrite=True``)."""


class OutsideRoot(OutputError):
    """A path the page was asked to read or write that lies outside the folder it serves (``..``, an absolute path
    elsewhere, a link leading out)."""


class RunExists(OutputExists):
    """A run folder that cannot be started (it holds a run) or resumed (it holds none, or another one)."""


class RecipeNotFound(LookupError):
    pass


class ModelLoadError(RuntimeError):
    """A model that cannot be loaded, with what to do about it."""


class OutOfMemory(RuntimeError):
    """Training ran out of GPU memory: what to lower, and the checkpoint to resume from."""


class LongQuestions(ValueError):
    """Questions whose prompts do not fit the model's context, with ``on_long="error"`` (or too long to shorten)."""


class ExportError(ValueError):
    """A model, tokenizer or setting the export cannot turn into what was asked: the user's to fix."""


class LlamaCppUnusable(ExportError):
    """The installed llama.cpp cannot run on this machine: the machine's condition, told in one line."""


class LaunchError(RuntimeError):
    """A launch of several processes cannot go on: the processes disagree on their inputs, or another one
    stopped (its own message says why)."""


# The errors above that are the user's to fix (or the machine's state), as the command line reports them.
USER_ERRORS = (DataError, ConfigError, RecipeNotFound, ModelLoadError, OutputError, LongQuestions, ExportError,
               OutOfMemory, LaunchError)


def machine_errno(error: Exception, writes: tuple = ()) -> int | None:
    """The errno of :data:`MACHINE_FIXES` behind ``error``, or None when it is something else. Libraries that
    write files themselves report a full disk in their own words: safetensors says ``No space left on device
    (os error 28)``, and torch's zip writer only ``unexpected pos N vs M``, which counts as a full disk when one
    of the ``writes`` lies on a file system with less than 1 MiB free.

    >>> machine_errno(OSError(errno.ENOSPC, "No space left on device")) == errno.ENOSPC
    True
    >>> machine_errno(RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"))
    28
    >>> machine_errno(RuntimeError("CUDA error: device-side assert triggered")) is None
    True
    """
    if isinstance(error, OSError):
        return error.errno if error.errno in MACHINE_FIXES else None
    text = str(error)
    if code := next((c for c in MACHINE_FIXES if os.strerror(c) in text or f"(os error {c})" in text), None):
        return code
    if "inline_container" in text and any(_free_bytes(Path(p)) < 2**20 for p in writes):
        return errno.ENOSPC
    return None


def _free_bytes(path: Path) -> int:
    while not path.exists() and path != path.parent:
        path = path.parent
    status = os.statvfs(path)
    return status.f_bavail * status.f_frsize
