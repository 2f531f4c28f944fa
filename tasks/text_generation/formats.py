"""Text-generation formats: ``text:`` and ``jsonl:`` adapters (``--data FORMAT:PATH?key=value``).

Every SPEC yields ``{"text": str}`` samples (documents):

- ``text:PATH[?sample_by=document|paragraph|line]``: a ``.txt`` file or a folder of ``.txt``
  files (searched recursively, sorted by path). A folder gives one document per file; a
  single file is cut into paragraphs (blank-line separated) so it still has a hold-out.
  The names follow Hugging Face ``datasets``' text loader.
- ``jsonl:PATH[?field=text]``: one JSON object per line, the text in ``field``.

A source is read whole and split 90/5/5 train/validation/test by a seeded hash of each text
(:func:`~tasks.engine.data.hash_split`; ``all`` keeps everything). Documents become training
examples through :mod:`tasks.text_generation.blocks`.
"""
from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import Dataset

from tasks.engine.data import DataSpec, hash_split, read_utf8, split_lines
from tasks.engine.records import jsonl_rows, nonempty, readable_texts, text_field
from tasks.engine.sets import Format
from tasks.text_generation.blocks import pack_blocks
from zoo.errors import ZooError
from zoo.tokenizer import BaseTokenizer

SEED = 0
_SAMPLE_BY = ("document", "paragraph", "line")


class TextDataset(Dataset):
    """A list of texts served as ``{"text": str}`` samples; :meth:`blocks` packs them into token blocks.

    Attributes: ``texts`` (the documents, in order), ``source`` (for messages) and
    ``skipped`` (damaged files skipped with a warning).
    """

    def __init__(self, texts: list[str], source: str, skipped: int = 0) -> None:
        self.texts = texts
        self.source = source
        self.skipped = skipped
        self._key: tuple[str, int] | None = None
        self._blocks: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> dict[str, str]:
        return {"text": self.texts[index]}

    def blocks(self, tokenizer: BaseTokenizer, block_size: int) -> torch.Tensor:
        """All blocks (N, size + 1) of the token stream (every document's tokens, then EOS) for this
        tokenizer and block size, tokenized once and then cached.

        A set too small for one block is cut into a single shorter block (all of it), so tiny
        validation sets still evaluate; a set of fewer than two tokens raises.
        """
        key = (tokenizer.fingerprint(), block_size)
        if key != self._key:
            docs = [tokenizer.encode(text) for text in self.texts]
            tokens = sum(len(doc) + 1 for doc in docs)  # + EOS after each
            if tokens < 2:
                raise ValueError(f"{self.source}: fewer than two tokens, nothing to predict")
            self._blocks = pack_blocks(docs, min(block_size, tokens - 1), tokenizer.eos_id)
            self._key = key
        return self._blocks


def text_source(path: Path, options: dict[str, str]) -> tuple[list[str], int]:
    """Texts of a ``.txt`` file or folder, and the number of damaged files skipped."""
    default = "document" if path.is_dir() else "paragraph"
    sample_by = options.get("sample_by", default)
    if sample_by not in _SAMPLE_BY:
        raise ZooError(f"{path}: sample_by={sample_by!r}; expected one of {', '.join(_SAMPLE_BY)}")
    if path.is_file():
        text = decode_text(path)
        if not text.strip():
            raise ZooError(f"{path}: empty text")
        return _cut(text, sample_by), 0
    files = sorted(path.rglob("*.txt"))
    if not files:
        raise FileNotFoundError(f"{path}: no .txt files in this folder (searched recursively)")
    readable, skipped = readable_texts(files, decode_text, str(path))
    texts = [sample for _, text in readable for sample in _cut(text, sample_by)]
    return nonempty(texts, f"{path}: all {len(files)} .txt files are empty or unreadable"), skipped


def decode_text(path: Path) -> str:
    """A file's UTF-8 text (a BOM dropped; CRLF and bare CR made LF); bad bytes or NUL raise naming the line."""
    return "\n".join(split_lines(read_utf8(path)))


def _cut(text: str, sample_by: str) -> list[str]:
    """One text as samples: the whole document, its blank-line paragraphs, or its lines."""
    if sample_by == "document":
        return [text.strip()]
    parts = re.split(r"\n[ \t]*\n", text) if sample_by == "paragraph" else text.split("\n")
    return [part.strip() for part in parts if part.strip()]


def jsonl_source(path: Path, options: dict[str, str]) -> tuple[list[str], int]:
    """Texts of a JSONL file's ``field``; a missing, non-string or empty text raises naming the line."""
    field = options.get("field", "text")
    texts = [text_field(row, field, where) for where, row in jsonl_rows(path, (field,), "; choose it with ?field=NAME")]
    return nonempty(texts, f"{path}: no records"), 0


def _split_by_text(source: Callable[[Path, dict[str, str]], tuple[list[str], int]], spec: DataSpec,
                   split: str) -> TextDataset:
    """A format's reader (``source`` bound): every text of the path, then the hashed split of the texts."""
    path = Path(spec.path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder (from --data {str(spec)!r})")
    texts, skipped = source(path, spec.options)
    return TextDataset(hash_split(texts, split, key=str, source=f"--data {spec}", seed=SEED),
                       f"{spec} [{split}]", skipped)


FORMATS: dict[str, Format] = {
    "text": Format(partial(_split_by_text, text_source), ("sample_by",)),
    "jsonl": Format(partial(_split_by_text, jsonl_source), ("field",)),
}
