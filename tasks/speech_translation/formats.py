"""Speech translation formats: English audio + its translation, each a :class:`Format`.

Every one yields ASR's samples ``{"audio": (S,) float32 at 16 kHz, "text": str, "path": str}``
(:class:`tasks.asr.formats.SpeechDataset`), where ``text`` is the *translation*, kept as written
(case, accents and punctuation are what BLEU scores; only surrounding blanks are stripped):

- ``manifest:PATH[?target=FIELD]``: JSON lines (or CSV when PATH ends in ``.csv``) with
  ``audio_filepath`` and ``translation`` (another field with ``?target=``), optional ``text``
  (the English transcript, unused by training) and ``duration``; relative audio paths are
  relative to the manifest's folder. The built-in sets are written in this format.
- ``tsv:PATH``: CoVoST 2's tab-separated table: a header naming at least ``path`` and
  ``translation`` (``sentence``, ``client_id``... may follow), audio paths relative to the
  table's folder.

A source is read whole and cut 90/5/5 into ``train``/``validation``/``test`` by a seeded hash of
each audio file's path inside the source (``all`` keeps everything). A missing audio file, an
empty translation or a missing field raises ``ZooError`` naming the file and line; a damaged clip
is skipped with a warning and counted in ``dataset.skipped`` (ASR's checks).
"""
from __future__ import annotations

import csv
from pathlib import Path

from tasks.asr.formats import SpeechDataset, _Entry, _hashed
from tasks.engine.data import DataSpec
from tasks.engine.records import jsonl_rows, nonempty, table_rows, text_field
from tasks.engine.sets import Format
from zoo.errors import ZooError

TARGET_FIELD = "translation"   # the manifest field of the translation (CoVoST 2's column name too)
AUDIO_FIELD = "audio_filepath"


def entry(where: str, audio: Path, target: str) -> _Entry:
    """One checked row: a non-blank translation (stripped) and an existing audio file."""
    target = target.strip()
    if not target:
        raise ZooError(f"{where}: empty translation")
    if not audio.is_file():
        raise FileNotFoundError(f"{where}: audio file {audio} not found")
    return _Entry(audio, target)


def manifest_entries(path: Path, target: str = TARGET_FIELD) -> list[_Entry]:
    """Rows of a JSONL (or ``.csv``) manifest: ``audio_filepath`` and the ``target`` field."""
    columns = (AUDIO_FIELD, target)
    if path.suffix.lower() == ".csv":
        rows = table_rows(path, columns, one_line=True)
    else:
        rows = jsonl_rows(path, columns, f"; name the translation's field with manifest:{path}?target=FIELD")
    entries = [entry(where, path.parent / text_field(row, AUDIO_FIELD, where), text_field(row, target, where))
               for where, row in rows]
    return nonempty(entries, f"{path}: no utterances (the manifest has no rows)")


def tsv_entries(path: Path) -> list[_Entry]:
    """Rows of a CoVoST 2 table: columns ``path`` and ``translation``."""
    rows = table_rows(path, ("path", TARGET_FIELD), "\t", csv.QUOTE_NONE, one_line=True)
    entries = [entry(where, path.parent / row["path"], row[TARGET_FIELD]) for where, row in rows]
    return nonempty(entries, f"{path}: no utterances (only a header)")


def _manifest(spec: DataSpec, split: str) -> SpeechDataset:
    path = Path(spec.path).expanduser()
    return _hashed(manifest_entries(path, spec.options.get("target", TARGET_FIELD)), 0, path, spec, split)


def _tsv(spec: DataSpec, split: str) -> SpeechDataset:
    path = Path(spec.path).expanduser()
    return _hashed(tsv_entries(path), 0, path, spec, split)


FORMATS: dict[str, Format] = {
    "manifest": Format(_manifest, ("target",)),
    "tsv": Format(_tsv),
}
