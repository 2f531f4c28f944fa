"""ASR data: LibriSpeech, manifest and Common Voice adapters, and two built-in synthesized sets.

SPECs (every one yields ``{"audio": (S,) float32 at 16 kHz, "text": str, "path": str}``,
the text normalised by :func:`normalize_text`):

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

Other user sources (and one chosen Common Voice table) are read whole, then
:func:`tasks.engine.data.hash_split` cuts them 90/5/5 into ``train``/``validation``/``test`` by a
seeded hash of each audio file's path inside the source (``all`` keeps everything). A missing audio file or a
malformed row (a field spanning lines from an unbalanced quote, a column named twice, bytes
that are not UTF-8) raises ``ZooError`` naming the file and line; a damaged audio file
(failing a cheap ``soundfile.info`` check) or a clip under ``audio.MIN_SECONDS`` is skipped
with a warning and counted in ``dataset.skipped``.

Built-in sets (``zoo data prepare asr``) are synthesized offline by Debian's espeak-ng
and flite, written as 16 kHz FLAC with ``train.jsonl``/``validation.jsonl``/``test.jsonl``
manifests and read back through the manifest adapter. Validation and test are spoken by
voices never heard in training: flite ``rms`` and ``slt``, and espeak-ng variants and
accents kept out of the training pool.

- ``digits`` (quick): connected digit strings of 1 to 7 digits, said as words with 0 as
  "oh" or "zero" (like TIDIGITS).
- ``default``: short sentences (3 to 12 words) from Jane Austen's six novels (public
  domain; Debian ``r-cran-janeaustenr``, read by :mod:`tasks.engine.rdata`), no
  sentence in two splits.
"""
from __future__ import annotations

import csv
import math
import random
import re
import subprocess
import tempfile
import time
import unicodedata
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from torch.utils.data import Dataset

from tasks.asr.audio import SAMPLE_RATE, AudioError, load_audio, probe_audio, save_flac
from tasks.engine.data import (
    build_atomically,
    builtin_dir,
    debian_package_root,
    file_key,
    hash_split,
    is_prepared,
    named_split,
    parse_spec,
    read_jsonl,
    read_utf8,
    require_program,
    split_lines,
    table_records,
    unique_header,
    write_jsonl,
)
from tasks.engine.rdata import read_r_lazyload
from zoo.errors import ZooError

TASK = "asr"
VERSION = "2"
BUILTIN_SETS: dict[str, str] = {
    "default": "short English sentences from Jane Austen spoken by espeak-ng and flite voices (4000/300/300)",
    "digits": "connected digit strings of 1-7 digits (TIDIGITS-like) spoken by espeak-ng and flite voices (3000/300/300)",
}
QUICK_SET = "digits"
SPLITS = ("train", "validation", "test")
MAX_SECONDS = 60.0
SEED = 0

# (train, validation, test) utterance counts of each built-in set
_SIZES = {"digits": (3000, 300, 300), "default": (4000, 300, 300)}
# Voices per split; no voice (engine + accent + variant) is shared between splits.
_ESPEAK_ACCENTS = {
    "train": ("en-us", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd"),
    "validation": ("en-gb-scotland", "en-us"),
    "test": ("en-us-nyc", "en-029", "en-gb"),
}
_ESPEAK_VARIANTS = {
    "train": ("", "m1", "m2", "m3", "m5", "m6", "f1", "f3", "f5"),
    "validation": ("m4", "f2"),
    "test": ("m7", "m8", "f4"),
}
_FLITE_VOICES = {"train": ("kal", "kal16", "awb"), "validation": ("rms",), "test": ("slt",)}
_FLITE_F0 = {"kal": 100, "kal16": 100, "awb": 120, "rms": 100, "slt": 170}   # mean pitch (Hz) of each voice
# Range of the factor on that pitch per split: the (male) training voices are also pitched up to where
# female voices speak, so that a held-out voice's pitch is never new, only its timbre.
_FLITE_F0_FACTOR = {"train": (0.8, 1.9), "validation": (0.85, 1.2), "test": (0.85, 1.2)}
_FLITE_SHARE = 1 / 3  # fraction of utterances spoken by flite, the rest by espeak-ng
_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_AUSTEN_PACKAGE = "r-cran-janeaustenr"
_AUSTEN_INDEX = Path("usr/lib/R/site-library/janeaustenr/data/Rdata.rdx")
_ABBREVIATIONS = ("Mr", "Mrs", "Dr", "St", "Messrs", "Esq", "Col", "Capt")
_ABBREVIATION = re.compile(rf"\b({'|'.join(_ABBREVIATIONS)})\.")
_SPEAKABLE = re.compile(r"[A-Z][A-Za-z' ,;:!?.\-]*[.!?]")  # no digits, quotes or brackets


def normalize_text(text: str) -> str:
    """Lowercase; keep letters, digits and in-word apostrophes; everything else becomes one space.

    >>> normalize_text("  \u201cWell-known,\u201d she said: 'Don\u2019t!' ")
    "well known she said don't"
    """
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").lower()
    kept = "".join(ch if ch.isalnum() or ch == "'" else " " for ch in text)
    return " ".join(word.strip("'") for word in kept.split() if word.strip("'"))


# ---- the data set and the adapters ------------------------------------------------------------

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
    and ``lengths`` (samples at 16 kHz, for :func:`tasks.asr.audio.length_grouped_batches`).
    """

    def __init__(self, entries: list[_Entry], source: str, skipped: int = 0, max_seconds: float = MAX_SECONDS) -> None:
        self.source = source
        self.skipped = skipped
        self.max_seconds = max_seconds
        self.entries: list[_Entry] = []
        self.durations: list[float] = []
        for entry in entries:
            try:
                seconds = probe_audio(entry.path, max_seconds)
            except AudioError as err:
                warnings.warn(f"{source}: skipping damaged audio: {err}", stacklevel=2)
                self.skipped += 1
                continue
            self.entries.append(entry)
            self.durations.append(seconds)
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


def read(spec: str, split: str) -> SpeechDataset:
    """A data set from a ``--data`` SPEC (see the module docstring) and a split.

    Built-in sets take ``train``, ``validation`` or ``test``; user sources take those or ``all``
    (see the module docstring for how each is split).
    """
    parsed = parse_spec(spec)
    if parsed.is_builtin:
        name = parsed.path or "default"
        if name not in BUILTIN_SETS:
            raise ValueError(f"unknown built-in set {TASK}:{name}; available: {', '.join(BUILTIN_SETS)}")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r} for built-in data; expected one of {', '.join(SPLITS)}")
        manifest = builtin_dir(TASK, name, VERSION) / f"{split}.jsonl"
        return SpeechDataset(_manifest_entries(manifest, {}), f"builtin:{name} ({split})")
    adapters: dict[str, Callable[[Path, dict[str, str]], tuple[list[_Entry], int]]] = {
        "librispeech": _librispeech_entries,
        "manifest": lambda path, options: (_manifest_entries(path, options), 0),
        "commonvoice": _commonvoice_entries,
    }
    if parsed.format not in adapters:
        raise ValueError(f"--data {spec!r}: unknown ASR format {parsed.format!r}; "
                         f"use builtin, builtin:NAME or one of {', '.join(f + ':PATH' for f in adapters)}")
    root = Path(parsed.path).expanduser()
    if parsed.format == "commonvoice" and "split" not in parsed.options:
        return SpeechDataset(_commonvoice_split(root, parsed.options, split, spec), f"{spec} ({split})")
    entries, unlabelled = adapters[parsed.format](root, parsed.options)
    if not entries:
        raise ValueError(f"{parsed.path}: no utterances found")
    folder = root.parent if root.is_file() else root
    chosen = hash_split(entries, split, key=lambda e: file_key(e.path, folder), source=f"--data {spec}", seed=SEED)
    return SpeechDataset(chosen, f"{spec} ({split})", skipped=unlabelled)


_COMMONVOICE_TABLES = {"train": "train", "validation": "dev", "test": "test"}


def _commonvoice_split(root: Path, options: dict[str, str], split: str, spec: str) -> list[_Entry]:
    """``split`` of a Common Voice folder whose tables are its splits (train.tsv, dev.tsv, test.tsv)."""
    _refuse_options(root, options, ("split",))
    named = {name: _commonvoice_entries(root, {"split": table})[0] for name, table in _COMMONVOICE_TABLES.items()
             if (root / f"{table}.tsv").is_file()}
    if not named:
        _commonvoice_entries(root, {})  # raises naming the missing train.tsv and the tables present
    entries = [entry for part in named.values() for entry in part]
    return named_split(split, entries, named, lambda e: file_key(e.path, root), f"--data {spec}", SEED)


def _entry(where: str, audio: Path, text: object) -> _Entry:
    """Check one row: its text is a non-empty string and its audio file exists."""
    if not isinstance(text, str):
        raise ZooError(f"{where}: 'text' must be a string, got {type(text).__name__}")
    normalised = normalize_text(text)
    if not normalised:
        raise ZooError(f"{where}: empty text")
    if not audio.is_file():
        raise FileNotFoundError(f"{where}: audio file {audio} not found")
    return _Entry(audio, normalised)


def _refuse_options(path: Path, options: dict[str, str], allowed: tuple[str, ...] = ()) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ZooError(f"{path}: unknown option(s) {', '.join(unknown)}; allowed: {', '.join(allowed) or 'none'}")


def _manifest_entries(path: Path, options: dict[str, str]) -> list[_Entry]:
    """Rows of a JSONL (or ``.csv``) manifest: ``audio_filepath``, ``text``, optional ``duration``."""
    _refuse_options(path, options)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such manifest")
    entries = []
    for line, row in _csv_rows(path) if path.suffix.lower() == ".csv" else read_jsonl(path):
        where = f"{path}:{line}"
        for field in ("audio_filepath", "text"):
            if field not in row:
                raise ZooError(f"{where}: missing field {field!r}")
        if not isinstance(row["audio_filepath"], str) or not row["audio_filepath"].strip():
            raise ZooError(f"{where}: 'audio_filepath' must be a non-empty string")
        duration = row.get("duration")
        if duration not in (None, "") and not _is_seconds(duration):
            raise ZooError(f"{where}: 'duration' must be a number of seconds, finite and >= 0, got {duration!r}")
        entries.append(_entry(where, path.parent / row["audio_filepath"], row["text"]))
    if not entries:
        raise ZooError(f"{path}: no utterances (the manifest has no rows)")
    return entries


def _is_seconds(value: object) -> bool:
    """True for a finite number >= 0 (or its text), as a manifest's ``duration``."""
    if isinstance(value, bool):
        return False
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(seconds) and seconds >= 0


_SEPARATED = {",": "comma-separated", "\t": "tab-separated"}


def _table(path: Path, delimiter: str, quoting: int) -> Iterator[tuple[int, list[str], list[str]]]:
    """``(first line, header, fields)`` of each record of a delimited UTF-8 file with a header.

    An empty file, a header naming a column twice, a row with another number of fields or a
    field spanning lines (an unbalanced quote swallowing the next rows) raises naming file:line.
    """
    records = table_records(path, delimiter, quoting)
    _, first = next(records, (1, []))
    header = unique_header([name.strip() for name in first], path)
    if not header:
        raise ZooError(f"{path}: empty file; expected a header row naming the columns")
    for line, row in records:
        if any("\n" in field or "\r" in field for field in row):
            lines = 1 + sum(field.count("\n") for field in row)
            raise ZooError(f"{path}:{line}: a field runs over {lines} lines (an unbalanced quote?); fix the quoting")
        if len(row) != len(header):
            raise ZooError(f"{path}:{line}: expected {len(header)} {_SEPARATED[delimiter]} columns, got {len(row)}")
        yield line, header, row


def _csv_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line_number, row)`` of a CSV manifest whose header names ``audio_filepath`` and ``text``."""
    for line, header, row in _table(path, ",", csv.QUOTE_MINIMAL):
        missing = [c for c in ("audio_filepath", "text") if c not in header]
        if missing:
            raise ZooError(f"{path}:1: missing column(s) {', '.join(missing)} (header: {header})")
        yield line, dict(zip(header, row))


def _librispeech_entries(root: Path, options: dict[str, str]) -> tuple[list[_Entry], int]:
    """Utterances of a LibriSpeech folder, and the number of flac files without a transcript."""
    _refuse_options(root, options)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such LibriSpeech folder")
    transcripts = sorted(root.rglob("*.trans.txt"))
    if not transcripts:
        raise FileNotFoundError(f"{root}: no *.trans.txt transcripts (expected speaker/chapter/speaker-chapter.trans.txt)")
    entries = []
    for transcript in transcripts:
        for line, text in enumerate(split_lines(read_utf8(transcript)), 1):
            if not text.strip():
                continue
            parts = text.split(maxsplit=1)
            if len(parts) != 2:
                raise ZooError(f"{transcript}:{line}: expected 'UTTERANCE-ID TEXT'")
            entries.append(_entry(f"{transcript}:{line}", transcript.parent / f"{parts[0]}.flac", parts[1]))
    if not entries:
        raise ZooError(f"{root}: no lines in its transcripts ({', '.join(str(t) for t in transcripts[:3])})")
    labelled = {entry.path for entry in entries}
    unlabelled = sorted(set(root.rglob("*.flac")) - labelled)
    for path in unlabelled:
        warnings.warn(f"{root}: skipping {path}: no line for it in its folder's .trans.txt", stacklevel=3)
    return entries, len(unlabelled)


def _commonvoice_entries(root: Path, options: dict[str, str]) -> tuple[list[_Entry], int]:
    """Utterances of a Common Voice folder: ``<split>.tsv`` rows with clips in ``clips/``."""
    _refuse_options(root, options, ("split",))
    table = root / f"{options.get('split', 'train')}.tsv"
    if not table.is_file():
        present = ", ".join(sorted(p.stem for p in root.glob("*.tsv"))) or "none"
        raise FileNotFoundError(f"{table}: no such Common Voice table (tables in {root}: {present})")
    entries = []
    for line, header, row in _table(table, "\t", csv.QUOTE_NONE):
        missing = [c for c in ("path", "sentence") if c not in header]
        if missing:
            raise ZooError(f"{table}:1: missing column(s) {', '.join(missing)} (header: {header})")
        entries.append(_entry(f"{table}:{line}", root / "clips" / row[header.index("path")],
                              row[header.index("sentence")]))
    if not entries:
        raise ZooError(f"{table}: no utterances (only a header)")
    return entries, 0


# ---- preparing the built-in sets --------------------------------------------------------------

@dataclass(frozen=True)
class _Utterance:
    """One utterance to synthesize: what is said, its transcript, and the command's voice settings."""

    file: str         # relative to the set's folder, e.g. "train/00042.flac"
    spoken: str       # the text handed to the synthesizer
    text: str         # the normalised transcript
    engine: str       # "espeak-ng" or "flite"
    voice: str        # "en-us+m3" or "slt"
    rate: float       # espeak-ng words per minute, or flite duration stretch
    pitch: float      # espeak-ng pitch 0-99, or flite mean F0 in Hz


def prepare(names: list[str] | None = None, force: bool = False) -> None:
    """Build the named built-in sets (all when None) into the cache, skipping prepared ones unless ``force``."""
    names = list(BUILTIN_SETS) if names is None else names
    unknown = [name for name in names if name not in BUILTIN_SETS]
    if unknown:
        raise ValueError(f"unknown built-in set(s) {', '.join(unknown)} for {TASK}; available: {', '.join(BUILTIN_SETS)}")
    for name in names:
        if is_prepared(TASK, name, VERSION) and not force:
            print(f"{TASK}:{name}: already prepared")
            continue
        require_program("espeak-ng", "espeak-ng")
        require_program("flite", "flite")
        start = time.perf_counter()
        texts = _digit_strings(sum(_SIZES[name]), SEED) if name == "digits" else _austen_sentences(sum(_SIZES[name]))
        with build_atomically(TASK, name, VERSION) as out:
            hours = _synthesize_set(out, _plan(texts, _SIZES[name], SEED)) / 3600
        print(f"{TASK}:{name}: {' / '.join(map(str, _SIZES[name]))} utterances ({hours:.1f} h of audio) "
              f"in {time.perf_counter() - start:.0f} s")


def _digit_strings(count: int, seed: int) -> list[str]:
    """``count`` strings of 1 to 7 digit words, each 0 said as "oh" or "zero" at random."""
    rng = random.Random(seed)
    strings = []
    for _ in range(count):
        digits = [rng.randrange(10) for _ in range(rng.randint(1, 7))]
        strings.append(" ".join(rng.choice(("oh", "zero")) if d == 0 else _DIGIT_WORDS[d] for d in digits))
    return strings


def _austen_sentences(count: int) -> list[str]:
    """``count`` distinct, seeded-shuffled sentences of Jane Austen's novels that a synthesizer reads as written."""
    with tempfile.TemporaryDirectory() as tmp:
        index = debian_package_root(_AUSTEN_PACKAGE, Path(tmp)) / _AUSTEN_INDEX
        if not index.is_file():
            raise FileNotFoundError(f"{index}: missing from the Debian package {_AUSTEN_PACKAGE}")
        novels = [lines for _, lines in sorted(read_r_lazyload(index).items()) if isinstance(lines, list)]
    sentences = speakable_sentences("\n".join(lines) for lines in novels)
    if len(sentences) < count:
        raise ValueError(f"{index}: only {len(sentences)} usable sentences, {count} needed")
    random.Random(SEED).shuffle(sentences)
    return sentences[:count]


def speakable_sentences(texts: Iterable[str], min_words: int = 3, max_words: int = 12) -> list[str]:
    """Distinct sentences of prose that a synthesizer says exactly as their normalised transcript.

    Paragraphs (blank-line separated) are cut after ``.``, ``!`` or ``?``; a sentence is kept
    when it starts with a capital, ends a sentence, has ``min_words`` to ``max_words`` words
    and holds only letters, apostrophes and punctuation: no digits, abbreviations (``Mr.``)
    or all-capital words, which synthesizers expand into words the transcript lacks.
    """
    seen: dict[str, str] = {}  # normalised text -> sentence, first occurrence wins
    for text in texts:
        for paragraph in re.split(r"\n\s*\n", text):
            flat = _ABBREVIATION.sub(r"\1", " ".join(paragraph.split()).replace("_", ""))
            for sentence in re.split(r"(?<=[.!?])\s+", flat):
                sentence = sentence.strip(" \"'\u201c\u201d\u2018\u2019")
                if min_words <= len(sentence.split()) <= max_words and _speakable(sentence):
                    seen.setdefault(normalize_text(sentence), sentence)
    return list(seen.values())


def _speakable(sentence: str) -> bool:
    """True when the sentence holds nothing a synthesizer would say differently from its transcript."""
    if not _SPEAKABLE.fullmatch(sentence) or "--" in sentence:
        return False
    words = [word.strip(",;:!?.'-") for word in sentence.split()]
    return not any(word in _ABBREVIATIONS or (len(word) > 1 and word.isupper()) for word in words)


def _plan(texts: list[str], sizes: tuple[int, int, int], seed: int) -> list[_Utterance]:
    """Assign each text a split (in order: train, validation, test), a file, a voice of that split and a prosody."""
    rng = random.Random(seed)
    plan = []
    bounds = [0, sizes[0], sizes[0] + sizes[1], sum(sizes)]
    for split, lo, hi in zip(SPLITS, bounds, bounds[1:]):
        espeak_voices = [f"{a}+{v}" if v else a for a in _ESPEAK_ACCENTS[split] for v in _ESPEAK_VARIANTS[split]]
        for number, spoken in enumerate(texts[lo:hi]):
            if rng.random() < _FLITE_SHARE:
                voice = rng.choice(_FLITE_VOICES[split])
                engine, rate, pitch = "flite", rng.uniform(0.85, 1.25), _FLITE_F0[voice] * rng.uniform(*_FLITE_F0_FACTOR[split])
            else:
                voice = rng.choice(espeak_voices)
                engine, rate, pitch = "espeak-ng", rng.randint(130, 200), rng.randint(25, 75)
            plan.append(_Utterance(f"{split}/{number:05d}.flac", spoken, normalize_text(spoken), engine, voice, rate, pitch))
    return plan


def _synthesize_set(out: Path, plan: list[_Utterance]) -> float:
    """Speak every utterance (2 synthesizer processes at a time) into ``out`` as 16 kHz FLAC plus
    one JSONL manifest per split; returns the total duration in seconds."""
    for split in SPLITS:
        (out / split).mkdir()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the two workers are the parallelism; intra-op threads on short clips only spin
    with tempfile.TemporaryDirectory() as scratch:
        pool = ThreadPoolExecutor(max_workers=2)  # each thread waits on its own synthesizer process
        try:
            rows = list(pool.map(lambda u: _synthesize(u, out, Path(scratch)), plan))
        finally:
            pool.shutdown(cancel_futures=True)  # a failure stops the run instead of finishing the queue
            torch.set_num_threads(threads)
    for split in SPLITS:
        write_jsonl(out / f"{split}.jsonl", [row for row in rows if row["audio_filepath"].startswith(f"{split}/")])
    return sum(row["duration"] for row in rows)


def _synthesize(utterance: _Utterance, out: Path, scratch: Path) -> dict:
    """Run one synthesizer into a scratch WAV, then write it as 16 kHz FLAC; returns its manifest row."""
    wav = scratch / (utterance.file.replace("/", "-") + ".wav")
    if utterance.engine == "flite":
        command = ["flite", "-voice", utterance.voice, "--setf", f"duration_stretch={utterance.rate:.3f}",
                   "--setf", f"int_f0_target_mean={utterance.pitch:.1f}", "-o", str(wav), "-t", utterance.spoken]
    else:
        command = ["espeak-ng", "-v", utterance.voice, "-s", str(utterance.rate), "-p", str(utterance.pitch),
                   "-w", str(wav), utterance.spoken]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not wav.is_file():
        raise RuntimeError(f"`{' '.join(command)}` failed (exit {result.returncode}): {result.stderr.strip()}")
    wave = load_audio(wav)  # (S,) at 16 kHz
    wav.unlink()
    save_flac(out / utterance.file, wave)
    return {"audio_filepath": utterance.file, "text": utterance.text, "duration": round(len(wave) / SAMPLE_RATE, 3),
            "voice": f"{utterance.engine}:{utterance.voice}"}
