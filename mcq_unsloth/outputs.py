"""What the commands write: checked writable before any slow work, held by one writer at a time, and replaced
whole, so that a crash at any moment leaves the previous file or the new one, never half of it.

Files that grow as work goes (a prediction CSV) are appended to line by line instead; their readers cut a last
line that a crash left unfinished.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from .errors import OutputError, OutputExists

log = logging.getLogger(__name__)


def check_writable(path: str | Path, folder: bool = False) -> None:
    """Raise :class:`OutputError` unless ``path`` (a file, or with ``folder`` a folder) can be created or written:
    its nearest existing folder must accept a new file, and an existing file must open for appending. Creates
    nothing that stays."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise OutputError(f"{path} is a file; name a folder for this output")
    if not folder and path.is_dir():
        raise OutputError(f"{path} is a folder; name a file for this output")
    existing = path if folder and path.is_dir() else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot create {path}: {existing} is a file, not a folder")
    try:
        descriptor, probe = tempfile.mkstemp(dir=existing, prefix=".mcq-unsloth-probe-")
        os.close(descriptor)
        os.unlink(probe)
        if not folder and path.exists():
            with path.open("ab"):
                pass
    except OSError as error:
        where = path if not folder and path.exists() else existing
        raise OutputError(f"cannot write {path}: {where}: {error.strerror.lower()}; choose another location or "
                          f"make it writable") from None


def empty_folder(path: str | Path, overwrite: bool = False, holds: str = "files",
                 fix: str = "pass overwrite=True to replace it, or choose another folder") -> Path:
    """Create ``path`` as an empty folder. One that holds anything is an error (OutputExists saying what it
    ``holds`` and the ``fix``) unless ``overwrite``, which deletes it first."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} is a file; name a folder for this output")
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise OutputExists(f"{path} already holds {holds}; {fix}")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def refuse_overlap(out: str | Path, sources: list[Path], what: str) -> None:
    """Raise :class:`OutputError` when the output folder ``out`` (which may be emptied before writing) could
    destroy one of the ``sources`` it is made from: ``out`` is a source, holds one, or lies inside one and holds
    files already. A new or empty folder inside a source is fine (nothing there is deleted). Links are followed.
    """
    target = Path(out).resolve()
    resolved = [Path(source).resolve() for source in sources]
    holds_files = target.is_dir() and any(target.iterdir())
    relations = [("is", lambda s: target == s), ("holds", lambda s: s.is_relative_to(target)),
                 ("lies inside, and holds files already,", lambda s: holds_files and target.is_relative_to(s))]
    for relation, applies in relations:  # the closest relation first: --out RUN/adapter *is* the adapter
        if source := next((s for s in resolved if applies(s)), None):
            raise OutputError(f"{out} {relation} {what} {source}: writing there could delete it; choose an "
                              f"output folder outside {source}")


@contextlib.contextmanager
def whole_folder(path: str | Path, replace: bool = False):
    """Yield a scratch folder beside ``path`` to write a folder's files into; when the block ends without error it
    takes the place of ``path`` (absent or empty, or with ``replace`` anything, deleted first), and otherwise it
    is deleted: a crash or a full disk never leaves a half-written model folder behind."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
        if path.is_dir() and (replace or not any(path.iterdir())):
            shutil.rmtree(path)
        partial.rename(path)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def lock_path(path: str | Path) -> Path:
    """The lock file of an output file or folder: beside it, so that deleting or replacing the output leaves the
    lock alone."""
    path = Path(os.path.abspath(path))
    return path.parent / f"{path.name}.lock"


@contextlib.contextmanager
def exclusive(path: str | Path):
    """Hold the lock of output ``path`` within the block: a second writer is refused while its holder runs, and a
    lock left by a process that died is taken over with a notice. The lock file holds the holder's pid and host."""
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    if not _create(lock):
        if (holder := _holder(lock)) is None:
            log.warning(f"note: taking over {lock}, left by a process that is no longer running")
            lock.unlink(missing_ok=True)
        if holder is not None or not _create(lock):
            raise OutputError(f"{path} is being written by {holder or _holder(lock) or 'another process'} (lock "
                              f"file {lock}); wait for it to finish, or write elsewhere")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _create(lock: Path) -> bool:
    """Create ``lock`` holding this process's pid and host; False when it exists."""
    try:
        descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w") as out:
        out.write(f"{os.getpid()} {socket.gethostname()}\n")
    return True


def writer(path: str | Path) -> str | None:
    """Who is writing the output ``path`` now ("process PID on HOST"), or None: nobody holds its lock, or the
    process that did has ended."""
    return _holder(lock_path(path))


def _holder(lock: Path) -> str | None:
    """Who holds ``lock`` ("process PID on HOST"), or None when the lock is stale: its process has ended on this
    host, or the file is empty or garbled and older than a few seconds (a writer that died creating it). A
    holder on another host cannot be checked and counts as live."""
    try:
        text = lock.read_text(encoding="utf-8", errors="replace").split()
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return None
    if len(text) != 2 or not text[0].isdigit():
        return None if age > 5 else "another process"
    pid, host = int(text[0]), text[1]
    if host == socket.gethostname() and not _running(pid):
        return None
    return f"process {pid} on {host}"


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and has not ended: a killed process whose parent has not collected it yet
    (a zombie) has ended."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): existing is all we can tell
    return stat[stat.rfind(")") + 2:][:1] != "Z"


@contextlib.contextmanager
def replacing(path: str | Path, mode: str = "w", **open_args):
    """Open a temporary file beside ``path`` to write; when the block ends without error it replaces ``path``
    whole, and otherwise it is removed and ``path`` stays as it was."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, mode, **open_args) as out:
            yield out
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`replacing`."""
    with replacing(path, encoding="utf-8") as out:
        out.write(text)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same file (through links too); False when either does not exist yet and
    their absolute paths differ."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)
