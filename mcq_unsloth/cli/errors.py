"""How the command line reports a mistake the user can fix, or a condition of the machine (a full disk, a
folder without write permission): one readable line and exit code 2, never a traceback."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

import click

from ..errors import MACHINE_FIXES, USER_ERRORS, machine_errno

class UserError(click.ClickException):
    """A mistake the user can fix: printed as one line, exit code 2."""

    exit_code = 2


def user_error_types() -> tuple[type[Exception], ...]:
    """The exceptions that are the user's to fix: our typed errors only. A FileNotFoundError from our own code is
    a bug, and shows as one."""
    return USER_ERRORS


@contextlib.contextmanager
def user_errors(*writes: str | Path):
    """Turn the exceptions that are the user's to fix, and the machine's conditions, into :class:`UserError`
    (one line, exit code 2). ``writes`` are the outputs the command writes: a machine's refusal that does not say
    where (a full disk met inside safetensors or torch) names them."""
    try:
        yield
    except user_error_types() as error:
        raise UserError(as_flags(str(error))) from None
    except _machine_error_types() as error:
        code = machine_errno(error, writes)
        if code is None:
            raise
        where = getattr(error, "filename", None) or ", ".join(map(str, writes))
        raise UserError(f"{f'{where}: ' if where else ''}{os.strerror(code).lower()}; {MACHINE_FIXES[code]}") \
            from None


# The API's errors name its parameters; the command line says its own flags instead.
_FLAGS = {"overwrite=True": "--overwrite", "resume=True": "--resume", "out=": "--out"}


def as_flags(message: str) -> str:
    """An API error's message with the API's parameters written as the command line's flags.

    >>> as_flags("runs/x exists; pass overwrite=True to replace it, or another out=")
    'runs/x exists; pass --overwrite to replace it, or another --out'
    """
    for parameter, flag in _FLAGS.items():
        message = message.replace(parameter, flag)
    return message


class _Stderr(logging.Handler):
    """The library's notes, warnings and progress lines, one per line on stderr (resolved when written, so a
    redirected or captured stderr gets them)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


def show_library_messages() -> None:
    """Show what mcq_unsloth logs (INFO and above) on stderr, as the command line's own lines."""
    logger = logging.getLogger("mcq_unsloth")
    if not any(isinstance(handler, _Stderr) for handler in logger.handlers):
        logger.addHandler(_Stderr())
    logger.setLevel(logging.INFO)
    logger.propagate = False


@contextlib.contextmanager
def libraries_on_stderr():
    """Within the block, what libraries print to stdout (Unsloth's banners, the trainer's log lines) goes to
    stderr instead, so that a command's stdout holds its result alone (``mcq-unsloth predict ... | jq``)."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _machine_error_types() -> tuple[type[Exception], ...]:
    from safetensors import SafetensorError

    return OSError, RuntimeError, SafetensorError
