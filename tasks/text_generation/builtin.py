"""The built-in text-generation sets (``zoo data prepare text_generation``), the only code here that fetches.

- ``builtin`` (``default``): Jane Austen's six novels (:func:`tasks.engine.sources.austen_novels`),
  written one chapter per ``.txt`` file into ``train/``, ``validation/`` and ``test/``; whole
  chapters are held out (5% + 5%, seeded) and read back through the ``text:`` adapter.
- ``builtin:fortunes``: the quotes of Debian's ``fortunes``, 90/5/5 seeded, as JSONL read back
  through the ``jsonl:`` adapter.
"""
from __future__ import annotations

import random
import re
import tempfile
from pathlib import Path

from tasks.engine.data import debian_package_root, write_jsonl
from tasks.engine.sets import BUILTIN_SPLITS, BuiltinSet
from tasks.engine.sources import AUSTEN_PACKAGE, austen_novels
from tasks.text_generation.formats import TextDataset, decode_text, jsonl_source, text_source

HELD_OUT = 0.05        # fraction of the built-in sets in validation, and again in test
SEED = 0

_FORTUNES_PACKAGE = "fortunes"
_FORTUNES_DIR = Path("usr/share/games/fortunes")
_CHAPTER = re.compile(r"chapter\s+([0-9]+|[ivxlc]+)\.?", re.IGNORECASE)
_DIVIDER = re.compile(r"(volume\s+[ivx]+|the end|finis)\.?", re.IGNORECASE)   # print layout, not prose
_EDITOR_NOTE = "A NOTE ON THE TEXT"   # the editor's afterword closing Northanger Abbey


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
    novels = austen_novels()
    chapters = {f"{name}-ch{number:03d}": text for name, lines in sorted(novels.items())   # "emma-ch001" -> text;
                for number, text in enumerate(split_chapters(lines)) if text}                 # "-ch000": the title page
    held = [key for key in chapters if not key.endswith("-ch000")]
    if not held:
        raise ValueError(f"{AUSTEN_PACKAGE}: no chapter headings found in {', '.join(novels)}")
    placement = dict(zip(held, three_way_split(len(held))))
    for split in BUILTIN_SPLITS:
        (out / split).mkdir()
    for key, text in chapters.items():
        (out / placement.get(key, "train") / f"{key}.txt").write_text(text + "\n", encoding="utf-8")
    counts = {split: sum(1 for key in held if placement[key] == split) for split in BUILTIN_SPLITS}
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
    for split in BUILTIN_SPLITS:
        write_jsonl(out / f"{split}.jsonl", [{"text": q} for q, s in zip(quotes, placement) if s == split])
    counts = ", ".join(f"{split} {placement.count(split)}" for split in BUILTIN_SPLITS)
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
        for quote in re.split(r"^%$", decode_text(file), flags=re.MULTILINE):
            quote = "\n".join(line.rstrip() for line in quote.strip("\n").split("\n"))
            if quote.strip():
                quotes[quote] = None
    if not quotes:
        raise ValueError(f"{folder}: no quotes in {len(files)} fortune files")
    return list(quotes)


def _read_austen(folder: Path, split: str) -> TextDataset:
    texts, skipped = text_source(folder / split, {"sample_by": "document"})
    return TextDataset(texts, f"builtin:default [{split}] ({folder})", skipped)


def _read_fortunes(folder: Path, split: str) -> TextDataset:
    texts, skipped = jsonl_source(folder / f"{split}.jsonl", {})
    return TextDataset(texts, f"builtin:fortunes [{split}] ({folder})", skipped)


BUILTIN_SETS: dict[str, BuiltinSet] = {
    "default": BuiltinSet("Jane Austen's six novels (Debian r-cran-janeaustenr), whole chapters held out for "
                          "validation/test", _build_austen, _read_austen, version="1"),
    "fortunes": BuiltinSet("about 14k fortune-cookie quotes (Debian fortunes), 90/5/5 seeded split",
                           _build_fortunes, _read_fortunes, version="1"),
}
