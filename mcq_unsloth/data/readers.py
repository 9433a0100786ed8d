"""Reading tabular files into a header and numbered records, whatever the format and encoding.

CSV and TSV (quoted fields with delimiters and newlines), JSON lines or a JSON list, and Parquet; text in
UTF-8 with or without BOM, or GBK/GB18030. Record numbers are 1-based data rows (the header excluded) or, for
JSON lines, line numbers.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ..errors import DataError


def read_records(path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """The column names and ``(data row, record)`` pairs of a question file, by its extension."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".tab", ".txt"):
        return _read_delimited(path)
    if suffix in (".jsonl", ".json"):
        return _read_json(path)
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path)
    raise DataError(path, f"unknown file type '{suffix}'",
                    fix="use .csv, .tsv, .jsonl, .json or .parquet")


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", errors="strict")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        # GB18030 is a superset of GBK and GB2312: Excel's default for Chinese CSV files.
        return raw.decode("gb18030")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(path, f"line {line} is neither UTF-8 nor GBK/GB18030 text",
                        fix="save the file as UTF-8") from None


def _read_delimited(path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    text = _decode(path)
    first_line = text.split("\n", 1)[0]
    if path.suffix.lower() == ".csv":
        delimiter = ","
    elif path.suffix.lower() in (".tsv", ".tab"):
        delimiter = "\t"
    else:
        delimiter = "\t" if first_line.count("\t") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(path, "the file is empty", fix="add a header row and questions") from None
    header = [name.strip() for name in header]
    if repeated := [name for name in dict.fromkeys(header) if header.count(name) > 1]:
        counts = ", ".join(f"{header.count(name)} columns named {name!r}" for name in repeated)
        raise DataError(path, f"the header has {counts}: which one to read is not clear", column=repeated[0],
                        fix="rename or remove the repeated column")
    records = []
    try:
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
                    fix="write every field, empty ones as nothing between delimiters (a,,b), or check the delimiter")
            records.append((row_number, dict(zip(header, cells))))
    except csv.Error as error:
        raise DataError(path, f"unreadable {'TSV' if delimiter == chr(9) else 'CSV'} ({error})",
                        row=reader.line_num, fix="close every quoted field with a matching quote") from None
    return header, records


def _read_json(path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    text = _decode(path)
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(path, f"invalid JSON at line {error.lineno} ({error.msg})",
                            fix="make the file one JSON list of objects, or JSON lines") from None
        numbered = list(enumerate(items, start=1))
    else:
        numbered = []
        # Lines end at \n only (\r\n too): U+2028, U+0085 and the like, which json.dumps writes raw, are text.
        for line_number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                numbered.append((line_number, json.loads(line)))
            except json.JSONDecodeError as error:
                raise DataError(path, f"invalid JSON ({error.msg} at character {error.colno})", row=line_number,
                                fix="write one JSON object per line") from None
    records, columns = [], {}
    for row, item in numbered:
        if not isinstance(item, dict):
            raise DataError(path, f"expected a JSON object, got {type(item).__name__}", row=row,
                            fix='write each question as {"question": ..., "A": ..., "answer": ...}')
        columns.update(dict.fromkeys(item))
        records.append((row, item))
    return list(columns), records


def _read_parquet(path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    import pyarrow.lib
    import pyarrow.parquet

    try:
        table = pyarrow.parquet.read_table(path)
    except pyarrow.lib.ArrowException as error:
        raise DataError(path, f"not a readable Parquet file ({error})", fix="re-export the Parquet file") from None
    return table.column_names, list(enumerate(table.to_pylist(), start=1))
