"""ASR formats: LibriSpeech, manifest and Common Voice adapters, each a :class:`Format`.

Every one yields ``{"audio": (S,) float32 at 16 kHz, "text": str, "path": str}``, the text
normalised by :func:`normalize_text`:

- ``librispeech:DIR``: the LibriSpeech layout, searched recursively:
  ``speaker/chapter/speaker-chapter.trans.txt`` lines ``UTTERANCE-ID TEXT`` next to
  ``UTTERANCE-ID.flac``. A transcript line without its audio is an error naming the line;
  a flac without a transcript line is skipped with a warning.
- ``manifest:PATH``: NeMo-style JSON lines (or CSV when PATH ends in ``.csv``) with
  ``audio_filepath``, ``text`` and an optional ``duration``; relative audio paths are
  relative to the manifest's folder.
- ``commonvoice:DIR[?split=train|dev|test]``: Common Voice's ``<split>.tsv`` (columns
  ``path`` and ``sentence``) with the clips in ``DIR/clips/`` (mp3 reads through libsndfile).
  Without ``?split=`` the tables are the splits: ``train.tsv``, ``dev.tsv`` (validation) and
  ``test.tsv`` (:func:`tasks.engine.data.named_split`; ``all`` is every table).

Other sources (and one chosen Common Voice table) are read whole, then
:func:`tasks.engine.data.hash_split` cuts them 90/5/5 into ``train``/``validation``/``test`` by a
seeded hash of each audio file's path inside the source (``all`` keeps everything). A missing audio file or a
malformed row (a field spanning lines from an unbalanced quote, a column named twice, bytes
that are not UTF-8) raises ``ZooError`` naming the file and line; a damaged audio file
(failing a cheap ``soundfile.info`` check) or a clip under ``audio.MIN_SECONDS`` is skipped
with a warning and counted in ``dataset.skipped``.
"""
from __future__ import annotations

import csv
import math
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from tasks.asr.audio import SAMPLE_RATE, AudioError, load_audio, probe_audio
from tasks.engine.data import DataSpec, file_key, hash_split, named_split
from tasks.engine.records import jsonl_rows, nonempty, numbered_lines, table_rows, text_field, warn_skipped
from tasks.engine.sets import Format
from zoo.errors import ZooError

MAX_SECONDS = 60.0
SEED = 0


def normalize_text(text: str) -> str:
    """Lowercase; keep letters, digits and in-word apostrophes; everything else becomes one space.

    >>> normalize_text("  \u201cWell-known,\u201d she said: 'Don\u2019t!' ")
    "well known she said don't"
    """
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").lower()
    kept = "".join(ch if ch.isalnum() or ch == "'" else " " for ch in text)
    return " ".join(word.strip("'") for word in kept.split() if word.strip("'"))


@dataclass(frozen=True)
class _Entry:
    """One utterance before its audio is checked: the audio file and its normalised transcript."""

    path: Path
    text: str


class SpeechDataset(Dataset):
    """Utterances whose audio is loaded lazily, served as ``{"audio", "text", "path"}`` samples.

    At construction every file gets a cheap ``soundfile.info`` check; damaged ones are
    skipped with a warning naming the file. Attributes: ``source`` (for messages),
    ``skipped`` (damaged or unlabelled files skipped), ``durations`` (seconds, per sample)
    and ``lengths`` (samples at 16 kHz, for length-bucketed batches).
    """

    def __init__(self, entries: list[_Entry], source: str, skipped: int = 0, max_seconds: float = MAX_SECONDS) -> None:
        self.source = source
        self.max_seconds = max_seconds
        self.entries: list[_Entry] = []
        self.durations: list[float] = []
        damaged = []
        for entry in entries:
            try:
                seconds = probe_audio(entry.path, max_seconds)
            except AudioError as err:
                damaged.append(str(err))
                continue
            self.entries.append(entry)
            self.durations.append(seconds)
        self.skipped = skipped + warn_skipped(source, damaged, "damaged audio file(s)")
        if entries and not self.entries:
            raise ZooError(f"{source}: all {len(entries)} audio files are damaged")

    @property
    def lengths(self) -> list[int]:
        """Length of each utterance in samples at 16 kHz."""
        return [round(seconds * SAMPLE_RATE) for seconds in self.durations]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        entry = self.entries[index]
        audio = load_audio(entry.path, SAMPLE_RATE, self.max_seconds)  # (S,)
        return {"audio": audio, "text": entry.text, "path": str(entry.path)}


def _hashed(entries: list[_Entry], unlabelled: int, root: Path, spec: DataSpec, split: str) -> SpeechDataset:
    """``split`` of a source read whole, by a seeded hash of each audio file's path inside it."""
    folder = root.parent if root.is_file() else root
    chosen = hash_split(entries, split, key=lambda e: file_key(e.path, folder), source=f"--data {spec}", seed=SEED)
    return SpeechDataset(chosen, f"{spec} ({split})", skipped=unlabelled)


def _librispeech(spec: DataSpec, split: str) -> SpeechDataset:
    root = Path(spec.path).expanduser()
    return _hashed(*_librispeech_entries(root), root, spec, split)


def _manifest(spec: DataSpec, split: str) -> SpeechDataset:
    path = Path(spec.path).expanduser()
    return _hashed(manifest_entries(path), 0, path, spec, split)


def _commonvoice(spec: DataSpec, split: str) -> SpeechDataset:
    root = Path(spec.path).expanduser()
    if "split" not in spec.options:
        return SpeechDataset(_commonvoice_split(root, split, spec), f"{spec} ({split})")
    return _hashed(*_commonvoice_entries(root, spec.options["split"]), root, spec, split)


_COMMONVOICE_TABLES = {"train": "train", "validation": "dev", "test": "test"}


def _commonvoice_split(root: Path, split: str, spec: DataSpec) -> list[_Entry]:
    """``split`` of a Common Voice folder whose tables are its splits (train.tsv, dev.tsv, test.tsv)."""
    named = {name: _commonvoice_entries(root, table)[0] for name, table in _COMMONVOICE_TABLES.items()
             if (root / f"{table}.tsv").is_file()}
    if not named:
        _commonvoice_entries(root)  # raises naming the missing train.tsv and the tables present
    entries = [entry for part in named.values() for entry in part]
    return named_split(split, entries, named, lambda e: file_key(e.path, root), f"--data {spec}", SEED)


def _entry(where: str, audio: Path, text: str) -> _Entry:
    """Check one row: its text is not empty once normalised and its audio file exists."""
    normalised = normalize_text(text)
    if not normalised:
        raise ZooError(f"{where}: empty text")
    if not audio.is_file():
        raise FileNotFoundError(f"{where}: audio file {audio} not found")
    return _Entry(audio, normalised)


def manifest_entries(path: Path) -> list[_Entry]:
    """Rows of a JSONL (or ``.csv``) manifest: ``audio_filepath``, ``text``, optional ``duration``."""
    columns = ("audio_filepath", "text")
    rows = table_rows(path, columns, one_line=True) if path.suffix.lower() == ".csv" else jsonl_rows(path, columns)
    entries = []
    for where, row in rows:
        audio = text_field(row, "audio_filepath", where)
        duration = row.get("duration")
        if duration not in (None, "") and not _is_seconds(duration):
            raise ZooError(f"{where}: 'duration' must be a number of seconds, finite and >= 0, got {duration!r}")
        entries.append(_entry(where, path.parent / audio, text_field(row, "text", where)))
    return nonempty(entries, f"{path}: no utterances (the manifest has no rows)")


def _is_seconds(value: object) -> bool:
    """True for a finite number >= 0 (or its text), as a manifest's ``duration``."""
    if isinstance(value, bool):
        return False
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(seconds) and seconds >= 0


def _librispeech_entries(root: Path) -> tuple[list[_Entry], int]:
    """Utterances of a LibriSpeech folder, and the number of flac files without a transcript."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such LibriSpeech folder")
    transcripts = sorted(root.rglob("*.trans.txt"))
    if not transcripts:
        raise FileNotFoundError(f"{root}: no *.trans.txt transcripts (expected speaker/chapter/speaker-chapter.trans.txt)")
    entries = []
    for transcript in transcripts:
        for line, text in numbered_lines(transcript, blank=False):
            parts = text.split(maxsplit=1)
            if len(parts) != 2:
                raise ZooError(f"{transcript}:{line}: expected 'UTTERANCE-ID TEXT'")
            entries.append(_entry(f"{transcript}:{line}", transcript.parent / f"{parts[0]}.flac", parts[1]))
    nonempty(entries, f"{root}: no lines in its transcripts ({', '.join(str(t) for t in transcripts[:3])})")
    labelled = {entry.path for entry in entries}
    unlabelled = sorted(set(root.rglob("*.flac")) - labelled)
    return entries, warn_skipped(str(root), [f"{path}: no line for it in its folder's .trans.txt" for path in unlabelled],
                                 "flac file(s) without a transcript")


def _commonvoice_entries(root: Path, table_name: str = "train") -> tuple[list[_Entry], int]:
    """Utterances of a Common Voice folder: ``<table_name>.tsv`` rows with clips in ``clips/``."""
    table = root / f"{table_name}.tsv"
    if not table.is_file():
        present = ", ".join(sorted(p.stem for p in root.glob("*.tsv"))) or "none"
        raise FileNotFoundError(f"{table}: no such Common Voice table (tables in {root}: {present})")
    entries = [_entry(where, root / "clips" / row["path"], row["sentence"])
               for where, row in table_rows(table, ("path", "sentence"), "\t", csv.QUOTE_NONE, one_line=True)]
    return nonempty(entries, f"{table}: no utterances (only a header)"), 0


FORMATS: dict[str, Format] = {
    "librispeech": Format(_librispeech),
    "manifest": Format(_manifest),
    "commonvoice": Format(_commonvoice, ("split",)),
}
