"""Reading tabular files into a header and numbered records, whatever the format and encoding.

CSV and TSV (quoted fields with delimiters and newlines), JSON lines or a JSON list, and Parquet; text in
UTF-8 with or without BOM, or GBK/GB18030. Record numbers are 1-based data rows (the header excluded) or, for
JSON lines, line numbers. Files are read as streams (:func:`open_table`): a file of a million questions can be
checked whole, or one share of it kept, without holding it in memory.
"""

from __future__ import annotations

import codecs
import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import DataError


@dataclass
class Table:
    """A question file read as a stream: its column names, known before any record, and :meth:`records`, which
    reads the file again at each call and holds one record at a time (a JSON list excepted: it is one value)."""

    path: Path
    columns: list[str]
    records: Callable[[], Iterator[tuple[int, dict[str, Any]]]]


def open_table(path: Path) -> Table:
    """The :class:`Table` of a question file, by its extension. Nothing is kept in memory but the column names:
    the encoding is found and (JSON lines) the columns collected in one pass over the file."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".tab", ".txt"):
        return _delimited(path)
    if suffix in (".jsonl", ".json"):
        return _json(path)
    if suffix in (".parquet", ".pq"):
        return _parquet(path)
    raise DataError(path, f"unknown file type '{suffix}'",
                    fix="use .csv, .tsv, .jsonl, .json or .parquet")


def _encoding(path: Path) -> str:
    """The codec of a text file: UTF-8 with or without BOM, else GB18030 (a superset of GBK and GB2312: Excel's
    default for Chinese CSV files), checked over the whole file a block at a time."""
    with path.open("rb") as source:
        bom = source.read(3) == b"\xef\xbb\xbf"
    problem = None
    for codec in ("utf-8-sig" if bom else "utf-8", "gb18030"):
        if (problem := _undecodable(path, codec)) is None:
            return codec
        if bom:
            break
    raise DataError(path, f"line {problem} is neither UTF-8 nor GBK/GB18030 text", fix="save the file as UTF-8")


def _undecodable(path: Path, codec: str, block: int = 1 << 20) -> int | None:
    """The 1-based line where ``path`` stops being ``codec`` text, or None when all of it is."""
    decoder, lines = codecs.getincrementaldecoder(codec)(), 1
    with path.open("rb") as source:
        while True:
            data = source.read(block)
            try:
                decoder.decode(data, final=not data)
            except UnicodeDecodeError as error:
                return lines + data[: error.start].count(b"\n")
            if not data:
                return None
            lines += data.count(b"\n")


def _delimited(path: Path) -> Table:
    encoding = _encoding(path)
    with path.open(encoding=encoding, newline="") as source:
        first_line = source.readline()
    if path.suffix.lower() == ".csv":
        delimiter = ","
    elif path.suffix.lower() in (".tsv", ".tab"):
        delimiter = "\t"
    else:
        delimiter = "\t" if first_line.count("\t") > first_line.count(",") else ","
    header = _header(path, encoding, delimiter)

    def records() -> Iterator[tuple[int, dict[str, Any]]]:
        with path.open(encoding=encoding, newline="") as source:
            reader = csv.reader(source, delimiter=delimiter)
            try:
                next(reader)
                for row_number, cells in enumerate(reader, start=1):
                    if not any(cell.strip() for cell in cells):
                        continue
                    if len(cells) > len(header):
                        raise DataError(
                            path, f"{len(cells)} fields but the header has {len(header)}", row=row_number,
                            fix="quote fields that contain the delimiter (\"a, b\") or check the delimiter")
                    if len(cells) < len(header):
                        raise DataError(
                            path, f"{len(cells)} fields but the header has {len(header)} (the fields from "
                                  f"{header[len(cells)]!r} on are missing)", row=row_number,
                            fix="write every field, empty ones as nothing between delimiters (a,,b), or check the "
                                "delimiter")
                    yield row_number, dict(zip(header, cells))
            except csv.Error as error:
                raise DataError(path, f"unreadable {'TSV' if delimiter == chr(9) else 'CSV'} ({error})",
                                row=reader.line_num, fix="close every quoted field with a matching quote") from None

    return Table(path, header, records)


def _header(path: Path, encoding: str, delimiter: str) -> list[str]:
    with path.open(encoding=encoding, newline="") as source:
        try:
            header = next(csv.reader(source, delimiter=delimiter))
        except StopIteration:
            raise DataError(path, "the file is empty", fix="add a header row and questions") from None
        except csv.Error as error:
            raise DataError(path, f"unreadable header ({error})", row=0,
                            fix="close every quoted field with a matching quote") from None
    header = [name.strip() for name in header]
    if repeated := [name for name in dict.fromkeys(header) if header.count(name) > 1]:
        counts = ", ".join(f"{header.count(name)} columns named {name!r}" for name in repeated)
        raise DataError(path, f"the header has {counts}: which one to read is not clear", column=repeated[0],
                        fix="rename or remove the repeated column")
    return header


def _json(path: Path) -> Table:
    encoding = _encoding(path)
    with path.open(encoding=encoding) as source:
        listed = path.suffix.lower() == ".json" and source.read(4096).lstrip().startswith("[")

    def numbered() -> Iterator[tuple[int, Any]]:
        if listed:
            with path.open(encoding=encoding) as source:
                try:
                    items = json.load(source)
                except json.JSONDecodeError as error:
                    raise DataError(path, f"invalid JSON at line {error.lineno} ({error.msg})",
                                    fix="make the file one JSON list of objects, or JSON lines") from None
            yield from enumerate(items, start=1)
            return
        # Lines end at \n only (\r\n too): U+2028, U+0085 and the like, which json.dumps writes raw, are text.
        with path.open(encoding=encoding, newline="\n") as source:
            for line_number, line in enumerate(source, start=1):
                if not line.strip():
                    continue
                try:
                    yield line_number, json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataError(path, f"invalid JSON ({error.msg} at character {error.colno})", row=line_number,
                                    fix="write one JSON object per line") from None

    def records() -> Iterator[tuple[int, dict[str, Any]]]:
        for row, item in numbered():
            if not isinstance(item, dict):
                raise DataError(path, f"expected a JSON object, got {type(item).__name__}", row=row,
                                fix='write each question as {"question": ..., "A": ..., "answer": ...}')
            yield row, item

    columns: dict[str, None] = {}
    for _, item in records():  # the columns are every key of every record, in the order they first appear
        columns.update(dict.fromkeys(item))
    return Table(path, list(columns), records)


def _parquet(path: Path) -> Table:
    import pyarrow.lib
    import pyarrow.parquet

    def unreadable(error) -> DataError:
        return DataError(path, f"not a readable Parquet file ({error})", fix="re-export the Parquet file")

    try:
        columns = pyarrow.parquet.ParquetFile(path).schema_arrow.names
    except pyarrow.lib.ArrowException as error:
        raise unreadable(error) from None

    def records() -> Iterator[tuple[int, dict[str, Any]]]:
        row = 0
        try:
            for batch in pyarrow.parquet.ParquetFile(path).iter_batches(batch_size=4096):
                for record in batch.to_pylist():
                    row += 1
                    yield row, record
        except pyarrow.lib.ArrowException as error:
            raise unreadable(error) from None

    return Table(path, columns, records)
