"""How the command line reports a mistake the user can fix: one readable line and exit code 2, never a
traceback."""

from __future__ import annotations

import contextlib

import click


class UserError(click.ClickException):
    """A mistake the user can fix: printed as one line, exit code 2."""

    exit_code = 2


def user_error_types() -> tuple[type[Exception], ...]:
    """The exceptions that are the user's to fix, imported only when a command needs them."""
    from .config import ConfigError
    from .data import DataError
    from .models import ModelLoadError
    from .recipes import RecipeNotFound

    return DataError, ConfigError, RecipeNotFound, ModelLoadError, FileExistsError, FileNotFoundError


@contextlib.contextmanager
def user_errors():
    """Turn the exceptions that are the user's to fix into :class:`UserError` (one line, exit code 2)."""
    try:
        yield
    except user_error_types() as error:
        raise UserError(str(error)) from None
