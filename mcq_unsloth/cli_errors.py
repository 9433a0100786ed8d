"""How the command line reports a mistake the user can fix, or a condition of the machine (a full disk, a
folder without write permission): one readable line and exit code 2, never a traceback."""

from __future__ import annotations

import contextlib
import errno

import click

# A full disk or quota, a read-only file system, missing permissions: the machine's state, not a bug.
MACHINE_FIXES = {
    errno.ENOSPC: "free some space, then run again",
    errno.EDQUOT: "free some space, then run again",
    errno.EROFS: "choose a location on a writable file system",
    errno.EACCES: "check its permissions, or choose another location",
    errno.EPERM: "check its permissions, or choose another location",
}


class UserError(click.ClickException):
    """A mistake the user can fix: printed as one line, exit code 2."""

    exit_code = 2


def user_error_types() -> tuple[type[Exception], ...]:
    """The exceptions that are the user's to fix, imported only when a command needs them."""
    from .config import ConfigError
    from .data import DataError
    from .export.gguf_file import ExportError
    from .inference import LongQuestions
    from .models import ModelLoadError
    from .outputs import OutputError
    from .recipes import RecipeNotFound

    return (DataError, ConfigError, RecipeNotFound, ModelLoadError, OutputError, LongQuestions, ExportError,
            FileExistsError, FileNotFoundError)


@contextlib.contextmanager
def user_errors():
    """Turn the exceptions that are the user's to fix, and the machine's conditions, into :class:`UserError`
    (one line, exit code 2)."""
    try:
        yield
    except user_error_types() as error:
        raise UserError(str(error)) from None
    except OSError as error:
        if error.errno not in MACHINE_FIXES:
            raise
        where = f"{error.filename}: " if error.filename else ""
        raise UserError(f"{where}{error.strerror.lower()}; {MACHINE_FIXES[error.errno]}") from None
