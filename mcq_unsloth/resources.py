"""Where the files shipped with mcq-unsloth are: recipes and sample data.

In a wheel they are inside the package (``mcq_unsloth/_bundled/``); in a source checkout (editable install)
they are the repository's own ``recipes/`` and ``data/`` folders.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped_dir(kind: str) -> Path:
    """The folder of shipped ``recipes`` or ``data``."""
    bundled = _PACKAGE / "_bundled" / kind
    return bundled if bundled.is_dir() else _PACKAGE.parent / kind


def shipped_file(name: str) -> Path:
    """A shipped data file by name, e.g. ``shipped_file("mcq_zh.csv")``; raises FileNotFoundError."""
    path = shipped_dir("data") / name
    if not path.is_file():
        available = sorted(p.name for p in shipped_dir("data").iterdir() if p.suffix != ".md")
        raise FileNotFoundError(f"no shipped data file {name!r}; shipped: {', '.join(available)}")
    return path
