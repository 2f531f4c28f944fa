"""Sentiment formats: adapters for the formats people have (``--data FORMAT:PATH?key=value``).

Every adapter yields sample dicts ``{"text": str, "label": int}`` where ``label`` indexes
the dataset's ``classes`` (label names). Formats:

- ``csv:PATH?text=COL&label=COL&classes=neg,pos`` and ``tsv:PATH?...``: a header row, then one
  text and one label per row (default columns ``text`` and ``label``). Labels are names or
  integers. ``classes=`` fixes the class order: labels must then be one of those names, or an
  integer id into them (ids are refused when a class name is itself an integer, such as
  ``classes=1,2,3,4,5`` for star ratings, so ``0`` can never silently become class ``"1"``).
  Without ``classes=``, integer labels are the ids themselves (``classes`` = "0".."max") and
  name labels are numbered in sorted order; a column mixing both is refused, and so is an
  integer label above 10 times the number of distinct labels (a stray ``999999`` among 0/1
  would make a million classes). A header naming a column twice is refused.
- ``jsonl:PATH?text=KEY&label=KEY&classes=...``: one JSON object per line, same label rules.
- ``sst2:PATH``: the GLUE SST-2 TSV (header ``sentence<TAB>label``, no quoting), labels 0/1 ->
  negative/positive.
- ``imdb:DIR``: the IMDB layout, ``DIR/neg/*.txt`` and ``DIR/pos/*.txt`` (``DIR/unsup`` is
  ignored); ``<br />`` tags become spaces. An unreadable or empty file is skipped with a
  warning and counted in ``skipped``.

A missing column, an empty text or label, an unknown label, a row with the wrong number of
fields, bytes that are not UTF-8 or a NUL character raise ``ZooError`` naming the file and
line; blank lines are skipped. User formats are read whole and then split by
:func:`~tasks.engine.data.hash_split` on the text (``all``, or a seeded 90/5/5
``train``/``validation``/``test``: a repeated text never lands in two splits).
"""
from __future__ import annotations

import csv
import re
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import Callable, Iterable

from torch.utils.data import Dataset

from tasks.engine.data import DataSpec, hash_split, read_utf8
from tasks.engine.records import class_names, jsonl_rows, nonempty, readable_texts, table_rows, text_field
from tasks.engine.sets import Format
from zoo.errors import ZooError

CLASSES = ["negative", "positive"]
MAX_ID_PER_LABEL = 10     # an integer label above this many times the number of distinct labels is a typo
_INTEGER = re.compile(r"-?[0-9]+")
_IMDB_FOLDERS = ("neg", "pos")  # label 0 and 1
_LINE_BREAK_TAGS = re.compile(r"(?:<br\s*/?>)+", re.IGNORECASE)


class SentimentDataset(Dataset):
    """Sample dicts ``{"text": str, "label": int}``; ``classes[label]`` names the label.

    ``source`` describes where the samples came from (for messages); ``skipped`` counts
    damaged items that were skipped with a warning.
    """

    def __init__(self, samples: list[dict], classes: list[str], source: str, skipped: int = 0) -> None:
        self.samples = samples
        self.classes = classes
        self.source = source
        self.skipped = skipped

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        return dict(self.samples[index])


def read_table(path: Path, options: dict[str, str], delimiter: str = ",",
                quoting: int = csv.QUOTE_MINIMAL) -> SentimentDataset:
    """A delimited file with a header row: one text column and one label column."""
    columns = (options.get("text", "text"), options.get("label", "label"))
    return _labelled(path, table_rows(path, columns, delimiter, quoting, _HINT), *columns, options.get("classes"))


def _read_sst2(path: Path, options: dict[str, str]) -> SentimentDataset:
    """GLUE SST-2: ``sentence<TAB>label`` with a header, unquoted, labels 0/1."""
    fixed = {"text": "sentence", "label": "label", "classes": ",".join(CLASSES)}
    return read_table(path, fixed, delimiter="\t", quoting=csv.QUOTE_NONE)


def _read_jsonl(path: Path, options: dict[str, str]) -> SentimentDataset:
    """One JSON object per line with a text field and a label field (a name or an integer)."""
    keys = (options.get("text", "text"), options.get("label", "label"))
    return _labelled(path, jsonl_rows(path, keys, _HINT), *keys, options.get("classes"))


def _read_imdb(path: Path, options: dict[str, str]) -> SentimentDataset:
    """The IMDB folder layout: ``neg/*.txt`` and ``pos/*.txt`` (``unsup/`` ignored)."""
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such folder; imdb:DIR expects DIR/neg/*.txt and DIR/pos/*.txt")
    files: list[Path] = []
    for name in _IMDB_FOLDERS:
        folder = path / name
        if not folder.is_dir():
            hint = f" (did you mean imdb:{path / 'train'}?)" if (path / "train" / name).is_dir() else ""
            raise FileNotFoundError(f"{folder}: no such folder; imdb:DIR expects DIR/neg/*.txt and DIR/pos/*.txt{hint}")
        files += sorted(folder.glob("*.txt"))
    readable, skipped = readable_texts(files, lambda file: _LINE_BREAK_TAGS.sub(" ", read_utf8(file)), str(path))
    samples = [{"text": text.strip(), "label": _IMDB_FOLDERS.index(file.parent.name)} for file, text in readable]
    nonempty(samples, f"{path}: no readable .txt files in neg/ or pos/")
    return SentimentDataset(samples, list(CLASSES), str(path), skipped)


def _split_by_text(adapter: Callable[[Path, dict[str, str]], SentimentDataset], spec: DataSpec,
                   split: str) -> SentimentDataset:
    """A format's reader (``adapter`` bound): the whole source by ``adapter``, then :func:`hash_split` on the text."""
    full = adapter(Path(spec.path).expanduser(), spec.options)
    samples = hash_split(full.samples, split, key=itemgetter("text"), source=f"--data {spec}")
    return SentimentDataset(samples, full.classes, f"{spec} ({split})", full.skipped)


_TABLE_OPTIONS = ("text", "label", "classes")
_HINT = "; csv, tsv and jsonl take ?text=NAME&label=NAME"
FORMATS: dict[str, Format] = {
    "csv": Format(partial(_split_by_text, read_table), _TABLE_OPTIONS),
    "tsv": Format(partial(_split_by_text, partial(read_table, delimiter="\t")), _TABLE_OPTIONS),
    "jsonl": Format(partial(_split_by_text, _read_jsonl), _TABLE_OPTIONS),
    "sst2": Format(partial(_split_by_text, _read_sst2)),
    "imdb": Format(partial(_split_by_text, _read_imdb)),
}


# ---- fields and labels -------------------------------------------------------------------

def _labelled(path: Path, rows: Iterable[tuple[str, dict]], text_key: str, label_key: str,
              classes: str | None) -> SentimentDataset:
    """Samples from the ``(file:line, row)`` of a table or JSON lines: a text and a raw label (a name or an integer)."""
    texts: list[str] = []
    labels: list[tuple[str, str]] = []
    for where, row in rows:
        texts.append(text_field(row, text_key, where).strip())
        label = row[label_key]
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            raise ZooError(f"{where}: label {label!r} is neither a name nor an integer")
        labels.append((where, str(label) if isinstance(label, int) else text_field(row, label_key, where).strip()))
    nonempty(texts, f"{path}: no samples after the header")
    ids, names = _label_ids(labels, None if classes is None else class_names(classes, str(path)))
    return SentimentDataset([{"text": t, "label": i} for t, i in zip(texts, ids)], names, str(path))


def _label_ids(labels: list[tuple[str, str]], classes: list[str] | None) -> tuple[list[int], list[str]]:
    """Map raw labels (``(where, value)``) to class ids; returns the ids and the class names."""
    if classes is not None:
        index = {name: i for i, name in enumerate(classes)}
        numbered = not any(_INTEGER.fullmatch(name) for name in classes)
        ids = []
        for where, value in labels:
            if value in index:
                ids.append(index[value])
            elif numbered and _INTEGER.fullmatch(value) and 0 <= int(value) < len(classes):
                ids.append(int(value))
            else:
                raise ZooError(f"{where}: unknown label {value!r}; the classes are {classes}")
        return ids, classes
    integers = [(where, value) for where, value in labels if _INTEGER.fullmatch(value)]
    if not integers:
        names = sorted({value for _, value in labels})
        index = {name: i for i, name in enumerate(names)}
        return [index[value] for _, value in labels], names
    if len(integers) < len(labels):
        where, value = next((w, v) for w, v in labels if not _INTEGER.fullmatch(v))
        raise ZooError(f"{where}: label {value!r} is a name, but {integers[0][0]} has the integer label "
                         f"{integers[0][1]}; give classes=NAME,NAME,... to map both")
    for where, value in integers:
        if int(value) < 0:
            raise ZooError(f"{where}: label {value} is negative; integer labels are class ids 0..N-1 "
                             f"(give classes=... to use them as names)")
    ids = [int(value) for _, value in labels]
    limit = MAX_ID_PER_LABEL * len(set(ids))
    for where, value in integers:
        if int(value) > limit:
            raise ZooError(f"{where}: label {value} is far outside the other labels ({len(set(ids))} distinct "
                             f"values; a class id above {limit} would make {int(value) + 1} classes); fix the row, "
                             "or give classes=... to use the labels as names")
    return ids, [str(i) for i in range(max(ids) + 1)]
