"""Checking that a file is a whole GGUF file before anything reads it: gguf-py's reader and llama.cpp fail on a
file that is not GGUF, or was cut short, with errors that do not say so (or, in llama.cpp, may read past the
end). The header is walked here as the format lays it out: magic, version, counts, metadata, tensor
descriptions, then the data, aligned; every tensor must lie inside the file.
"""

from __future__ import annotations

import functools
import struct
from pathlib import Path

from ..errors import ExportError

MAGIC = b"GGUF"
FIX = "copy or export it again"
# The sizes of GGUF's fixed-size value types (gguf.GGUFValueType): 8 is a string, 9 an array.
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


class _CutShort(Exception):
    """The header asked for bytes beyond the end of the file."""


class _Header:
    """Reads the little-endian values of a GGUF header from the start of a file, one at a time."""

    def __init__(self, handle, size: int):
        self.handle, self.size, self.position = handle, size, 0

    def take(self, count: int) -> bytes:
        if self.position + count > self.size:
            raise _CutShort
        data = self.handle.read(count)
        self.position += count
        return data

    def number(self, fmt: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.take(self.number("Q")).decode("utf-8", errors="replace")

    def skip_value(self, kind: int) -> None:
        if kind in _SCALAR_SIZES:
            self.take(_SCALAR_SIZES[kind])
        elif kind == _STRING:
            self.take(self.number("Q"))
        elif kind == _ARRAY:
            item, count = self.number("I"), self.number("Q")
            if item in _SCALAR_SIZES:
                self.take(_SCALAR_SIZES[item] * count)
            else:
                for _ in range(count):
                    self.skip_value(item)
        else:
            raise ValueError(f"a metadata value of unknown type {kind}")


def check_gguf(path: str | Path) -> None:
    """Raise :class:`ExportError`, naming ``path`` and what is wrong, unless it is a whole GGUF file: the magic
    ``GGUF``, a version llama.cpp reads (2 or 3), a complete header, known tensor types, and every tensor's data
    inside the file.

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile(suffix=".gguf", delete=False) as handle:
    ...     _ = handle.write(b"PK\\x03\\x04 a zip file")
    >>> try:
    ...     check_gguf(handle.name)
    ... except ExportError as error:
    ...     print(str(error).split(": ", 1)[1])
    not a GGUF file (it starts with b'PK\\x03\\x04', not b'GGUF'); give a file written by `mcq-unsloth export --format gguf` or by llama.cpp
    >>> os.unlink(handle.name)
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such GGUF file")
    status = path.stat()
    _check(path, str(path.resolve()), status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _check(path: Path, resolved: str, size: int, modified: int) -> None:
    """:func:`check_gguf` of one version of a file (its place, size and time): once per process, however many
    steps read it (SmolLM2's header, 49,152 tokens, takes about 0.3 s here)."""
    import gguf

    with path.open("rb") as handle:
        header = _Header(handle, size)
        start = handle.read(4)
        if start != MAGIC and start and MAGIC.startswith(start):
            raise ExportError(f"{path}: cut short at byte {size}, inside its header; {FIX}")
        if start != MAGIC:
            shown = f"it starts with {start!r}, not {MAGIC!r}" if start else "it is empty"
            raise ExportError(f"{path}: not a GGUF file ({shown}); give a file written by `mcq-unsloth export "
                              f"--format gguf` or by llama.cpp")
        header.position = 4
        try:
            version = header.number("I")
            if version not in (2, 3):
                raise ExportError(f"{path}: GGUF version {version}, which llama.cpp does not read (it reads 2 and "
                                  f"3); {'the file is damaged: ' if version > 3 else ''}{FIX}")
            tensors, entries = header.number("Q"), header.number("Q")
            if tensors > size or entries > size:  # every entry takes bytes: such counts are damage, not data
                raise ExportError(f"{path}: damaged header ({tensors} tensors, {entries} metadata entries in "
                                  f"{size} bytes); {FIX}")
            alignment = gguf.GGUF_DEFAULT_ALIGNMENT
            for _ in range(entries):
                key, kind = header.string(), header.number("I")
                if key == "general.alignment" and kind == 4:
                    alignment = header.number("I")
                else:
                    header.skip_value(kind)
            described = []
            for _ in range(tensors):
                name = header.string()
                dims = [header.number("Q") for _ in range(header.number("I"))]
                kind, offset = header.number("I"), header.number("Q")
                described.append((name, dims, kind, offset))
        except _CutShort:
            raise ExportError(f"{path}: cut short at byte {size}, inside its header; {FIX}") from None
        except ValueError as error:
            raise ExportError(f"{path}: damaged header ({error}); {FIX}") from None
    data_start = -(-header.position // max(alignment, 1)) * max(alignment, 1)
    ends = []
    for name, dims, kind, offset in described:
        if kind not in gguf.GGML_QUANT_SIZES:
            raise ExportError(f"{path}: tensor {name!r} has unknown type {kind} (damaged, or a type newer than "
                              f"gguf-py knows); {FIX}")
        block, block_bytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(kind)]
        count = 1
        for dim in dims:
            count *= dim
        ends.append((data_start + offset + count // block * block_bytes, name))
    if ends and max(ends)[0] > size:
        end, name = max(ends)
        beyond = sum(e > size for e, _ in ends)
        more = f" (and {beyond - 1} more)" if beyond > 1 else ""
        raise ExportError(f"{path}: cut short at byte {size} of {end}: tensor {name!r}{more} lies beyond the end; "
                          f"{FIX}")
