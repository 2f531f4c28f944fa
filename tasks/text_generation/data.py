"""Text generation data: ``text:`` and ``jsonl:`` adapters, block packing, two built-in sets.

SPECs (every one yields ``{"text": str}`` samples):

- ``text:PATH[?sample_by=document|paragraph|line]``: a ``.txt`` file or a folder of ``.txt``
  files (searched recursively, sorted by path). A folder gives one document per file; a
  single file is cut into paragraphs (blank-line separated) so it still has a hold-out.
  The names follow Hugging Face ``datasets``' text loader.
- ``jsonl:PATH[?field=text]``: one JSON object per line, the text in ``field``.

Built-in sets (``zoo data prepare text_generation``):

- ``builtin`` (``default``): Jane Austen's six novels from Debian's ``r-cran-janeaustenr``
  (an R lazy-load database, read with ``rdata``), written one chapter per ``.txt`` file into
  ``train/``, ``validation/`` and ``test/``; whole chapters are held out (5% + 5%, seeded).
- ``builtin:fortunes``: the quotes of Debian's ``fortunes``, 90/5/5 seeded, as JSONL.

Documents become training examples through :func:`pack_blocks`.
"""
from __future__ import annotations

import itertools
import random
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from tasks.engine.data import (
    build_atomically,
    builtin_dir,
    debian_package_root,
    hash_split,
    is_prepared,
    parse_spec,
    read_jsonl,
    read_utf8,
    split_lines,
    write_jsonl,
)
from zoo.errors import ZooError
from tasks.engine.rdata import read_r_lazyload

TASK = "text_generation"
VERSION = "1"
BUILTIN_SETS: dict[str, str] = {
    "default": "Jane Austen's six novels (Debian r-cran-janeaustenr), whole chapters held out for validation/test",
    "fortunes": "about 14k fortune-cookie quotes (Debian fortunes), 90/5/5 seeded split",
}
QUICK_SET = "fortunes"
SPLITS = ("train", "validation", "test")
HELD_OUT = 0.05        # fraction of the built-in sets in validation, and again in test
SEED = 0

_AUSTEN_PACKAGE = "r-cran-janeaustenr"
_AUSTEN_INDEX = Path("usr/lib/R/site-library/janeaustenr/data/Rdata.rdx")
_FORTUNES_PACKAGE = "fortunes"
_FORTUNES_DIR = Path("usr/share/games/fortunes")
_CHAPTER = re.compile(r"chapter\s+([0-9]+|[ivxlc]+)\.?", re.IGNORECASE)
_DIVIDER = re.compile(r"(volume\s+[ivx]+|the end|finis)\.?", re.IGNORECASE)   # print layout, not prose
_EDITOR_NOTE = "A NOTE ON THE TEXT"   # the editor's afterword closing Northanger Abbey
_SAMPLE_BY = ("document", "paragraph", "line")


class TextDataset(Dataset):
    """A list of texts served as ``{"text": str}`` samples.

    Attributes: ``texts`` (the documents, in order), ``source`` (for messages) and
    ``skipped`` (damaged files skipped with a warning).
    """

    def __init__(self, texts: list[str], source: str, skipped: int = 0) -> None:
        self.texts = texts
        self.source = source
        self.skipped = skipped

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> dict[str, str]:
        return {"text": self.texts[index]}


# ---- packing -------------------------------------------------------------------------------

def pack_blocks(docs: Sequence[Sequence[int]], block_size: int, eos_id: int) -> torch.Tensor:
    """Concatenate token ids, each document followed by ``eos_id``, and cut fixed blocks.

    Returns a LongTensor (N, block_size + 1); use ``[:, :-1]`` as inputs and ``[:, 1:]`` as
    targets. Consecutive blocks share one token (block i ends where block i + 1 starts), so
    every token after the first is a target exactly once; the last partial block is dropped.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size}")
    ids = itertools.chain.from_iterable([*doc, eos_id] for doc in docs)
    stream = torch.tensor(list(ids), dtype=torch.long)  # (L,)
    n_blocks = (stream.numel() - 1) // block_size
    if n_blocks < 1:
        raise ValueError(
            f"too few tokens to pack one block: {len(docs)} documents give {stream.numel()} tokens "
            f"(with an end-of-text token after each), and one block of {block_size} needs {block_size + 1}; "
            "use more text or a smaller block size"
        )
    stream = stream[: n_blocks * block_size + 1]  # (N * block_size + 1,)
    return stream.unfold(0, block_size + 1, block_size).contiguous()  # (N, block_size + 1)


# ---- reading ---------------------------------------------------------------------------------

def read(spec: str, split: str) -> TextDataset:
    """Samples of ``split`` from a data SPEC (see the module docstring).

    Built-in sets take "train" | "validation" | "test"; user sources take those or "all",
    split 90/5/5 train/validation/test by a seeded hash of each text (:func:`hash_split`).
    """
    parsed = parse_spec(spec)
    if parsed.is_builtin:
        return _read_builtin(parsed.path or "default", split)
    readers: dict[str, Callable[[Path, dict[str, str]], tuple[list[str], int]]] = {
        "text": _text_source, "jsonl": _jsonl_source}
    if parsed.format not in readers:
        raise ValueError(f"--data {spec!r}: unknown format {parsed.format!r} for {TASK}; "
                         f"use builtin, builtin:NAME, {', '.join(f'{f}:PATH' for f in readers)}")
    path = Path(parsed.path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder (from --data {spec!r})")
    texts, skipped = readers[parsed.format](path, parsed.options)
    return TextDataset(hash_split(texts, split, key=str, source=f"--data {spec}", seed=SEED),
                       f"{spec} [{split}]", skipped)


def _read_builtin(name: str, split: str) -> TextDataset:
    if name not in BUILTIN_SETS:
        raise ValueError(f"unknown built-in set {name!r} for {TASK}; available: {', '.join(BUILTIN_SETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for built-in data; expected one of {', '.join(SPLITS)}")
    folder = builtin_dir(TASK, name, VERSION)
    if name == "fortunes":
        texts, skipped = _jsonl_source(folder / f"{split}.jsonl", {})
    else:
        texts, skipped = _text_source(folder / split, {"sample_by": "document"})
    return TextDataset(texts, f"builtin:{name} [{split}] ({folder})", skipped)


def _check_options(path: Path, options: dict[str, str], allowed: dict[str, str]) -> dict[str, str]:
    """Options with defaults filled in; an unknown key raises (it is most likely a typo)."""
    unknown = set(options) - set(allowed)
    if unknown:
        raise ZooError(f"{path}: unknown option(s) {', '.join(sorted(unknown))}; allowed: {', '.join(allowed)}")
    return {**allowed, **options}


def _text_source(path: Path, options: dict[str, str]) -> tuple[list[str], int]:
    """Texts of a ``.txt`` file or folder, and the number of damaged files skipped."""
    default = "document" if path.is_dir() else "paragraph"
    sample_by = _check_options(path, options, {"sample_by": default})["sample_by"]
    if sample_by not in _SAMPLE_BY:
        raise ZooError(f"{path}: sample_by={sample_by!r}; expected one of {', '.join(_SAMPLE_BY)}")
    if path.is_file():
        text = _decode_text(path)
        if not text.strip():
            raise ZooError(f"{path}: empty text")
        return _cut(text, sample_by), 0
    files = sorted(path.rglob("*.txt"))
    if not files:
        raise FileNotFoundError(f"{path}: no .txt files in this folder (searched recursively)")
    texts: list[str] = []
    skipped = 0
    for file in files:
        try:
            text = _decode_text(file)
            if not text.strip():
                raise ZooError(f"{file}: empty text")
        except (OSError, ValueError) as err:
            warnings.warn(f"skipping {err}", stacklevel=2)
            skipped += 1
            continue
        texts.extend(_cut(text, sample_by))
    if not texts:
        raise ZooError(f"{path}: all {len(files)} .txt files are empty or unreadable")
    return texts, skipped


def _decode_text(path: Path) -> str:
    """A file's UTF-8 text (a BOM dropped; CRLF and bare CR made LF); bad bytes or NUL raise naming the line."""
    return "\n".join(split_lines(read_utf8(path)))


def _cut(text: str, sample_by: str) -> list[str]:
    """One text as samples: the whole document, its blank-line paragraphs, or its lines."""
    if sample_by == "document":
        return [text.strip()]
    parts = re.split(r"\n[ \t]*\n", text) if sample_by == "paragraph" else text.split("\n")
    return [part.strip() for part in parts if part.strip()]


def _jsonl_source(path: Path, options: dict[str, str]) -> tuple[list[str], int]:
    """Texts of a JSONL file's ``field``; a missing, non-string or empty text raises naming the line."""
    field = _check_options(path, options, {"field": "text"})["field"]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a file (jsonl: expects one .jsonl file)")
    texts: list[str] = []
    for line, row in read_jsonl(path):
        if field not in row:
            raise ZooError(f"{path}:{line}: no field {field!r} (fields: {', '.join(row) or 'none'}); "
                             "choose it with ?field=NAME")
        text = row[field]
        if not isinstance(text, str):
            raise ZooError(f"{path}:{line}: field {field!r} is a {type(text).__name__}, expected a string")
        if not text.strip():
            raise ZooError(f"{path}:{line}: empty text in field {field!r}")
        texts.append(text)
    if not texts:
        raise ZooError(f"{path}: no records")
    return texts, 0


# ---- preparing the built-in sets ------------------------------------------------------------

def prepare(names: list[str] | None = None, force: bool = False) -> None:
    """Build the named built-in sets (all when None) into the cache, skipping prepared ones unless ``force``."""
    names = list(BUILTIN_SETS) if names is None else names
    unknown = [name for name in names if name not in BUILTIN_SETS]
    if unknown:
        raise ValueError(f"unknown built-in set(s) {', '.join(unknown)} for {TASK}; "
                         f"available: {', '.join(BUILTIN_SETS)}")
    builders = {"default": _build_austen, "fortunes": _build_fortunes}
    for name in names:
        if is_prepared(TASK, name, VERSION) and not force:
            print(f"{TASK}:{name}: already prepared")
            continue
        start = time.perf_counter()
        with build_atomically(TASK, name, VERSION) as out:
            summary = builders[name](out)
        print(f"{TASK}:{name}: {summary} ({time.perf_counter() - start:.1f} s)")


def three_way_split(count: int, fraction: float = HELD_OUT, seed: int = SEED) -> list[str]:
    """The split name of each of ``count`` items: a seeded ``fraction`` each for validation and test."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    n_held = round(count * fraction)
    names = ["train"] * count
    for rank, index in enumerate(order[: 2 * n_held]):
        names[index] = "validation" if rank < n_held else "test"
    return names


def _build_austen(out: Path) -> str:
    """Write each novel's chapters as ``<novel>-chNNN.txt`` into ``train/``, ``validation/``, ``test/``."""
    with tempfile.TemporaryDirectory() as tmp:
        index = debian_package_root(_AUSTEN_PACKAGE, Path(tmp)) / _AUSTEN_INDEX
        if not index.is_file():
            raise FileNotFoundError(f"{index}: missing from the Debian package {_AUSTEN_PACKAGE}")
        novels = {name: lines for name, lines in read_r_lazyload(index).items() if isinstance(lines, list)}
    chapters: dict[str, str] = {}       # "emma-ch001" -> text; "-ch000" is the title page
    for name, lines in sorted(novels.items()):
        for number, text in enumerate(split_chapters(lines)):
            if text:
                chapters[f"{name}-ch{number:03d}"] = text
    held = [key for key in chapters if not key.endswith("-ch000")]
    if not held:
        raise ValueError(f"{index}: no chapter headings found in {', '.join(novels)}")
    placement = dict(zip(held, three_way_split(len(held))))
    for split in SPLITS:
        (out / split).mkdir()
    for key, text in chapters.items():
        (out / placement.get(key, "train") / f"{key}.txt").write_text(text + "\n", encoding="utf-8")
    counts = {split: sum(1 for key in held if placement[key] == split) for split in SPLITS}
    n_chars = sum(len(text) for text in chapters.values())
    return (f"{len(held)} chapters of {len(novels)} novels, {n_chars / 1e6:.1f}M characters; chapters in "
            + ", ".join(f"{split} {n}" for split, n in counts.items()))


def split_chapters(lines: list[str]) -> list[str]:
    """A novel's lines as ``[front matter, chapter 1, chapter 2, ...]``, each one text.

    A chapter starts at its heading line ("CHAPTER XII", "Chapter 3") and keeps it. Volume
    headings, "THE END"/"FINIS" and the editor's closing note are dropped; runs of blank
    lines become one blank line; the original line breaks (verse, letters) are kept.
    """
    parts: list[list[str]] = [[]]
    for raw in lines:
        line = raw.rstrip()
        if line.strip() == _EDITOR_NOTE:
            break
        if _DIVIDER.fullmatch(line.strip()):
            continue
        if _CHAPTER.fullmatch(line.strip()):
            parts.append([])
        parts[-1].append(line)
    return [re.sub(r"\n{3,}", "\n\n", "\n".join(part).strip("\n")) for part in parts]


def _build_fortunes(out: Path) -> str:
    """Write the fortune quotes as ``train.jsonl``, ``validation.jsonl``, ``test.jsonl``."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = debian_package_root(_FORTUNES_PACKAGE, Path(tmp)) / _FORTUNES_DIR
        quotes = read_fortunes(folder)
    placement = three_way_split(len(quotes))
    for split in SPLITS:
        write_jsonl(out / f"{split}.jsonl", [{"text": q} for q, s in zip(quotes, placement) if s == split])
    counts = ", ".join(f"{split} {placement.count(split)}" for split in SPLITS)
    return f"{len(quotes)} quotes, {sum(map(len, quotes)) / 1e6:.1f}M characters; {counts}"


def read_fortunes(folder: Path) -> list[str]:
    """The distinct quotes of a fortune folder, in file order.

    Each data file holds quotes separated by lines that are exactly ``%``; the ``.dat``
    indexes and the ``.u8`` links are skipped.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no fortune files here")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix not in (".dat", ".u8"))
    quotes: dict[str, None] = {}        # ordered set: the same quote in two files is kept once
    for file in files:
        for quote in re.split(r"^%$", _decode_text(file), flags=re.MULTILINE):
            quote = "\n".join(line.rstrip() for line in quote.strip("\n").split("\n"))
            if quote.strip():
                quotes[quote] = None
    if not quotes:
        raise ValueError(f"{folder}: no quotes in {len(files)} fortune files")
    return list(quotes)
