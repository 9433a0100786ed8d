"""Finding recipes by name or path: ``list``, ``show`` and ``cp`` behind the CLI's ``recipe`` group.

A name resolves, in order, to a path that exists, to ``./recipes/NAME.yaml``, then to the recipe shipped
with the package.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from ..errors import OutputExists, RecipeNotFound
from ..outputs import check_writable, replacing
from ..resources import shipped_dir


def shipped_recipes() -> dict[str, Path]:
    """Shipped recipe names and their files."""
    return {p.stem: p for p in sorted(shipped_dir("recipes").glob("*.yaml"))}


def find_recipe(name: str) -> Path:
    """The recipe file for a name or path. Raises :class:`RecipeNotFound` naming the closest recipe."""
    # In order, each looked at only when the one before is missing: a path given needs no look into the package.
    path = Path(name)
    if not path.is_file():
        path = Path("recipes") / f"{name}.yaml"
    if not path.is_file():
        path = shipped_dir("recipes") / f"{name}.yaml"
    if path.is_file():
        return path
    known = sorted(shipped_recipes())
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise RecipeNotFound(f"no recipe named {name!r}{hint}; shipped recipes: {', '.join(known)}, or give the path "
                         f"of a YAML file")


def describe(path: Path) -> str:
    """A recipe's purpose: the first line of its leading comment."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


def copy_recipe(name: str, dest: str | Path, overwrite: bool = False) -> Path:
    """Copy a recipe to ``dest`` (a file, or a folder to put NAME.yaml in) to edit it."""
    source = find_recipe(name)
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / source.name
    if dest.exists() and not overwrite:
        raise OutputExists(f"{dest} exists; pass overwrite=True to replace it")
    check_writable(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with replacing(dest, "wb") as out:
        out.write(source.read_bytes())
    return dest
