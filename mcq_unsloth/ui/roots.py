"""The one folder the page serves: every path it reads or writes is resolved here and refused unless it lies
inside (``..``, an absolute path elsewhere and a link leading out all resolve outside), and uploads land under
``ROOT/uploads/`` without replacing anything."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import OutputError, OutsideRoot

QUESTION_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
UPLOAD_LIMIT = 200 * 2**20  # bytes: a question file of a million rows is about 300 MB; more is a mistake here
_SKIPPED = {".git", ".venv", "__pycache__", "node_modules", ".cache"}


class Root:
    """The folder the page serves.

    >>> import tempfile; root = Root(tempfile.mkdtemp())
    >>> root.resolve("data/q.csv") == root.folder / "data" / "q.csv"
    True
    >>> root.resolve("../elsewhere.csv")
    Traceback (most recent call last):
    ...
    mcq_unsloth.errors.OutsideRoot: ../elsewhere.csv is outside the folder this page serves; give a path under it
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise OutputError(f"{folder} is not a folder; give --root an existing folder")

    def resolve(self, path: str | Path) -> Path:
        """``path`` (relative to the root, or absolute) as a real path inside the root, links followed."""
        given = Path(path)
        real = (given if given.is_absolute() else self.folder / given).resolve()
        if real != self.folder and self.folder not in real.parents:
            raise OutsideRoot(f"{path} is outside the folder this page serves; give a path under it")
        return real

    def relative(self, path: Path) -> str:
        return str(self.resolve(path).relative_to(self.folder))

    def files(self, suffixes: tuple[str, ...] = QUESTION_SUFFIXES, limit: int = 500) -> list[str]:
        """The files under the root with one of ``suffixes``, as paths relative to it, sorted (hidden folders,
        virtual environments and caches left out; links leading out too)."""
        found = []
        for folder, subfolders, names in os.walk(self.folder):
            subfolders[:] = sorted(d for d in subfolders if d not in _SKIPPED and not d.startswith("."))
            for name in sorted(names):
                if name.endswith(suffixes):
                    path = Path(folder) / name
                    try:
                        self.resolve(path)
                    except OutsideRoot:
                        continue
                    found.append(str(path.relative_to(self.folder)))
                    if len(found) >= limit:
                        return sorted(found)
        return sorted(found)

    def runs(self, depth: int = 3) -> list[str]:
        """The run folders under the root (a folder holding ``run.json``), relative to it, sorted; ``depth`` levels
        down at most (``runs/NAME`` and ``runs/bench/VARIANT-r0`` are found)."""
        found = []
        for folder, subfolders, names in os.walk(self.folder):
            level = len(Path(folder).relative_to(self.folder).parts)
            subfolders[:] = [] if level >= depth else sorted(
                d for d in subfolders if d not in _SKIPPED and not d.startswith(".") and d != "checkpoints")
            if "run.json" in names and Path(folder) != self.folder:
                found.append(str(Path(folder).relative_to(self.folder)))
        return sorted(found)

    def models(self, depth: int = 5) -> list[str]:
        """What the page can answer questions with, under the root, relative to it: LoRA adapter folders (a run's
        ``adapter`` and its checkpoints), model folders (a merged export) and ``.gguf`` files."""
        found = []
        for folder, subfolders, names in os.walk(self.folder):
            level = len(Path(folder).relative_to(self.folder).parts)
            subfolders[:] = [] if level >= depth else sorted(
                d for d in subfolders if d not in _SKIPPED and not d.startswith("."))
            if Path(folder) != self.folder and ("adapter_config.json" in names or "config.json" in names
                                                and any(n.endswith(".safetensors") for n in names)):
                found.append(self.relative(Path(folder)))
            found += [self.relative(Path(folder) / n) for n in names if n.endswith(".gguf")]
        return sorted(found)

    def save_upload(self, source: str | Path, name: str, limit: int = UPLOAD_LIMIT) -> str:
        """Copy an uploaded file into ``ROOT/uploads/`` under its own name, or ``NAME-1``, ``NAME-2``... when
        that is taken (nothing is replaced); its path relative to the root."""
        size = Path(source).stat().st_size
        if size > limit:
            raise OutputError(f"{name} is {size / 2**20:.0f} MB, more than the {limit / 2**20:.0f} MB an upload may "
                              f"be; put the file under the root folder instead and pick it from the list")
        folder = self.resolve("uploads")
        folder.mkdir(exist_ok=True)
        stem, suffix = Path(Path(name).name).stem or "upload", Path(name).suffix
        for n in range(10_000):
            target = folder / (f"{stem}{suffix}" if n == 0 else f"{stem}-{n}{suffix}")
            try:
                with open(target, "xb") as sink, open(source, "rb") as data:  # x: never over an existing file
                    shutil.copyfileobj(data, sink)
            except FileExistsError:
                continue
            return self.relative(target)
        raise OutputError(f"{folder} holds 10,000 uploads named {stem}{suffix}; clear some out")
