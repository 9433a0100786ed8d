"""How the command line reports a mistake the user can fix, or a condition of the machine (a full disk, a
folder without write permission): one readable line and exit code 2, never a traceback."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import click

import mcq_unsloth
from ..errors import MACHINE_FIXES, USER_ERRORS, machine_errno

class UserError(click.ClickException):
    """A mistake the user can fix: printed as one line, exit code 2."""

    exit_code = 2


def user_error_types() -> tuple[type[Exception], ...]:
    """The exceptions that are the user's to fix: our typed errors only. A FileNotFoundError from our own code is
    a bug, and shows as one."""
    return USER_ERRORS


@contextlib.contextmanager
def user_errors(*writes: str | Path, parameters: Iterable[str] = ()):
    """Turn the exceptions that are the user's to fix, and the machine's conditions, into :class:`UserError`
    (one line, exit code 2). ``writes`` are the outputs the command writes: a machine's refusal that does not say
    where (a full disk met inside safetensors or torch) names them. ``parameters``: the names, beside the public
    API's, that the command's call takes and its errors may name (shown as flags)."""
    try:
        yield
    except user_error_types() as error:
        raise UserError(as_flags(str(error), parameters)) from None
    except _machine_error_types() as error:
        code = machine_errno(error, writes)
        if code is None:
            raise
        where = getattr(error, "filename", None) or ", ".join(map(str, writes))
        raise UserError(f"{f'{where}: ' if where else ''}{os.strerror(code).lower()}; {MACHINE_FIXES[code]}") \
            from None


# The API's errors name its parameters as Python writes them (``resume=True``, ``mode='score'``), or a problem's
# parameter first (``tasks: unknown ...``); the command line says its own flags instead. The flags that are not
# the parameter's name with dashes:
_FLAG_NAMES = {"load_in_4bit": "4bit", "accelerate_config": "config-file"}
_ASSIGNED = re.compile(r"(?<![\w.\-])([a-z][a-z0-9_]*)=(True\b|False\b|'[^']*'|[^\s,;:)'\"]+)?")
_LEADING = re.compile(r"(^|\n  - )([a-z][a-z0-9_]*):(?= )")


def as_flags(message: str, extra: Iterable[str] = ()) -> str:
    """An API error's message with the API's parameters written as the command line's flags.

    >>> as_flags("runs/x exists; pass overwrite=True to replace it, or another out=")
    'runs/x exists; pass --overwrite to replace it, or another --out'
    >>> as_flags("top_k=K ranks the letters: use it with mode='score', without circular=True or load_in_4bit=False")
    '--top-k K ranks the letters: use it with --mode score, without --circular or --no-4bit'
    >>> as_flags("tasks: unknown ppo; choose among sft, grpo (train.max_steps=20 stays a setting)")
    '--tasks: unknown ppo; choose among sft, grpo (train.max_steps=20 stays a setting)'
    """
    parameters = api_parameters() | set(extra)

    def assigned(match: re.Match) -> str:
        name, value = match.group(1), match.group(2)
        if name not in parameters:
            return match.group(0)
        flag = _FLAG_NAMES.get(name, name.replace("_", "-"))
        if value == "True":
            return f"--{flag}"
        if value == "False":
            return f"--no-{flag}"
        return f"--{flag}" + (f" {value.strip(chr(39))}" if value else "")

    message = _ASSIGNED.sub(assigned, message)
    return _LEADING.sub(lambda m: f"{m.group(1)}--{_FLAG_NAMES.get(m.group(2), m.group(2).replace('_', '-'))}:"
                        if m.group(2) in parameters else m.group(0), message)


@functools.cache
def api_parameters() -> frozenset[str]:
    """The keyword parameters of the public API's functions (:data:`mcq_unsloth.__all__`)."""
    names = set()
    for name in mcq_unsloth.__all__:
        item = getattr(mcq_unsloth, name)
        if inspect.isfunction(item):
            names |= set(inspect.signature(item).parameters)
    return frozenset(names)


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
