"""Translation formats: sentence-pair adapters (``--data FORMAT:PATH``).

Each gives samples ``{"source": str, "target": str}``:

- ``tsv:PATH``: one ``source<TAB>target`` pair per line.
- ``jsonl:PATH?src=en&tgt=es``: one JSON object per line; the field names default to
  ``src`` and ``tgt``.
- ``pairs:SRC_PATH,TGT_PATH``: two line-aligned plain-text files (``train.en,train.es``).

Every line must hold a pair with text on both sides; anything else is refused with the
file and line (text corpora have no "damaged item" worth skipping silently). A source is
read whole and then split 90/5/5 by a seeded hash of each source sentence
(:func:`~tasks.engine.data.hash_split`; ``all`` keeps everything).
"""
from __future__ import annotations

from functools import partial
from itertools import zip_longest
from operator import itemgetter
from pathlib import Path
from typing import Callable

from torch.utils.data import Dataset

from tasks.engine.data import DataSpec, hash_split
from tasks.engine.records import jsonl_rows, nonempty, numbered_lines, text_field
from tasks.engine.sets import Format
from zoo.errors import ZooError

SEED = 0

Pair = tuple[str, str]
_NO_PAIRS = "no sentence pairs (the file is empty)"


class TranslationDataset(Dataset):
    """Sentence pairs; item ``i`` is ``{"source": str, "target": str}``.

    ``pairs`` holds the (source, target) tuples (for tokenizer training or length
    bucketing), ``source`` says where they came from, ``skipped`` is always 0 (bad
    lines are errors, not skips).
    """

    def __init__(self, pairs: list[Pair], source: str) -> None:
        self.pairs = pairs
        self.source = source
        self.skipped = 0

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, str]:
        source, target = self.pairs[index]
        return {"source": source, "target": target}


def read_tsv(path: str, options: dict[str, str]) -> list[Pair]:
    """``source<TAB>target`` lines; blank lines are skipped, one without exactly one tab or with an empty side is refused."""
    file = Path(path).expanduser()
    pairs = []
    for number, line in numbered_lines(file, blank=False):
        fields = line.split("\t")
        if len(fields) != 2:
            raise ZooError(f"{file}:{number}: expected 'source<TAB>target' (exactly one tab), found {len(fields) - 1} tabs")
        source, target = fields[0].strip(), fields[1].strip()
        if not source or not target:
            raise ZooError(f"{file}:{number}: empty {'source' if not source else 'target'} text")
        pairs.append((source, target))
    return nonempty(pairs, f"{file}: {_NO_PAIRS}")


def _read_jsonl(path: str, options: dict[str, str]) -> list[Pair]:
    """One JSON object a line; ``options`` may rename the ``src`` and ``tgt`` fields."""
    file = Path(path).expanduser()
    keys = (options.get("src", "src"), options.get("tgt", "tgt"))
    rows = jsonl_rows(file, keys, f"; name the fields with jsonl:{path}?src=FIELD&tgt=FIELD")
    pairs = [(text_field(row, keys[0], where).strip(), text_field(row, keys[1], where).strip()) for where, row in rows]
    return nonempty(pairs, f"{file}: {_NO_PAIRS}")


def _read_pairs(paths: str, options: dict[str, str]) -> list[Pair]:
    """Two line-aligned files ``SRC,TGT``; different lengths or an empty line are refused."""
    parts = paths.split(",")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise ZooError(f"pairs:{paths}: expected two comma-separated files, pairs:SOURCE_FILE,TARGET_FILE")
    files = [Path(p.strip()).expanduser() for p in parts]
    src_lines, tgt_lines = numbered_lines(files[0]), numbered_lines(files[1])
    pairs = []
    for src_item, tgt_item in zip_longest(src_lines, tgt_lines):
        if src_item is None or tgt_item is None:
            short, long, rest = (files[0], files[1], tgt_lines) if src_item is None else (files[1], files[0], src_lines)
            number = (tgt_item or src_item)[0]
            total = number + sum(1 for _ in rest)
            raise ZooError(f"{short} ends after line {number - 1} but {long} goes on to line {total}: line {number} "
                           f"of {long} has no counterpart; the two files of pairs: must have the same number of lines")
        number = src_item[0]
        for file, text in zip(files, (src_item[1], tgt_item[1])):
            if not text.strip():
                raise ZooError(f"{file}:{number}: empty line (every line of {files[0]} pairs with the same line of {files[1]})")
        pairs.append((src_item[1].strip(), tgt_item[1].strip()))
    return nonempty(pairs, f"{files[0]}: {_NO_PAIRS}")


def _split_by_source(reader: Callable[[str, dict[str, str]], list[Pair]], spec: DataSpec,
                     split: str) -> TranslationDataset:
    """A format's reader (``reader`` bound): every pair by ``reader``, then the hashed split keyed by the
    source sentence, so one sentence is never in two splits."""
    pairs = reader(spec.path, spec.options)
    return TranslationDataset(hash_split(pairs, split, key=itemgetter(0), source=f"--data {spec}", seed=SEED),
                              f"{spec} [{split}]")


FORMATS: dict[str, Format] = {
    "tsv": Format(partial(_split_by_source, read_tsv)),
    "jsonl": Format(partial(_split_by_source, _read_jsonl), ("src", "tgt")),
    "pairs": Format(partial(_split_by_source, _read_pairs)),
}
