"""Records of users' files, with one wording for each error the formats share (naming ``file:line``).

:func:`table_rows` reads a delimited file with a header, :func:`jsonl_rows` JSON lines with
named fields, :func:`text_field` checks one text, :func:`class_names` parses ``classes=a,b``.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator, Sequence

from tasks.engine.data import read_jsonl, table_records, unique_header
from zoo.errors import ZooError


def table_rows(path: Path, columns: Sequence[str], delimiter: str = ",", quoting: int = csv.QUOTE_MINIMAL,
               hint: str = "", one_line: bool = False) -> Iterator[tuple[str, dict[str, str]]]:
    """``(file:line, {column: field})`` of each record of a delimited file whose header names ``columns``.

    An empty file, a header naming a column twice or lacking one of ``columns`` (``hint`` says
    how to name others), a row with another number of fields or, with ``one_line``, a field
    spanning lines (an unbalanced quote swallowing the next rows) raises :class:`ZooError`.
    """
    records = table_records(path, delimiter, quoting)
    header_line, first = next(records, (1, None))
    if first is None:
        raise ZooError(f"{path}: empty file; expected a header row naming the columns "
                       + " and ".join(map(repr, columns)))
    header = unique_header([name.strip() for name in first], path, header_line)
    for name in columns:
        if name not in header:
            raise ZooError(f"{path}:{header_line}: no column {name!r}; the header has {header}{hint}")
    for line, row in records:
        where = f"{path}:{line}"
        if one_line and any("\n" in field or "\r" in field for field in row):
            lines = 1 + sum(field.count("\n") for field in row)
            raise ZooError(f"{where}: a field runs over {lines} lines (an unbalanced quote?); fix the quoting")
        if len(row) != len(header):
            raise ZooError(f"{where}: {len(row)} fields, but the header (line {header_line}) has {len(header)}")
        yield where, dict(zip(header, row))


def jsonl_rows(path: Path, keys: Sequence[str], hint: str = "") -> Iterator[tuple[str, dict]]:
    """``(file:line, object)`` of each JSON line (:func:`~tasks.engine.data.read_jsonl`) holding every one of ``keys``.

    A missing key raises :class:`ZooError` naming the line and the fields it has (``hint`` says
    how to name others).
    """
    for number, row in read_jsonl(path):
        where = f"{path}:{number}"
        for key in keys:
            if key not in row:
                raise ZooError(f"{where}: no field {key!r} (fields: {', '.join(row) or 'none'}){hint}")
        yield where, row


def text_field(row: dict, key: str, where: str) -> str:
    """``row[key]`` as it is; a value that is not a string, or is blank, raises naming ``where`` and ``key``."""
    value = row[key]
    if not isinstance(value, str):
        raise ZooError(f"{where}: field {key!r} holds {type(value).__name__}, expected a string")
    if not value.strip():
        raise ZooError(f"{where}: empty {key!r} field")
    return value


def class_names(value: str, where: str) -> list[str]:
    """The names of a ``classes=a,b,c`` option; empty or repeated names raise naming ``where``."""
    names = [name.strip() for name in value.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise ZooError(f"{where}: classes={value!r}: expected distinct, non-empty names separated by commas")
    return names
