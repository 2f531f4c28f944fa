"""Sentiment data: adapters for the formats people have, and the built-in human-rated review sentences.

Every adapter yields sample dicts ``{"text": str, "label": int}`` where ``label`` indexes
the dataset's ``classes`` (label names). Formats (``--data FORMAT:PATH?key=value``):

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

The built-in ``default`` set is the movie-review snippets of Hutto & Gilbert (ICWSM 2014),
each rated by 20 people, shipped in the source distribution of ``vaderSentiment`` 3.3.2:
mean rating above +0.5 is positive, below -0.5 negative, the rest (and repeated sentences)
dropped. ``prepare`` writes a fixed, seeded, stratified 80/10/10 split as ``train.csv``,
``validation.csv`` and ``test.csv`` (columns ``text,label``, label names) that ``read``
loads back through the csv adapter.
"""
from __future__ import annotations

import csv
import importlib.util
import io
import random
import re
import tarfile
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Callable

from torch.utils.data import Dataset

from tasks.engine.data import (
    build_atomically,
    builtin_dir,
    data_root,
    hash_split,
    is_prepared,
    parse_spec,
    pip_download,
    read_jsonl,
    read_utf8,
    table_records,
    unique_header,
)
from zoo.errors import ZooError

VERSION = "1"
TASK = "sentiment"
BUILTIN_SETS: dict[str, str] = {
    "default": "~10,000 movie-review sentences rated by 20 people each (vaderSentiment 3.3.2 sdist), "
    "negative/positive, stratified 80/10/10",
}
QUICK_SET = "default"
CLASSES = ["negative", "positive"]
SPLITS = ("train", "validation", "test")

VADER_REQUIREMENT = "vaderSentiment==3.3.2"
RESOURCES_ARCHIVE = "additional_resources/hutto_ICWSM_2014.tar.gz"
GROUND_TRUTH = "movieReviewSnippets_GroundTruth.txt"
POSITIVE_ABOVE = 0.5      # mean rating on the -4..+4 scale
NEGATIVE_BELOW = -0.5
HELD_OUT_FRACTION = 0.1   # of each class, for validation and again for test
SPLIT_SEED = 0

MAX_ID_PER_LABEL = 10     # an integer label above this many times the number of distinct labels is a typo
_INTEGER = re.compile(r"-?[0-9]+")
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


# ---- reading -----------------------------------------------------------------------------

def read(spec: str, split: str) -> SentimentDataset:
    """The samples of ``split`` from a data SPEC (``builtin``, ``builtin:NAME`` or ``FORMAT:PATH?k=v``).

    Built-in sets have the splits train, validation and test; user formats are read whole
    and split by a hash of each text (``all``, ``train``, ``validation``, ``test``: 90/5/5).
    """
    parsed = parse_spec(spec)
    if parsed.is_builtin:
        return _read_builtin(parsed.path or "default", split)
    if parsed.format not in _ADAPTERS:
        formats = ", ".join(f"{name}:PATH" for name in _ADAPTERS)
        raise ValueError(f"--data {spec!r}: unknown format {parsed.format!r}; sentiment reads builtin, {formats}")
    adapter, allowed = _ADAPTERS[parsed.format]
    unknown = sorted(set(parsed.options) - allowed)
    if unknown:
        raise ValueError(f"--data {spec!r}: unknown option(s) {unknown}; {parsed.format} takes {sorted(allowed)}")
    if not parsed.path:
        raise ValueError(f"--data {spec!r}: no PATH after '{parsed.format}:'")
    full = adapter(Path(parsed.path).expanduser(), parsed.options)
    samples = hash_split(full.samples, split, key=_text_key, source=f"--data {spec}")
    return SentimentDataset(samples, full.classes, f"{spec} ({split})", full.skipped)


def _text_key(sample: dict) -> str:
    return sample["text"]


def _read_builtin(name: str, split: str) -> SentimentDataset:
    if name not in BUILTIN_SETS:
        raise ValueError(f"unknown built-in sentiment set {name!r}; choose from {sorted(BUILTIN_SETS)}")
    if split not in SPLITS:
        raise ValueError(f"built-in sentiment data has the splits {list(SPLITS)}, not {split!r}")
    path = builtin_dir(TASK, name, VERSION) / f"{split}.csv"
    dataset = _read_table(path, {"classes": ",".join(CLASSES)})
    dataset.source = f"builtin:{name} {split} ({path})"
    return dataset


def _read_table(path: Path, options: dict[str, str], delimiter: str = ",",
                quoting: int = csv.QUOTE_MINIMAL) -> SentimentDataset:
    """A delimited file with a header row: one text column and one label column."""
    text_column, label_column = options.get("text", "text"), options.get("label", "label")
    _require_file(path)
    records = table_records(path, delimiter, quoting)
    header_line, header = next(records, (0, None))
    if header is None:
        raise ZooError(f"{path}: empty file; expected a header row naming the columns "
                         f"{text_column!r} and {label_column!r}")
    header = unique_header([field.strip() for field in header], path, header_line)
    text_at = _column(header, text_column, "text", f"{path}:{header_line}")
    label_at = _column(header, label_column, "label", f"{path}:{header_line}")
    texts: list[str] = []
    labels: list[tuple[str, str]] = []
    for line, row in records:
        where = f"{path}:{line}"
        if len(row) != len(header):
            raise ZooError(f"{where}: {len(row)} fields, but the header (line {header_line}) has {len(header)}")
        texts.append(_clean_text(row[text_at], where))
        labels.append((where, _clean_label(row[label_at], where)))
    return _labelled(path, texts, labels, options.get("classes"))


def _read_sst2(path: Path, options: dict[str, str]) -> SentimentDataset:
    """GLUE SST-2: ``sentence<TAB>label`` with a header, unquoted, labels 0/1."""
    fixed = {"text": "sentence", "label": "label", "classes": ",".join(CLASSES)}
    return _read_table(path, fixed, delimiter="\t", quoting=csv.QUOTE_NONE)


def _read_jsonl(path: Path, options: dict[str, str]) -> SentimentDataset:
    """One JSON object per line with a text field and a label field (a name or an integer)."""
    _require_file(path)
    text_key, label_key = options.get("text", "text"), options.get("label", "label")
    texts: list[str] = []
    labels: list[tuple[str, str]] = []
    for number, obj in read_jsonl(path):
        where = f"{path}:{number}"
        for role, key in (("text", text_key), ("label", label_key)):
            if key not in obj:
                raise ZooError(f"{where}: no {role} field {key!r}; the object has {sorted(obj)}")
        text, label = obj[text_key], obj[label_key]
        if not isinstance(text, str):
            raise ZooError(f"{where}: text field {text_key!r} holds {type(text).__name__}, expected a string")
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            raise ZooError(f"{where}: label {label!r} is neither a name nor an integer")
        texts.append(_clean_text(text, where))
        labels.append((where, _clean_label(str(label), where)))
    return _labelled(path, texts, labels, options.get("classes"))


def _read_imdb(path: Path, options: dict[str, str]) -> SentimentDataset:
    """The IMDB folder layout: ``neg/*.txt`` and ``pos/*.txt`` (``unsup/`` ignored)."""
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such folder; imdb:DIR expects DIR/neg/*.txt and DIR/pos/*.txt")
    samples: list[dict] = []
    skipped = 0
    for label, name in enumerate(("neg", "pos")):
        folder = path / name
        if not folder.is_dir():
            hint = f" (did you mean imdb:{path / 'train'}?)" if (path / "train" / name).is_dir() else ""
            raise FileNotFoundError(f"{folder}: no such folder; imdb:DIR expects DIR/neg/*.txt and DIR/pos/*.txt{hint}")
        for file in sorted(folder.glob("*.txt")):
            try:
                text = _clean_text(_LINE_BREAK_TAGS.sub(" ", read_utf8(file)), str(file))
            except (OSError, ZooError) as err:
                warnings.warn(f"{file}: skipped, unreadable ({err})")
                skipped += 1
                continue
            samples.append({"text": text, "label": label})
    if not samples:
        raise ZooError(f"{path}: no readable .txt files in neg/ or pos/")
    return SentimentDataset(samples, list(CLASSES), str(path), skipped)


_TABLE_OPTIONS = frozenset({"text", "label", "classes"})
_ADAPTERS: dict[str, tuple[Callable[[Path, dict[str, str]], SentimentDataset], frozenset[str]]] = {
    "csv": (_read_table, _TABLE_OPTIONS),
    "tsv": (partial(_read_table, delimiter="\t"), _TABLE_OPTIONS),
    "jsonl": (_read_jsonl, _TABLE_OPTIONS),
    "sst2": (_read_sst2, frozenset()),
    "imdb": (_read_imdb, frozenset()),
}


# ---- fields and labels -------------------------------------------------------------------

def _require_file(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file" + (" (it is a folder)" if path.is_dir() else ""))


def _column(header: list[str], name: str, role: str, where: str) -> int:
    if name not in header:
        raise ZooError(f"{where}: no {role} column {name!r}; the header has {header} "
                         f"(csv, tsv and jsonl take ?{role}=NAME)")
    return header.index(name)


def _clean_text(text: str, where: str) -> str:
    text = text.strip()
    if not text:
        raise ZooError(f"{where}: empty text")
    return text


def _clean_label(label: str, where: str) -> str:
    label = label.strip()
    if not label:
        raise ZooError(f"{where}: empty label")
    return label


def _labelled(path: Path, texts: list[str], labels: list[tuple[str, str]], classes: str | None) -> SentimentDataset:
    """Samples from texts and raw labels (each with its ``file:line``)."""
    if not texts:
        raise ZooError(f"{path}: no samples after the header")
    ids, names = _label_ids(labels, _parse_classes(classes))
    return SentimentDataset([{"text": t, "label": i} for t, i in zip(texts, ids)], names, str(path))


def _parse_classes(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [name.strip() for name in value.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise ZooError(f"classes={value!r}: expected distinct, non-empty names separated by commas")
    return names


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


# ---- the built-in set --------------------------------------------------------------------

def prepare(names: list[str] | None = None, force: bool = False) -> None:
    """Build the named built-in sets (all when None) into ``data_root()/sentiment/NAME``.

    A set already prepared with this VERSION is skipped unless ``force``. Fetches the
    ``vaderSentiment`` source distribution with ``pip download`` (the only network use).
    """
    for name in BUILTIN_SETS if names is None else names:
        if name not in BUILTIN_SETS:
            raise ValueError(f"unknown built-in sentiment set {name!r}; choose from {sorted(BUILTIN_SETS)}")
        folder = data_root() / TASK / name
        if is_prepared(TASK, name, VERSION) and not force:
            print(f"{TASK}:{name}: already prepared in {folder}")
            continue
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="zoo-sentiment-") as work, \
                build_atomically(TASK, name, VERSION) as target:
            raw, source = _download_ground_truth(Path(work))
            splits = _stratified_split(_parse_ground_truth(raw, source))
            for split, rows in splits.items():
                _write_csv(target / f"{split}.csv", rows)
        counts = " / ".join(f"{len(rows)} {split}" for split, rows in splits.items())
        print(f"{TASK}:{name}: {counts} sentences in {time.perf_counter() - start:.1f} s -> {folder}")


def _download_ground_truth(workdir: Path) -> tuple[bytes, str]:
    """The ground-truth file's bytes from the vaderSentiment sdist, and a name for messages."""
    extra = ["--no-binary", ":all:"]
    if importlib.util.find_spec("setuptools") is not None:
        extra.append("--no-build-isolation")   # pip prepares the sdist's metadata; this skips a ~15 s build env
    sdist = pip_download(VADER_REQUIREMENT, workdir, *extra)
    with tarfile.open(sdist) as outer:
        resources = _member(outer, RESOURCES_ARCHIVE, sdist.name)
        with tarfile.open(fileobj=io.BytesIO(resources)) as inner:
            return _member(inner, GROUND_TRUTH, RESOURCES_ARCHIVE), f"{sdist.name}:{RESOURCES_ARCHIVE}:{GROUND_TRUTH}"


def _member(archive: tarfile.TarFile, suffix: str, archive_name: str) -> bytes:
    """The bytes of the one file whose path ends with ``suffix``."""
    for info in archive:
        if info.isfile() and info.name.endswith(suffix):
            return archive.extractfile(info).read()
    raise RuntimeError(f"{archive_name} holds no file ending with {suffix!r}; was the package changed?")


def _parse_ground_truth(raw: bytes, source: str) -> list[dict[str, str]]:
    """Rows ``id<TAB>mean rating<TAB>sentence`` -> ``{"text", "label"}`` for clearly rated, distinct sentences.

    The file is UTF-8 (CRLF line ends) despite older notes calling it latin-1.
    """
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for number, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{source}:{number}: expected id<TAB>rating<TAB>sentence, got {len(fields)} fields")
        try:
            rating = float(fields[1])
        except ValueError:
            raise ValueError(f"{source}:{number}: rating {fields[1]!r} is not a number") from None
        sentence = fields[2].strip()
        label = "positive" if rating > POSITIVE_ABOVE else "negative" if rating < NEGATIVE_BELOW else None
        if label is None or not sentence or sentence in seen:
            continue
        seen.add(sentence)
        rows.append({"text": sentence, "label": label})
    return rows


def _stratified_split(rows: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    """A seeded split keeping each class's share: HELD_OUT_FRACTION each to test and validation."""
    rng = random.Random(SPLIT_SEED)
    splits: dict[str, list[dict[str, str]]] = {split: [] for split in SPLITS}
    for label in sorted({row["label"] for row in rows}):
        group = [row for row in rows if row["label"] == label]
        rng.shuffle(group)
        n_held = round(len(group) * HELD_OUT_FRACTION)
        splits["test"] += group[:n_held]
        splits["validation"] += group[n_held:2 * n_held]
        splits["train"] += group[2 * n_held:]
    for part in splits.values():
        rng.shuffle(part)
    return splits


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([row["text"], row["label"]] for row in rows)
