"""Records of users' files (lines, delimited tables, JSON lines and objects, ``classes=`` lists, skipped
items), with one wording for each error the formats share, naming ``file:line`` or the record."""
from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

from tasks.engine.data import read_utf8, split_lines
from zoo.errors import ZooError

T = TypeVar("T")
MAX_WARNED = 10  # skipped items named one by one in the warning; the rest are counted


def numbered_lines(path: str | Path, blank: bool = True) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 text file (:func:`~tasks.engine.data.read_utf8`,
    :func:`~tasks.engine.data.split_lines`); ``blank=False`` leaves out blank and whitespace-only lines."""
    for number, line in enumerate(split_lines(read_utf8(path)), 1):
        if blank or line.strip():
            yield number, line


def table_rows(path: Path, columns: Sequence[str], delimiter: str = ",", quoting: int = csv.QUOTE_MINIMAL,
               hint: str = "", one_line: bool = False) -> Iterator[tuple[str, dict[str, str]]]:
    """``(file:line, {column: field})`` of each record of a delimited file whose header names ``columns``.

    Blank and whitespace-only lines are skipped; a quoted field may span lines unless ``one_line``
    (an unbalanced quote swallowing the next rows). Malformed quoting, an empty file, a header
    naming a column twice or lacking one of ``columns`` (``hint`` says how to name others), a row
    with another number of fields or a field spanning lines raises :class:`ZooError` naming the line.
    """
    reader = csv.reader(io.StringIO(read_utf8(path), newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    header: list[str] | None = None
    end = 0  # last line of the previous record
    try:
        for row in reader:
            line, end = end + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            where = f"{path}:{line}"
            if header is None:
                header, header_line = [name.strip() for name in row], line
                twice = next((name for i, name in enumerate(header) if name in header[:i]), None)
                if twice is not None:
                    raise ZooError(f"{where}: the header names the column {twice!r} twice; rename one of them")
                for name in columns:
                    if name not in header:
                        raise ZooError(f"{where}: no column {name!r}; the header has {header}{hint}")
                continue
            if one_line and any("\n" in field or "\r" in field for field in row):
                lines = 1 + sum(field.count("\n") for field in row)
                raise ZooError(f"{where}: a field runs over {lines} lines (an unbalanced quote?); fix the quoting")
            if len(row) != len(header):
                raise ZooError(f"{where}: {len(row)} fields, but the header (line {header_line}) has {len(header)}")
            yield where, dict(zip(header, row))
    except csv.Error as err:
        raise ZooError(f"{path}:{reader.line_num}: malformed row ({err})") from None
    if header is None:
        raise ZooError(f"{path}: empty file; expected a header row naming the columns " + " and ".join(map(repr, columns)))


def json_value(text: str, path: str | Path, line: int = 1) -> Any:
    """The JSON value of ``text``, which starts at ``line`` of ``path``; invalid JSON raises naming the line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ZooError(f"{path}:{line + err.lineno - 1}: not valid JSON ({err.msg}, column {err.colno})") from None


def json_file_object(path: Path, expected: str, lists: Sequence[str] = ()) -> dict:
    """The JSON object a file holds, with a list under each key of ``lists``; an empty file, invalid JSON,
    another JSON value or a missing list raises naming the file and what was ``expected`` (e.g. "a COCO
    JSON object with images, annotations and categories") or the field."""
    text = read_utf8(path)
    if not text.strip():
        raise ZooError(f"{path}: empty file; expected {expected}")
    data = json_value(text, path)
    if not isinstance(data, dict):
        raise ZooError(f"{path}: expected {expected}")
    for key in lists:
        if not isinstance(data.get(key), list):
            raise ZooError(f"{path}: the top-level field '{key}' is missing or not a list")
    return data


def json_record(value: Any, keys: Sequence[str], where: str) -> dict:
    """``value`` as a JSON object holding ``keys``; another value or a missing key raises naming ``where``."""
    if not isinstance(value, dict):
        raise ZooError(f"{where}: expected an object, got {value!r}")
    for key in keys:
        if key not in value:
            raise ZooError(f"{where}: missing the field '{key}'")
    return value


def is_int(value: Any) -> bool:
    """An integer id, not a bool (JSON's ``true`` is no id)."""
    return isinstance(value, int) and not isinstance(value, bool)


def jsonl_rows(path: Path, keys: Sequence[str], hint: str = "") -> Iterator[tuple[str, dict]]:
    """``(file:line, object)`` of each JSON line of a file, blank lines skipped.

    A line that is not a JSON object, a string holding a NUL character (refused like a raw NUL
    byte) or a missing one of ``keys`` raises :class:`ZooError` naming the file and line (and the
    fields the object has; ``hint`` says how to name others).
    """
    for number, line in numbered_lines(path, blank=False):
        where = f"{path}:{number}"
        row = json_value(line, path, number)
        if not isinstance(row, dict):
            raise ZooError(f"{where}: expected a JSON object, got {type(row).__name__}")
        for key, value in row.items():
            if isinstance(value, str) and "\x00" in value:
                raise ZooError(f"{where}: field {key!r} holds a NUL character (\\u0000); remove it")
        for key in keys:
            if key not in row:
                raise ZooError(f"{where}: no field {key!r} (fields: {', '.join(row) or 'none'}){hint}")
        yield where, row


def nonempty(items: list[T], message: str) -> list[T]:
    """``items``; none at all (a source without records) raises :class:`ZooError` with ``message``."""
    if not items:
        raise ZooError(message)
    return items


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


def warn_skipped(source: str, problems: Sequence[str], what: str = "damaged file(s)") -> int:
    """Warn once that ``source`` skipped ``problems`` (each "where: why"; MAX_WARNED named, the rest counted);
    returns how many, for the dataset's ``skipped``."""
    if problems:
        more = f"; and {len(problems) - MAX_WARNED} more" if len(problems) > MAX_WARNED else ""
        warnings.warn(f"{source}: skipped {len(problems)} {what}: " + "; ".join(problems[:MAX_WARNED]) + more,
                      stacklevel=3)
    return len(problems)


def readable_texts(files: Sequence[Path], read: Callable[[Path], str], source: str) -> tuple[list[tuple[Path, str]], int]:
    """``(file, read(file))`` of each file whose text is not blank; an unreadable or blank one is skipped
    (one warning names them) and counted."""
    texts, unreadable = [], []
    for file in files:
        try:
            text = read(file)
            if not text.strip():
                raise ZooError(f"{file}: empty text")
            texts.append((file, text))
        except (OSError, ValueError) as err:
            unreadable.append(str(err))
    return texts, warn_skipped(source, unreadable, "empty or unreadable file(s)")
