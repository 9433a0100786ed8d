"""What the CLI tests share: running a command in process, and reading the one line a refused command ends with."""

import hashlib
import json
from pathlib import Path

from click.testing import CliRunner

from mcq_unsloth.cli.main import main


# A smoke run of two steps on synthetic questions: a finished run folder in seconds.
QUICK = ["train.max_steps=2", "train.save_steps=2", "train.eval_steps=2", "data.train=synth:32",
         "data.validation=synth-held-out:8"]


def run(*args):
    """``mcq-unsloth ARGS`` in this process (paths and numbers may be given as they are)."""
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(result) -> dict:
    """The closing JSON line of a command that succeeded."""
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads(result.stdout.strip().splitlines()[-1])


def error_line(result) -> str:
    """The one line a refused command ends with: exit code 2, no traceback, the message last on stderr."""
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: ")
    return lines[-1]


def digest(path: Path) -> dict[str, str]:
    """Every file under ``path`` (or ``path`` itself) with its SHA-256."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
